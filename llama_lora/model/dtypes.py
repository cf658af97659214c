"""Resolve "auto" precision choices the same way everywhere (model loading and training)."""

from __future__ import annotations

import torch

_DTYPE_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}
DTYPE_CHOICES = ("auto", *_DTYPE_NAMES)


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels here (AVX512-BF16 / AMX); else bf16 is emulated."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def best_half_dtype(device: torch.device | str | None = None) -> torch.dtype:
    """bf16 where the device runs it natively, fp16 on older GPUs, else fp32.

    bf16 first because it has fp32's exponent range: no loss scaling, no fp16 overflow NaNs.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_supports_bf16():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(value: str | torch.dtype, *, field: str = "compute_dtype") -> torch.dtype:
    """Turn ``"auto"``, a name like ``"bf16"``, or a ``torch.dtype`` into a ``torch.dtype``.

    Raises:
        ValueError: an unknown name (lists the accepted ones).
    """
    if isinstance(value, torch.dtype):
        if value not in _DTYPE_NAMES.values():
            raise ValueError(f"{field}={value} is not supported; choose one of {DTYPE_CHOICES}")
        return value
    if value == "auto":
        return best_half_dtype()
    if value not in _DTYPE_NAMES:
        raise ValueError(f"{field}={value!r} is not supported; choose one of {DTYPE_CHOICES}")
    return _DTYPE_NAMES[value]
