"""Optimizer and learning-rate schedule for the trainable (adapter) parameters.

The optimizers themselves come from torch and bitsandbytes and the schedules from
``transformers.get_scheduler``; this module only decides which parameters decay and maps the
config names onto those libraries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

# Config name -> transformers scheduler name. "constant" still honours warm-up.
SCHEDULER_NAMES = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}


def _torch_adamw() -> type[torch.optim.Optimizer]:
    return torch.optim.AdamW


def _bnb_adamw_8bit() -> type[torch.optim.Optimizer]:
    import bitsandbytes as bnb  # lazy: optional CUDA/CPU kernels load on import

    return bnb.optim.AdamW8bit


def _bnb_paged_adamw_8bit() -> type[torch.optim.Optimizer]:
    import bitsandbytes as bnb

    return bnb.optim.PagedAdamW8bit


OPTIMIZER_CLASSES: dict[str, Callable[[], type[torch.optim.Optimizer]]] = {
    "adamw": _torch_adamw,
    "adamw_8bit": _bnb_adamw_8bit,
    "paged_adamw_8bit": _bnb_paged_adamw_8bit,
}


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters with ``requires_grad`` (the LoRA adapters for a peft model), in model order.

    Raises:
        ValueError: nothing is trainable (a frozen base model without adapters).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(
            "the model has no trainable parameters; pass the peft model returned by "
            "llama_lora.prepare_model (or peft.get_peft_model) to Finetuner"
        )
    return params


def parameter_groups(params: Iterable[torch.nn.Parameter], weight_decay: float) -> list[dict]:
    """Split parameters so matrices decay and vectors (biases, norm scales) do not.

    Decaying a norm's scale pulls it towards 0 rather than towards the identity 1, which is why
    common practice (and HF Trainer) exempts 1-D parameters.
    """
    params = list(params)
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(
    name: str, params: Iterable[torch.nn.Parameter], *, learning_rate: float, weight_decay: float
) -> torch.optim.Optimizer:
    """Create optimizer ``name`` over ``params``.

    Raises:
        ValueError: ``name`` is not one of ``OPTIMIZER_CLASSES``.
    """
    if name not in OPTIMIZER_CLASSES:
        raise ValueError(f"unknown optimizer {name!r}; choices are {list(OPTIMIZER_CLASSES)}")
    params = list(params)
    optimizer_class = OPTIMIZER_CLASSES[name]()
    extra = {"fused": True} if name == "adamw" and _fused_adamw_fits(params) else {}
    return optimizer_class(parameter_groups(params, weight_decay), lr=learning_rate, **extra)


def _fused_adamw_fits(params: list[torch.nn.Parameter]) -> bool:
    """True when PyTorch's fused AdamW kernel can update every parameter.

    The same update as the default per-tensor loop, in one kernel per parameter instead of a
    dozen small ops each: on CPU the loop over cpu-small's 112 adapter matrices took about 5 ms a
    step, the fused kernel 1 ms (``benchmarks/ops.py --only adamw``). HF Trainer defaults to it too
    (``adamw_torch_fused``). Plain floating-point tensors on CPU or CUDA only: anything else
    (a DTensor shard, another device) keeps the loop rather than fail inside ``step``.
    """
    return bool(params) and all(
        type(p) is torch.nn.Parameter
        and p.device.type in ("cpu", "cuda")
        and p.dtype in (torch.float32, torch.float16, torch.bfloat16)
        for p in params
    )


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, *, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LRScheduler:
    """A ``transformers`` schedule over ``total_steps`` optimizer steps with linear warm-up.

    Raises:
        ValueError: ``name`` is not one of ``SCHEDULER_NAMES``.
    """
    if name not in SCHEDULER_NAMES:
        raise ValueError(f"unknown lr_scheduler {name!r}; choices are {list(SCHEDULER_NAMES)}")
    from transformers import get_scheduler

    return get_scheduler(
        SCHEDULER_NAMES[name],
        optimizer,
        num_warmup_steps=math.ceil(warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
