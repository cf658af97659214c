"""prepare_model invariants on tiny checkpoints (CPU, offline)."""

from __future__ import annotations

import contextlib

import bitsandbytes as bnb
import pytest
import torch

from llama_lora.model.adapters import _dense_weight
from llama_lora.model.loading import prepare_model

BATCH = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2], [1, 70, 71, 72, 73, 74, 75, 2]])


def _fp32(checkpoint, **kwargs):
    kwargs.setdefault("quantization", None)
    return prepare_model(checkpoint, compute_dtype="float32", lora_dropout=0.0, **kwargs)


def test_lora_output_equals_base_at_init(tiny_checkpoint):
    from transformers import AutoModelForCausalLM

    model, _ = _fp32(tiny_checkpoint)
    base = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32).eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(input_ids=BATCH).logits, base(input_ids=BATCH).logits)


@pytest.mark.parametrize("quantization", [None, "nf4", "fp4", "int8"])
def test_only_adapter_parameters_train(tiny_checkpoint, quantization):
    model, _ = prepare_model(tiny_checkpoint, quantization=quantization)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)
    # all-linear: 7 projections per layer x 2 layers x (A, B); lm_head excluded
    assert len(trainable) == 2 * 7 * 2
    assert not any("lm_head" in name for name in trainable)


def test_nf4_layers_are_linear4bit_and_small(tiny_checkpoint):
    model, _ = prepare_model(tiny_checkpoint, quantization="nf4")
    layers = [m for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(layers) == 2 * 7
    for layer in layers:
        state = layer.weight.quant_state
        stored = layer.weight.numel() * layer.weight.element_size()
        stored += sum(t.numel() * t.element_size() for t in _quant_tensors(state))
        fp32 = layer.in_features * layer.out_features * 4
        assert stored <= 0.35 * fp32, (stored, fp32)
        assert state.quant_type == "nf4" and state.nested  # double quantization on


def _quant_tensors(state):
    tensors = [state.absmax, state.code]
    if state.nested:
        tensors += [state.state2.absmax, state.state2.code]
    return tensors


def test_norms_fp32_embeddings_not_upcast_for_4bit(tiny_checkpoint):
    model, _ = prepare_model(tiny_checkpoint, quantization="nf4", compute_dtype="bf16")
    params = dict(model.named_parameters())
    norms = [p for n, p in params.items() if "norm" in n]
    assert norms and all(p.dtype == torch.float32 for p in norms)
    assert model.get_input_embeddings().weight.dtype == torch.bfloat16
    assert model.get_output_embeddings().weight.dtype == torch.bfloat16


@pytest.mark.parametrize("autocast", [True, False])
def test_4bit_residual_stream_is_fp32_and_branches_compute_dtype(tiny_checkpoint, autocast):
    """fp32 residual stream, bf16 into and out of every block linear, with or without autocast."""
    model, _ = prepare_model(tiny_checkpoint, quantization="nf4", compute_dtype="bf16")
    inner = model.get_base_model().model
    seen = {}

    def record(name):
        def hook(module, args, output):
            seen[name] = (args[0].dtype, output.dtype if torch.is_tensor(output) else None)

        return hook

    layer = inner.layers[1]
    hooks = [
        layer.register_forward_hook(record("block")),
        layer.input_layernorm.register_forward_hook(record("norm")),
        layer.mlp.gate_proj.register_forward_hook(record("gate_proj")),
        layer.mlp.down_proj.register_forward_hook(record("down_proj")),
        layer.self_attn.q_proj.register_forward_hook(record("q_proj")),
    ]
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with torch.no_grad(), context:
        logits = model(input_ids=BATCH).logits
    for hook in hooks:
        hook.remove()
    assert torch.isfinite(logits).all()
    assert seen["block"] == (torch.float32, torch.float32)  # the residual stream, in and out
    assert seen["norm"] == (torch.float32, torch.bfloat16)
    for name in ("gate_proj", "down_proj", "q_proj"):
        assert seen[name] == (torch.bfloat16, torch.bfloat16), name


@pytest.mark.parametrize("quantization", [None, "nf4"])
def test_step_lowers_loss_and_keeps_base_frozen(tiny_checkpoint, quantization):
    torch.manual_seed(0)
    model, _ = prepare_model(tiny_checkpoint, quantization=quantization, lora_dropout=0.0)
    model.train()
    base_before = {n: _dense_weight(m).clone() for n, m in _base_linears(model)}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        loss = model(input_ids=BATCH, labels=BATCH).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1, losses
    for name, module in _base_linears(model):
        assert torch.equal(_dense_weight(module), base_before[name]), name


def _base_linears(model):
    return [(n, m) for n, m in model.named_modules() if n.endswith("base_layer")]


def test_preset_tiny_llama_is_deterministic_and_trainable(tmp_path, monkeypatch):
    from llama_lora.model.integrity import sha256_file
    from llama_lora.model.presets import materialize_preset

    monkeypatch.setenv("LLAMA_LORA_CACHE", str(tmp_path / "a"))
    first = materialize_preset("tiny-llama")
    monkeypatch.setenv("LLAMA_LORA_CACHE", str(tmp_path / "b"))
    second = materialize_preset("tiny-llama")
    assert sha256_file(first / "model.safetensors") == sha256_file(second / "model.safetensors")

    model, tokenizer = prepare_model("tiny-llama")
    params = sum(p.numel() for p in model.parameters())
    assert 5e6 <= params <= 20e6
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    loss = model(input_ids=BATCH, labels=BATCH).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_evaluation_pass_does_not_break_4bit_gradients(tiny_checkpoint):
    """bitsandbytes' CPU inference repack must not cut gradients after an eval forward."""

    def lora_grads(eval_first: bool):
        torch.manual_seed(0)
        model, _ = prepare_model(tiny_checkpoint, quantization="nf4", lora_dropout=0.0)
        for name, param in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(param, std=0.05)
        if eval_first:
            model.eval()
            with torch.no_grad():
                model(input_ids=BATCH)
        model.train()
        model(input_ids=BATCH, labels=BATCH).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    fresh, after_eval = lora_grads(False), lora_grads(True)
    for name, grad in fresh.items():
        torch.testing.assert_close(after_eval[name], grad, msg=name)
