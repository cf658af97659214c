"""Deterministic, disjoint train/validation/test splits.

Rows are assigned by a seeded permutation of row indices, so the same source and seed always give
the same splits and no row can land in two of them. Splits a ``DatasetDict`` already has are kept
as they are (a benchmark's official test set must stay the test set); only missing ones are
carved out of ``train``.
"""

from __future__ import annotations

import logging

from llama_lora.data.errors import DataError

SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {"valid": "validation", "val": "validation", "dev": "validation"}
logger = logging.getLogger(__name__)


def check_split_sizes(val_size: float, test_size: float) -> None:
    """Raise ``ValueError`` unless both fractions are in [0, 1) and leave rows for training."""
    for name, value in (("val_size", val_size), ("test_size", test_size)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be a fraction in [0, 1), got {value!r}")
    if val_size + test_size >= 1:
        raise ValueError(
            f"val_size + test_size must be < 1 so rows remain for training, got "
            f"{val_size} + {test_size} = {val_size + test_size}"
        )


def split_names(data) -> dict[str, str]:
    """``{canonical split: the split's name in data}`` for a ``DatasetDict`` (aliases resolved).

    Raises:
        DataError: there is no ``train`` split.
    """
    names = {SPLIT_ALIASES.get(name, name): name for name in data}
    ignored = sorted(name for canonical, name in names.items() if canonical not in SPLITS)
    if ignored:
        logger.warning("ignoring split(s) %s: only %s are used", ignored, list(SPLITS))
    if "train" not in names:
        raise DataError(f"the DatasetDict has splits {list(data)}; it needs a 'train' split")
    return {canonical: name for canonical, name in names.items() if canonical in SPLITS}


def make_splits(data, val_size: float, test_size: float, seed: int):
    """Return a ``DatasetDict`` with ``train``, ``validation`` and ``test``.

    Args:
        data: a ``Dataset`` (all three splits are carved from it) or a ``DatasetDict`` (its
            train/validation/test splits are kept; missing ones are carved from its train split,
            sized as fractions of that split).
        val_size: fraction of rows for validation (0 gives an empty split).
        test_size: fraction of rows for test (0 gives an empty split).
        seed: seed of the permutation; the same seed gives the same splits.

    Raises:
        ValueError: bad sizes (see ``check_split_sizes``).
        DataError: too few rows to leave any for training.
    """
    from datasets import Dataset, DatasetDict

    check_split_sizes(val_size, test_size)
    if isinstance(data, Dataset):
        return DatasetDict(carve(data, {"test": test_size, "validation": val_size}, seed))
    present = {canonical: data[name] for canonical, name in split_names(data).items()}
    wanted = {"test": test_size, "validation": val_size}
    missing = {name: size for name, size in wanted.items() if name not in present}
    if missing:
        present.update(carve(present["train"], missing, seed))
    return DatasetDict({name: present[name] for name in SPLITS})


def carve(dataset, sizes: dict[str, float], seed: int) -> dict:
    """Split ``dataset`` into ``train`` plus one split per entry of ``sizes`` (a fraction each).

    A non-zero fraction always gets at least one row, so small data sets still have a
    validation and a test row.
    """
    import numpy as np

    total = len(dataset)
    counts = {
        name: (max(1, round(total * size)) if size > 0 else 0) for name, size in sizes.items()
    }
    if total - sum(counts.values()) < 1:
        raise DataError(
            f"{total} rows are too few for split fractions {sizes}: no row would be left for "
            "training; use more data or smaller val_size/test_size"
        )
    order = np.random.default_rng(seed).permutation(total)
    out, start = {}, 0
    for name, count in counts.items():
        out[name] = dataset.select(order[start : start + count])
        start += count
    out["train"] = dataset.select(order[start:])
    return out
