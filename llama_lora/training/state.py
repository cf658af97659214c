"""What a run knows about itself (``TrainState``) and what ``fit`` returns (``FitResult``).

``TrainState`` is everything besides tensors that a checkpoint must restore for an exact resume:
the step, the data position, the best validation loss and the early-stopping and non-finite
counters. It is plain data so it round-trips through ``trainer_state.json``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class TrainState:
    """Progress of a run, shared with callbacks (which may set ``should_stop``)."""

    step: int = 0
    """Optimizer steps taken (skipped non-finite steps included: they consumed data)."""
    epoch: int = 0
    """Index of the epoch in progress (0-based)."""
    batches_in_epoch: int = 0
    """Micro-batches of the current epoch already consumed on each process: the data position."""
    train_tokens: int = 0
    """Non-padding tokens trained on, summed over processes."""
    train_seconds: float = 0.0
    """Wall time spent in training steps (evaluation and checkpointing excluded)."""
    best_val_loss: float | None = None
    """Lowest validation loss so far."""
    best_step: int | None = None
    """Step of ``best_val_loss``."""
    evals_since_improvement: int = 0
    """Evaluations since the validation loss last improved (what early stopping counts)."""
    nonfinite_steps: int = 0
    """Optimizer steps skipped because the loss or gradient norm was NaN or inf."""
    nonfinite_in_a_row: int = 0
    """Current run of consecutive skipped steps."""
    stopped_early: bool = False
    """True when a callback (early stopping) ended the run before its planned last step."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Every logged record (train and eval), in order."""
    world_size: int = 1
    """Processes that produced this state; the data position is per process."""
    should_stop: bool = False
    """Set by a callback to end training after the current step (not saved)."""
    is_main_process: bool = True
    """True on rank 0, the only process that writes files (not saved)."""

    _TRANSIENT = ("should_stop", "is_main_process")

    def tokens_per_second(self) -> float:
        """Non-padding tokens per second of training-step time (0 before any step)."""
        return self.train_tokens / self.train_seconds if self.train_seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The persistent fields, JSON-ready."""
        values = dataclasses.asdict(self)
        for name in self._TRANSIENT:
            values.pop(name)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainState:
        """Inverse of ``to_dict``; unknown keys (from a newer version) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)} - set(cls._TRANSIENT)
        return cls(**{key: value for key, value in values.items() if key in names})


@dataclass
class IntervalSums:
    """On-device sums between two log records, so the loop never waits on the device per step."""

    loss_sum: torch.Tensor
    target_tokens: torch.Tensor
    real_tokens: torch.Tensor
    grad_norm_sum: float = 0.0
    finite_steps: int = 0
    seconds: float = 0.0

    @classmethod
    def zeros(cls, device: torch.device) -> IntervalSums:
        """Fresh sums on ``device`` (float64: token counts stay exact past 2**24)."""
        zero = torch.zeros((), dtype=torch.float64, device=device)
        return cls(zero.clone(), zero.clone(), zero.clone())


@dataclass
class FitResult:
    """Outcome of ``Finetuner.fit``.

    Attributes:
        history: Logged records: ``{"step", "epoch", "train_loss", "learning_rate",
            "grad_norm", "tokens_per_second", "peak_memory_bytes", ...}`` and
            ``{"step", "epoch", "val_loss", "val_perplexity"}``.
        best_checkpoint: ``output_dir/best`` (adapter with the lowest validation loss), or None
            without validation data.
        final_checkpoint: The last ``checkpoint-<step>`` directory (adapter + resumable state).
        train_tokens: Non-padding tokens trained on, all processes, whole run (resumes included).
        tokens_per_second: ``train_tokens`` over the time spent in training steps.
        peak_memory_bytes: Peak accelerator memory allocated (GPU) or peak RSS (CPU) of rank 0.
        stopped_early: Whether early stopping (or a callback) ended the run.
        global_step: Optimizer steps taken.
        best_val_loss: Lowest validation loss, or None without validation data.
    """

    history: list[dict[str, Any]]
    best_checkpoint: Path | None
    final_checkpoint: Path | None
    train_tokens: int
    tokens_per_second: float
    peak_memory_bytes: int
    stopped_early: bool
    global_step: int
    best_val_loss: float | None
