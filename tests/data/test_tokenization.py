"""Masking, EOS, BOS and truncation invariants of build_dataset, on both tokenizers."""

from __future__ import annotations

import warnings

import pytest

from llama_lora.data import TASKS, build_dataset
from llama_lora.data.tokenization import IGNORE_INDEX, special_prefix

TASK_NAMES = tuple(TASKS)


def _rows_of(data):
    for split in data.values():
        yield from split


@pytest.mark.parametrize("task", TASK_NAMES)
def test_labels_mask_exactly_the_prompt_and_end_with_eos(task, tokenizer, make_rows):
    data = build_dataset(task, make_rows(task, 20), tokenizer, max_length=512)
    prefix = special_prefix(tokenizer)
    eos = tokenizer.eos_token_id
    assert sum(len(split) for split in data.values()) == 20
    for row in _rows_of(data):
        prompt_ids = prefix + tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        response_ids = tokenizer(row["response"], add_special_tokens=False)["input_ids"]
        # what the model sees is the prompt as tokenized at generation time, then the target
        assert row["input_ids"] == prompt_ids + response_ids + [eos]
        assert row["input_ids"][: len(prompt_ids)] == tokenizer(row["prompt"])["input_ids"]
        assert row["labels"] == [IGNORE_INDEX] * len(prompt_ids) + response_ids + [eos]
        assert row["attention_mask"] == [1] * len(row["input_ids"])
        assert row["response"] in row["references"]


@pytest.mark.parametrize("task", [t for t in TASK_NAMES if t != "chat"])
def test_bos_appears_once_at_the_start(task, tokenizer, make_rows):
    data = build_dataset(task, make_rows(task, 10), tokenizer, max_length=512)
    for row in _rows_of(data):
        assert row["input_ids"][0] == tokenizer.bos_token_id
        assert row["input_ids"].count(tokenizer.bos_token_id) == 1
        assert row["input_ids"].count(tokenizer.eos_token_id) == 1


def test_train_on_inputs_labels_everything_after_bos(tokenizer, make_rows):
    data = build_dataset("qa", make_rows("qa", 10), tokenizer, train_on_inputs=True)
    for row in _rows_of(data):
        assert row["labels"] == [IGNORE_INDEX] + row["input_ids"][1:]


@pytest.mark.parametrize(
    ("task", "row", "cut_field"),
    [
        (
            "qa",
            {"context": "Llamas hum. " * 200, "question": "Do llamas hum?", "answer": "Yes"},
            "context",
        ),
        ("summarization", {"document": "Rain fell. " * 200, "summary": "It rained."}, "document"),
        ("sentiment", {"text": "Great film! " * 200, "label": "positive"}, "text"),
        (
            "instruction",
            {"instruction": "Count the words.", "input": "one two " * 200, "output": "400 words"},
            "input",
        ),
    ],
)
def test_truncation_cuts_the_prompt_field_and_keeps_the_full_answer(
    task, row, cut_field, tokenizer, make_rows
):
    rows = [row] + make_rows(task, 9)
    data = build_dataset(task, rows, tokenizer, max_length=320, val_size=0, test_size=0)
    truncated = next(r for r in data["train"] if row[cut_field][:20] in r["prompt"])
    assert len(truncated["input_ids"]) <= 320
    target = [
        t
        for t, label in zip(truncated["input_ids"], truncated["labels"], strict=True)
        if label != IGNORE_INDEX
    ]
    expected = tokenizer(truncated["response"], add_special_tokens=False)["input_ids"]
    assert target == expected + [tokenizer.eos_token_id]
    kept_text = truncated["prompt"]
    assert row[cut_field][:20] in kept_text and row[cut_field] not in kept_text
    assert data.stats.splits["train"].truncated >= 1
    assert data.stats.splits["train"].dropped == 0


@pytest.mark.parametrize(
    ("task", "bad_row"),
    [
        ("summarization", {"document": "Short.", "summary": "Much too long. " * 40}),
        ("translation", {"source": "Hello. " * 40, "target": "Xin chào. " * 40}),  # no cut field
        ("generation", {"text": "word " * 200}),
    ],
)
def test_examples_that_cannot_fit_are_dropped_counted_and_warned(
    task, bad_row, byte_tokenizer, make_rows
):
    rows = [bad_row] + make_rows(task, 9)
    with pytest.warns(UserWarning, match=r"dropped 1 example"):
        data = build_dataset(task, rows, byte_tokenizer, max_length=200, val_size=0, test_size=0)
    assert data.stats.splits["train"].dropped == 1
    assert len(data["train"]) == 9
    assert all(len(row["input_ids"]) <= 200 for row in data["train"])


def test_no_warning_when_nothing_is_dropped(byte_tokenizer, make_rows):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_dataset("qa", make_rows("qa", 10), byte_tokenizer)


def test_prefix_of_llama_tokenizer_is_bos(llama_tokenizer, byte_tokenizer):
    assert special_prefix(llama_tokenizer) == [llama_tokenizer.bos_token_id]
    assert special_prefix(byte_tokenizer) == [byte_tokenizer.bos_token_id]
