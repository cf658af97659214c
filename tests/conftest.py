"""Shared fixtures: tiny LLaMA-shaped checkpoints built locally, never downloaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

LLAMA2_TOKENIZER_DIR = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "assets" / "llama-2-tokenizer"
)


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Build presets into a per-session cache, not the user's ~/.cache, and stay offline."""
    mp = pytest.MonkeyPatch()
    mp.setenv("LLAMA_LORA_CACHE", str(tmp_path_factory.mktemp("llama_lora_cache")))
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setenv("TOKENIZERS_PARALLELISM", "false")
    yield
    mp.undo()


def tiny_llama_config(**overrides):
    """The ``LlamaConfig`` of the tests' tiny models: vocab 320, hidden 64, 2 layers, GQA 4/2."""
    from transformers import LlamaConfig

    values = {
        "vocab_size": 320,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "tie_word_embeddings": False,
    }
    return LlamaConfig(**{**values, **overrides})


def save_tiny_llama(
    directory: Path,
    *,
    vocab_size: int = 320,
    hidden: int = 64,
    layers: int = 2,
    tokenizer=None,
    seed: int = 0,
) -> Path:
    """Write a random-init LLaMA checkpoint (safetensors) plus a tokenizer to ``directory``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llama_lora.model.presets import build_byte_tokenizer

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(directory)
    (tokenizer or build_byte_tokenizer()).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A 2-layer, hidden-64 LLaMA checkpoint with the byte tokenizer (vocab 320)."""
    return save_tiny_llama(tmp_path_factory.mktemp("tiny_checkpoint"))


@pytest.fixture(scope="session")
def llama2_tokenizer_dir(tmp_path_factory) -> Path:
    """The real LLaMA-2 tokenizer plus the tokenizer_config of its checkpoints; skips if absent."""
    model_file = LLAMA2_TOKENIZER_DIR / "tokenizer.model"
    if not model_file.is_file():
        pytest.skip(f"real LLaMA-2 tokenizer not found at {model_file}")
    directory = tmp_path_factory.mktemp("llama2_tokenizer")
    shutil.copy(model_file, directory / "tokenizer.model")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {"add_bos_token": True, "add_eos_token": False, "tokenizer_class": "LlamaTokenizer"}
        )
    )
    return directory
