"""Activation memory of one QLoRA training step: what autograd keeps for backward, per token.

The formulas follow the tensors that torch actually saves for a LLaMA block trained the way
llama_lora trains it: frozen (quantized) base layers, fp32 LoRA adapters, a forward under
``torch.autocast(compute_dtype)``, and fp32 RMSNorm weights for a quantized base. Two facts of
that setup shape the numbers:

* bitsandbytes' 4-bit/8-bit layers return their output in their *input* dtype, and the fp32
  norm weights make the norm outputs fp32, so with a quantized base the residual stream and the
  MLP intermediates are fp32 (``stream_bytes`` = 4); an unquantized base keeps them in the
  compute dtype.
* A frozen base layer saves nothing for backward (bitsandbytes keeps only the packed weight,
  which is already counted); each LoRA adapter saves its dropped-out input in the compute dtype,
  the dropout mask, and its rank-r intermediate.

``tests/planning`` checks the per-layer and checkpoint formulas byte for byte against
``torch.autograd.graph.saved_tensors_hooks`` on a CPU model (where dropout keeps an fp32 mask
instead of CUDA's bool one, hence ``dropout_mask_bytes``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from llama_lora.planning.shapes import ModelShape

FP32_BYTES = 4
LABEL_BYTES = 8  # int64 targets kept by cross_entropy
CUDA_DROPOUT_MASK_BYTES = 1  # CUDA's fused native_dropout keeps a bool mask
CPU_DROPOUT_MASK_BYTES = 4  # the CPU composite dropout multiplies by an fp32 mask
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
    """The residual stream and MLP intermediates (fp32 with a quantized base, see module doc)."""
    dropout_mask_bytes: int = CUDA_DROPOUT_MASK_BYTES
    """One LoRA-dropout mask element (bool on CUDA)."""
    int8_keeps_inputs: bool = False
    """Whether frozen layers keep their input for backward, as bitsandbytes' CUDA int8 matmul
    (``MatMul8bitLt``) does: the two norm outputs and the ``down_proj`` input."""

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
    ``3 f i`` for SwiGLU (gate, silu(gate), up); int8 bases add ``2 (4 h) + f i``.
    """
    c, f, m = dtypes.compute_bytes, dtypes.stream_bytes, dtypes.dropout_mask_bytes
    h, i = shape.hidden_size, shape.intermediate_size
    norms = 2 * (FP32_BYTES * h + FP32_BYTES)
    adapters = sum(
        (c + m) * lin.in_features + c * lora_r
        for lin in shape.layer_linears()
        if lin.name in targets
    )
    attention = c * (2 * shape.q_width + 2 * shape.kv_width) + FP32_BYTES * shape.num_heads
    mlp = 3 * f * i
    # MatMul8bitLt keeps A; o_proj's input is the SDPA output, already counted above
    int8_inputs = 2 * FP32_BYTES * h + f * i if dtypes.int8_keeps_inputs else 0
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

    Block 0 receives the embeddings (compute dtype), later blocks the residual stream.
    """
    h, layers = shape.hidden_size, shape.num_layers
    return tokens * h * (dtypes.compute_bytes + (layers - 1) * dtypes.stream_bytes)


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
    branch gradients, ``f (h + 2 i)`` per token (an estimate; not measured on the CPU)."""
    return tokens * dtypes.stream_bytes * (shape.hidden_size + 2 * shape.intermediate_size)


def dequantization_bytes(
    shape: ModelShape, quantization: str | None, dtypes: ActivationDtypes
) -> int:
    """The largest weight dequantized for one matmul: 4-bit layers dequantize to the compute
    dtype, CUDA int8 layers' backward to their input dtype (the fp32 stream); none unquantized."""
    if quantization is None:
        return 0
    element = dtypes.stream_bytes if quantization == "int8" else dtypes.compute_bytes
    return element * max(lin.weight_numel for lin in shape.layer_linears())
