"""SDPA attention that runs each packed example on its own: padding-free packing on any device.

Packed rows hold several examples one after another, with ``position_ids`` restarting at 0 for
each. A block-diagonal 4D mask keeps them apart (``llama_lora.data.collator``), but SDPA then
computes the full ``T x T`` score matrix and throws most of it away; on CPU that was a quarter of
a training step for rows of 768 tokens holding about 8 Alpaca examples (torch.profiler, see
benchmarks/README.md). Here every example is one causal SDPA call (``is_causal=True``, no mask
tensor), so the work is ``sum(n_i^2)`` instead of ``T^2``.

Why by hand: transformers' varlen path (``flash_attention_2`` with ``cu_seqlens``) needs the
flash-attn CUDA package; nothing equivalent exists for SDPA or CPU. Each segment still goes
through transformers' own ``sdpa_attention_forward`` (GQA handling included).

Short examples run on SDPA's math backend: on CPU the flash kernel's fixed cost per call makes
it slower than two batched matmuls and a softmax for short examples (forward plus backward,
8 heads of 64, bf16, ``benchmarks/ops.py``: 1.20 vs 0.76 ms at 40 tokens, 1.98 vs 0.93 at 80,
3.88 vs 3.41 at 160, flash ahead from 320), and Alpaca examples average 94 tokens. Both
backends agree to bf16 rounding. On CUDA the fused kernels are used at every length.

Rows without a restart (ordinary batches, generation with a cache) go to plain SDPA unchanged,
with whatever mask transformers built for them.
"""

from __future__ import annotations

import contextlib
import weakref

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

#: Name under which the implementation is registered with transformers.
PACKED_SDPA = "llama_lora_packed_sdpa"

#: On CPU, examples up to this many tokens use SDPA's math backend (see module docstring).
CPU_MATH_MAX_LENGTH = 256


def packed_sdpa_attention(
    module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs
):
    """Attention interface function: (B, H, T, D) inputs -> ((B, T, H, D), None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.pop("position_ids", None)
    segments = _segments(position_ids, query.shape[2])
    if segments is None:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    rows = []
    for b, bounds in enumerate(segments):
        pieces = []
        for start, end in bounds:
            with _backend_for(end - start, query.device):
                out, _ = sdpa_attention_forward(
                    module,
                    query[b : b + 1, :, start:end],
                    key[b : b + 1, :, start:end],
                    value[b : b + 1, :, start:end],
                    None,  # is_causal within the example: the block mask, without building it
                    dropout=dropout,
                    scaling=scaling,
                    **kwargs,
                )
            pieces.append(out)
        rows.append(torch.cat(pieces, dim=1))  # (1, T, H, D)
    return torch.cat(rows, dim=0), None


def _backend_for(length: int, device: torch.device):
    """SDPA's math backend for a short example on CPU, else SDPA's own choice."""
    if device.type == "cpu" and length <= CPU_MATH_MAX_LENGTH:
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


# The model hands every layer the same ``position_ids`` tensor: find the spans once per forward
# (one host sync, not one per layer). A weak reference, so a freed tensor never matches.
_last_spans: tuple[weakref.ref | None, list | None] = (None, None)


def _segments(position_ids, length: int) -> list[list[tuple[int, int]]] | None:
    """Per row, the ``[start, end)`` spans of its examples; None when no row is packed.

    Only for training-shaped calls (queries span the whole row); decoding steps never qualify.
    """
    global _last_spans
    if position_ids is None or position_ids.dim() != 2 or position_ids.shape[1] != length:
        return None
    reference, spans = _last_spans
    if reference is not None and reference() is position_ids:
        return spans
    spans = _find_spans(position_ids, length)
    _last_spans = (weakref.ref(position_ids), spans)
    return spans


def _find_spans(position_ids, length: int) -> list[list[tuple[int, int]]] | None:
    restarts = position_ids[:, 1:] == 0  # (B, T-1): a new example starts at t + 1
    if not bool(restarts.any()):
        return None
    segments = []
    for row in restarts.cpu():
        starts = [0, *(row.nonzero().flatten() + 1).tolist()]
        segments.append(list(zip(starts, [*starts[1:], length], strict=True)))
    return segments


def register_packed_sdpa() -> str:
    """Register the implementation (and SDPA's mask builder for it) with transformers, once."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(PACKED_SDPA, packed_sdpa_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, sdpa_mask)
    return PACKED_SDPA
