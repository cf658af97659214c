"""The real LLaMA-2 tokenizer on a LLaMA-2-shaped tiny model (skips when the asset is absent)."""

from __future__ import annotations

import shutil

import bitsandbytes as bnb
import pytest
import torch

from llama_lora.model.integrity import write_manifest
from llama_lora.model.loading import prepare_model
from tests.conftest import save_tiny_llama


@pytest.fixture(scope="module")
def llama2_checkpoint(tmp_path_factory, llama2_tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(llama2_tokenizer_dir)
    directory = tmp_path_factory.mktemp("llama2_shaped")
    save_tiny_llama(directory, vocab_size=32000, tokenizer=tokenizer)
    shutil.copy(llama2_tokenizer_dir / "tokenizer.model", directory)  # as LLaMA-2 repos ship it
    return directory


def test_pad_differs_from_eos_and_vietnamese_round_trips(llama2_checkpoint, tmp_path):
    manifest = write_manifest(llama2_checkpoint, tmp_path / "SHA256SUMS")
    model, tokenizer = prepare_model(llama2_checkpoint, sha256=tmp_path / "SHA256SUMS")
    assert "tokenizer.model" in manifest
    assert tokenizer.pad_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "right"
    text = "Tôi đang học cách tinh chỉnh mô hình ngôn ngữ lớn."
    ids = tokenizer(text).input_ids
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    batch = torch.tensor([ids])
    model(input_ids=batch, labels=batch).loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
