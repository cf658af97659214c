"""Train one workload with llama_lora, HF Trainer + PEFT and TRL SFTTrainer, side by side.

    python benchmarks/bench_train.py --workload cpu-small        # the committed measurement
    python benchmarks/bench_train.py --quick                     # 1-2 minute smoke run
    llama-lora bench --workload cpu-small --repeats 5            # same, through the CLI

Prints a table of medians (real tokens/s, seconds per step, tokens per step, padding, peak
memory, losses, fraction of the bf16 matmul ceiling), the loss-agreement check and, last, the
llama_lora/HF and llama_lora/TRL ratios; writes ``results.json`` and ``chart.png`` to
``--output-dir``. See benchmarks/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.config import SYSTEM_NAMES, BenchConfig  # noqa: E402
from benchmarks.workloads import WORKLOADS, get_workload  # noqa: E402

DEFAULT_LOSS_TOLERANCE = 0.02


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's options to ``parser`` (shared with ``llama-lora bench``)."""
    parser.add_argument(
        "--workload",
        default="cpu-small",
        choices=sorted(WORKLOADS),
        help="model shape and data (default: cpu-small)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: the 'quick' workload (tiny model, a few steps)",
    )
    parser.add_argument("--steps", type=int, help="measured optimizer steps (workload default)")
    parser.add_argument("--warmup-steps", type=int, help="untimed steps first (workload default)")
    parser.add_argument("--repeats", type=int, help="alternation rounds A B C (workload default)")
    parser.add_argument(
        "--log-every",
        type=int,
        help="loss logging interval; must divide warmup + steps (workload default)",
    )
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEM_NAMES),
        help=f"comma-separated subset of {','.join(SYSTEM_NAMES)}",
    )
    parser.add_argument("--output-dir", help="where results go (default: bench_results/WORKLOAD)")
    parser.add_argument("--cache-dir", help="base checkpoints (default: $LLAMA_LORA_CACHE/bench)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--gradient-checkpointing",
        default="defaults",
        choices=("defaults", "on", "off"),
        help="activation recompute: each system's own QLoRA default (HF+PEFT and TRL: every "
        "block; llama_lora: 'auto', as many blocks as its memory plan needs), or every block "
        "(on) or none (off) in all three",
    )
    parser.add_argument(
        "--lora-dropout", type=float, default=0.05, help="LoRA dropout of every system (0.05)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads per system process and for the ceiling (default: the workload's: "
        "1 for quick, else torch's)",
    )
    parser.add_argument(
        "--hf-batch-size",
        type=int,
        help="override HF's batch (default: matches packed-row real tokens)",
    )
    parser.add_argument(
        "--loss-tolerance",
        type=float,
        default=DEFAULT_LOSS_TOLERANCE,
        help="relative final-loss agreement required (default: %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per system run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python benchmarks/bench_train.py``."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Prepare, run the systems in alternation, report. Returns 0 when every run trained."""
    from benchmarks import report
    from benchmarks.runner import run_alternating

    workload = get_workload("quick" if args.quick else args.workload)
    systems = _systems(args.systems)
    device = _device(args.device)
    output_dir = Path(args.output_dir or Path("bench_results") / workload.name)
    output_dir.mkdir(parents=True, exist_ok=True)
    _quiet_progress_bars()
    print(f"workload {workload.name}: {workload.description}; device {device}")
    config, plan, model_config = _prepare(args, workload, device, output_dir)
    config_path = output_dir / "bench_config.json"
    config.save(config_path)
    ceiling, flops = _ceiling_and_flops(args, config, plan, model_config)
    print(
        f"data: {plan.examples} examples ({plan.source}), mean {plan.mean_example_tokens:.0f} "
        f"tokens; packed rows of {config.pack_length} hold {plan.mean_packed_row_tokens:.0f}; "
        f"HF batch {config.hf_batch_size}, TRL rows of {config.trl_pack_length}; "
        f"steps {config.warmup_steps} warm-up + {config.steps}"
    )
    print(
        f"bf16 {ceiling['size']}^3 matmul ceiling: {ceiling['gflops']:.1f} GFLOP/s; "
        f"{flops['model_flops_per_token'] / 1e6:.1f} M model FLOPs per token"
    )
    runs = run_alternating(
        systems, args.repeats or workload.repeats, config_path, output_dir, args.timeout
    )
    results = _assemble(args, workload, config, plan, ceiling, flops, runs)
    report.write_json(results, output_dir / "results.json")
    report.write_chart(results, output_dir / "chart.png")
    print()
    print(report.format_table(results))
    print(f"wrote {output_dir / 'results.json'} and {output_dir / 'chart.png'}")
    print(report.format_ratios(results))
    return 0 if all(run["ok"] for group in runs.values() for run in group) else 1


def _quiet_progress_bars() -> None:
    """The parent's data preparation needs no progress bars in the report's output."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def _systems(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SYSTEM_NAMES]
    if unknown or not names:
        raise ValueError(f"--systems {text!r}: unknown {unknown}; choose from {list(SYSTEM_NAMES)}")
    return list(dict.fromkeys(names))


def _device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available (use --device cpu)")
    return requested


def _prepare(args, workload, device: str, output_dir: Path):
    """Write the base checkpoint and the shared records; size the batches."""
    from transformers import AutoConfig

    from benchmarks.checkpoint import ensure_checkpoint
    from benchmarks.examples import plan_data, save_records, select_records
    from benchmarks.workloads import load_records
    from llama_lora.model.presets import cache_root
    from llama_lora.model.tokenizer import load_tokenizer

    cache_dir = Path(args.cache_dir) if args.cache_dir else cache_root() / "bench"
    model_dir = ensure_checkpoint(workload, cache_dir, args.seed)
    tokenizer = load_tokenizer(model_dir)
    records, source = load_records(workload, tokenizer, args.seed)
    selected = select_records(records, tokenizer, workload.max_length)
    records_path = output_dir / "records.json"
    save_records(selected, records_path)
    plan = plan_data(
        selected,
        source,
        len(records),
        tokenizer,
        max_length=workload.max_length,
        pack_length=workload.pack_length,
        seed=args.seed,
    )
    config = BenchConfig(
        workload=workload.name,
        model_dir=str(model_dir),
        records_path=str(records_path.resolve()),
        max_length=workload.max_length,
        pack_length=workload.pack_length,
        hf_batch_size=args.hf_batch_size or plan.hf_batch_size,
        trl_pack_length=plan.trl_pack_length,
        steps=args.steps or workload.steps,
        warmup_steps=args.warmup_steps or workload.warmup_steps,
        log_every=args.log_every or _log_every(workload, args),
        device=device,
        seed=args.seed,
        threads=args.threads or workload.threads,
        gradient_checkpointing=args.gradient_checkpointing,
        lora_dropout=args.lora_dropout,
    )
    return config, plan, AutoConfig.from_pretrained(model_dir)


def _log_every(workload, args) -> int:
    """The workload's interval, or the largest divisor of the run length below it."""
    total = (args.steps or workload.steps) + (args.warmup_steps or workload.warmup_steps)
    return max(d for d in range(1, workload.log_every + 1) if total % d == 0)


def _ceiling_and_flops(args, config: BenchConfig, plan, model_config) -> tuple[dict, dict]:
    import torch

    from benchmarks.measure import matmul_ceiling, training_flops_per_token

    if config.threads is not None:
        torch.set_num_threads(config.threads)
    ceiling = matmul_ceiling(config.device, size=2048, repeats=3 if args.quick else 10)
    flops = training_flops_per_token(
        model_config, config.lora_r, plan.context_tokens, config.gradient_checkpointing == "on"
    )
    return ceiling, flops


def _assemble(args, workload, config, plan, ceiling, flops, runs) -> dict:
    """Everything results.json holds."""
    from dataclasses import asdict

    from benchmarks import report
    from benchmarks.environment import machine, versions

    summary = {name: report.medians(group) for name, group in runs.items()}
    return {
        "schema_version": 1,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "machine": machine(config.device),
        "versions": versions(),
        "workload": asdict(workload),
        "config": {**config.to_dict(), "total_steps": config.total_steps},
        "data": plan.to_dict(),
        "ceiling": ceiling,
        "flops": flops,
        "order": [
            [name, repeat] for repeat in range(len(next(iter(runs.values())))) for name in runs
        ],
        "runs": runs,
        "summary": summary,
        "ceiling_fraction": report.ceiling_fraction(summary, flops, ceiling),
        "loss_check": report.loss_check(summary, args.loss_tolerance),
        "ratios": report.ratios(summary),
    }


if __name__ == "__main__":
    sys.exit(main())
