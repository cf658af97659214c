"""LoRA input dropout that draws its mask from the gaps between dropped elements (CPU).

peft puts an ``nn.Dropout(p)`` in front of every adapter: ``B A dropout(x)``. On CPU, PyTorch
draws one Bernoulli number per element with a serial generator, about 5 ns each: for the
cpu-small benchmark (8 layers x 7 adapters, rows of ~720 tokens) that was ~135 ms of every
forward pass, and twice that with gradient checkpointing, which runs the forward again.

With a small ``p`` nearly every draw says "keep". The same iid Bernoulli(p) mask can be drawn
from the distances between dropped elements instead: those are iid Geometric(p), sampled by
inverting their distribution function on uniform numbers. The positions are their running sum,
so only about ``p n`` random numbers are drawn rather than ``n`` (about 5x faster at p = 0.05 on
a cpu-small row, ``benchmarks/ops.py``). The scaled input is written once and the dropped
positions zeroed in place; backward keeps a bool mask (one byte per element, as CUDA's fused
dropout does, where a dense fp32 scale tensor kept four). The distribution of the mask, the
``1 / (1 - p)`` scaling and the gradient are those of ``nn.Dropout``; only the random stream
differs.

Why by hand: neither PyTorch nor peft offers a sparse Bernoulli sampler. On CUDA PyTorch's fused
dropout is already fast and is used unchanged. Under gradient checkpointing the recomputed
forward draws the same masks, because ``torch.utils.checkpoint`` restores the CPU generator.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Draw this many standard deviations beyond the expected number of drops in one go, so a second
# draw is almost never needed (it is handled when it is).
_SPARE_SIGMAS = 6.0


class GapDropout(torch.nn.Dropout):
    """``nn.Dropout`` with the mask sampled sparsely on CPU (see module docstring).

    A subclass, so code that checks ``isinstance(m, nn.Dropout)`` or reads ``m.p`` still works.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.p >= 0.5:
            # Dense draws are cheaper once a large share of elements is dropped.
            return F.dropout(x, self.p, self.training, self.inplace)
        return _SparseDropout.apply(x, self.p)


class _SparseDropout(torch.autograd.Function):
    """``x / (1 - p)`` with the dropped elements zeroed in place, sparsely, and a bool mask
    kept for backward (1 byte per element, as CUDA's fused dropout keeps; a dense scale tensor
    multiplied in costs two more passes over ``x`` and keeps ``x``'s dtype per element)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, p: float) -> torch.Tensor:
        dropped = dropped_positions(x.numel(), p)
        scale = 1.0 / (1.0 - p)
        out = x.contiguous() * scale
        out.view(-1).index_fill_(0, dropped, 0.0)
        mask = torch.zeros(x.shape, dtype=torch.bool)
        mask.view(-1).index_fill_(0, dropped, True)
        ctx.save_for_backward(mask)
        ctx.scale = scale
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (mask,) = ctx.saved_tensors
        return grad.mul(ctx.scale).masked_fill_(mask, 0.0), None


def dropped_positions(numel: int, p: float) -> torch.Tensor:
    """Sorted int64 indices in ``[0, numel)`` of an iid Bernoulli(p) selection, drawn from
    torch's CPU generator (so ``torch.manual_seed`` and checkpointing's RNG restore apply).
    Shared by :class:`GapDropout` and the fused LoRA path (``model/fused_lora.py``)."""
    expected = numel * p
    batch = int(expected + _SPARE_SIGMAS * math.sqrt(expected * (1.0 - p)) + 16)
    pieces, last = [], -1  # position of the last drop so far
    while last < numel:
        # gaps[i] = trials up to and including the next drop: P(k) = (1 - p)^(k - 1) p, by
        # inversion, floor(log(1 - U) / log(1 - p)) + 1 with U uniform on [0, 1): uniforms are
        # cheaper to draw on CPU than Tensor.geometric_ or exponential_ samples.
        uniform = torch.rand(batch, dtype=torch.float64)
        gaps = uniform.neg_().log1p_().div_(math.log1p(-p)).floor_().add_(1).long()
        positions = gaps.cumsum(0) + last
        pieces.append(positions)
        last = int(positions[-1])
    positions = torch.cat(pieces)
    return positions[: int(torch.searchsorted(positions, numel))]  # sorted: cut, no mask


def use_gap_dropout(model: torch.nn.Module) -> None:
    """Swap peft's LoRA ``nn.Dropout`` modules for :class:`GapDropout`, in place.

    Same ``p`` and mode; ``nn.Identity`` (``lora_dropout=0``) is left alone.
    """
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, torch.nn.ModuleDict):
            continue
        for name, dropout in dropouts.items():
            if type(dropout) is torch.nn.Dropout:
                replacement = GapDropout(dropout.p, dropout.inplace)
                replacement.train(dropout.training)
                dropouts[name] = replacement
