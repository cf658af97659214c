"""What ``build_dataset`` produced: examples, tokens, truncations, drops and padding waste.

Returned on the ``DatasetDict`` as ``.stats`` and logged, so that a user sees at once when, say,
a third of the examples were truncated or packing saves little.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

EFFICIENCY_BATCH_SIZE = 8  # batch size assumed when estimating padding waste of unpacked rows
EFFICIENCY_MULTIPLE = 8  # DataCollator's default pad_to_multiple_of


@dataclass
class SplitStats:
    """Counts for one split.

    Attributes:
        examples: examples kept (before packing).
        rows: rows the trainer sees (packed rows for a packed split, else ``examples``).
        tokens: tokens in the kept examples (special tokens included).
        target_tokens: tokens that carry a label (the loss is computed on these).
        truncated: examples whose prompt field was shortened to fit ``max_length``.
        dropped: examples dropped because the response did not fit ``max_length``.
    """

    examples: int
    rows: int
    tokens: int
    target_tokens: int
    truncated: int
    dropped: int


@dataclass
class DatasetStats:
    """Summary of a built data set; ``print(data.stats)`` shows a table.

    Attributes:
        task: the task name.
        max_length: the token limit per example (and per packed row).
        packing: whether the train split is packed.
        splits: ``{split name: SplitStats}``.
        padding_efficiency: share of real tokens in the train batches when unpacked rows are
            padded (estimated for batches of 8 consecutive rows, padded to a multiple of 8);
            None when packed.
        packing_efficiency: share of real tokens in packed train rows of ``max_length``; None
            when not packed.
    """

    task: str
    max_length: int
    packing: bool
    splits: dict[str, SplitStats] = field(default_factory=dict)
    padding_efficiency: float | None = None
    packing_efficiency: float | None = None

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable form."""
        return asdict(self)

    def __str__(self) -> str:
        header = f"{'split':<11}{'examples':>9}{'rows':>9}{'tokens':>12}{'target':>11}"
        header += f"{'truncated':>11}{'dropped':>9}"
        lines = [
            f"DatasetStats: task={self.task} max_length={self.max_length} "
            f"packing={'on' if self.packing else 'off'}",
            header,
        ]
        for name, split in self.splits.items():
            lines.append(
                f"{name:<11}{split.examples:>9,}{split.rows:>9,}{split.tokens:>12,}"
                f"{split.target_tokens:>11,}{split.truncated:>11,}{split.dropped:>9,}"
            )
        if self.packing_efficiency is not None:
            lines.append(f"packing efficiency (train): {self.packing_efficiency:.1%}")
        if self.padding_efficiency is not None:
            lines.append(
                f"padding efficiency (train, batches of {EFFICIENCY_BATCH_SIZE}): "
                f"{self.padding_efficiency:.1%}"
            )
        return "\n".join(lines)


def token_counts(dataset):
    """(lengths as a numpy array, number of labelled tokens) of a tokenized ``Dataset``.

    Computed with Arrow on batches, so the token lists never become Python lists.
    """
    import numpy as np
    import pyarrow.compute as pc

    lengths, targets = [], 0
    for batch in dataset.with_format("arrow").iter(batch_size=10_000):
        lengths.append(pc.list_value_length(batch["input_ids"]).to_numpy(zero_copy_only=False))
        labels = pc.list_flatten(batch["labels"])
        targets += int(pc.sum(pc.not_equal(labels, -100)).as_py() or 0)
    return (np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)), targets


def padding_efficiency(lengths) -> float | None:
    """Real tokens / padded tokens for consecutive batches of ``EFFICIENCY_BATCH_SIZE`` rows."""
    if len(lengths) == 0:
        return None
    padded = 0
    for start in range(0, len(lengths), EFFICIENCY_BATCH_SIZE):
        batch = lengths[start : start + EFFICIENCY_BATCH_SIZE]
        width = -(-int(batch.max()) // EFFICIENCY_MULTIPLE) * EFFICIENCY_MULTIPLE
        padded += width * len(batch)
    return float(lengths.sum()) / padded
