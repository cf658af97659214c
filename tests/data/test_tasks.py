"""Per-task behaviour: prompts, label words, chat formats, metadata and the stats report."""

from __future__ import annotations

import logging

import pytest
from datasets import ClassLabel, Dataset, Features, Value

from llama_lora.data import TASKS, DatasetStats, build_dataset, read_metadata


@pytest.mark.parametrize(
    ("raw", "labels", "words", "expected"),
    [
        (["pos", "neg", "pos"], None, ["neg", "pos"], ["pos", "neg", "pos"]),  # sorted strings
        (
            [1, 0, 1],
            ["negative", "positive"],
            ["negative", "positive"],
            ["positive", "negative", "positive"],
        ),
        ([2, 1, 2], {1: "bad", 2: "good"}, ["bad", "good"], ["good", "bad", "good"]),
        (["p", "n", "p"], {"p": "positive", "n": "negative"}, ["positive", "negative"], None),
        (["ok", "meh", "ok"], ["meh", "ok", "great"], ["meh", "ok", "great"], ["ok", "meh", "ok"]),
    ],
)
def test_sentiment_label_words(raw, labels, words, expected, byte_tokenizer):
    rows = [{"text": f"Review {i}", "label": label} for i, label in enumerate(raw)]
    data = build_dataset("sentiment", rows, byte_tokenizer, labels=labels, val_size=0, test_size=0)
    train = sorted(data["train"], key=lambda row: row["prompt"])
    expected = expected or [labels[label] for label in raw]
    assert [row["response"] for row in train] == expected
    assert read_metadata(data["train"]) == {"task": "sentiment", "label_words": words}
    assert "one of: " + ", ".join(words) + "." in train[0]["prompt"]


def test_sentiment_uses_classlabel_names(byte_tokenizer):
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    source = Dataset.from_dict({"text": ["a", "b", "c"], "label": [1, 0, 1]}, features=features)
    data = build_dataset("sentiment", source, byte_tokenizer, val_size=0, test_size=0)
    assert read_metadata(data["test"])["label_words"] == ["neg", "pos"]
    assert sorted(data["train"]["response"]) == ["neg", "pos", "pos"]


def test_columns_and_template_are_applied(byte_tokenizer):
    rows = [{"review": f"Nice {i}", "stars": "5"} for i in range(4)]
    data = build_dataset(
        "sentiment",
        rows,
        byte_tokenizer,
        columns={"text": "review", "label": "stars"},
        template="Stars for: {text} ({label_words})\n",
        val_size=0,
        test_size=0,
    )
    assert sorted(data["train"]["prompt"]) == [f"Stars for: Nice {i} (5)\n" for i in range(4)]


@pytest.mark.parametrize(
    ("task", "row", "expected_prompt"),
    [
        (
            "instruction",
            {"instruction": "Add.", "input": "2+2", "output": "4"},
            "### Instruction:\nAdd.\n\n### Input:\n2+2\n\n### Response:\n",
        ),
        (
            "instruction",
            {"instruction": "Add.", "output": "4"},
            "### Instruction:\nAdd.\n\n### Response:\n",
        ),
        (
            "qa",
            {"question": "Why?", "answer": "Because"},
            "Answer the question.\n\n### Question:\nWhy?",
        ),
        (
            "qa",
            {"context": "Sky.", "question": "Why?", "answer": "Blue"},
            "### Context:\nSky.\n\n### Question:\nWhy?\n\n### Answer:\n",
        ),
        (
            "summarization",
            {"document": "Long.", "summary": "Short"},
            "### Document:\nLong.\n\n### Summary:\n",
        ),
        (
            "translation",
            {"source": "Hello", "target": "Xin chào"},
            "from English to Vietnamese.\n\n### English:\nHello\n\n### Vietnamese:\n",
        ),
    ],
)
def test_default_prompts(task, row, expected_prompt, byte_tokenizer):
    data = build_dataset(task, [row] * 3, byte_tokenizer, val_size=0, test_size=0)
    assert expected_prompt in data["train"][0]["prompt"]
    assert data["train"][0]["prompt"].endswith("\n")


def test_translation_languages_are_named_in_prompt_and_metadata(byte_tokenizer):
    rows = [{"source": "Bonjour", "target": "Hello"}] * 3
    data = build_dataset(
        "translation", rows, byte_tokenizer, source_lang="French", target_lang="English"
    )
    assert "from French to English" in data["train"][0]["prompt"]
    assert read_metadata(data["validation"]) == {
        "task": "translation",
        "source_lang": "French",
        "target_lang": "English",
    }


CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "Name?"},
    {"role": "assistant", "content": "Llama"},
]


def test_chat_without_template_uses_llama2_format(tokenizer):
    data = build_dataset(
        "chat", [{"messages": CONVERSATION}] * 3, tokenizer, val_size=0, test_size=0
    )
    row = data["train"][0]
    assert row["prompt"] == (
        "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Name? [/INST]"
    )
    assert row["response"] == "Llama"
    # the turn separators are the real special tokens, not their spelling in bytes
    assert row["input_ids"][0] == tokenizer.bos_token_id
    assert row["input_ids"].count(tokenizer.bos_token_id) == 2
    assert row["input_ids"].count(tokenizer.eos_token_id) == 2


def test_chat_uses_tokenizer_template_or_template_argument(byte_tokenizer):
    jinja = (
        "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>{% endif %}"
    )
    rows = [{"messages": CONVERSATION}] * 3
    data = build_dataset("chat", rows, byte_tokenizer, template=jinja, val_size=0, test_size=0)
    prompt = data["train"][0]["prompt"]
    assert prompt.startswith("<|system|>Be brief.\n")  # the rendered BOS is not doubled
    assert prompt.endswith("<|user|>Name?\n<|assistant|>")
    assert data["train"][0]["input_ids"].count(byte_tokenizer.bos_token_id) == 1

    from llama_lora.model.presets import build_byte_tokenizer

    templated = build_byte_tokenizer()
    templated.chat_template = jinja
    again = build_dataset("chat", rows, templated, val_size=0, test_size=0)
    assert again["train"][0]["prompt"] == prompt


def test_chat_messages_as_json_strings(byte_tokenizer):
    import json

    rows = [{"messages": json.dumps(CONVERSATION)}] * 3
    data = build_dataset("chat", rows, byte_tokenizer, val_size=0, test_size=0)
    assert data["train"][0]["response"] == "Llama"


@pytest.mark.parametrize("task", list(TASKS))
def test_metadata_on_every_split(task, byte_tokenizer, make_rows):
    data = build_dataset(task, make_rows(task, 12), byte_tokenizer, packing=True)
    for split in data.values():
        assert read_metadata(split)["task"] == task


def test_stats_are_attached_printable_and_logged(byte_tokenizer, make_rows, caplog):
    with caplog.at_level(logging.INFO, logger="llama_lora.data"):
        data = build_dataset("qa", make_rows("qa", 20), byte_tokenizer)
    stats = data.stats
    assert isinstance(stats, DatasetStats)
    assert {name: s.examples for name, s in stats.splits.items()} == {
        name: len(split) for name, split in data.items()
    }
    train = stats.splits["train"]
    assert train.tokens == sum(len(ids) for ids in data["train"]["input_ids"])
    assert train.target_tokens == sum(
        sum(t != -100 for t in row) for row in data["train"]["labels"]
    )
    assert 0 < stats.padding_efficiency <= 1 and stats.packing_efficiency is None
    text = str(stats)
    assert "train" in text and "padding efficiency" in text
    assert text in caplog.text
    assert stats.to_dict()["splits"]["test"]["examples"] == len(data["test"])
