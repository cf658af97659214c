"""Tiny seeded models, the byte tokenizer and hand-built splits in build_dataset's format."""

from __future__ import annotations

import pytest
import torch

from llama_lora.model.presets import build_byte_tokenizer

IGNORE_INDEX = -100


def _tiny_model(seed: int = 0, **overrides):
    """A 2-layer LLaMA (hidden 64, vocab 320) in float32 and eval mode.

    Weights are drawn 10x wider than LLaMA's init (std 0.2, not 0.02): at the usual init the
    attention is almost uniform, so a wrong position id or mask changes a log-prob by only
    ~1e-4 and a comparison with brute force could not tell right from wrong.
    """
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_llama_config

    overrides.setdefault("initializer_range", 0.2)
    config = tiny_llama_config(pad_token_id=0, **overrides)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="session")
def tokenizer():
    return build_byte_tokenizer()


@pytest.fixture(scope="session")
def model():
    return _tiny_model()


@pytest.fixture(scope="session")
def tiny_model():
    """Factory: ``tiny_model(seed=0, **LlamaConfig overrides)``."""
    return _tiny_model


@pytest.fixture
def lora_model():
    """A peft LoRA model whose B matrices are non-zero, so the adapter changes the output."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        _tiny_model(seed=1), LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    torch.manual_seed(2)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    return peft_model.eval()


def _encode(tokenizer, prompt: str, response: str) -> dict:
    """BOS + prompt, then response + EOS, each tokenised alone; prompt masked (as build_dataset)."""
    prompt_ids = tokenizer(prompt)["input_ids"]
    target = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    labels = [IGNORE_INDEX] * len(prompt_ids) + target
    return {"input_ids": prompt_ids + target, "attention_mask": [1] * len(labels), "labels": labels}


def _make_split(tokenizer, task: str, records: list[dict], **metadata):
    """A datasets.Dataset exactly as a build_dataset split (columns + metadata)."""
    from datasets import Dataset

    from llama_lora.data.metadata import write_metadata

    rows = []
    for record in records:
        references = record.get("references", [record["response"]])
        row = _encode(tokenizer, record["prompt"], record["response"])
        rows.append({**row, "prompt": record["prompt"], "response": record["response"]})
        rows[-1]["references"] = references
    return write_metadata(Dataset.from_list(rows), {"task": task, **metadata})


_SAMPLE_RECORDS = {
    "sentiment": [
        {"prompt": "Review: I loved it.\nSentiment: ", "response": "positive"},
        {"prompt": "Review: Dull and long.\nSentiment: ", "response": "negative"},
        {"prompt": "Review: Fine acting, great score!\nSentiment: ", "response": "positive"},
    ],
    "qa": [
        {
            "prompt": "Context: Paris is in France.\nQuestion: Where is Paris?\nAnswer: ",
            "response": "France",
            "references": ["France", "in France"],
        },
        {"prompt": "Q: 2+2?\nA: ", "response": "4", "references": ["4", "four"]},
    ],
    "summarization": [
        {"prompt": "Summarize: The cat sat. It slept.\n", "response": "A cat slept. It sat."},
        {"prompt": "Summarize: Rain fell all day.\n", "response": "It rained."},
    ],
    "translation": [
        {"prompt": "English: Hello\nVietnamese: ", "response": "Xin chào"},
        {"prompt": "English: Thank you\nVietnamese: ", "response": "Cảm ơn"},
    ],
    "instruction": [
        {"prompt": "### Instruction:\nSay hi\n### Response:\n", "response": "hi there"},
        {"prompt": "### Instruction:\nCount\n### Response:\n", "response": "one two three"},
    ],
    "chat": [{"prompt": "<user> hello\n<assistant> ", "response": "Hello, how can I help?"}],
    "generation": [{"prompt": "", "response": "Once upon a time there was a fox."}],
}
_TASK_METADATA = {
    "sentiment": {"label_words": ["negative", "positive"]},
    "translation": {"source_lang": "en", "target_lang": "vi"},
}


@pytest.fixture(scope="session")
def encode():
    """``encode(tokenizer, prompt, response) -> row`` as build_dataset tokenises it."""
    return _encode


@pytest.fixture(scope="session")
def make_split():
    """``make_split(tokenizer, task, records, **metadata) -> Dataset`` with split metadata."""
    return _make_split


@pytest.fixture(scope="session")
def sample_records():
    """A few records per task: ``{task: [{prompt, response[, references]}, ...]}``."""
    return _SAMPLE_RECORDS


@pytest.fixture(scope="session")
def sample_split(tokenizer):
    """``sample_split(task) -> Dataset``: the task's records as a build_dataset-style split."""
    return lambda task: _make_split(
        tokenizer, task, _SAMPLE_RECORDS[task], **_TASK_METADATA.get(task, {})
    )
