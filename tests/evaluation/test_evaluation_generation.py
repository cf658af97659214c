"""Batched left-padded greedy generation equals one-at-a-time generation and stops at EOS."""

from __future__ import annotations

import pytest
import torch

from llama_lora.evaluation.generation import decode_until_eos, generate_continuations

PROMPTS = [
    "Translate to Vietnamese: good morning\n",
    "Hi",
    "Summarize: The quick brown fox jumps over the lazy dog, twice, before dinner.\n",
    "",
    "Q: 2+2?\nA: ",
]


@pytest.mark.parametrize("model_kind", ["plain", "lora"])
def test_batched_generation_equals_unbatched(request, tokenizer, model_kind):
    model = request.getfixturevalue("model" if model_kind == "plain" else "lora_model")
    with torch.inference_mode():
        one_by_one = [
            generate_continuations(model, tokenizer, [p], batch_size=1, max_new_tokens=6)[0]
            for p in PROMPTS
        ]
        for batch_size in (2, len(PROMPTS)):  # uneven last batch, then all prompts at once
            batched = generate_continuations(
                model, tokenizer, PROMPTS, batch_size=batch_size, max_new_tokens=6
            )
            assert batched == one_by_one, f"batch_size={batch_size}"
    assert any(one_by_one), "a random model still produces some text"
    assert tokenizer.padding_side == "right", "the shared tokenizer must not be mutated"


def test_generation_is_greedy_argmax_of_the_model(model, tokenizer):
    prompt = "Hello there"
    ids = tokenizer(prompt)["input_ids"]
    expected = []
    with torch.inference_mode():
        for _ in range(6):  # greedy by hand: append the argmax token each step
            token = model(torch.tensor([ids + expected])).logits[0, -1].argmax().item()
            if token == tokenizer.eos_token_id:
                break
            expected.append(token)
        result = generate_continuations(model, tokenizer, [prompt], max_new_tokens=6)
    assert result == [tokenizer.decode(expected, skip_special_tokens=True).strip()]


def test_generation_stops_at_eos(model, tokenizer):
    steps = []

    def eos_from_third_step(module, args, output):
        steps.append(1)
        if len(steps) >= 3:  # steps 1 and 2 produce ordinary tokens, step 3 produces EOS
            output.logits[:, -1, tokenizer.eos_token_id] = 1e4
        return output

    handle = model.register_forward_hook(eos_from_third_step)
    try:
        with torch.inference_mode():
            result = generate_continuations(model, tokenizer, ["abc"], max_new_tokens=10)
    finally:
        handle.remove()
    assert len(steps) == 3, "decoding stops on the step that produced EOS"
    assert len(tokenizer(result[0], add_special_tokens=False)["input_ids"]) <= 2


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["hi", "<eos>", "j"], "hi"),  # text after EOS (padding of finished rows) is dropped
        (["<eos>", "hi"], ""),
        ([" hi ", "<eos>"], "hi"),  # surrounding whitespace stripped
        (["no eos"], "no eos"),
    ],
)
def test_decode_until_eos(tokenizer, pieces, expected):
    eos = tokenizer.eos_token_id
    tokens = []
    for piece in pieces:
        tokens += (
            [eos] if piece == "<eos>" else tokenizer(piece, add_special_tokens=False)["input_ids"]
        )
    assert decode_until_eos(tokenizer, tokens, [eos]) == expected
