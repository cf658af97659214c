"""Save/load round trips and merged export."""

from __future__ import annotations

import json

import pytest
import torch

from llama_lora.model.adapters import load_adapter, merge_and_export, save_adapter
from llama_lora.model.loading import prepare_model

BATCH = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2]])


def _trained(checkpoint, quantization):
    """An adapter with non-zero B, so the LoRA path really changes the output."""
    torch.manual_seed(0)
    model, tokenizer = prepare_model(
        checkpoint,
        quantization=quantization,
        lora_dropout=0.0,
        compute_dtype="float32" if quantization is None else "bf16",
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.05)
    return model.eval(), tokenizer


@pytest.mark.parametrize("quantization", [None, "nf4"])
def test_save_then_load_gives_identical_logits(tiny_checkpoint, tmp_path, quantization):
    model, tokenizer = _trained(tiny_checkpoint, quantization)
    with torch.no_grad():
        expected = model(input_ids=BATCH).logits
    out = save_adapter(model, tmp_path / "adapter", tokenizer)
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    dtype = "float32" if quantization is None else "bf16"
    loaded = load_adapter(tiny_checkpoint, out, quantization=quantization, compute_dtype=dtype)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(input_ids=BATCH).logits, expected)


def test_plain_peft_loads_our_adapter(tiny_checkpoint, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, _ = _trained(tiny_checkpoint, None)
    save_adapter(model, tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    plain = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(input_ids=BATCH).logits, model(input_ids=BATCH).logits)


def test_merged_export_matches_unmerged(tiny_checkpoint, tmp_path):
    from transformers import AutoModelForCausalLM

    model, tokenizer = _trained(tiny_checkpoint, None)
    merge_and_export(model, tmp_path / "merged", tokenizer=tokenizer, dtype="float32")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    config = json.loads((tmp_path / "merged" / "config.json").read_text())
    assert "quantization_config" not in config
    with torch.no_grad():
        base_out = model(input_ids=BATCH).logits
        diff = (merged(input_ids=BATCH).logits - base_out).abs().max().item()
        with model.disable_adapter():
            assert (model(input_ids=BATCH).logits - base_out).abs().max().item() > 1e-3
    assert diff < 1e-4


@pytest.mark.parametrize("quantization", ["nf4", "int8"])
def test_merge_from_quantized_base_dequantizes(tiny_checkpoint, tmp_path, quantization):
    """Merging into a dequantized 4-/8-bit base reproduces the QLoRA model up to rounding."""
    from transformers import AutoModelForCausalLM

    model, tokenizer = _trained(tiny_checkpoint, quantization)
    with torch.no_grad():
        expected = model(input_ids=BATCH).logits.float()
    merge_and_export(model, tmp_path / "merged", tokenizer=tokenizer, dtype="float32")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        diff = (merged(input_ids=BATCH).logits - expected).abs().max().item()
    assert diff < 0.05 * expected.abs().max().item()


def test_chat_template_survives_save_and_merge(tiny_checkpoint, tmp_path):
    from transformers import AutoTokenizer

    from llama_lora.model.tokenizer import load_tokenizer

    model, tokenizer = _trained(tiny_checkpoint, None)
    tokenizer.chat_template = (
        "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    )
    save_adapter(model, tmp_path / "adapter", tokenizer)
    merge_and_export(model, tmp_path / "merged", tokenizer=tokenizer, dtype="float32")
    for directory in (tmp_path / "adapter", tmp_path / "merged"):
        reloaded = AutoTokenizer.from_pretrained(directory)
        assert reloaded.chat_template == tokenizer.chat_template, directory
        assert load_tokenizer(directory).pad_token_id != reloaded.eos_token_id
