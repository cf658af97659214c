"""One module per benchmarked system, each exposing ``run(config, scratch_dir) -> dict``.

Modules are imported lazily by name so that a subprocess loads only its own system's
libraries (TRL's imports are not charged to HF's peak memory, and so on).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from benchmarks.config import SYSTEM_NAMES, BenchConfig


def run_system(name: str, config: BenchConfig, scratch_dir: Path) -> dict:
    """Train ``config``'s workload with system ``name`` and return its measurements.

    Raises:
        ValueError: unknown system (lists the known ones).
    """
    if name not in SYSTEM_NAMES:
        raise ValueError(f"unknown system {name!r}; choose from {list(SYSTEM_NAMES)}")
    module = importlib.import_module(f"benchmarks.systems.{name}")
    return module.run(config, Path(scratch_dir))
