"""Callbacks: user logic that hangs on the loop instead of living inside it.

Three moments are exposed: after each optimizer step, after each evaluation and after each
checkpoint. A callback reads the ``TrainState`` and may set ``state.should_stop = True`` to end the
run after the current step; that is all early stopping needs, so it is written as one.

Callbacks run on every process (so a stop decision is taken everywhere alike); one that writes
files should check ``state.is_main_process``.

Example:
    >>> class PrintLoss(Callback):
    ...     def on_step_end(self, state, metrics):
    ...         if metrics and state.is_main_process:
    ...             print(state.step, metrics["train_loss"])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llama_lora.training.state import TrainState


class Callback:
    """Base class with no-op hooks; override the ones you need."""

    def on_step_end(self, state: TrainState, metrics: Mapping[str, Any]) -> None:
        """After each optimizer step.

        Args:
            state: Progress so far (``state.step`` is the step just taken).
            metrics: The record logged at this step on logging steps (every
                ``logging_steps``), else empty: reading losses every step would force a
                device synchronisation per step.
        """

    def on_evaluate(self, state: TrainState, metrics: Mapping[str, Any]) -> None:
        """After each evaluation, with ``{"val_loss", "val_perplexity", ...}``."""

    def on_save(self, state: TrainState, checkpoint_dir: Path) -> None:
        """After a checkpoint is complete (renamed into place) at ``checkpoint_dir``."""


class EarlyStopping(Callback):
    """Stop when the validation loss has not improved for ``patience`` evaluations.

    The loop keeps the best loss and the count of evaluations since it improved (by more than
    ``TrainingConfig.early_stopping_threshold``) in the ``TrainState``, so the count survives a
    resume; this callback only turns the count into a decision.
    """

    def __init__(self, patience: int) -> None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"EarlyStopping.patience must be an integer >= 1, got {patience!r}")
        self.patience = patience

    def on_evaluate(self, state: TrainState, metrics: Mapping[str, Any]) -> None:
        if state.evals_since_improvement >= self.patience:
            state.should_stop = True
            state.stopped_early = True


class CallbackList:
    """Calls each callback's hook in order."""

    def __init__(self, callbacks: Sequence[Callback]) -> None:
        self.callbacks = list(callbacks)

    def on_step_end(self, state: TrainState, metrics: Mapping[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_step_end(state, metrics)

    def on_evaluate(self, state: TrainState, metrics: Mapping[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_evaluate(state, metrics)

    def on_save(self, state: TrainState, checkpoint_dir: Path) -> None:
        for callback in self.callbacks:
            callback.on_save(state, checkpoint_dir)
