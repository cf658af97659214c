"""Every documented bad input gets a clear error that says where and what was expected."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from datasets import Dataset

from llama_lora.data import DataError, build_dataset

GOOD_SENTIMENT = [
    {"text": f"Review {i}", "label": ["negative", "positive"][i % 2]} for i in range(6)
]


def _file(tmp_path, name: str, content: str | bytes):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _jsonl(rows) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


# id -> (make (task, source, kwargs) from tmp_path, expected exception, regex of the message)
CASES = {
    "malformed_json_line": (
        lambda tmp: (
            "sentiment",
            _file(tmp, "bad.jsonl", _jsonl(GOOD_SENTIMENT[:2]) + '{"text": "x", "label": \n'),
            {},
        ),
        DataError,
        r"bad\.jsonl: line 3: malformed JSON",
    ),
    "malformed_json_array": (
        lambda tmp: (
            "sentiment",
            _file(tmp, "bad.json", '[\n{"text": "a", "label": "x"},\n{]'),
            {},
        ),
        DataError,
        r"bad\.json: line 3, column \d+: malformed JSON",
    ),
    "json_line_not_object": (
        lambda tmp: (
            "sentiment",
            _file(tmp, "list.jsonl", _jsonl(GOOD_SENTIMENT[:1]) + "[1, 2]\n"),
            {},
        ),
        DataError,
        r"list\.jsonl: line 2: expected a JSON object",
    ),
    "missing_column": (
        lambda tmp: ("sentiment", [{"body": "good", "stars": "positive"}], {}),
        DataError,
        r"missing column\(s\) \['text', 'label'\].*columns \['body', 'stars'\].*expected columns "
        r"\{'text': 'text', 'label': 'label'\}",
    ),
    "mapped_column_absent": (
        lambda tmp: (
            "sentiment",
            [{"review": "good", "label": "positive"}],
            {"columns": {"text": "body"}},
        ),
        DataError,
        r"missing column\(s\) \['body'\].*columns \['review', 'label'\]"
        r".*expected columns \{'text': 'body'",
    ),
    "columns_unknown_field": (
        lambda tmp: ("sentiment", GOOD_SENTIMENT, {"columns": {"review": "text"}}),
        DataError,
        r"unknown field\(s\) \['review'\].*fields are \['text', 'label'\]",
    ),
    "empty_list": (lambda tmp: ("qa", [], {}), DataError, r"empty source"),
    "empty_file": (
        lambda tmp: ("qa", _file(tmp, "empty.jsonl", ""), {}),
        DataError,
        r"empty source.*empty\.jsonl",
    ),
    "header_only_csv": (
        lambda tmp: ("qa", _file(tmp, "head.csv", "question,answer\n"), {}),
        DataError,
        r"empty source.*head\.csv",
    ),
    "empty_dataframe": (
        lambda tmp: ("qa", pd.DataFrame({"question": [], "answer": []}), {}),
        DataError,
        r"empty source",
    ),
    "label_outside_set": (
        lambda tmp: (
            "sentiment",
            [*GOOD_SENTIMENT, {"text": "meh", "label": "neutral"}],
            {"labels": ["negative", "positive"]},
        ),
        DataError,
        r"label 'neutral' in row 7 is not in the label set \['negative', 'positive'\]",
    ),
    "label_id_outside_set": (
        lambda tmp: (
            "sentiment",
            [{"text": "a", "label": 0}, {"text": "b", "label": 3}],
            {"labels": ["bad", "good"]},
        ),
        DataError,
        r"label 3 in row 2 is outside the label set \['bad', 'good'\]",
    ),
    "label_not_in_mapping": (
        lambda tmp: (
            "sentiment",
            [{"text": "a", "label": 0}, {"text": "b", "label": 2}],
            {"labels": {0: "bad", 1: "good"}},
        ),
        DataError,
        r"label 2 in row 2 is not in the label set",
    ),
    "int_labels_without_words": (
        lambda tmp: ("sentiment", [{"text": "a", "label": 0}, {"text": "b", "label": 1}], {}),
        DataError,
        r"integer labels need label words: pass labels=",
    ),
    "non_string_field": (
        lambda tmp: (
            "summarization",
            [{"document": "d", "summary": "s"}, {"document": 42, "summary": "s"}],
            {},
        ),
        DataError,
        r"field 'document' in row 2 is int \(42\); earlier rows hold str",
    ),
    "non_string_column": (
        lambda tmp: (
            "summarization",
            [{"document": 1, "summary": "s"}, {"document": 2, "summary": "t"}],
            {},
        ),
        DataError,
        r"field 'document' in row 1 is int \(1\); expected a string",
    ),
    "empty_required_field": (
        lambda tmp: (
            "translation",
            [{"source": "a", "target": "b"}, {"source": "c", "target": "  "}],
            {},
        ),
        DataError,
        r"field 'target' in row 2 is empty",
    ),
    "non_utf8_jsonl": (
        lambda tmp: (
            "sentiment",
            _file(tmp, "latin1.jsonl", b'{"text": "caf\xe9", "label": "positive"}\n'),
            {},
        ),
        DataError,
        r"latin1\.jsonl is not valid UTF-8: undecodable byte at byte offset 13",
    ),
    "non_utf8_csv": (
        lambda tmp: (
            "sentiment",
            _file(tmp, "latin1.csv", b"text,label\nok,positive\ncaf\xe9,negative\n"),
            {},
        ),
        DataError,
        r"latin1\.csv is not valid UTF-8: undecodable byte at byte offset 26",
    ),
    "unknown_task": (
        lambda tmp: ("poetry", GOOD_SENTIMENT, {}),
        DataError,
        r"unknown task 'poetry'; tasks are \['chat', 'generation', 'instruction', 'qa', ",
    ),
    "split_sizes_sum_to_one": (
        lambda tmp: ("sentiment", GOOD_SENTIMENT, {"val_size": 0.5, "test_size": 0.5}),
        ValueError,
        r"val_size \+ test_size must be < 1",
    ),
    "negative_split_size": (
        lambda tmp: ("sentiment", GOOD_SENTIMENT, {"val_size": -0.1}),
        ValueError,
        r"val_size must be a fraction in \[0, 1\)",
    ),
    "missing_file": (
        lambda tmp: ("qa", tmp / "nope.jsonl", {}),
        FileNotFoundError,
        r"data file not found: .*nope\.jsonl",
    ),
    "unsupported_extension": (
        lambda tmp: ("qa", _file(tmp, "data.xml", "<a/>"), {}),
        DataError,
        r"extension '\.xml' is not one of \['\.jsonl', '\.json', '\.csv', '\.tsv', '\.parquet', "
        r"'\.txt'\]",
    ),
    "txt_for_field_task": (
        lambda tmp: ("qa", _file(tmp, "notes.txt", "some text\n"), {}),
        DataError,
        r"only task 'generation' reads; task 'qa' needs named fields",
    ),
    "unsupported_source_type": (
        lambda tmp: ("qa", 42, {}),
        TypeError,
        r"unsupported source of type int",
    ),
    "list_of_non_dicts": (lambda tmp: ("qa", ["just text"], {}), DataError, r"element 0 is a str"),
    "template_unknown_field": (
        lambda tmp: ("sentiment", GOOD_SENTIMENT, {"template": "Review: {review}\n"}),
        DataError,
        r"placeholder \{review\} is not a field of task 'sentiment'; "
        r"use \['\{text\}', '\{label_words\}'\]",
    ),
    "template_leaks_response": (
        lambda tmp: ("qa", [{"question": "q", "answer": "a"}], {"template": "{question} {answer}"}),
        DataError,
        r"placeholder \{answer\} is the response of task 'qa'",
    ),
    "template_for_generation": (
        lambda tmp: ("generation", [{"text": "t"}], {"template": "{text}"}),
        DataError,
        r"task 'generation' has no prompt",
    ),
    "labels_for_other_task": (
        lambda tmp: ("qa", [{"question": "q", "answer": "a"}], {"labels": ["x"]}),
        ValueError,
        r"labels= sets sentiment label words; task 'qa' takes none",
    ),
    "chat_not_ending_with_assistant": (
        lambda tmp: ("chat", [{"messages": [{"role": "user", "content": "hi"}]}], {}),
        DataError,
        r"'messages' in row 1 must end with an assistant message",
    ),
    "chat_unknown_role": (
        lambda tmp: (
            "chat",
            [
                {
                    "messages": [
                        {"role": "bot", "content": "hi"},
                        {"role": "assistant", "content": "x"},
                    ]
                }
            ],
            {},
        ),
        DataError,
        r"message 0 in row 1 has role 'bot'; roles are \['system', 'user', 'assistant'\]",
    ),
    "qa_without_answer_text": (
        lambda tmp: ("qa", [{"question": "q", "answers": {"text": [], "answer_start": []}}], {}),
        DataError,
        r"field 'answer' in row 1 has no answer text",
    ),
    "datasetdict_without_train": (
        lambda tmp: ("qa", {"test": [{"question": "q", "answer": "a"}]}, {}),
        DataError,
        r"has splits \['test'\]; it needs a 'train' split",
    ),
    "max_length_too_small": (
        lambda tmp: ("qa", [{"question": "q", "answer": "a"}], {"max_length": 2}),
        ValueError,
        r"max_length=2 leaves no room",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_raises_a_clear_error(case, tmp_path, byte_tokenizer):
    make, error, pattern = CASES[case]
    task, source, kwargs = make(tmp_path)
    if isinstance(source, dict):  # a DatasetDict given as {split: rows}
        from datasets import DatasetDict

        source = DatasetDict({name: Dataset.from_list(rows) for name, rows in source.items()})
    with pytest.raises(error, match=re.compile(pattern, re.DOTALL)):
        build_dataset(task, source, byte_tokenizer, **kwargs)


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_utf8_offset_is_found_across_chunk_boundaries(tmp_path, monkeypatch):
    from llama_lora.data import files

    monkeypatch.setattr(files, "_CHUNK_BYTES", 7)
    text = "ấấấấấấấấ".encode()  # 3-byte characters straddle every 7-byte chunk
    path = _file(tmp_path, "x.txt", text + b"\xff" + text)
    assert files.find_invalid_utf8(path) == len(text)
    assert files.find_invalid_utf8(_file(tmp_path, "ok.txt", text)) is None
    truncated = _file(tmp_path, "cut.txt", text + "ấ".encode()[:2])
    assert files.find_invalid_utf8(truncated) == len(text)
