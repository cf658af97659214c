"""The fused target-only loss computes the same mathematics as the full-logit loss."""

from __future__ import annotations

import pytest
import torch

from llama_lora.training import fused_loss
from llama_lora.training.fused_loss import (
    fused_loss_head,
    linear_cross_entropy_sum,
    target_hidden_states,
)
from llama_lora.training.loss import token_cross_entropy_sum


@pytest.mark.parametrize("chunk_elements", [7 * 50, 1 << 23])  # several chunks, one chunk
def test_chunked_loss_and_gradient_equal_full_cross_entropy(monkeypatch, chunk_elements):
    monkeypatch.setattr(fused_loss, "CHUNK_ELEMENTS", chunk_elements)
    torch.manual_seed(0)
    batch, length, hidden_size, vocab = 3, 11, 16, 50
    hidden = torch.randn(batch, length, hidden_size, requires_grad=True)
    weight = torch.randn(vocab, hidden_size)
    labels = torch.randint(0, vocab, (batch, length))
    labels[:, :4] = -100  # a masked prompt
    labels[1, 8:] = -100  # and padding

    logits = hidden @ weight.T
    expected = token_cross_entropy_sum(logits, labels)
    (expected_grad,) = torch.autograd.grad(expected, hidden)

    rows, targets = target_hidden_states(hidden, labels)
    loss = linear_cross_entropy_sum(rows, weight, targets)
    (grad,) = torch.autograd.grad(loss * 2.0, hidden)  # a scaled loss, as accumulation does

    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, 2.0 * expected_grad, rtol=1e-5, atol=1e-6)


def _fit(output_dir, fused: bool):
    from llama_lora.model.presets import build_byte_tokenizer
    from llama_lora.training import Finetuner
    from tests.training.helpers import adapter_tensors, quiet_config, tiny_lora_model, toy_data

    tokenizer = build_byte_tokenizer()
    model = tiny_lora_model(seed=0)
    config = quiet_config(output_dir, fused_loss=fused, max_steps=4, batch_size=4)
    result = Finetuner(model, tokenizer, config).fit(toy_data(tokenizer, train=16, validation=0))
    losses = [r["train_loss"] for r in result.history if "train_loss" in r]
    return losses, adapter_tensors(model)


def test_finetuner_trains_the_same_with_and_without_fused_loss(tmp_path):
    fused_losses, fused_adapter = _fit(tmp_path / "fused", fused=True)
    full_losses, full_adapter = _fit(tmp_path / "full", fused=False)
    assert len(fused_losses) == len(full_losses) == 4
    torch.testing.assert_close(
        torch.tensor(fused_losses), torch.tensor(full_losses), rtol=1e-5, atol=0
    )
    for name, tensor in full_adapter.items():
        torch.testing.assert_close(fused_adapter[name], tensor, rtol=1e-4, atol=1e-6)


def test_trainable_or_lora_head_is_not_eligible():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_llama_config

    config = tiny_llama_config()
    frozen = get_peft_model(LlamaForCausalLM(config), LoraConfig(target_modules="all-linear"))
    assert fused_loss_head(frozen) is not None
    with_head = get_peft_model(
        LlamaForCausalLM(config), LoraConfig(target_modules=["q_proj", "lm_head"])
    )
    assert fused_loss_head(with_head) is None


def _packed_toy_data(tokenizer, count: int):
    """The toy task as instruction records, packed (train split only)."""
    from llama_lora.data import build_dataset
    from tests.training.helpers import toy_rows

    records = [
        {"instruction": r["prompt"], "output": r["response"]}
        for r in toy_rows(tokenizer, count, seed=0)
    ]
    return build_dataset(
        "instruction", records, tokenizer, max_length=384, packing=True, val_size=0.0, test_size=0.0
    )


def test_packed_rows_train_the_same_with_padding_free_attention(tmp_path):
    """fit() switches packed data to per-example attention; it must equal the block-mask path."""
    from llama_lora.data.collator import DataCollator
    from llama_lora.model.presets import build_byte_tokenizer
    from llama_lora.training import Finetuner
    from tests.training.helpers import adapter_tensors, quiet_config, tiny_lora_model

    tokenizer = build_byte_tokenizer()
    data = _packed_toy_data(tokenizer, 24)

    def fit(name, collator):
        model = tiny_lora_model(seed=0)
        config = quiet_config(tmp_path / name, max_steps=3, batch_size=2)
        result = Finetuner(model, tokenizer, config, data_collator=collator).fit(
            {"train": data["train"]}
        )
        assert model.get_base_model().config._attn_implementation == "sdpa"  # restored
        return [r["train_loss"] for r in result.history if "train_loss" in r], adapter_tensors(
            model
        )

    masked_collator = DataCollator(tokenizer, attn_implementation="sdpa")
    free_losses, free_adapter = fit("free", None)
    mask_losses, mask_adapter = fit("mask", masked_collator)
    torch.testing.assert_close(
        torch.tensor(free_losses), torch.tensor(mask_losses), rtol=1e-5, atol=0
    )
    for name, tensor in mask_adapter.items():
        # Different SDPA kernels sum in a different order, and Adam's normalised update turns
        # rounding in near-zero gradients into ~lr-sized steps: compare at 1% of lr (1e-2).
        torch.testing.assert_close(free_adapter[name], tensor, rtol=1e-4, atol=1e-4)


def test_heads_that_transform_logits_are_not_eligible():
    from transformers import GraniteConfig, GraniteForCausalLM

    small = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 4,
    }
    plain = GraniteForCausalLM(GraniteConfig(**small, logits_scaling=1.0))
    scaled = GraniteForCausalLM(GraniteConfig(**small, logits_scaling=8.0))
    for model in (plain, scaled):
        model.requires_grad_(False)
    assert fused_loss_head(plain) is not None
    assert fused_loss_head(scaled) is None


def test_failed_setup_hands_the_model_back_untouched(tmp_path):
    from llama_lora.model.presets import build_byte_tokenizer
    from llama_lora.training import Finetuner
    from tests.training.helpers import quiet_config, tiny_lora_model

    tokenizer = build_byte_tokenizer()
    data = _packed_toy_data(tokenizer, 8)
    (tmp_path / "file").write_text("not a directory")
    model = tiny_lora_model(seed=0)
    forward = model.forward
    config = quiet_config(tmp_path / "file" / "out", max_steps=1, progress_bar=True)
    with pytest.raises(OSError):
        Finetuner(model, tokenizer, config).fit({"train": data["train"]})
    inner = model.get_base_model()
    assert inner.config._attn_implementation == "sdpa"
    assert not inner.model._forward_hooks
    assert model.forward == forward
