"""The fused LoRA forward computes what peft's forward computes, gradients included."""

from __future__ import annotations

import contextlib

import pytest
import torch

from llama_lora.model.fused_lora import _LoraBranch, fused_lora_forward
from llama_lora.model.loading import prepare_model


def lora_layers(model):
    from llama_lora.model.fused_lora import _lora_layer_types

    return [m for m in model.modules() if type(m) in _lora_layer_types()]


def tiny_model(quantization, lora_dropout, **options):
    torch.manual_seed(0)
    model, _ = prepare_model(
        "tiny-llama", quantization=quantization, lora_dropout=lora_dropout, **options
    )
    model.train()
    for layer in lora_layers(model):  # peft starts B at zero: make the update visible
        for lora_b in layer.lora_B.values():
            torch.nn.init.normal_(lora_b.weight, std=0.1)
    return model


def run_layer(layer, x, grad, autocast):
    """Output and the gradients of x, A and B after one forward + backward from seed 1."""
    for p in layer.parameters():
        p.grad = None
    x = x.detach().clone().requires_grad_()
    torch.manual_seed(1)  # the same dropout positions for both paths
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
    with context:
        out = layer(x)
    out.backward(grad.to(out.dtype))
    (name,) = layer.active_adapters
    grads = [x.grad, layer.lora_A[name].weight.grad, layer.lora_B[name].weight.grad]
    return [out.detach()] + [g.clone() for g in grads]


@pytest.mark.parametrize("p", [0.0, 0.05])
@pytest.mark.parametrize(
    ("quantization", "autocast"), [(None, False), (None, True), ("nf4", False), ("nf4", True)]
)
def test_matches_peft_forward_and_gradients(quantization, autocast, p):
    from peft.helpers import disable_input_dtype_casting

    model = tiny_model(quantization, p, compute_dtype="bf16" if autocast else "fp32")
    layer = lora_layers(model)[-1]  # a down_proj: in 172 -> out 64
    in_features = layer.lora_A["default"].in_features
    dtype = torch.bfloat16 if autocast else torch.float32
    x = torch.randn(3, 11, in_features).to(dtype)
    grad = torch.randn(3, 11, layer.lora_B["default"].out_features)
    casts = disable_input_dtype_casting(model) if autocast else contextlib.nullcontext()
    with casts:  # as fit runs peft's forward under autocast
        expected = run_layer(layer, x, grad, autocast)
    with fused_lora_forward(model) as switched:
        assert switched == len(lora_layers(model))
        fused = run_layer(layer, x, grad, autocast)
    for name, want, got in zip(["out", "x", "A", "B"], expected, fused, strict=True):
        assert got.dtype == want.dtype and got.shape == want.shape, name
        if autocast:  # bf16 roundings in other places (peft scales x, the fused path x A^T)
            error = (got.double() - want.double()).norm() / want.double().norm()
            assert error < 1e-2, (name, float(error))
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("p", [0.0, 0.05, 0.3])  # none, sparse positions, native_dropout mask
def test_gradients_are_exact_in_float64(p):
    weight_a = torch.randn(4, 9, dtype=torch.float64, requires_grad=True)
    weight_b = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    result = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 5, 9, dtype=torch.float64, requires_grad=True)

    def branch(result, x, weight_a, weight_b):
        with torch.random.fork_rng():
            torch.manual_seed(3)  # the same dropout draw at every evaluation
            return _LoraBranch.apply(result, x, weight_a, weight_b, 1.5, p, torch.float64)

    assert torch.autograd.gradcheck(branch, (result, x, weight_a, weight_b))
    out = branch(result, x, weight_a, weight_b)
    dropped = ((out - result) == 0).all(-1).sum()  # sanity: an update reaches every row
    assert int(dropped) == 0


def test_dropout_drops_input_elements_at_rate_p():
    torch.manual_seed(0)
    n, p = 200_000, 0.05
    x = torch.ones(1, n, dtype=torch.float64, requires_grad=True)
    weight_a = torch.ones(1, n, dtype=torch.float64)
    weight_b = torch.ones(1, 1, dtype=torch.float64)
    out = _LoraBranch.apply(
        torch.zeros(1, 1, dtype=torch.float64), x, weight_a, weight_b, 1.0, p, torch.float64
    )
    out.sum().backward()
    kept = int((x.grad != 0).sum())
    assert abs((n - kept) / n - p) < 5 * (p * (1 - p) / n) ** 0.5
    # inverted dropout: the kept inputs are scaled by 1 / (1 - p), so the sum is unbiased
    torch.testing.assert_close(out.squeeze(), torch.tensor(kept / (1 - p), dtype=torch.float64))
    assert x.grad.unique().tolist() == [0.0, pytest.approx(1 / (1 - p))]


def test_other_layers_keep_peft_forward_and_every_forward_comes_back():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_llama_config

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_dropout=0.05, target_modules=["q_proj"], use_dora=True)
    model = get_peft_model(LlamaForCausalLM(tiny_llama_config()), config).train()
    layer = lora_layers(model)[0]  # DoRA, a LoRA variant: peft's own path
    x = torch.randn(2, 3, layer.lora_A["default"].in_features)
    torch.manual_seed(1)
    expected = layer(x)
    with fused_lora_forward(model):
        torch.manual_seed(1)
        assert torch.equal(layer(x), expected)
    assert all("forward" not in vars(m) for m in lora_layers(model))
    plain = tiny_model("nf4", 0.05)
    with pytest.raises(RuntimeError, match="inside"), fused_lora_forward(plain):
        assert all("forward" in vars(m) for m in lora_layers(plain))
        raise RuntimeError("inside")
    assert all("forward" not in vars(m) for m in lora_layers(plain))


def test_eval_mode_and_disabled_adapters_match_peft():
    model = tiny_model(None, 0.05, compute_dtype="fp32")
    layer = lora_layers(model)[2]
    x = torch.randn(2, 3, layer.lora_A["default"].in_features)
    model.eval()  # no dropout
    expected = layer(x)
    with model.disable_adapter():
        base = layer(x)
    with fused_lora_forward(model):
        torch.testing.assert_close(layer(x), expected)
        with model.disable_adapter():
            assert torch.equal(layer(x), base)


def test_a_base_output_in_another_dtype_gets_peft_s_update():
    """An fp32 input under bf16 autocast: bitsandbytes returns the base output in the input's
    fp32, the adapters compute in bf16, so the layer adds peft's update to the base output
    instead of running the fused node (whose sum would be in the wrong dtype)."""
    model = tiny_model("nf4", 0.05, compute_dtype="bf16")
    layer = lora_layers(model)[1]
    x = torch.randn(2, 3, layer.lora_A["default"].in_features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.manual_seed(1)
        expected = layer(x)
        assert expected.dtype == torch.float32
        with fused_lora_forward(model):
            torch.manual_seed(1)
            assert torch.equal(layer(x), expected)
