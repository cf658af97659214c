"""Loss/perplexity against a hand computation; cached label scoring against brute force."""

from __future__ import annotations

import math

import pytest
import torch

from llama_lora.data.collator import DataCollator
from llama_lora.evaluation import evaluate
from llama_lora.evaluation.scoring import left_pad, score_labels, token_loss

PROMPTS = [
    "Review: I loved every minute of it.\nSentiment: ",
    "Bad.\nSentiment: ",
    "Review: The plot made no sense at all, but the music was nice.\nSentiment: ",
    "x",
    "Review: meh\nSentiment: ",
]


def _hand_nll(model, rows) -> tuple[float, int]:
    """Sum of -log p(target) over every row, each row run alone (no padding), in float64."""
    total, count = 0.0, 0
    for row in rows:
        logits = model(torch.tensor([row["input_ids"]])).logits[0].double()
        logp = logits.log_softmax(dim=-1)
        for position, target in enumerate(row["labels"][1:]):
            if target != -100:
                total -= logp[position, target].item()
                count += 1
    return total, count


@pytest.mark.parametrize("batch_size", [1, 2, 8])
def test_perplexity_is_exp_of_hand_computed_mean_token_loss(
    model, tokenizer, make_split, batch_size
):
    records = [{"prompt": p, "response": r} for p, r in zip(PROMPTS, "abcde", strict=True)]
    records[2]["response"] = "a much longer response than the others"
    split = make_split(tokenizer, "instruction", records)
    with torch.no_grad():
        total, count = _hand_nll(model, split.to_list())
    scores = evaluate(model, tokenizer, split, metrics=[], batch_size=batch_size)
    assert set(scores) == {"loss", "perplexity"}
    assert scores["loss"] == pytest.approx(total / count, rel=1e-5)
    assert scores["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_token_loss_matches_the_model_loss_per_example(model, tokenizer, encode):
    rows = [encode(tokenizer, p, " answer") for p in PROMPTS[:3]]
    with torch.no_grad():
        losses = token_loss(model, rows, DataCollator(tokenizer), batch_size=3)
        for row, nll, count in zip(rows, losses.nll, losses.num_tokens, strict=True):
            reference = model(
                torch.tensor([row["input_ids"]]), labels=torch.tensor([row["labels"]])
            ).loss
            assert count == sum(label != -100 for label in row["labels"][1:])
            assert nll / count == pytest.approx(reference.item(), rel=1e-5)


def _brute_force_label_logp(model, prompt_ids, label_ids) -> torch.Tensor:
    """Score every prompt + label sequence with its own full forward pass."""
    scores = torch.zeros(len(prompt_ids), len(label_ids))
    for i, prompt in enumerate(prompt_ids):
        for j, label in enumerate(label_ids):
            logp = model(torch.tensor([prompt + label])).logits[0].double().log_softmax(-1)
            start = len(prompt) - 1  # the logits at position t predict token t + 1
            scores[i, j] = sum(logp[start + k, token].item() for k, token in enumerate(label))
    return scores


LABEL_SETS = [
    ["positive", "negative"],
    ["positive", "negative", "neutral", "mixed", "very good"],
    ["a", "b", "c"],  # one token each: no continuation pass is needed
    ["y", "no way"],  # one-token and multi-token labels mixed
]


@pytest.mark.parametrize(
    ("model_kind", "label_words"),
    [("plain", words) for words in LABEL_SETS] + [("lora", LABEL_SETS[-1])],
)
def test_cached_label_scoring_equals_brute_force(request, tokenizer, label_words, model_kind):
    model = request.getfixturevalue("model" if model_kind == "plain" else "lora_model")
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    label_ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in label_words]
    with torch.no_grad():
        cached = score_labels(model, prompt_ids, label_ids, tokenizer.pad_token_id)
        expected = _brute_force_label_logp(model, prompt_ids, label_ids)
    assert cached.shape == (len(PROMPTS), len(label_words))
    torch.testing.assert_close(cached, expected, rtol=1e-4, atol=1e-4)


class _EmbeddingCalls:
    """Records the (batch, length) of every forward pass via a hook on the input embedding."""

    def __init__(self, model):
        self.shapes: list[tuple[int, int]] = []
        self.handle = model.get_input_embeddings().register_forward_hook(self._record)

    def _record(self, module, args, output):
        self.shapes.append(tuple(args[0].shape))


@pytest.mark.parametrize("label_words", LABEL_SETS)
def test_label_scoring_runs_the_prompt_once_per_batch(model, tokenizer, label_words):
    prompt_ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    label_ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in label_words]
    longest_label = max(len(ids) for ids in label_ids)
    calls = _EmbeddingCalls(model)
    try:
        with torch.no_grad():
            score_labels(model, prompt_ids, label_ids, tokenizer.pad_token_id)
    finally:
        calls.handle.remove()
    prompt_pass = (len(PROMPTS), max(len(ids) for ids in prompt_ids))
    continuation_pass = (len(PROMPTS) * len(label_words), longest_label - 1)
    expected = [prompt_pass] + ([continuation_pass] if longest_label > 1 else [])
    assert calls.shapes == expected


def test_evaluate_sentiment_forward_passes_do_not_grow_with_labels(model, tokenizer, make_split):
    words = ["negative", "positive", "neutral", "mixed"]
    records = [{"prompt": p, "response": words[i % 4]} for i, p in enumerate(PROMPTS)]
    split = make_split(tokenizer, "sentiment", records, label_words=words)
    calls = _EmbeddingCalls(model)
    try:
        evaluate(model, tokenizer, split, batch_size=2)
    finally:
        calls.handle.remove()
    batches = math.ceil(len(PROMPTS) / 2)
    # one loss pass, one prompt pass and one continuation pass per batch, whatever len(words)
    assert len(calls.shapes) == 3 * batches
    assert max(batch for batch, _ in calls.shapes) == 2 * len(words)


def test_left_pad_positions_count_real_tokens_only():
    input_ids, attention_mask, position_ids = left_pad([[5, 6, 7], [8]], pad_token_id=0)
    assert input_ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert attention_mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert position_ids.tolist() == [[0, 1, 2], [0, 0, 0]]


@pytest.mark.parametrize("label_ids", [[], [[7], []]])
def test_score_labels_rejects_empty_labels(model, label_ids):
    with pytest.raises(ValueError, match="every label needs at least one token"):
        score_labels(model, [[1, 5], [1, 6]], label_ids, pad_token_id=0)
