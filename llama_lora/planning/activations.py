"""Activation memory of one QLoRA training step: what autograd keeps for backward, per token.

The formulas follow the tensors that torch actually saves for a LLaMA block trained the way
llama_lora trains it: frozen (quantized) base layers, fp32 LoRA adapters, a forward under
``torch.autocast(compute_dtype)``, and fp32 RMSNorm weights for a quantized base. Two facts of
that setup shape the numbers:

* With a quantized base the residual stream is fp32 (``stream_bytes`` = 4: the embedding
  output is upcast and the norms compute in fp32), and every norm hands its consumers the
  compute dtype, so the attention and MLP branches, their intermediates and the adapters'
  inputs are in the compute dtype (``model/loading.py``); an unquantized base keeps everything
  in the compute dtype.
* A frozen base layer saves nothing for backward (bitsandbytes keeps only the packed weight,
  which is already counted); each LoRA adapter saves its dropped-out input in the compute dtype,
  the dropout mask, and its rank-r intermediate.

``tests/planning`` checks the per-layer and checkpoint formulas byte for byte against
``torch.autograd.graph.saved_tensors_hooks`` on a CPU model.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from llama_lora.planning.shapes import ModelShape

FP32_BYTES = 4
LABEL_BYTES = 8  # int64 targets kept by cross_entropy
# A bool mask per element: CUDA's fused native_dropout keeps one, and so does llama_lora's
# GapDropout on CPU (model/dropout.py; for p < 0.5, which LoRA dropout always is in practice).
# During fit on CPU, the fused LoRA path (model/fused_lora.py) keeps the dropped positions as
# int32 instead (4 bytes per dropped element, for p <= 0.1): less than the mask, so there the
# plan is an upper bound by at most the masks (tests/planning/test_planning_exact.py).
DROPOUT_MASK_BYTES = 1
# Bytes per logit element at the loss-backward peak of the full-logit path: the fp32
# log-probabilities cross_entropy saves, the gradient arriving at log_softmax, and the gradient
# it returns for the fp32 logits (the model's own compute-dtype logits are freed by then).
LOSS_BYTES_PER_LOGIT = 3 * FP32_BYTES


@dataclass(frozen=True)
class ActivationDtypes:
    """Bytes per element of the activations a training step keeps."""

    compute_bytes: int
    """The autocast dtype: matmul inputs/outputs, attention tensors, adapter inputs."""
    stream_bytes: int
    """The residual stream (fp32 with a quantized base, see module doc)."""
    dropout_mask_bytes: int = DROPOUT_MASK_BYTES
    """One LoRA-dropout mask element (bool)."""
    int8_keeps_inputs: bool = False
    """Whether frozen layers keep their input for backward, as bitsandbytes' CUDA int8 matmul
    (``MatMul8bitLt``) does: the two norm outputs and the ``down_proj`` input (compute dtype)."""

    def __post_init__(self) -> None:
        for name in ("compute_bytes", "stream_bytes", "dropout_mask_bytes"):
            if getattr(self, name) not in (1, 2, 4):
                raise ValueError(f"{name}={getattr(self, name)!r} must be 1, 2 or 4 bytes")


def layer_bytes_per_token(
    shape: ModelShape, targets: Collection[str], lora_r: int, dtypes: ActivationDtypes
) -> int:
    """Bytes one decoder block saves for backward, per token (no checkpointing).

    ``2 (4h + 4)`` for the two RMSNorms (fp32 input and 1/rms), ``sum (c + m) in + c r`` over the
    adapted layers, ``c (2 q + 2 kv) + 4 heads`` for SDPA (q, k, v, output, fp32 logsumexp) and
    ``3 c i`` for SwiGLU (gate, silu(gate), up); int8 bases add ``2 c h + c i``.
    """
    c, m = dtypes.compute_bytes, dtypes.dropout_mask_bytes
    h, i = shape.hidden_size, shape.intermediate_size
    norms = 2 * (FP32_BYTES * h + FP32_BYTES)
    adapters = sum(
        (c + m) * lin.in_features + c * lora_r
        for lin in shape.layer_linears()
        if lin.name in targets
    )
    attention = c * (2 * shape.q_width + 2 * shape.kv_width) + FP32_BYTES * shape.num_heads
    mlp = 3 * c * i
    # MatMul8bitLt keeps A; o_proj's input is the SDPA output, already counted above
    int8_inputs = 2 * c * h + c * i if dtypes.int8_keeps_inputs else 0
    return norms + adapters + attention + mlp + int8_inputs


def layer_weight_cast_bytes(
    shape: ModelShape, targets: Collection[str], lora_r: int, dtypes: ActivationDtypes
) -> int:
    """Bytes of the compute-dtype copies autocast makes of one block's fp32 LoRA weights.

    Autograd keeps them with the block's other saved tensors; none when computing in fp32.
    """
    if dtypes.compute_bytes == FP32_BYTES:
        return 0
    lora_numel = sum(
        lora_r * (lin.in_features + lin.out_features)
        for lin in shape.layer_linears()
        if lin.name in targets
    )
    return dtypes.compute_bytes * lora_numel


def layer_bytes(
    shape: ModelShape, targets: Collection[str], lora_r: int, dtypes: ActivationDtypes, tokens: int
) -> int:
    """Everything one block keeps for backward over ``tokens`` tokens (no checkpointing)."""
    per_token = layer_bytes_per_token(shape, targets, lora_r, dtypes)
    return tokens * per_token + layer_weight_cast_bytes(shape, targets, lora_r, dtypes)


def checkpoint_bytes(shape: ModelShape, dtypes: ActivationDtypes, tokens: int) -> int:
    """Bytes kept by non-reentrant checkpointing: each block's input hidden states.

    Every block receives the residual stream (block 0 the embeddings, upcast to it).
    """
    return tokens * shape.hidden_size * shape.num_layers * dtypes.stream_bytes


def head_saved_bytes(shape: ModelShape, tokens: int) -> int:
    """Bytes the final RMSNorm and the loss keep before backward, besides the log-probs.

    Final norm (fp32 input and 1/rms) plus the int64 targets.
    """
    return tokens * (FP32_BYTES * shape.hidden_size + FP32_BYTES + LABEL_BYTES)


def loss_buffer_bytes(shape: ModelShape, tokens: int) -> int:
    """Logit buffers at the loss-backward peak: ``12 B T V`` (fp32 log-probs, gradient in and
    out of log_softmax)."""
    return tokens * shape.vocab_size * LOSS_BYTES_PER_LOGIT


def backward_transient_bytes(shape: ModelShape, dtypes: ActivationDtypes, tokens: int) -> int:
    """Gradients alive inside one block's backward: the residual gradient and the two SwiGLU
    branch gradients, ``f h + 2 c i`` per token (an estimate; not measured on the CPU)."""
    return tokens * (
        dtypes.stream_bytes * shape.hidden_size + 2 * dtypes.compute_bytes * shape.intermediate_size
    )


def dequantization_bytes(
    shape: ModelShape, quantization: str | None, dtypes: ActivationDtypes
) -> int:
    """The largest weight dequantized for one matmul: 4-bit layers dequantize to the compute
    dtype, CUDA int8 layers' backward to their input dtype (also the compute dtype now that the
    norms hand it over); none unquantized."""
    if quantization is None:
        return 0
    return dtypes.compute_bytes * max(lin.weight_numel for lin in shape.layer_linears())
