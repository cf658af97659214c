"""Batched greedy generation for evaluation: left padding, deterministic, stops at EOS."""

from __future__ import annotations

from collections.abc import Sequence

from llama_lora.evaluation.inputs import encode_prompt, pad_token_id
from llama_lora.evaluation.scoring import input_device, left_pad


def generate_continuations(
    model, tokenizer, prompts: Sequence[str], *, batch_size: int = 8, max_new_tokens: int = 128
) -> list[str]:
    """Greedily continue each prompt and return only the new text, stripped.

    Prompts are sorted by length before batching so a batch holds prompts of similar length
    (less padding), and padded on the LEFT so every prompt's last token sits in the last column
    and the first new token of every row is generated from its own prompt. Greedy decoding with
    no sampling makes the result deterministic; a row stops at its first EOS token.

    Args:
        model: a causal LM (transformers or peft) in eval mode.
        tokenizer: its tokenizer; prompts are tokenised as in training (BOS + text).
        prompts: the prompt texts.
        batch_size: prompts per ``generate`` call.
        max_new_tokens: the most tokens generated per prompt.

    Returns:
        The decoded continuations (special tokens removed), in the order of ``prompts``.
    """
    from transformers import GenerationConfig

    eos_ids = _eos_token_ids(model, tokenizer)
    pad_id = pad_token_id(tokenizer)
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos_ids,
        pad_token_id=pad_id,
    )
    encoded = [encode_prompt(tokenizer, prompt) for prompt in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    device = input_device(model)
    outputs: list[str] = [""] * len(encoded)
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        input_ids, attention_mask, _ = left_pad([encoded[i] for i in indices], pad_id)
        generated = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=config,
        )[:, input_ids.shape[1] :]  # (B, new tokens): drop the prompt columns
        for index, tokens in zip(indices, generated.tolist(), strict=True):
            outputs[index] = decode_until_eos(tokenizer, tokens, eos_ids)
    return outputs


def decode_until_eos(tokenizer, tokens: Sequence[int], eos_ids: Sequence[int]) -> str:
    """Decode ``tokens`` up to (not including) the first EOS; later tokens are padding."""
    end = next((i for i, token in enumerate(tokens) if token in eos_ids), len(tokens))
    return tokenizer.decode(list(tokens[:end]), skip_special_tokens=True).strip()


def _eos_token_ids(model, tokenizer) -> list[int]:
    """The tokenizer's EOS plus any the model's generation config declares (e.g. end-of-turn)."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for token in declared if isinstance(declared, list) else [declared]:
        if token is not None and token not in ids:
            ids.append(token)
    if not ids:
        raise ValueError("neither the tokenizer nor the model defines an EOS token")
    return ids
