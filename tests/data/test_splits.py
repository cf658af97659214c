"""Splits: disjoint, complete, reproducible for a seed; given splits are kept."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict

from llama_lora.data import build_dataset


def _responses(split) -> list[str]:
    return list(split["response"])


@pytest.mark.parametrize(
    ("n", "val_size", "test_size", "sizes"),
    [
        (100, 0.1, 0.1, (80, 10, 10)),
        (100, 0.2, 0.0, (80, 20, 0)),
        (50, 0.0, 0.3, (35, 0, 15)),
        (5, 0.1, 0.1, (3, 1, 1)),  # a non-zero fraction always gets a row
    ],
)
def test_splits_are_disjoint_and_cover_every_row(
    n, val_size, test_size, sizes, byte_tokenizer, make_rows
):
    rows = make_rows("qa", n)
    data = build_dataset("qa", rows, byte_tokenizer, val_size=val_size, test_size=test_size)
    assert tuple(len(data[s]) for s in ("train", "validation", "test")) == sizes
    seen = [r for s in ("train", "validation", "test") for r in _responses(data[s])]
    assert len(seen) == len(set(seen)) == n
    assert set(seen) == {row["answer"] for row in rows}
    assert data["validation"].column_names == data["train"].column_names  # even when empty


def test_splits_are_reproducible_for_a_seed_and_change_with_it(byte_tokenizer, make_rows):
    rows = make_rows("summarization", 60)
    first = build_dataset("summarization", rows, byte_tokenizer, seed=7)
    again = build_dataset("summarization", rows, byte_tokenizer, seed=7)
    other = build_dataset("summarization", rows, byte_tokenizer, seed=8)
    for split in ("train", "validation", "test"):
        assert first[split]["input_ids"] == again[split]["input_ids"]
    assert set(_responses(first["test"])) != set(_responses(other["test"]))


@pytest.mark.parametrize(
    ("given", "carved"),
    [
        ({"train": 40, "test": 10}, {"validation"}),
        ({"train": 40, "dev": 10}, {"test"}),
        ({"train": 40, "validation": 10, "test": 10}, set()),
        ({"train": 40}, {"validation", "test"}),
    ],
)
def test_existing_splits_are_kept_and_missing_ones_carved_from_train(
    given, carved, byte_tokenizer, make_rows
):
    rows, parts, start = make_rows("translation", 60), {}, 0
    for name, count in given.items():
        parts[name] = Dataset.from_list(rows[start : start + count])
        start += count
    data = build_dataset("translation", DatasetDict(parts), byte_tokenizer, val_size=0.25)
    canonical = {"dev": "validation"}
    for name, part in parts.items():
        if name != "train":
            assert _responses(data[canonical.get(name, name)]) == list(part["target"])
    train_targets = set(parts["train"]["target"])
    for name in carved:
        assert set(_responses(data[name])) <= train_targets and len(data[name]) > 0
    carved_rows = {r for name in carved for r in _responses(data[name])}
    assert set(_responses(data["train"])) == train_targets - carved_rows
