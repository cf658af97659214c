"""Run the systems in alternation (A B C A B C ...), each in its own subprocess.

Alternating rounds means slow drift of a shared machine (thermal throttling, a neighbour's job)
lands on every system alike instead of on whichever ran last; a fresh process per run keeps
each system's peak memory its own and stops one system's caches from warming another's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.workloads import REPO_ROOT


def child_environment() -> dict[str, str]:
    """The parent's environment, with the repo importable and the hub offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def run_once(system: str, repeat: int, config_path: Path, run_dir: Path, timeout: float) -> dict:
    """Run ``system`` once in a subprocess; its output goes to ``run_dir/logs``.

    Returns:
        The worker's measurements plus ``repeat``, ``log`` and ``wall_seconds``; on a crash or
        timeout ``{"ok": False, "error": ...}`` (the log holds the details).
    """
    name = f"{system}-r{repeat}"
    log_path = run_dir / "logs" / f"{name}.log"
    result_path = run_dir / "raw" / f"{name}.json"
    scratch = run_dir / "scratch" / name
    for path in (log_path.parent, result_path.parent, scratch):
        path.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "benchmarks.worker", system, str(config_path)]
    command += [str(result_path), str(scratch)]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=child_environment(),
                cwd=REPO_ROOT,
                timeout=timeout,
                check=False,
            )
            error = None
        except subprocess.TimeoutExpired:
            error = f"timed out after {timeout:.0f} s"
    if result_path.is_file() and error is None:
        result = json.loads(result_path.read_text())
    else:
        result = {"system": system, "ok": False, "error": error or "the worker wrote no result"}
    result.update(repeat=repeat, log=str(log_path), wall_seconds=time.perf_counter() - started)
    shutil.rmtree(scratch, ignore_errors=True)  # checkpoints written after the clock stopped
    return result


def run_alternating(
    systems: list[str], repeats: int, config_path: Path, run_dir: Path, timeout: float, echo=print
) -> dict[str, list[dict]]:
    """Rounds of every system in order; returns ``{system: [result per repeat]}``."""
    runs: dict[str, list[dict]] = {system: [] for system in systems}
    for repeat in range(repeats):
        for system in systems:
            echo(f"[round {repeat + 1}/{repeats}] {system} ...", end=" ", flush=True)
            result = run_once(system, repeat, config_path, run_dir, timeout)
            runs[system].append(result)
            if result["ok"]:
                loss = result.get("final_loss")
                echo(
                    f"{result['real_tokens_per_second']:.0f} real tokens/s, final loss "
                    f"{loss if loss is None else round(loss, 4)} ({result['wall_seconds']:.0f} s)"
                )
            else:
                echo(f"FAILED: {result['error']} (log: {result['log']})")
    return runs
