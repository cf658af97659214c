"""Bytes of stored tensors: quantized weights, LoRA adapters, and optimizer states.

Everything here is exact: it mirrors how bitsandbytes 0.50, peft and torch lay the tensors out,
and ``tests/planning`` compares it byte for byte with a model built and stepped on the CPU.
Written by hand because none of those libraries can size a layer without building it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

QUANTIZATION_CHOICES = ("nf4", "fp4", "int8", None)
OPTIMIZER_CHOICES = ("adamw", "adamw_8bit", "paged_adamw_8bit")

FP32_BYTES = 4
# bitsandbytes 4-bit layout (functional.quantize_4bit with compress_statistics=True, the
# "double quant" llama_lora always enables): two 4-bit codes per uint8, one absmax per block
# of 64 weights, itself quantized to uint8 in blocks of 256 with an fp32 absmax per nested
# block, an fp32 offset, and two lookup tables copied into every layer's QuantState.
BLOCKSIZE_4BIT = 64
NESTED_BLOCKSIZE = 256
CODE_4BIT_ENTRIES = 16  # QuantState.code: the 16 NF4/FP4 levels, fp32
DYNAMIC_CODE_ENTRIES = 256  # QuantState.state2.code: the 8-bit dynamic map, fp32
# bitsandbytes 8-bit optimizers (Optimizer2State.init_state): uint8 states quantized in blocks
# of 256 with an fp32 absmax each; tensors under min_8bit_size elements keep fp32 states. The
# two 256-entry fp32 maps (qmap1, qmap2) are shared by all parameters.
OPTIMIZER_BLOCKSIZE = 256
MIN_8BIT_SIZE = 4096


def ceil_div(numerator: int, denominator: int) -> int:
    """``ceil(numerator / denominator)`` for non-negative integers."""
    return -(-numerator // denominator)


def check_quantization(quantization: str | None) -> None:
    """Raises ValueError naming ``quantization`` and the choices when it is not supported."""
    if quantization not in QUANTIZATION_CHOICES:
        raise ValueError(
            f"quantization={quantization!r} is not supported; choose one of {QUANTIZATION_CHOICES}"
        )


def check_optimizer(optimizer: str) -> None:
    """Raises ValueError naming ``optimizer`` and the choices when it is not supported."""
    if optimizer not in OPTIMIZER_CHOICES:
        raise ValueError(
            f"optimizer={optimizer!r} is not supported; choose one of {OPTIMIZER_CHOICES}"
        )


def quantized_weight_bytes(numel: int, quantization: str | None, compute_bytes: int) -> int:
    """Bytes of one linear weight's stored data (the packed codes for 4-bit, int8 for int8).

    Args:
        numel: Elements of the weight matrix (out_features * in_features).
        quantization: ``"nf4"``, ``"fp4"``, ``"int8"`` or None (kept in the compute dtype).
        compute_bytes: Bytes per element of the compute dtype (used when None).
    """
    check_quantization(quantization)
    if quantization in ("nf4", "fp4"):
        return ceil_div(numel, 2)  # uint8 quant_storage holds two 4-bit codes
    if quantization == "int8":
        return numel  # Int8Params.CB
    return numel * compute_bytes


def quantization_constant_bytes(numel: int, out_features: int, quantization: str | None) -> int:
    """Bytes of the scales and lookup tables that dequantize one linear weight.

    4-bit (double quant): uint8 absmax per 64-block, fp32 absmax per 256 of those, an fp32
    offset, the 16-entry 4-bit code and the 256-entry nested code. int8: one fp32 scale per
    output row (``Int8Params.SCB``). None: nothing.
    """
    check_quantization(quantization)
    if quantization in ("nf4", "fp4"):
        blocks = ceil_div(numel, BLOCKSIZE_4BIT)
        nested_blocks = ceil_div(blocks, NESTED_BLOCKSIZE)
        tables = CODE_4BIT_ENTRIES + DYNAMIC_CODE_ENTRIES + 1  # + 1: the offset scalar
        return blocks + FP32_BYTES * (nested_blocks + tables)
    if quantization == "int8":
        return FP32_BYTES * out_features
    return 0


def lora_tensor_numels(shapes: Iterable[tuple[int, int]], lora_r: int) -> list[int]:
    """Element counts of every LoRA tensor: A is (r x in), B is (out x r), per adapted layer.

    Args:
        shapes: ``(in_features, out_features)`` of each adapted linear layer.
        lora_r: LoRA rank.
    """
    numels = []
    for in_features, out_features in shapes:
        numels += [lora_r * in_features, out_features * lora_r]
    return numels


def optimizer_state_bytes(numels: Sequence[int], optimizer: str) -> int:
    """Device bytes of the optimizer states for trainable fp32 tensors of ``numels`` elements.

    ``adamw`` (torch): ``exp_avg`` and ``exp_avg_sq`` in fp32. Its ``step`` counters are 0-dim
    host tensors (not ``capturable``/``fused``), so they cost no device memory.
    ``adamw_8bit`` / ``paged_adamw_8bit`` (bitsandbytes): two uint8 states plus an fp32 absmax per
    256-block, fp32 states for tensors under 4096 elements, and the two shared 256-entry maps.
    """
    check_optimizer(optimizer)
    if optimizer == "adamw":
        return sum(2 * FP32_BYTES * n for n in numels)
    total, any_8bit = 0, False
    for n in numels:
        if n < MIN_8BIT_SIZE:
            total += 2 * FP32_BYTES * n
        else:
            total += 2 * (n + FP32_BYTES * ceil_div(n, OPTIMIZER_BLOCKSIZE))
            any_8bit = True
    return total + (2 * FP32_BYTES * DYNAMIC_CODE_ENTRIES if any_8bit else 0)
