"""Fixtures for the data tests: the byte tokenizer, the real LLaMA-2 tokenizer, synthetic rows."""

from __future__ import annotations

import datasets
import pytest

datasets.disable_progress_bars()


@pytest.fixture(scope="session")
def byte_tokenizer():
    from llama_lora.model.presets import build_byte_tokenizer

    return build_byte_tokenizer()


@pytest.fixture(scope="session")
def llama_tokenizer(llama2_tokenizer_dir):
    """The real LLaMA-2 SentencePiece tokenizer; the test is skipped when the asset is absent."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llama2_tokenizer_dir)


@pytest.fixture(params=["byte", "llama2"])
def tokenizer(request):
    """Each test using this runs on the tiny byte tokenizer and on the LLaMA-2 tokenizer."""
    name = "byte_tokenizer" if request.param == "byte" else "llama_tokenizer"
    return request.getfixturevalue(name)


def _row(task: str, i: int) -> dict:
    """Row ``i`` of a synthetic data set for ``task``; every row's response is unique."""
    words = " ".join(["tiny"] * (i % 7))
    if task == "generation":
        return {"text": f"Paragraph {i} tells a {words} story about llamas and lore."}
    if task == "instruction":
        extra = {"input": f"Input {i}: {words} tea"} if i % 2 else {}
        return {"instruction": f"Do task {i} well.", **extra, "output": f"Done {i}, {words}."}
    if task == "chat":
        turns = [{"role": "user", "content": f"Hello {i}?"}]
        if i % 3 == 0:
            turns = [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"First {i}"},
                {"role": "assistant", "content": f"Reply {i}"},
                *turns,
            ]
        return {"messages": [*turns, {"role": "assistant", "content": f"Hi {i} {words}!"}]}
    if task == "sentiment":
        return {
            "text": f"Review {i}: it was {words} fine.",
            "label": ["negative", "positive"][i % 2],
        }
    if task == "qa":
        return {
            "context": f"Llama {i} lives in Peru. {words}",
            "question": f"Where does llama {i} live?",
            "answer": f"Peru {i}",
        }
    if task == "summarization":
        return {"document": f"Document {i} is long and {words} dull.", "summary": f"Dull doc {i}."}
    if task == "translation":
        return {"source": f"I have {i} {words} cats.", "target": f"Tôi có {i} con mèo {words}."}
    raise KeyError(task)


@pytest.fixture
def make_rows():
    """``make_rows(task, n)`` -> a list of ``n`` distinct synthetic rows for ``task``."""

    def make(task: str, n: int = 30) -> list[dict]:
        return [_row(task, i) for i in range(n)]

    return make


@pytest.fixture
def tiny_llama():
    """``tiny_llama(attn_implementation)`` -> a seeded fp32 LlamaForCausalLM (vocab 320)."""
    import torch
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_llama_config

    def build(attn_implementation: str = "sdpa"):
        config = tiny_llama_config(attn_implementation=attn_implementation)
        torch.manual_seed(0)
        return LlamaForCausalLM(config).float().eval()

    return build
