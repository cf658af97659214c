"""Turn what ``evaluate`` is given (a ``build_dataset`` split or raw records) into one shape.

A split from ``build_dataset`` is already tokenised and masked and carries its task in its
metadata; raw records (``[{"prompt": ..., "response": ...}, ...]``) are tokenised here the same
way training data is: prompt + response + EOS, loss only on response + EOS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llama_lora.evaluation.metrics import TASKS

IGNORE_INDEX = -100
_TOKEN_COLUMNS = ("input_ids", "attention_mask", "labels", "position_ids")


@dataclass
class EvalData:
    """The examples of one evaluation, in the form scoring and generation need."""

    task: str
    """One of ``metrics.TASKS``."""
    rows: list[dict[str, list[int]]]
    """Tokenised rows (``input_ids``, ``attention_mask``, ``labels``[, ``position_ids``])."""
    prompts: list[str] | None
    """The text fed to the model before the response; ``None`` when the data has none."""
    references: list[list[str]] | None
    """All gold answers per example; ``None`` when the data has none."""
    label_words: list[str] | None
    """The closed label set to score, or ``None`` for free-text tasks."""


def load_eval_data(dataset, tokenizer, task: str | None, num_samples: int | None) -> EvalData:
    """Normalise ``dataset`` (a ``datasets.Dataset`` or a list of dicts) into ``EvalData``.

    Raises:
        ValueError: the task is unknown or missing, the dataset is empty, or a record lacks the
            columns needed to compute the loss.
    """
    from llama_lora.data.metadata import read_metadata

    metadata = read_metadata(dataset)
    task = _resolve_task(task, metadata)
    if num_samples is not None and num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer or None, got {num_samples!r}")
    records = _to_records(dataset, num_samples)
    if not records:
        raise ValueError("the dataset to evaluate is empty")
    references = _references(records)
    rows = [_tokenised_row(record, index, tokenizer) for index, record in enumerate(records)]
    prompts = [r["prompt"] for r in records] if all("prompt" in r for r in records) else None
    label_words = metadata.get("label_words")
    if not label_words and task == "sentiment" and references is not None:
        # Raw records carry no metadata: the closed set is the labels seen in the gold answers.
        label_words = sorted({refs[0] for refs in references})
    return EvalData(task, rows, prompts, references, list(label_words) if label_words else None)


def _resolve_task(task: str | None, metadata: dict[str, Any]) -> str:
    task = task if task is not None else metadata.get("task")
    if task is None:
        raise ValueError(
            "the dataset carries no task metadata (it is not from build_dataset); "
            f"pass task= one of {list(TASKS)}"
        )
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {list(TASKS)}")
    return task


def _to_records(dataset, num_samples: int | None) -> list[dict[str, Any]]:
    if isinstance(dataset, Sequence) and not isinstance(dataset, (str, bytes)):
        records = list(dataset[:num_samples] if num_samples is not None else dataset)
    elif hasattr(dataset, "to_list") and hasattr(dataset, "select"):
        if num_samples is not None:
            dataset = dataset.select(range(min(num_samples, len(dataset))))
        records = dataset.to_list()
    else:
        raise TypeError(
            f"dataset must be a datasets.Dataset or a list of dicts, got {type(dataset).__name__}"
        )
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise TypeError(f"record {index} is a {type(record).__name__}, expected a dict")
    return records


def _references(records: list[dict[str, Any]]) -> list[list[str]] | None:
    """Gold answers per record: ``references``, else ``[response]``; ``None`` if neither."""
    references = []
    for index, record in enumerate(records):
        refs = record.get("references")
        if refs is None and record.get("response") is not None:
            refs = [record["response"]]
        if refs is None:
            return None
        if isinstance(refs, str) or not refs:
            raise ValueError(
                f"record {index}: 'references' must be a non-empty list of strings, got {refs!r}"
            )
        references.append([str(r) for r in refs])
    return references


def _tokenised_row(record: dict[str, Any], index: int, tokenizer) -> dict[str, list[int]]:
    if "input_ids" in record and "labels" in record:
        row = {key: list(record[key]) for key in _TOKEN_COLUMNS if record.get(key) is not None}
        row.setdefault("attention_mask", [1] * len(row["input_ids"]))
        return row
    response = record.get("response")
    if response is None and record.get("references"):
        response = record["references"][0]
    if "prompt" not in record or response is None:
        raise ValueError(
            f"record {index} has neither input_ids+labels nor prompt+response/references "
            f"(keys: {sorted(record)}); the loss needs one of them"
        )
    return tokenize_example(tokenizer, record["prompt"], response)


def pad_token_id(tokenizer) -> int:
    """The padding id, as ``DataCollator`` picks it: pad, else unk, else 0 (never EOS)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.unk_token_id):
        if candidate is not None:
            return candidate
    return 0


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids as training and generation see them: special prefix (BOS) + text."""
    from llama_lora.data.tokenization import special_prefix

    return special_prefix(tokenizer) + _encode(tokenizer, prompt)


def encode_continuation(tokenizer, text: str) -> list[int]:
    """The ids of a response or label word as trained after the prompt (no special tokens).

    Raises:
        ValueError: ``text`` tokenises to no token.
    """
    ids = _encode(tokenizer, text)
    if not ids:
        raise ValueError(f"continuation {text!r} tokenises to no token")
    return ids


def tokenize_example(tokenizer, prompt: str, response: str) -> dict[str, list[int]]:
    """prompt + response + EOS with the prompt masked out of the labels.

    Prompt and response are tokenised separately, as ``build_dataset`` does
    (``llama_lora.data.tokenization``), so raw records score exactly like a built split.
    """
    prompt_ids = encode_prompt(tokenizer, prompt)
    target = _encode(tokenizer, response) + [tokenizer.eos_token_id]
    return {
        "input_ids": prompt_ids + target,
        "attention_mask": [1] * (len(prompt_ids) + len(target)),
        "labels": [IGNORE_INDEX] * len(prompt_ids) + target,
    }


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
