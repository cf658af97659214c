"""Save, load and merge LoRA adapters in plain PEFT format.

Saved adapters are ``adapter_config.json`` + ``adapter_model.safetensors``, so
``peft.PeftModel.from_pretrained`` loads them without llama_lora. Every directory is written
to a temporary sibling and renamed into place: a crash never leaves a directory that looks
complete but is not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

from llama_lora.model.dropout import use_gap_dropout
from llama_lora.model.dtypes import resolve_dtype


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that replaces ``target`` only if the block succeeds.

    The temporary directory sits beside ``target`` (same file system, so ``os.replace`` is
    atomic). An existing ``target`` is moved aside first and removed after the swap.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
        for file in staging.rglob("*"):
            if file.is_file():
                with open(file, "rb") as handle:
                    os.fsync(handle.fileno())
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        try:
            os.replace(staging, target)
        except OSError:
            if old is not None:
                os.replace(old, target)  # put the old version back rather than lose it
            raise
        staging.chmod(0o755) if staging.exists() else target.chmod(0o755)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def save_adapter(model, output_dir: str | Path, tokenizer=None) -> Path:
    """Save the adapter (PEFT format, safetensors) and optionally the tokenizer, atomically."""
    with atomic_directory(output_dir) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    return Path(output_dir)


def load_adapter(base, adapter_dir: str | Path, *, is_trainable: bool = False, **prepare_kwargs):
    """Load a saved adapter onto a base model.

    Args:
        base: A ``transformers`` model, or anything ``prepare_model`` accepts (a path, hub id or
            preset), which is then loaded and prepared as ``prepare_model`` does, using
            ``prepare_kwargs`` (``quantization``, ``compute_dtype``, ``device_map``, ...).
        adapter_dir: A directory with ``adapter_config.json`` and adapter weights.
        is_trainable: Keep the adapter trainable (to continue training).

    Returns:
        A ``peft.PeftModel``.

    Raises:
        FileNotFoundError: ``adapter_dir`` has no ``adapter_config.json``.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir}: no adapter_config.json (not a PEFT adapter)")
    if isinstance(base, (str, os.PathLike)):
        from llama_lora.model.loading import load_prepared_base
        from llama_lora.model.source import resolve_model_dir

        options = {"quantization": "nf4", "gradient_checkpointing": False, **prepare_kwargs}
        options["compute_dtype"] = resolve_dtype(options.get("compute_dtype", "auto"))
        base, _ = load_prepared_base(resolve_model_dir(base), **options)
    model = PeftModel.from_pretrained(base, adapter_dir, is_trainable=is_trainable)
    use_gap_dropout(model)
    return model


def merged_state_dict(model, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """The base weights with every LoRA update added, as plain tensors, without touching ``model``.

    For each LoRA layer ``W' = dequantize(W) + (alpha / r) * B @ A`` (peft's
    ``get_delta_weight``). A 4-bit or 8-bit base is dequantized first and the sum is kept in
    ``dtype``: merging into 4-bit weights would re-quantize the update away.
    """
    from peft.tuners.lora import LoraLayer

    merged: dict[str, torch.Tensor] = {}
    inner = model.get_base_model()
    lora_layers = {name: m for name, m in inner.named_modules() if isinstance(m, LoraLayer)}
    for name, layer in lora_layers.items():
        weight = _dense_weight(layer.get_base_layer()).float()
        for adapter in layer.active_adapters:
            weight = weight + layer.get_delta_weight(adapter).float().to(weight.device)
        merged[f"{name}.weight"] = weight.to(dtype).cpu()
        bias = layer.get_base_layer().bias
        if bias is not None:
            merged[f"{name}.bias"] = bias.detach().to(dtype).cpu()
    for name, tensor in inner.state_dict().items():
        owner = name.rsplit(".", 1)[0]
        if any(owner == n or owner.startswith(f"{n}.") for n in lora_layers):
            continue  # LoRA weights, base_layer weights and quantization states: handled above
        merged[name] = tensor.detach().to(dtype).cpu() if tensor.is_floating_point() else tensor
    return merged


def _dense_weight(linear: torch.nn.Module) -> torch.Tensor:
    """The full-precision weight of a plain, 4-bit or 8-bit linear layer."""
    weight = linear.weight
    quant_state = getattr(weight, "quant_state", None)
    if quant_state is not None:  # bitsandbytes Params4bit
        import bitsandbytes.functional as bnbf

        if getattr(quant_state, "packing_format_for_cpu", False):
            # On CPU, bnb repacks 4-bit weights for its bf16 kernel at the first no-grad forward;
            # undo it exactly as bnb's own Linear4bit._save_to_state_dict does.
            weight.data, weight.quant_state = bnbf._convert_weight_packed_for_cpu_inverse(
                weight.data, quant_state
            )
        return bnbf.dequantize_4bit(weight.data, weight.quant_state)
    scb = getattr(weight, "SCB", None)  # a tensor: never `or` it (ambiguous truth value)
    if scb is None:
        scb = getattr(getattr(linear, "state", None), "SCB", None)
    if weight.dtype == torch.int8 and scb is not None:  # bitsandbytes Int8Params: row-wise absmax
        return weight.data.float() * (scb.float().unsqueeze(1) / 127.0)
    return weight.detach()


def merge_and_export(
    model, output_dir: str | Path, *, tokenizer=None, dtype: str | torch.dtype = "bf16"
) -> Path:
    """Write a standalone model with the adapters merged in (safetensors, ``dtype``).

    The result loads with ``AutoModelForCausalLM.from_pretrained(output_dir)``: no peft, no
    bitsandbytes. A quantized base is dequantized before merging (see ``merged_state_dict``).
    The tokenizer, chat template included, is saved beside it when given.

    Returns:
        ``output_dir``.
    """
    from transformers import AutoModelForCausalLM

    torch_dtype = resolve_dtype(dtype, field="dtype")
    state = merged_state_dict(model, torch_dtype)
    config = model.get_base_model().config.__class__.from_dict(
        model.get_base_model().config.to_dict()
    )
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    config.dtype = torch_dtype
    config.use_cache = True
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    plain.load_state_dict(state, strict=True, assign=True)
    plain.tie_weights()
    with atomic_directory(output_dir) as staging:
        plain.save_pretrained(staging, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
    return Path(output_dir)
