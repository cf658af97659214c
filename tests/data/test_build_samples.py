"""``build_dataset(task, "sample", tokenizer)`` works for every task on the bundled samples."""

from __future__ import annotations

import pytest

from llama_lora.data import TASKS, build_dataset, read_metadata
from llama_lora.data.readers import sample_path
from llama_lora.data.tokenization import IGNORE_INDEX


@pytest.mark.parametrize("task", list(TASKS))
def test_sample_builds_masked_splits(task, tokenizer):
    if not sample_path(task).is_file():
        pytest.skip(f"bundled sample {sample_path(task).name} is not there yet")
    data = build_dataset(task, "sample", tokenizer, max_length=1024)
    assert all(len(data[split]) > 0 for split in ("train", "validation", "test"))
    assert data.stats.splits["train"].dropped == 0
    assert read_metadata(data["train"])["task"] == task
    if task == "sentiment":
        assert read_metadata(data["train"])["label_words"] == ["negative", "positive"]
    for split in data.values():
        for row in split:
            labels, ids = row["labels"], row["input_ids"]
            first_target = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
            assert all(label == IGNORE_INDEX for label in labels[:first_target])
            assert labels[first_target:] == ids[first_target:]
            assert ids[-1] == tokenizer.eos_token_id and ids[0] == tokenizer.bos_token_id
