"""SDPA attention that runs each packed example on its own: padding-free packing on any device.

Packed rows hold several examples one after another, with ``position_ids`` restarting at 0 for
each. A block-diagonal 4D mask keeps them apart (``llama_lora.data.collator``), but SDPA then
computes the full ``T x T`` score matrix and throws most of it away; on CPU that was a quarter of
a training step for rows of 768 tokens holding about 8 Alpaca examples (torch.profiler, see
benchmarks/README.md). Here every example is one causal SDPA call (``is_causal=True``, no mask
tensor), so the work is ``sum(n_i^2)`` instead of ``T^2``.

Why by hand: transformers' varlen path (``flash_attention_2`` with ``cu_seqlens``) needs the
flash-attn CUDA package; nothing equivalent exists for SDPA or CPU. On CUDA, and for long
examples on CPU, each segment still goes through transformers' own ``sdpa_attention_forward``
(GQA handling included).

On CPU, examples up to ``CPU_EAGER_MAX_LENGTH`` tokens skip SDPA for three plain operations
(``_eager_causal_attention``): fp32 scores with the causal bias added in the same ``baddbmm``,
an fp32 softmax, and the probabilities rounded to the compute dtype for the product with the
values, which is the precision of SDPA's kernels (fp32 scores and softmax; flash kernels round
the probabilities too). SDPA's CPU kernels cost more at these sizes: forward plus backward,
8 heads of 64, bf16 (``benchmarks/ops.py --threads 2``), flash / math / eager 1.94 / 1.34 /
0.95 ms at 86 tokens, 3.92 / 2.71 / 1.74 at 162, 7.77 / 7.77 / 5.78 at 319, 14.8 / 19.8 / 12.2
at 512 (and 34 / 107 / 79 at 1024).
Longer examples use flash, which keeps only a log-sum-exp for backward instead of the
``heads x n x n`` probabilities. On CUDA the fused kernels are used at every length.

Rows without a restart (ordinary batches, generation with a cache) go to plain SDPA unchanged,
with whatever mask transformers built for them.
"""

from __future__ import annotations

import weakref

import torch

#: Name under which the implementation is registered with transformers.
PACKED_SDPA = "llama_lora_packed_sdpa"

#: On CPU, examples up to this many tokens use ``_eager_causal_attention`` (module docstring).
CPU_EAGER_MAX_LENGTH = 512


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
    eager = query.device.type == "cpu" and not (dropout and module.training)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    rows = []
    for b, bounds in enumerate(segments):
        pieces = []
        for start, end in bounds:
            q, k, v = (t[b : b + 1, :, start:end] for t in (query, key, value))
            if eager and end - start <= CPU_EAGER_MAX_LENGTH:
                pieces.append(_eager_causal_attention(q, k, v, scale))
                continue
            # is_causal within the example: the block mask, without building it
            out, _ = sdpa_attention_forward(
                module, q, k, v, None, dropout=dropout, scaling=scaling, **kwargs
            )
            pieces.append(out)
        rows.append(torch.cat(pieces, dim=1))  # (1, T, H, D)
    return torch.cat(rows, dim=0), None


def _eager_causal_attention(query, key, value, scale: float) -> torch.Tensor:
    """Causal attention of one example, (1, H, n, D) (keys/values may have fewer heads, as in
    GQA) -> (1, n, H, D): fp32 scores and softmax, probabilities in the input dtype."""
    heads, n = query.shape[1], query.shape[2]
    groups = heads // key.shape[1]
    if groups > 1:
        key, value = (t.repeat_interleave(groups, dim=1) for t in (key, value))
    bias = _causal_bias(n, query.device)
    scores = torch.baddbmm(
        bias, query[0].float(), key[0].float().transpose(1, 2), alpha=scale
    )  # (H, n, n)
    probabilities = torch.softmax(scores, dim=-1).to(value.dtype)
    return torch.matmul(probabilities, value[0]).transpose(0, 1)[None]


_bias_cache: dict[torch.device, torch.Tensor] = {}


def _causal_bias(n: int, device: torch.device) -> torch.Tensor:
    """(n, n) fp32: 0 on and below the diagonal, -inf above; a view of one cached matrix."""
    bias = _bias_cache.get(device)
    if bias is None or bias.shape[0] < n:
        size = max(n, CPU_EAGER_MAX_LENGTH)
        bias = torch.full((size, size), float("-inf"), device=device).triu_(1)
        _bias_cache[device] = bias
    return bias[:n, :n]


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
