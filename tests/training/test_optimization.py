"""build_optimizer: torch's fused AdamW where it applies, with the per-tensor loop's update."""

from __future__ import annotations

import pytest
import torch

from llama_lora.training.optimization import build_optimizer


def adapters(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(16, 64), (64, 16), (16, 172), (8,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator)
    return params


def test_adamw_is_fused_on_cpu_with_the_loop_s_update():
    fused_params, loop_params = adapters(), adapters()
    fused = build_optimizer("adamw", fused_params, learning_rate=1e-2, weight_decay=0.1)
    assert fused.defaults["fused"] is True
    loop = torch.optim.AdamW(
        [
            {"params": [p for p in loop_params if p.ndim >= 2], "weight_decay": 0.1},
            {"params": [p for p in loop_params if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=1e-2,
    )
    for _ in range(3):
        fused.step()
        loop.step()
    for got, want in zip(fused_params, loop_params, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_adamw_keeps_the_loop_where_the_fused_kernel_does_not_apply():
    params = [torch.nn.Parameter(torch.zeros(4, 4, dtype=torch.float64))]
    assert not build_optimizer("adamw", params, learning_rate=1e-3, weight_decay=0.0).defaults[
        "fused"
    ]


def test_unknown_optimizer_names_the_choices():
    with pytest.raises(ValueError, match="adamw_8bit"):
        build_optimizer("sgd", adapters(), learning_rate=1e-3, weight_decay=0.0)
