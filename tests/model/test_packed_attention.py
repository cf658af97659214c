"""Padding-free packed attention equals running each example alone, and the 4D-mask path."""

from __future__ import annotations

import pytest
import torch

from llama_lora.data.collator import DataCollator
from llama_lora.model.packed_attention import PACKED_SDPA, register_packed_sdpa

LENGTHS = (5, 9, 3)  # three examples in one row, then padding


def _model():
    from transformers import LlamaForCausalLM

    from tests.conftest import tiny_llama_config

    torch.manual_seed(0)
    return LlamaForCausalLM(tiny_llama_config(initializer_range=0.2)).eval()


def _packed_row():
    torch.manual_seed(1)
    examples = [torch.randint(3, 64, (n,)) for n in LENGTHS]
    ids = torch.cat(examples)
    positions = torch.cat([torch.arange(n) for n in LENGTHS])
    return examples, {
        "input_ids": ids.tolist(),
        "labels": ids.tolist(),
        "position_ids": positions.tolist(),
        "attention_mask": [1] * len(ids),
    }


@pytest.fixture(params=["eager", "flash"])
def cpu_backend(request, monkeypatch):
    """Examples up to 512 tokens take the eager path on CPU; 0 sends every one to SDPA flash."""
    import llama_lora.model.packed_attention as packed

    if request.param == "flash":
        monkeypatch.setattr(packed, "CPU_EAGER_MAX_LENGTH", 0)
    return request.param


def _per_example_logits(logits, lengths):
    return torch.split(logits[0, : sum(lengths)], list(lengths))


@pytest.mark.parametrize("with_mask", [False, True])
def test_packed_logits_equal_each_example_alone(with_mask, cpu_backend):
    model = _model()
    examples, row = _packed_row()
    with torch.no_grad():
        alone = [model(input_ids=e[None]).logits[0] for e in examples]
        model.set_attn_implementation(register_packed_sdpa())
        batch = DataCollator(_Tok(), pad_to_multiple_of=8, attn_implementation=PACKED_SDPA)([row])
        assert batch["input_ids"].shape[1] == 24  # 17 tokens padded to a multiple of 8
        assert "attention_mask" not in batch  # boundaries come from position_ids alone
        if with_mask:  # a block mask built for plain SDPA is accepted (and redundant)
            batch["attention_mask"] = DataCollator(_Tok(), 8, "sdpa")([row])["attention_mask"]
        logits = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=batch.get("attention_mask"),
        ).logits
    for got, expected in zip(_per_example_logits(logits, LENGTHS), alone, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # Control: plain SDPA on the same row without a block mask lets examples see each other.
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        leaky = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"]).logits
    assert not torch.allclose(_per_example_logits(leaky, LENGTHS)[1], alone[1], atol=1e-3)


def test_packed_gradients_equal_block_mask_path(cpu_backend):
    _, row = _packed_row()

    def grads(implementation):
        model = _model().train()
        if implementation != "sdpa":
            model.set_attn_implementation(implementation)
        collate = DataCollator(_Tok(), pad_to_multiple_of=8, attn_implementation=implementation)
        batch = collate([row])
        loss = model(**batch).loss
        loss.backward()
        return loss.detach(), {n: p.grad for n, p in model.named_parameters()}

    loss_mask, grads_mask = grads("sdpa")
    loss_packed, grads_packed = grads(register_packed_sdpa())
    torch.testing.assert_close(loss_packed, loss_mask, rtol=1e-6, atol=1e-6)
    for name, grad in grads_mask.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_unpacked_batches_and_generation_fall_back_to_sdpa():
    model = _model()
    ids = torch.randint(3, 64, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
        model.set_attn_implementation(register_packed_sdpa())
        got = model(input_ids=ids, attention_mask=mask).logits
        generated = model.generate(ids[:1], max_new_tokens=3, do_sample=False)
    torch.testing.assert_close(got, expected)
    assert generated.shape == (1, 10)


class _Tok:
    pad_token_id = 0
    unk_token_id = 0


def test_spans_are_found_once_per_position_tensor():
    from llama_lora.model.packed_attention import _segments

    first = torch.tensor([[0, 1, 2, 0, 1, 0]])
    spans = _segments(first, 6)
    assert spans == [[(0, 3), (3, 5), (5, 6)]]
    assert _segments(first, 6) is spans  # every layer of one forward reuses them
    assert _segments(torch.tensor([[0, 1, 0, 1, 2, 3]]), 6) == [[(0, 2), (2, 6)]]
    assert _segments(torch.tensor([[0, 1, 2, 3, 4, 5]]), 6) is None


@pytest.mark.parametrize("kv_heads", [8, 2])
def test_eager_attention_is_as_precise_as_sdpa_in_bf16(kv_heads):
    """Against an fp32 reference, the eager path's bf16 outputs and gradients are no further
    off than SDPA's own bf16 flash kernel (fp32 scores and softmax in both)."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from llama_lora.model.packed_attention import _eager_causal_attention

    torch.manual_seed(0)
    n = 200
    q32 = torch.randn(1, 8, n, 64) * 2
    k32, v32 = (torch.randn(1, kv_heads, n, 64) * 2 for _ in range(2))
    grad = torch.randn(1, n, 8, 64)

    def run(fn, dtype):
        q, k, v = (t.detach().to(dtype).requires_grad_() for t in (q32, k32, v32))
        out = fn(q, k, v)
        out.backward(grad.to(dtype))
        return [t.float() for t in (out, q.grad, k.grad, v.grad)]

    def sdpa(q, k, v):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return out.transpose(1, 2)

    def eager(q, k, v):
        return _eager_causal_attention(q, k, v, 64**-0.5)

    reference = run(sdpa, torch.float32)
    for got, want in zip(run(eager, torch.float32), reference, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    for eager_bf16, sdpa_bf16, want in zip(
        run(eager, torch.bfloat16), run(sdpa, torch.bfloat16), reference, strict=True
    ):
        eager_error = (eager_bf16 - want).abs().max()
        sdpa_error = (sdpa_bf16 - want).abs().max()
        assert eager_error <= 1.25 * sdpa_error, (eager_error, sdpa_error)
