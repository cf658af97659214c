"""The token-summed loss agrees with transformers' own loss and with the token counts."""

from __future__ import annotations

import pytest
import torch

from llama_lora.data.collator import DataCollator
from llama_lora.training.loss import (
    count_real_tokens,
    count_target_tokens,
    token_cross_entropy_per_example,
    token_cross_entropy_sum,
)
from tests.training.helpers import tiny_lora_model, toy_rows


@pytest.fixture(scope="module")
def batch_and_logits(tokenizer):
    model = tiny_lora_model().eval()
    batch = DataCollator(tokenizer)(toy_rows(tokenizer, 6, seed=3))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        hf_mean = model(**batch).loss  # transformers' own mean over target tokens
    return batch, logits, hf_mean


def test_sum_over_targets_equals_transformers_mean_times_count(batch_and_logits):
    batch, logits, hf_mean = batch_and_logits
    total = token_cross_entropy_sum(logits, batch["labels"])
    count = count_target_tokens(batch["labels"])
    torch.testing.assert_close(total / count, hf_mean, rtol=1e-6, atol=0)


def test_per_example_sums_add_up_to_the_batch_sum(batch_and_logits):
    batch, logits, _ = batch_and_logits
    sums, counts = token_cross_entropy_per_example(logits, batch["labels"])
    torch.testing.assert_close(sums.sum(), token_cross_entropy_sum(logits, batch["labels"]))
    assert torch.equal(counts.sum(), count_target_tokens(batch["labels"]))
    assert (counts > 0).all() and len(set(counts.tolist())) > 1  # lengths differ: weights matter


def test_target_count_matches_the_labels(tokenizer):
    rows = toy_rows(tokenizer, 5, seed=1)
    batch = DataCollator(tokenizer)(rows)
    # every label after the first position that is not -100 is a target (the first is never
    # predicted: nothing comes before it)
    expected = sum(sum(1 for label in row["labels"][1:] if label != -100) for row in rows)
    assert count_target_tokens(batch["labels"]).item() == expected


@pytest.mark.parametrize("packed", [False, True])
def test_real_tokens_exclude_padding(tokenizer, packed):
    rows = toy_rows(tokenizer, 4, seed=2)
    if packed:  # two examples per row, positions restarting at 0, like packing=True rows
        rows = [_pack(rows[0], rows[1]), _pack(rows[2], rows[3])]
    batch = DataCollator(tokenizer, pad_to_multiple_of=16)(rows)
    assert batch["attention_mask"].dim() == (4 if packed else 2)
    expected = sum(len(row["input_ids"]) for row in rows)
    assert count_real_tokens(batch, tokenizer.pad_token_id).item() == expected
    assert batch["input_ids"].numel() > expected  # there was padding to exclude


def _pack(first: dict, second: dict) -> dict:
    return {
        "input_ids": first["input_ids"] + second["input_ids"],
        "labels": first["labels"] + second["labels"],
        "position_ids": [*range(len(first["input_ids"])), *range(len(second["input_ids"]))],
    }
