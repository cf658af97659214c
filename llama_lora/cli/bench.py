"""``llama-lora bench [options]``: run ``benchmarks/bench_train.py`` with the same options.

The benchmark harness lives in the repository's ``benchmarks/`` folder, not in the installed
package (it compares against TRL and HF Trainer, which the library itself never needs). So the
subcommand finds that folder next to the package (an editable install or a source checkout)
and runs its ``main``; an installed wheel without the repository says where to get it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# the checkout this package was imported from: <repo>/llama_lora/cli/bench.py
REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH_SCRIPT = REPO_ROOT / "benchmarks" / "bench_train.py"


def _import_bench():
    """The ``benchmarks.bench_train`` module of the source checkout, or None."""
    if not BENCH_SCRIPT.is_file():
        return None
    if str(REPO_ROOT) not in sys.path:
        sys.path.append(str(REPO_ROOT))  # appended: never shadows installed packages
    from benchmarks import bench_train

    return bench_train


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark llama_lora against HF Trainer+PEFT and TRL",
        description="Train one workload with llama_lora, HF Trainer + PEFT and TRL SFTTrainer "
        "(alternating, each in its own process) and report real tokens/s, peak memory and "
        "losses. Same options as benchmarks/bench_train.py.",
    )
    bench = _import_bench()
    if bench is not None:
        bench.add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    bench = _import_bench()
    if bench is None:
        raise FileNotFoundError(
            f"{BENCH_SCRIPT} not found: `llama-lora bench` runs the benchmark harness of a "
            "source checkout (git clone the repository and `pip install -e .[bench]`)"
        )
    return bench.run(args)
