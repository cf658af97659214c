"""Subprocess entry: run one system once and write its measurements as JSON.

``python -m benchmarks.worker SYSTEM CONFIG_JSON RESULT_JSON SCRATCH_DIR``. Each system runs in
a fresh process so its peak RSS (``ru_maxrss``) and CUDA peaks are its own.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    system, config_path, result_path, scratch_dir = (argv if argv is not None else sys.argv[1:])[:4]
    from benchmarks.config import BenchConfig
    from benchmarks.measure import memory_report
    from benchmarks.systems import run_system

    config = BenchConfig.load(Path(config_path))
    if config.threads is not None:
        import torch

        torch.set_num_threads(config.threads)
    started = time.perf_counter()
    result: dict = {"system": system, "ok": False}
    try:
        result.update(run_system(system, config, Path(scratch_dir)))
        result["ok"] = True
    except Exception as error:  # reported in the results, not hidden: the parent fails the run
        result["error"] = f"{type(error).__name__}: {error}"
        result["traceback"] = traceback.format_exc()
        traceback.print_exc()  # into the run's log too
    result["process_seconds"] = time.perf_counter() - started
    result.update(memory_report(config.device))
    Path(result_path).write_text(json.dumps(result, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
