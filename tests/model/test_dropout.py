"""GapDropout draws the same iid Bernoulli(p) masks as nn.Dropout, with far fewer random numbers."""

from __future__ import annotations

import math

import pytest
import torch

from llama_lora.model.dropout import GapDropout
from llama_lora.model.loading import prepare_model


@pytest.mark.parametrize("p", [0.01, 0.05, 0.3])
def test_mask_is_iid_bernoulli(p):
    torch.manual_seed(0)
    n = 400_000
    scale = GapDropout(p).train()(torch.ones(n))
    values = scale.unique()
    assert values.tolist() == [0.0, pytest.approx(1.0 / (1.0 - p))]
    dropped = (scale == 0).double()
    # Share of drops, and of adjacent pairs both dropped (p^2 if independent): within 5 sigma.
    for observed, expected, count in [
        (dropped.mean(), p, n),
        ((dropped[1:] * dropped[:-1]).mean(), p * p, n - 1),
    ]:
        sigma = math.sqrt(expected * (1.0 - expected) / count)
        assert abs(float(observed) - expected) < 5 * sigma, (observed, expected)
    # Drops are spread evenly: every tenth of the tensor gets its share.
    per_tenth = dropped.view(10, -1).mean(1)
    sigma = math.sqrt(p * (1.0 - p) / (n // 10))
    assert (per_tenth - p).abs().max() < 5 * sigma


def test_a_short_first_draw_is_extended_to_the_end(monkeypatch):
    import llama_lora.model.dropout as dropout

    monkeypatch.setattr(dropout, "_SPARE_SIGMAS", -50.0)  # first draw far too short
    torch.manual_seed(0)
    positions = dropout.dropped_positions(100_000, 0.1)
    assert bool((positions[1:] > positions[:-1]).all())
    assert 0 <= int(positions[0]) and int(positions[-1]) < 100_000
    assert int(positions[-1]) > 99_000  # the tail of the tensor is reached
    assert abs(positions.numel() - 10_000) < 5 * math.sqrt(100_000 * 0.1 * 0.9)


def test_forward_and_gradient_are_those_of_dropout():
    torch.manual_seed(0)
    layer = GapDropout(0.2).train()
    x = torch.randn(64, 33, dtype=torch.bfloat16, requires_grad=True)
    out = layer(x)
    assert out.dtype == torch.bfloat16 and out.shape == x.shape
    kept = out != 0
    torch.testing.assert_close(out[kept], (x[kept].float() / 0.8).bfloat16())
    out.float().sum().backward()
    expected = torch.where(kept, torch.tensor(1 / 0.8), torch.tensor(0.0)).bfloat16()
    assert torch.equal(x.grad, expected)
    layer.eval()
    assert torch.equal(layer(x), x)


def test_non_contiguous_input_and_a_one_byte_mask_for_backward():
    torch.manual_seed(0)
    x = torch.randn(48, 40, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = GapDropout(0.1).train()(x.t())  # a transposed view
    assert [(t.dtype, t.shape) for t in saved] == [(torch.bool, torch.Size([40, 48]))]
    assert torch.equal(saved[0], out == 0)
    kept = out != 0
    torch.testing.assert_close(out[kept], x.t()[kept] / 0.9)
    grad = torch.randn(40, 48)
    out.backward(grad)
    torch.testing.assert_close(x.grad.t(), torch.where(kept, grad / 0.9, 0.0))


def test_same_seed_same_mask_so_checkpoint_recompute_matches():
    layer = GapDropout(0.1).train()
    x = torch.randn(8, 100)
    torch.manual_seed(3)
    first = layer(x)
    torch.manual_seed(3)
    assert torch.equal(layer(x), first)


def test_prepare_model_uses_gap_dropout_and_checkpointing_keeps_gradients(tiny_checkpoint):
    batch = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2], [1, 70, 71, 72, 73, 74, 75, 2]])

    def lora_grads(gradient_checkpointing, seed=7):
        torch.manual_seed(0)  # LoRA A is initialised from the global generator
        model, _ = prepare_model(
            tiny_checkpoint,
            quantization=None,
            compute_dtype="float32",
            lora_dropout=0.1,
            gradient_checkpointing=gradient_checkpointing,
        )
        dropouts = [m for n, m in model.named_modules() if "lora_dropout." in n]
        assert len(dropouts) == 2 * 7 and all(type(m) is GapDropout for m in dropouts)
        assert all(m.p == 0.1 for m in dropouts)
        for name, param in model.named_parameters():
            if "lora_B" in name:  # B = 0 at init would hide the dropout from the gradients
                torch.nn.init.normal_(param, std=0.02, generator=torch.Generator().manual_seed(1))
        model.train()
        torch.manual_seed(seed)
        model(input_ids=batch, labels=batch).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    plain, recomputed = lora_grads(False), lora_grads(True)
    for name, grad in plain.items():
        torch.testing.assert_close(recomputed[name], grad, rtol=1e-5, atol=1e-7, msg=name)
    # Control: another seed draws other masks, so the gradients differ.
    other = lora_grads(False, seed=8)
    assert any(not torch.allclose(other[name], grad) for name, grad in plain.items())
