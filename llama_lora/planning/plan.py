"""``plan_memory``: the peak GPU memory of a (Q)LoRA training step, from the config alone.

The peak is the static memory (weights, adapters, their gradients, optimizer states), plus the
activations kept for backward (every block's saved tensors, or with checkpointing every block's
input), plus the larger of two moments of the backward pass that never overlap:

* *loss backward*: the logit buffers of the cross-entropy backward, ``12 B T V`` bytes;
* *block backward*: one block's recomputed activations (with checkpointing), the gradients
  alive inside a block, and one dequantized weight.

See ``docs/memory.md`` for every formula and the LLaMA-2-7B breakdown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from llama_lora.planning import activations as act
from llama_lora.planning.budget import format_gib, parse_bytes
from llama_lora.planning.shapes import LINEAR_NAMES, ModelShape, model_shape
from llama_lora.planning.storage import (
    FP32_BYTES,
    check_optimizer,
    check_quantization,
    lora_tensor_numels,
    optimizer_state_bytes,
    quantization_constant_bytes,
    quantized_weight_bytes,
)

COMPUTE_DTYPE_BYTES = {"bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "fp32": 4, "float32": 4}
# CUDA context and the kernel images of torch, cuBLAS and bitsandbytes (~0.5 GiB on recent
# GPUs) plus caching-allocator slack (reserved minus allocated, ~0.5 GiB): memory the process
# holds that torch.cuda.max_memory_allocated does not report.
FRAMEWORK_OVERHEAD_BYTES = 2**30
LOSS_PHASE = "loss backward"
BLOCK_PHASE = "block backward"


@dataclass(frozen=True)
class MemoryPlan:
    """Predicted peak device memory of one training step, split by what holds it (bytes)."""

    quantized_weight_bytes: int
    """Linear-layer weights as stored: packed 4-bit codes, int8, or compute dtype if unquantized."""
    quantization_constant_bytes: int
    """4-bit absmax, double-quant scales, offsets and code tables; int8 row scales."""
    unquantized_weight_bytes: int
    """Embeddings, ``lm_head`` and any biases, in the compute dtype."""
    norm_bytes: int
    """RMSNorm weights (fp32 with a quantized base, else the compute dtype)."""
    buffer_bytes: int
    """Rotary-embedding frequency buffers (fp32)."""
    lora_bytes: int
    """LoRA A and B matrices (fp32)."""
    lora_gradient_bytes: int
    """Their gradients (fp32)."""
    optimizer_bytes: int
    """Optimizer states on the device."""
    activation_bytes: int
    """Activations kept for backward: every block's saved tensors, or with checkpointing every
    block's input."""
    logits_bytes: int
    """Logit and loss buffers at the loss backward, plus the final norm's saved input."""
    backward_working_bytes: int
    """Inside one block's backward: its recomputed activations (checkpointing), the gradients
    in flight and one dequantized weight."""
    overhead_bytes: int
    """CUDA context, kernels and allocator slack (``FRAMEWORK_OVERHEAD_BYTES``)."""
    peak_phase: str
    """``"loss backward"`` (the logit buffers count) or ``"block backward"`` (the working set
    counts): only the larger of the two is alive at the peak."""
    activation_bytes_per_layer: int
    """What one block saves for backward without checkpointing."""
    checkpoint_bytes_per_layer: int
    """What one block keeps with checkpointing (its input hidden states)."""
    settings: dict[str, Any]
    """The arguments the plan was made for (model shape, seq_len, batch_size, ...)."""

    @property
    def weight_bytes(self) -> int:
        """All frozen model storage: quantized weights, constants, embeddings, norms, buffers."""
        return (
            self.quantized_weight_bytes
            + self.quantization_constant_bytes
            + self.unquantized_weight_bytes
            + self.norm_bytes
            + self.buffer_bytes
        )

    @property
    def tensor_bytes(self) -> int:
        """Peak bytes of torch tensors: compare with ``torch.cuda.max_memory_allocated``."""
        return self.total_bytes - self.overhead_bytes

    @property
    def total_bytes(self) -> int:
        """Peak device memory the training process needs, overhead included."""
        return sum(getattr(self, name) for name in self._counted_rows())

    def _counted_rows(self) -> list[str]:
        skipped = "backward_working_bytes" if self.peak_phase == LOSS_PHASE else "logits_bytes"
        return [name for name, _ in _TABLE_ROWS if name != skipped]

    def fits(self, budget: int | float | str) -> bool:
        """Whether the plan fits in ``budget`` (bytes, or a string like ``"16GB"``/``"16GiB"``)."""
        return self.total_bytes <= parse_bytes(budget)

    def table(self) -> str:
        """A readable breakdown, one row per term, in GiB."""
        s = self.settings
        title = (
            f"{s['model_type']} ({s['parameters'] / 1e9:.2f} B params), "
            f"{s['quantization'] or 'no quantization'}, LoRA r={s['lora_r']}, "
            f"seq {s['seq_len']} x batch {s['batch_size']}, checkpointing "
            f"{'on' if s['gradient_checkpointing'] else 'off'}, {s['optimizer']}, "
            f"{s['compute_dtype']}"
        )
        width = max(len(label) for _, label in _TABLE_ROWS)
        counted = self._counted_rows()
        lines = [title]
        for name, label in _TABLE_ROWS:
            label = label.format(storage=s["quantization"] or s["compute_dtype"])
            note = "" if name in counted else "  (not alive at the peak)"
            lines.append(f"  {label:<{width}}  {format_gib(getattr(self, name)):>12}{note}")
        lines.append(f"  {'total':<{width}}  {format_gib(self.total_bytes):>12}")
        lines.append(
            f"  peak during the {self.peak_phase}; tensors alone (cf. max_memory_allocated): "
            f"{format_gib(self.tensor_bytes)}"
        )
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON: every field plus ``total_bytes`` and ``tensor_bytes``."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**data, "total_bytes": self.total_bytes, "tensor_bytes": self.tensor_bytes}


_TABLE_ROWS = (
    ("quantized_weight_bytes", "linear weights ({storage})"),
    ("quantization_constant_bytes", "quantization constants"),
    ("unquantized_weight_bytes", "embeddings + lm_head"),
    ("norm_bytes", "norms"),
    ("buffer_bytes", "rotary buffers"),
    ("lora_bytes", "LoRA parameters (fp32)"),
    ("lora_gradient_bytes", "LoRA gradients (fp32)"),
    ("optimizer_bytes", "optimizer states"),
    ("activation_bytes", "activations kept for backward"),
    ("logits_bytes", "logits + loss buffers"),
    ("backward_working_bytes", "block backward working set"),
    ("overhead_bytes", "framework overhead"),
)


def plan_memory(
    model: Any,
    *,
    quantization: str | None = "nf4",
    lora_r: int = 16,
    target_modules: str | Sequence[str] = "all-linear",
    seq_len: int = 2048,
    batch_size: int = 1,
    gradient_checkpointing: bool = True,
    optimizer: str = "adamw",
    compute_dtype: str = "bf16",
    recomputed_layers: int | None = None,
) -> MemoryPlan:
    """Predict the peak device memory of training ``model`` with LoRA, loading no weights.

    Args:
        model: A ``PretrainedConfig``, a ``config.json`` path or its directory, a hub id whose
            config is cached, a preset name (``"tiny-llama"``), or a :class:`ModelShape`.
        quantization: ``"nf4"``, ``"fp4"``, ``"int8"`` or None, as in ``prepare_model``.
        lora_r: LoRA rank.
        target_modules: ``"all-linear"`` (every block linear, not ``lm_head``) or layer names.
        seq_len: Tokens per sequence.
        batch_size: Sequences per micro-batch.
        gradient_checkpointing: Whether blocks are recomputed in backward.
        optimizer: ``"adamw"``, ``"adamw_8bit"`` or ``"paged_adamw_8bit"``.
        compute_dtype: ``"bf16"``, ``"fp16"`` or ``"fp32"`` (autocast dtype).
        recomputed_layers: How many blocks are checkpointed (partial checkpointing: the others
            keep their activations); None means all of them with ``gradient_checkpointing``,
            none without. Overrides ``gradient_checkpointing`` when given.

    Returns:
        The :class:`MemoryPlan`.

    Raises:
        ValueError: an argument outside its choices (the message lists them) or a config that
            cannot be found.

    Example:
        >>> plan = plan_memory("tiny-llama", seq_len=512, batch_size=4)
        >>> plan.fits("16GB")
        True
    """
    check_quantization(quantization)
    check_optimizer(optimizer)
    compute_bytes = _compute_bytes(compute_dtype)
    targets = _target_names(target_modules)
    for name, value in (("lora_r", lora_r), ("seq_len", seq_len), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name}={value!r} must be a positive integer")
    shape = model if isinstance(model, ModelShape) else model_shape(model)
    if recomputed_layers is None:
        recomputed_layers = shape.num_layers if gradient_checkpointing else 0
    elif (
        isinstance(recomputed_layers, bool)
        or not isinstance(recomputed_layers, int)
        or not 0 <= recomputed_layers <= shape.num_layers
    ):
        raise ValueError(
            f"recomputed_layers={recomputed_layers!r} must be an integer in "
            f"[0, {shape.num_layers}] (the model's blocks)"
        )
    gradient_checkpointing = recomputed_layers > 0
    settings = {
        "model_type": shape.model_type,
        "parameters": shape.parameter_count,
        "quantization": quantization,
        "lora_r": lora_r,
        "target_modules": sorted(targets),
        "seq_len": seq_len,
        "batch_size": batch_size,
        "gradient_checkpointing": gradient_checkpointing,
        "recomputed_layers": recomputed_layers,
        "optimizer": optimizer,
        "compute_dtype": compute_dtype,
    }
    static = _static_terms(shape, quantization, compute_bytes, targets, lora_r, optimizer)
    tokens = batch_size * seq_len
    dynamic = _dynamic_terms(
        shape, quantization, compute_bytes, targets, lora_r, tokens, recomputed_layers
    )
    return MemoryPlan(
        **static, **dynamic, overhead_bytes=FRAMEWORK_OVERHEAD_BYTES, settings=settings
    )


def _compute_bytes(compute_dtype: str) -> int:
    if compute_dtype not in COMPUTE_DTYPE_BYTES:
        raise ValueError(
            f"compute_dtype={compute_dtype!r} is not supported; choose one of "
            f"{list(COMPUTE_DTYPE_BYTES)}"
        )
    return COMPUTE_DTYPE_BYTES[compute_dtype]


def _target_names(target_modules: str | Sequence[str]) -> frozenset[str]:
    if target_modules == "all-linear":
        return frozenset(LINEAR_NAMES)
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    unknown = [name for name in names if name not in LINEAR_NAMES]
    if unknown or not names:
        raise ValueError(
            f"target_modules={target_modules!r}: {unknown or 'empty'} not among the block's "
            f"linear layers {list(LINEAR_NAMES)}; or use 'all-linear'"
        )
    return frozenset(names)


def _static_terms(
    shape: ModelShape,
    quantization: str | None,
    compute_bytes: int,
    targets: frozenset[str],
    lora_r: int,
    optimizer: str,
) -> dict[str, int]:
    """Weights, adapters, gradients and optimizer states: exact byte counts."""
    linears, layers = shape.layer_linears(), shape.num_layers
    h, vocab = shape.hidden_size, shape.vocab_size
    quantized = layers * sum(
        quantized_weight_bytes(lin.weight_numel, quantization, compute_bytes) for lin in linears
    )
    constants = layers * sum(
        quantization_constant_bytes(lin.weight_numel, lin.out_features, quantization)
        for lin in linears
    )
    biases = layers * sum(lin.out_features for lin in linears if lin.bias)
    embeddings = vocab * h * (1 if shape.tie_word_embeddings else 2)
    norm_bytes = FP32_BYTES if quantization is not None else compute_bytes
    # inv_freq and original_inv_freq of LlamaRotaryEmbedding: head_dim / 2 fp32 each
    buffers = 2 * (shape.head_dim // 2) * FP32_BYTES
    adapted = [(lin.in_features, lin.out_features) for lin in linears if lin.name in targets]
    lora_numels = lora_tensor_numels(adapted * layers, lora_r)
    lora = FP32_BYTES * sum(lora_numels)
    return {
        "quantized_weight_bytes": quantized,
        "quantization_constant_bytes": constants,
        "unquantized_weight_bytes": compute_bytes * (embeddings + biases),
        "norm_bytes": norm_bytes * (2 * layers + 1) * h,
        "buffer_bytes": buffers,
        "lora_bytes": lora,
        "lora_gradient_bytes": lora,
        "optimizer_bytes": optimizer_state_bytes(lora_numels, optimizer),
    }


def _dynamic_terms(
    shape: ModelShape,
    quantization: str | None,
    compute_bytes: int,
    targets: frozenset[str],
    lora_r: int,
    tokens: int,
    recomputed_layers: int,
) -> dict[str, Any]:
    """Activations and logit buffers at the larger of the two backward peaks (module doc).

    A recomputed block keeps only its input until backward, the others all their saved
    tensors; while any block is recomputed, one block's activations exist a second time in
    the block backward."""
    stream_bytes = FP32_BYTES if quantization is not None else compute_bytes
    dtypes = act.ActivationDtypes(
        compute_bytes=compute_bytes,
        stream_bytes=stream_bytes,
        int8_keeps_inputs=quantization == "int8",
    )
    per_layer = act.layer_bytes(shape, targets, lora_r, dtypes, tokens)
    checkpoint = act.checkpoint_bytes(shape, dtypes, tokens)
    kept = shape.num_layers - recomputed_layers
    stored = checkpoint // shape.num_layers * recomputed_layers + kept * per_layer
    logits = act.loss_buffer_bytes(shape, tokens) + act.head_saved_bytes(shape, tokens)
    working = (
        (per_layer if recomputed_layers else 0)
        + act.backward_transient_bytes(shape, dtypes, tokens)
        + act.dequantization_bytes(shape, quantization, dtypes)
    )
    return {
        "activation_bytes": stored,
        "logits_bytes": logits,
        "backward_working_bytes": working,
        "peak_phase": LOSS_PHASE if logits >= working else BLOCK_PHASE,
        "activation_bytes_per_layer": per_layer,
        "checkpoint_bytes_per_layer": tokens * shape.hidden_size * stream_bytes,
    }
