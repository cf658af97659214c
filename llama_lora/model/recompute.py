"""Automatic gradient checkpointing: recompute only as many blocks as the memory budget needs.

Checkpointing a block trades a second forward pass of it for its activations. PEFT
(``prepare_model_for_kbit_training``) and TRL (``SFTConfig``) checkpoint every block by default
because they cannot tell whether the activations would fit; on the cpu-small benchmark that
recomputation made llama_lora's step 0.759 s instead of 0.548 s (benchmarks/README.md).
llama_lora can tell: the memory planner (``llama_lora.planning``) predicts a step's peak from
the config, byte-exact against the tensors torch saves on CPU. With
``prepare_model(gradient_checkpointing="auto")`` (the default) every block is checkpointed
until ``Finetuner.fit`` knows the longest micro-batch; it then plans for it and keeps
checkpointing on the fewest blocks whose planned peak fits the budget
(``TrainingConfig.memory_budget``, default 90% of the device's memory). transformers reads each
block's ``gradient_checkpointing`` flag on every call, so partial checkpointing needs nothing
but those flags.

Why by hand: transformers, accelerate and peft switch checkpointing on or off for the whole
model; none chooses it from a memory budget.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

#: ``prepare_model``'s value for "let ``fit`` decide from the memory plan".
AUTO = "auto"
#: Share of the device's memory that the plan may fill when no budget is given: the planner's
#: framework overhead term covers the CUDA context and allocator slack, this keeps a margin.
DEFAULT_BUDGET_FRACTION = 0.9
_AUTO_FLAG = "_llama_lora_auto_recompute"
_MIXED_PRECISION_DTYPES = {"bf16": "bf16", "fp16": "fp16", "no": "fp32"}


@dataclass(frozen=True)
class RecomputeDecision:
    """How many blocks ``fit`` recomputes, and the plan that decided it."""

    recomputed_layers: int
    num_layers: int
    planned_bytes: int
    """The planner's peak at ``recomputed_layers``."""
    budget_bytes: int
    tokens: int
    """Tokens of the longest micro-batch planned for."""

    @property
    def fits(self) -> bool:
        """Whether the planned peak is within the budget."""
        return self.planned_bytes <= self.budget_bytes


def mark_auto(base: torch.nn.Module) -> None:
    """Record on the transformers model that ``fit`` should choose the checkpointed blocks."""
    setattr(base, _AUTO_FLAG, True)


def is_auto(base: torch.nn.Module) -> bool:
    """Whether ``prepare_model(gradient_checkpointing="auto")`` marked ``base``."""
    return bool(getattr(base, _AUTO_FLAG, False))


def checkpointing_layers(base: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks transformers can checkpoint, in model order."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [module for module in base.modules() if isinstance(module, GradientCheckpointingLayer)]


def set_recomputed_layers(base: torch.nn.Module, count: int) -> None:
    """Checkpoint the first ``count`` blocks and keep the activations of the others.

    Every block holds the same activations, so which ones are recomputed does not change the
    peak; the first ones are taken.
    """
    for index, layer in enumerate(checkpointing_layers(base)):
        layer.gradient_checkpointing = index < count


def device_memory_bytes(device: torch.device) -> int:
    """Total memory of ``device``: the GPU's own, or the machine's RAM for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def longest_row(split: Any) -> int:
    """Tokens in the longest ``input_ids`` row of a split (a ``datasets.Dataset`` or rows)."""
    if hasattr(split, "with_format"):
        from llama_lora.data.stats import token_counts

        lengths, _ = token_counts(split)  # Arrow, no Python lists
        return int(lengths.max()) if len(lengths) else 0
    return max((len(row["input_ids"]) for row in split), default=0)


def planned_peaks(
    model: torch.nn.Module, *, tokens: int, optimizer: str, mixed_precision: str
) -> list[int] | None:
    """The planner's peak bytes with 0, 1, ... all blocks recomputed (index = count).

    None when the planner cannot describe the model: not a LLaMA-layout decoder, or adapters
    on layers it does not know.
    """
    from llama_lora.planning import plan_memory
    from llama_lora.planning.shapes import LINEAR_NAMES, model_shape

    base = model.get_base_model()
    lora = model.peft_config[model.active_adapter]
    targets = lora.target_modules
    if not isinstance(targets, str):
        # peft expands "all-linear" into module paths ("model.layers.0.mlp.up_proj")
        targets = sorted({name.rpartition(".")[2] for name in targets})
        if not set(targets) <= set(LINEAR_NAMES):
            return None
    try:
        shape = model_shape(base.config)
    except ValueError:
        return None
    settings = {
        "quantization": _quantization(base.modules()),
        "lora_r": lora.r,
        "target_modules": targets,
        "seq_len": max(tokens, 1),
        "optimizer": optimizer,
        "compute_dtype": _MIXED_PRECISION_DTYPES[mixed_precision],
    }
    return [
        plan_memory(shape, recomputed_layers=count, **settings).total_bytes
        for count in range(shape.num_layers + 1)
    ]


def choose_recomputation(
    model: torch.nn.Module,
    *,
    tokens: int,
    budget_bytes: int,
    optimizer: str,
    mixed_precision: str,
) -> RecomputeDecision | None:
    """The fewest checkpointed blocks whose planned peak fits ``budget_bytes``.

    Returns None when the model cannot be planned (the caller keeps every block
    checkpointed). When even full checkpointing does not fit, the decision recomputes every
    block and ``fits`` is False.
    """
    peaks = planned_peaks(
        model, tokens=tokens, optimizer=optimizer, mixed_precision=mixed_precision
    )
    if peaks is None:
        return None
    fitting = [count for count, peak in enumerate(peaks) if peak <= budget_bytes]
    count = fitting[0] if fitting else len(peaks) - 1
    return RecomputeDecision(count, len(peaks) - 1, peaks[count], budget_bytes, tokens)


def _quantization(modules: Iterable[torch.nn.Module]) -> str | None:
    """The planner's name for how the base stores its linear weights."""
    for module in modules:
        weight = getattr(module, "weight", None)
        kind = type(weight).__name__
        if kind == "Params4bit":
            return weight.quant_type
        if kind == "Int8Params":
            return "int8"
    return None
