"""Progress bar, TensorBoard scalars, ``metrics.jsonl``, the loss plot and ``summary.json``.

All sinks live on the main process only; other ranks get a ``Monitor`` whose methods do nothing,
so the loop never branches on the rank to log.
"""

from __future__ import annotations

import json
import math
import resource
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
LOSS_PLOT_FILE = "loss_curve.png"
TENSORBOARD_DIR = "runs"

# Record key -> TensorBoard tag. Explicit, so tags stay stable if records grow new keys.
TENSORBOARD_TAGS = {
    "train_loss": "train/loss",
    "learning_rate": "train/learning_rate",
    "grad_norm": "train/grad_norm",
    "tokens_per_second": "train/tokens_per_second",
    "peak_memory_bytes": "train/peak_memory_bytes",
    "nonfinite_steps": "train/nonfinite_steps",
    "val_loss": "val/loss",
    "val_perplexity": "val/perplexity",
}


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: allocated accelerator memory on CUDA, else peak RSS.

    On CPU the tensors live in ordinary process memory, so the resident-set high-water mark is
    the honest number (it includes the Python runtime, as a user's ``top`` would).
    """
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


class Monitor:
    """Writes every logged record to the configured sinks (main process only).

    Args:
        output_dir: Run directory.
        enabled: False on non-main ranks: every method becomes a no-op.
        report_to: ``("tensorboard",)`` or ``()``.
        progress_bar: Show a tqdm bar.
        total_steps: Planned optimizer steps (the bar's total).
        history: Records restored from a checkpoint; ``metrics.jsonl`` is rewritten from them so
            a resumed run does not keep lines logged after its checkpoint.
    """

    def __init__(
        self,
        output_dir: Path,
        *,
        enabled: bool,
        report_to: Sequence[str],
        progress_bar: bool,
        total_steps: int,
        history: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self.output_dir = Path(output_dir)
        self.enabled = enabled
        self._bar = None
        self._writer = None
        if not enabled:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        initial_step = int(history[-1]["step"]) if history else 0
        with open(self.output_dir / METRICS_FILE, "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(dict(record)) + "\n" for record in history)
        if "tensorboard" in report_to:
            # purge_step drops events a killed run logged after the checkpoint we resume from.
            self._writer = tensorboard_writer(
                self.output_dir / TENSORBOARD_DIR, purge_step=initial_step + 1 if history else None
            )
        if progress_bar:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total_steps, initial=initial_step, desc="training", unit="step")

    def advance(self, steps: int = 1) -> None:
        """Move the progress bar (cheap: no device synchronisation)."""
        if self._bar is not None:
            self._bar.update(steps)

    def log(self, record: Mapping[str, Any]) -> None:
        """Append ``record`` to ``metrics.jsonl``, TensorBoard and the bar's postfix."""
        if not self.enabled:
            return
        with open(self.output_dir / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(dict(record)) + "\n")
        if self._writer is not None:
            for key, tag in TENSORBOARD_TAGS.items():
                if key in record and record[key] is not None:
                    self._writer.add_scalar(tag, record[key], global_step=record["step"])
        if self._bar is not None:
            self._bar.set_postfix(_postfix(record), refresh=False)

    def message(self, text: str) -> None:
        """Print a line without breaking the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, file=sys.stderr)

    def close(
        self, summary: Mapping[str, Any] | None, history: Sequence[Mapping[str, Any]]
    ) -> None:
        """Close the bar and the TensorBoard writer; write ``summary.json`` and the loss plot
        unless ``summary`` is None (a run that failed)."""
        if self._bar is not None:
            self._bar.close()
        if self._writer is not None:
            self._writer.close()
        if not self.enabled or summary is None:
            return
        (self.output_dir / SUMMARY_FILE).write_text(json.dumps(dict(summary), indent=2) + "\n")
        plot_loss_curve(history, self.output_dir / LOSS_PLOT_FILE)


def tensorboard_writer(log_dir: Path, purge_step: int | None = None):
    """A ``torch.utils.tensorboard.SummaryWriter`` that does not import TensorFlow.

    When TensorFlow is installed, tensorboard imports all of it (about 7 s and 0.5 GB of RSS
    here) merely to write event files. Its documented switch, a ``tensorboard.compat.notf``
    module, selects the bundled pure-Python stub instead; set it unless TensorFlow is already
    loaded (then using it costs nothing).
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def _postfix(record: Mapping[str, Any]) -> dict[str, str]:
    shown = {"train_loss": "loss", "learning_rate": "lr", "tokens_per_second": "tok/s"}
    shown |= {"val_loss": "val_loss"}
    # A value is None when its interval had nothing to average (e.g. every step non-finite).
    return {
        label: f"{record[key]:.4g}" for key, label in shown.items() if record.get(key) is not None
    }


def plot_loss_curve(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Save train and validation loss against step as a PNG.

    matplotlib is imported here, with the non-interactive Agg backend, so importing the library
    never needs a display or pays matplotlib's import time.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for key, label, style in (("train_loss", "train", "-"), ("val_loss", "validation", "o-")):
        points = [(r["step"], r[key]) for r in history if key in r and _finite(r[key])]
        if points:
            steps, values = zip(*points, strict=True)
            axes.plot(steps, values, style, label=label)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss (nats / target token)")
    axes.set_title("loss curve")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
