"""``TrainingConfig``: every knob of ``Finetuner.fit``, typed and checked before any work starts.

A bad value (a zero batch size, an unknown scheduler) fails here, naming the field and the accepted
values, instead of minutes later inside the loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_lora.planning.budget import parse_bytes

LR_SCHEDULERS = ("cosine", "linear", "constant")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
MIXED_PRECISIONS = ("auto", "bf16", "fp16", "no")
REPORTERS = ("tensorboard",)


@dataclass
class TrainingConfig:
    """Settings of one fine-tuning run.

    Example:
        >>> config = TrainingConfig(output_dir="runs/sentiment", num_epochs=2, batch_size=8)
    """

    output_dir: str | Path
    """Where checkpoints, ``best/``, logs, ``metrics.jsonl`` and ``summary.json`` go."""
    num_epochs: int = 3
    """Passes over the train split (ignored when ``max_steps`` is set)."""
    max_steps: int | None = None
    """Total optimizer steps; overrides ``num_epochs`` and may cross epoch boundaries."""
    learning_rate: float = 2e-4
    """Peak learning rate reached after warm-up."""
    batch_size: int = 4
    """Rows per micro-batch on each process."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step; the loss is normalised by all their target tokens."""
    lr_scheduler: str = "cosine"
    """Learning-rate schedule after warm-up: ``cosine``, ``linear`` or ``constant``."""
    warmup_ratio: float = 0.03
    """Fraction of the optimizer steps spent warming up linearly from 0, in [0, 1)."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW) on matrices; biases and norms never decay."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm to this value; None disables clipping (norm still logged)."""
    optimizer: str = "adamw"
    """``adamw`` (torch), ``adamw_8bit`` or ``paged_adamw_8bit`` (bitsandbytes)."""
    mixed_precision: str = "auto"
    """``auto`` (bf16 where supported, CPU included; fp16 on GPUs without bf16), ``bf16``,
    ``fp16`` (with loss scaling) or ``no`` (fp32)."""
    eval_steps: int | None = None
    """Evaluate every this many optimizer steps; None evaluates at the end of each epoch."""
    save_steps: int | None = None
    """Checkpoint every this many optimizer steps; None checkpoints at the end of each epoch."""
    save_total_limit: int | None = 2
    """Keep at most this many ``checkpoint-*`` directories (oldest deleted); None keeps all."""
    early_stopping_patience: int | None = None
    """Stop after this many evaluations without a better validation loss; None never stops."""
    early_stopping_threshold: float = 0.0
    """An evaluation counts as better only if it lowers the best loss by more than this."""
    logging_steps: int = 10
    """Log (and synchronise with the device) every this many optimizer steps."""
    report_to: tuple[str, ...] = ("tensorboard",)
    """Extra metric sinks besides ``metrics.jsonl``: ``("tensorboard",)`` or ``()``."""
    seed: int = 0
    """Seeds Python, NumPy and torch, and the per-epoch data shuffle."""
    progress_bar: bool = True
    """Show a tqdm bar (main process only) with loss, learning rate and tokens/s."""
    max_consecutive_nonfinite: int = 5
    """Raise after this many optimizer steps in a row with a NaN/inf loss or gradient norm."""
    fused_loss: bool = True
    """With a frozen ``lm_head``, compute logits only at target positions, in chunks, with the
    input gradient formed in the forward pass (same loss; no full fp32 logits kept). False
    forces the model's full-logit path."""
    fused_lora: bool = True
    """Run each plain peft LoRA linear as one autograd node during ``fit`` (dropout, both
    matmuls, scaling and the residual add; ``model/fused_lora.py``): the same update without
    peft's elementwise passes. False keeps peft's forward."""
    dataloader_num_workers: int = 0
    """Worker processes that collate batches off the training thread (0: in the loop)."""
    memory_budget: int | str | None = None
    """Device memory per process that a ``prepare_model(gradient_checkpointing="auto")`` model
    may plan its step for (bytes, ``"16GB"`` or ``"16GiB"``): blocks are recomputed only as
    far as the planned peak needs. None: 90% of the GPU's memory, or of the RAM on CPU."""

    def __post_init__(self) -> None:
        if not str(self.output_dir):
            raise ValueError("TrainingConfig.output_dir must be a non-empty path")
        self.output_dir = Path(self.output_dir)
        self.report_to = _normalise_report_to(self.report_to)
        for name in ("num_epochs", "batch_size", "gradient_accumulation_steps", "logging_steps"):
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("dataloader_num_workers", "seed"):
            _check_int(name, getattr(self, name), minimum=0)
        _check_int("max_consecutive_nonfinite", self.max_consecutive_nonfinite, minimum=1)
        for name in (
            "max_steps",
            "eval_steps",
            "save_steps",
            "save_total_limit",
            "early_stopping_patience",
        ):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        _check_float("learning_rate", self.learning_rate, low=0.0, low_open=True)
        _check_float("warmup_ratio", self.warmup_ratio, low=0.0, high=1.0)
        _check_float("weight_decay", self.weight_decay, low=0.0)
        _check_float("early_stopping_threshold", self.early_stopping_threshold, low=0.0)
        if self.max_grad_norm is not None:
            _check_float("max_grad_norm", self.max_grad_norm, low=0.0, low_open=True)
        _check_choice("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISIONS)
        if self.memory_budget is not None:
            try:
                parse_bytes(self.memory_budget)
            except ValueError as error:
                raise ValueError(f"TrainingConfig.memory_budget: {error}") from None
        for name in ("progress_bar", "fused_loss", "fused_lora"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"TrainingConfig.{name} must be a bool, got {getattr(self, name)!r}"
                )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """Build a config from a mapping (a YAML section), rejecting unknown keys.

        Raises:
            ValueError: a key is not a field (names the key and the valid ones), or a value is
                invalid.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"unknown TrainingConfig key(s) {unknown}; valid keys are {names}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields (paths as strings, tuples as lists)."""
        values = dataclasses.asdict(self)
        values["output_dir"] = str(self.output_dir)
        values["report_to"] = list(self.report_to)
        return values


def _normalise_report_to(value: Any) -> tuple[str, ...]:
    # A YAML file naturally gives "tensorboard", ["tensorboard"] or "none"; accept all three.
    if value is None or value == "none":
        return ()
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        _check_choice("report_to", item, REPORTERS)
    return items


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"TrainingConfig.{name} must be an integer >= {minimum}, got {value!r}")


def _check_float(
    name: str,
    value: Any,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and (high is None or value < high)
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}"
        bound += f" and < {high}" if high is not None else ""
        raise ValueError(f"TrainingConfig.{name} must be a finite number {bound}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"TrainingConfig.{name} must be one of {list(choices)}, got {value!r}")


__all__ = ["TrainingConfig", "LR_SCHEDULERS", "OPTIMIZERS", "MIXED_PRECISIONS", "REPORTERS"]
