"""Every supported kind of source yields the same tokenized splits."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from datasets import Dataset

from llama_lora.data import build_dataset

# int labels, optional fields left empty/missing, commas, quotes, Vietnamese and newlines, so
# that every writer/reader pair has something to get wrong
ROWS = [
    {
        "instruction": f'Say "{i}", please, in Vietnamese.',
        **({"input": f"số {i}\nline two" if i % 2 else ""} if i % 4 else {}),  # some lack it
        "output": f"Đây là {i}, bạn ạ.",
        "label": i % 2,
    }
    for i in range(30)
]


def _write(kind: str, directory) -> object:
    """Write ROWS as source ``kind``; return what build_dataset takes."""
    frame = pd.DataFrame(ROWS)
    path = directory / f"rows.{kind}"
    if kind == "jsonl":
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in ROWS))
    elif kind == "json":
        path.write_text(json.dumps(ROWS, ensure_ascii=False, indent=1))
    elif kind in ("csv", "tsv"):
        frame.to_csv(path, index=False, sep="," if kind == "csv" else "\t")
    elif kind == "parquet":
        frame.to_parquet(path)
    elif kind == "dataframe":
        return frame
    elif kind == "dataset":
        names = list(dict.fromkeys(name for row in ROWS for name in row))
        return Dataset.from_dict({name: [row.get(name) for row in ROWS] for name in names})
    elif kind == "list":
        return [dict(row) for row in ROWS]
    return path


KINDS = ["jsonl", "json", "csv", "tsv", "parquet", "dataframe", "dataset", "list"]


@pytest.mark.parametrize("task", ["instruction", "sentiment"])
def test_all_sources_give_identical_tokenized_output(task, tmp_path, byte_tokenizer):
    options = (
        {"columns": {"text": "output"}, "labels": ["no", "yes"]} if task == "sentiment" else {}
    )
    built = {
        kind: build_dataset(task, _write(kind, tmp_path), byte_tokenizer, **options)
        for kind in KINDS
    }
    reference = built["list"]
    for kind, data in built.items():
        for split in ("train", "validation", "test"):
            assert data[split].to_dict() == reference[split].to_dict(), (kind, split)


def test_txt_file_gives_one_example_per_paragraph(tmp_path, byte_tokenizer):
    paragraphs = [f"Paragraph {i} line one.\nStill paragraph {i}." for i in range(12)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n\n".join(paragraphs) + "\n\n")
    data = build_dataset("generation", path, byte_tokenizer, val_size=0, test_size=0)
    assert sorted(data["train"]["response"]) == sorted(paragraphs)
    assert all(row["prompt"] == "" for row in data["train"])


def test_squad_style_answers_train_on_first_and_keep_all(byte_tokenizer):
    rows = [
        {
            "context": f"Context {i}.",
            "question": f"Question {i}?",
            "answers": {"text": [f"first {i}", f"second {i}"], "answer_start": [0, 3]},
        }
        for i in range(10)
    ]
    data = build_dataset("qa", rows, byte_tokenizer)
    for split in data.values():
        for row in split:
            i = row["response"].split()[-1]
            assert row["response"] == f"first {i}"
            assert row["references"] == [f"first {i}", f"second {i}"]
