"""Checks on the bundled sample datasets in ``llama_lora/data/samples/``.

These files are the default data for every example and for ``build_dataset(task, "sample",
tok)``, so a broken row would surface far away from its cause (a KeyError deep in
tokenization, a QA answer that can never be generated, a chat template that rejects the turn
order). The tests read the files directly, with no model and no tokenizer, and run in well
under a second.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest

SAMPLES_DIR = Path(__file__).resolve().parents[2] / "llama_lora" / "data" / "samples"

# file -> (exact keys with their types, minimum number of rows)
JSONL_SPECS: dict[str, tuple[dict[str, type], int]] = {
    "sentiment.jsonl": ({"text": str, "label": str}, 320),
    "qa.jsonl": ({"context": str, "question": str, "answer": str}, 160),
    "summarization.jsonl": ({"document": str, "summary": str}, 160),
    "translation_en_vi.jsonl": ({"source": str, "target": str}, 210),
    "instruction.jsonl": ({"instruction": str, "input": str, "output": str}, 160),
    "chat.jsonl": ({"messages": list}, 100),
}
MIN_PARAGRAPHS = 60
# Fields that may legitimately be empty: Alpaca rows without extra input.
MAY_BE_EMPTY = {("instruction.jsonl", "input")}
LABELS = {"positive", "negative"}
ROLES = {"system", "user", "assistant"}
# A sentence ends at . ! or ? followed by whitespace or the end of the text. Good enough for
# our own prose, which has no abbreviations such as "e.g.", but not a general tokenizer.
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


@cache
def _rows(name: str) -> tuple[dict[str, Any], ...]:
    """Parse a JSON Lines sample file, naming the line of any malformed record."""
    rows = []
    text = (SAMPLES_DIR / name).read_text(encoding="utf-8")
    for lineno, line in enumerate(text.splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{name}:{lineno} is not valid JSON: {exc}") from exc
    return tuple(rows)


@cache
def _paragraphs() -> tuple[str, ...]:
    text = (SAMPLES_DIR / "generation.txt").read_text(encoding="utf-8")
    return tuple(text.strip().split("\n\n"))


def _sentences(text: str) -> int:
    return len(_SENTENCE_END.findall(text))


def _strings(value: Any, path: str = ""):
    """Yield (path, string) for every string inside a JSON value, keys excluded."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


# Combining marks used by Vietnamese but not by English loanwords such as "café": hook above,
# dot below, horn (ơ, ư) and breve (ă).
_VIETNAMESE_ONLY_MARKS = {"\u0309", "\u0323", "\u031b", "\u0306"}


def _has_vietnamese_only_marks(text: str) -> bool:
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "đ" in decomposed or any(ch in _VIETNAMESE_ONLY_MARKS for ch in decomposed)


def _has_vietnamese_marks(text: str) -> bool:
    """True when the text has a letter with a diacritic (tone or vowel mark) or đ/Đ."""
    return any(unicodedata.combining(ch) for ch in unicodedata.normalize("NFD", text)) or (
        "đ" in text.lower()
    )


ALL_FILES = [*JSONL_SPECS, "generation.txt", "README.md"]


@pytest.mark.parametrize("name", ALL_FILES)
def test_file_is_utf8_nfc_with_trailing_newline(name: str) -> None:
    raw = (SAMPLES_DIR / name).read_bytes()
    text = raw.decode("utf-8")  # raises on bytes that are not UTF-8
    assert unicodedata.is_normalized("NFC", text), f"{name} is not NFC-normalized"
    assert text.endswith("\n") and not text.endswith("\n\n"), f"{name} must end with one newline"
    assert "\r" not in text, f"{name} has CR line endings"


@pytest.mark.parametrize("name", list(JSONL_SPECS))
def test_jsonl_schema_and_minimum_count(name: str) -> None:
    fields, minimum = JSONL_SPECS[name]
    rows = _rows(name)
    assert len(rows) >= minimum, f"{name} has {len(rows)} rows, expected at least {minimum}"
    for index, row in enumerate(rows):
        assert isinstance(row, dict), f"{name} row {index} is {type(row).__name__}, not an object"
        assert set(row) == set(fields), f"{name} row {index} keys {sorted(row)} != {sorted(fields)}"
        for key, expected in fields.items():
            assert isinstance(row[key], expected), f"{name} row {index} field {key!r} type"


@pytest.mark.parametrize("name", list(JSONL_SPECS))
def test_strings_are_non_empty_and_trimmed(name: str) -> None:
    for index, row in enumerate(_rows(name)):
        for path, value in _strings(row):
            if (name, path) in MAY_BE_EMPTY and value == "":
                continue
            assert value.strip(), f"{name} row {index} field {path!r} is empty"
            assert value == value.strip(), f"{name} row {index} field {path!r} has outer spaces"


@pytest.mark.parametrize("name", list(JSONL_SPECS))
def test_no_duplicate_rows(name: str) -> None:
    keys = [json.dumps(row, sort_keys=True, ensure_ascii=False) for row in _rows(name)]
    duplicates = [key for key, count in Counter(keys).items() if count > 1]
    assert not duplicates, f"{name} has duplicate rows: {duplicates[:3]}"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("sentiment.jsonl", "text"),
        ("qa.jsonl", "question"),
        ("summarization.jsonl", "document"),
        ("summarization.jsonl", "summary"),
        ("translation_en_vi.jsonl", "source"),
        ("translation_en_vi.jsonl", "target"),
    ],
)
def test_key_fields_are_unique(name: str, field: str) -> None:
    # Two rows sharing the same input with different targets would leak across splits.
    values = [row[field] for row in _rows(name)]
    repeated = [v for v, count in Counter(values).items() if count > 1]
    assert not repeated, f"{name} repeats {field}: {repeated[:3]}"


def test_sentiment_labels_are_valid_and_balanced() -> None:
    counts = Counter(row["label"] for row in _rows("sentiment.jsonl"))
    assert set(counts) == LABELS, f"labels {sorted(counts)} != {sorted(LABELS)}"
    assert counts["positive"] == counts["negative"], f"unbalanced labels: {dict(counts)}"


def test_sentiment_labels_are_learnable_from_words() -> None:
    """A bag-of-words model beats the majority class on a held-out split.

    This fails if labels were shuffled or do not match the text. The split is fixed (seed 0)
    so the result is deterministic.
    """
    feature_extraction = pytest.importorskip("sklearn.feature_extraction.text")
    naive_bayes = pytest.importorskip("sklearn.naive_bayes")
    model_selection = pytest.importorskip("sklearn.model_selection")
    rows = _rows("sentiment.jsonl")
    texts = [row["text"] for row in rows]
    labels = [row["label"] for row in rows]
    x_train, x_test, y_train, y_test = model_selection.train_test_split(
        texts, labels, test_size=0.25, random_state=0, stratify=labels
    )
    vectorizer = feature_extraction.CountVectorizer()
    model = naive_bayes.MultinomialNB().fit(vectorizer.fit_transform(x_train), y_train)
    accuracy = model.score(vectorizer.transform(x_test), y_test)
    majority = max(Counter(y_test).values()) / len(y_test)
    assert accuracy >= majority + 0.1, f"bag-of-words accuracy {accuracy:.3f} vs {majority:.3f}"


def test_sentiment_reviews_are_one_to_three_sentences() -> None:
    for index, row in enumerate(_rows("sentiment.jsonl")):
        assert 1 <= _sentences(row["text"]) <= 3, f"sentiment row {index}: {row['text']!r}"


def test_qa_answer_is_a_short_span_of_the_context() -> None:
    for index, row in enumerate(_rows("qa.jsonl")):
        assert row["answer"] in row["context"], f"qa row {index}: answer not in context"
        assert len(row["answer"]) < len(row["context"]) // 2, f"qa row {index}: answer too long"
        assert 2 <= _sentences(row["context"]) <= 4, f"qa row {index}: context length"
        assert row["question"].endswith("?"), f"qa row {index}: question has no '?'"


def test_summaries_are_one_sentence_shorter_than_documents() -> None:
    for index, row in enumerate(_rows("summarization.jsonl")):
        assert 4 <= _sentences(row["document"]) <= 7, f"summarization row {index}: document"
        assert _sentences(row["summary"]) == 1, f"summarization row {index}: summary sentences"
        assert len(row["summary"]) < len(row["document"]), f"summarization row {index}: length"


def test_translation_pairs_are_english_to_vietnamese() -> None:
    for index, row in enumerate(_rows("translation_en_vi.jsonl")):
        assert 5 <= len(row["source"].split()) <= 20, f"translation row {index}: source length"
        assert not _has_vietnamese_only_marks(row["source"]), f"translation row {index}: source"
        assert _has_vietnamese_marks(row["target"]), f"translation row {index}: no diacritics"
    targets = " ".join(row["target"] for row in _rows("translation_en_vi.jsonl"))
    assert _has_vietnamese_only_marks(targets), "targets lack Vietnamese-specific letters"


def test_instruction_inputs_are_empty_for_about_half() -> None:
    rows = _rows("instruction.jsonl")
    empty = sum(row["input"] == "" for row in rows)
    assert 0.3 <= empty / len(rows) <= 0.7, f"{empty}/{len(rows)} rows have an empty input"


def _check_chat(index: int, messages: list[dict[str, Any]]) -> None:
    where = f"chat row {index}"
    assert messages, f"{where}: no messages"
    for message in messages:
        assert isinstance(message, dict) and set(message) == {"role", "content"}, where
        assert message["role"] in ROLES, f"{where}: unknown role {message['role']!r}"
        assert isinstance(message["content"], str) and message["content"].strip(), where
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    expected = ["user", "assistant"] * (len(turns) // 2 + 1)
    assert [m["role"] for m in turns] == expected[: len(turns)], f"{where}: roles do not alternate"
    assert turns[-1]["role"] == "assistant", f"{where}: does not end with an assistant turn"
    users = sum(m["role"] == "user" for m in turns)
    assert 1 <= users <= 3, f"{where}: {users} user turns"


def test_chat_roles_alternate_and_end_with_assistant() -> None:
    rows = _rows("chat.jsonl")
    for index, row in enumerate(rows):
        _check_chat(index, row["messages"])
    with_system = sum(row["messages"][0]["role"] == "system" for row in rows)
    assert 0 < with_system < len(rows), "expected some conversations with a system message"


@pytest.mark.parametrize(
    ("messages", "valid"),
    [
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}], True),
        ([{"role": "user", "content": "Hi"}], False),
        ([{"role": "assistant", "content": "Hello"}], False),
        ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], False),
        ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "x"}], False),
        ([{"role": "user", "content": "a"}, {"role": "assistant", "content": " "}], False),
    ],
)
def test_chat_checker_rejects_bad_conversations(messages: list[dict], valid: bool) -> None:
    # Guards the checker above: a check that accepts everything would prove nothing.
    if valid:
        _check_chat(0, messages)
    else:
        with pytest.raises(AssertionError):
            _check_chat(0, messages)


def test_generation_paragraphs() -> None:
    text = (SAMPLES_DIR / "generation.txt").read_text(encoding="utf-8")
    assert "\n\n\n" not in text, "paragraphs must be separated by exactly one blank line"
    paragraphs = _paragraphs()
    assert len(paragraphs) >= MIN_PARAGRAPHS, f"{len(paragraphs)} paragraphs"
    assert len(set(paragraphs)) == len(paragraphs), "duplicate paragraphs"
    for index, paragraph in enumerate(paragraphs):
        assert paragraph == paragraph.strip() and "\n" not in paragraph, f"paragraph {index}"
        assert 3 <= _sentences(paragraph) <= 6, f"paragraph {index}: {paragraph[:60]!r}"


def test_sentiment_rows_are_not_grouped_by_label() -> None:
    # A file sorted by label would give label-skewed splits to any reader that does not
    # shuffle; the first quarter of the file should hold both labels in similar numbers.
    labels = [row["label"] for row in _rows("sentiment.jsonl")]
    head = Counter(labels[: len(labels) // 4])
    assert len(head) == 2, f"first quarter holds only {dict(head)}"
    assert min(head.values()) >= 0.3 * sum(head.values()), f"first quarter labels: {dict(head)}"


@pytest.mark.parametrize("name", [*JSONL_SPECS, "generation.txt"])
def test_readme_documents_every_file(name: str) -> None:
    readme = (SAMPLES_DIR / "README.md").read_text(encoding="utf-8")
    assert f"`{name}`" in readme, f"README.md does not mention {name}"
