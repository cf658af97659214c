"""What every example shares: its command line and the before/after fine-tuning flow.

Each example script only describes its task (an ``ExampleSpec``) and calls ``main``; the flow
below is the library's public API used exactly as a user would:

    prepare_model -> build_dataset -> evaluate (before) -> Finetuner.fit -> save_adapter
    -> evaluate (after) -> compare

The output directory then holds everything a run produces: ``adapter/`` (PEFT format, with the
tokenizer), ``best/`` and ``checkpoint-*/`` (from ``Finetuner``), ``runs/`` (TensorBoard),
``loss_curve.png``, ``metrics.jsonl``, ``summary.json``, ``eval_before/`` and ``eval/``
(per-example predictions and scores) and ``eval_before_after.json``.

Not part of the installed package: the scripts run from a checkout (``python examples/...``)
with llama_lora installed (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUANTIZATIONS = ("nf4", "fp4", "int8", "none")

# --smoke: the whole flow in well under a minute on 2 CPU cores (tests run every example so).
SMOKE_TRAINING = {"max_steps": 2, "batch_size": 2, "logging_steps": 1, "progress_bar": False}
SMOKE_EVALUATION = {"num_samples": 4, "batch_size": 4, "max_new_tokens": 8}
SMOKE_VALIDATION_ROWS = 4


@dataclass(frozen=True)
class ExampleSpec:
    """One task's example: what it trains on and its default settings.

    ``max_length`` and ``smoke_max_length`` are in tokens; the ``tiny-llama`` preset has a
    byte-level tokenizer (one token per UTF-8 byte), so they are sized for bytes. A real LLaMA
    tokenizer needs about a quarter as many tokens for the same text.
    """

    name: str
    """Default output directory name under ``runs/``."""
    description: str
    """First line of ``--help``."""
    tasks: tuple[str, ...]
    """``build_dataset`` tasks; the first is the default, more than one adds ``--task``."""
    max_length: int = 512
    smoke_max_length: int | None = None
    """``max_length`` under ``--smoke``; None keeps ``max_length``."""
    data_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra ``build_dataset`` keywords (e.g. translation languages)."""
    training: Mapping[str, Any] = field(default_factory=dict)
    """``TrainingConfig`` fields that differ from the shared defaults below."""
    evaluation: Mapping[str, Any] = field(default_factory=dict)
    """``evaluate`` keywords that differ from the shared defaults below."""


DEFAULT_TRAINING = {
    "num_epochs": 2,
    "batch_size": 8,
    "learning_rate": 1e-3,  # LoRA on the tiny preset; use 2e-4 on a 7B model
    "logging_steps": 5,
}
DEFAULT_EVALUATION = {"num_samples": 32, "batch_size": 8, "max_new_tokens": 64}


def build_parser(spec: ExampleSpec) -> argparse.ArgumentParser:
    """Command line shared by every example; the defaults shown are the spec's."""
    parser = argparse.ArgumentParser(
        description=f"{spec.description} Fine-tunes LoRA/QLoRA adapters, then prints the task "
        "metrics before and after.",
    )
    _add_model_and_data_arguments(parser, spec)
    _add_run_arguments(parser, spec)
    return parser


def _add_model_and_data_arguments(parser: argparse.ArgumentParser, spec: ExampleSpec) -> None:
    group = parser.add_argument_group("model and data")
    group.add_argument(
        "--model",
        default="tiny-llama",
        help="local checkpoint dir, hub id (e.g. meta-llama/Llama-2-7b-hf) or the offline "
        "preset 'tiny-llama' (default)",
    )
    if len(spec.tasks) > 1:
        group.add_argument(
            "--task", choices=spec.tasks, default=spec.tasks[0], help="default %(default)s"
        )
    group.add_argument(
        "--data", default="sample", help="'sample' (bundled, default) or your .jsonl/.csv/..."
    )
    group.add_argument(
        "--columns", default=None, help="map task fields to your columns, e.g. text=review"
    )
    group.add_argument(
        "--quantization", choices=QUANTIZATIONS, default="nf4", help="base weights (default nf4)"
    )
    group.add_argument("--lora-r", type=int, default=16, help="LoRA rank (default 16)")
    group.add_argument("--lora-alpha", type=float, default=32, help="LoRA alpha (default 32)")
    smoke_length = spec.smoke_max_length or spec.max_length
    group.add_argument(
        "--max-length",
        type=int,
        default=None,
        help=f"tokens per example (default {spec.max_length}; {smoke_length} with --smoke)",
    )


def _add_run_arguments(parser: argparse.ArgumentParser, spec: ExampleSpec) -> None:
    training = {**DEFAULT_TRAINING, **spec.training}
    evaluation = {**DEFAULT_EVALUATION, **spec.evaluation}
    group = parser.add_argument_group("training and evaluation")
    group.add_argument(
        "--output-dir", type=Path, default=Path("runs") / spec.name, help="default %(default)s"
    )
    group.add_argument("--epochs", type=int, help=f"default {training['num_epochs']}")
    group.add_argument("--max-steps", type=int, help="optimizer steps; overrides --epochs")
    group.add_argument("--batch-size", type=int, help=f"default {training['batch_size']}")
    group.add_argument("--gradient-accumulation-steps", type=int, help="default 1")
    group.add_argument("--learning-rate", type=float, help=f"default {training['learning_rate']}")
    group.add_argument(
        "--eval-samples",
        type=int,
        help=f"test examples scored (default {evaluation['num_samples']})",
    )
    group.add_argument("--max-new-tokens", type=int, help=f"default {evaluation['max_new_tokens']}")
    group.add_argument("--seed", type=int, default=0, help="default 0")
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue from the newest complete checkpoint in --output-dir (fresh if none)",
    )
    group.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE_TRAINING['max_steps']} steps, {SMOKE_EVALUATION['num_samples']} test "
        "examples: checks the whole flow in well under a minute on a CPU",
    )


def parse_columns(text: str | None) -> dict[str, str] | None:
    """``"text=review,label=stars"`` -> ``{"text": "review", "label": "stars"}``."""
    if not text:
        return None
    mapping = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise SystemExit(f"--columns: {item!r} must look like field=column")
        mapping[key.strip()] = value.strip()
    return mapping


def resolve_settings(spec: ExampleSpec, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Keyword arguments for each library call: spec defaults, then --smoke, then flags."""
    training = {**DEFAULT_TRAINING, **spec.training}
    evaluation = {**DEFAULT_EVALUATION, **spec.evaluation}
    max_length = spec.max_length
    if args.smoke:
        training.update(SMOKE_TRAINING)
        evaluation.update(SMOKE_EVALUATION)
        max_length = spec.smoke_max_length or spec.max_length
    flags = {
        "num_epochs": args.epochs,
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "learning_rate": args.learning_rate,
    }
    training.update({key: value for key, value in flags.items() if value is not None})
    if args.eval_samples is not None:
        evaluation["num_samples"] = args.eval_samples
    if args.max_new_tokens is not None:
        evaluation["max_new_tokens"] = args.max_new_tokens
    training.update(output_dir=args.output_dir, seed=args.seed)
    model = {
        "quantization": None if args.quantization == "none" else args.quantization,
        "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha,
    }
    data = {
        **spec.data_options,
        "max_length": max_length if args.max_length is None else args.max_length,
        "columns": parse_columns(args.columns),
        "seed": args.seed,
    }
    return {"model": model, "data": data, "training": training, "evaluation": evaluation}


def run_example(spec: ExampleSpec, argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fine-tune and evaluate as the command line says; return the before/after metrics."""
    from llama_lora import (
        Finetuner,
        TrainingConfig,
        build_dataset,
        compare,
        evaluate,
        prepare_model,
        save_adapter,
    )

    args = build_parser(spec).parse_args(argv)
    settings = resolve_settings(spec, args)
    task = getattr(args, "task", spec.tasks[0])
    output_dir: Path = args.output_dir

    # 1. A 4-bit NF4 base (by default) with trainable LoRA adapters on every linear layer.
    model, tokenizer = prepare_model(args.model, **settings["model"])
    # 2. Tokenized train/validation/test splits; prompts masked out of the loss.
    data = build_dataset(task, args.data, tokenizer, **settings["data"])
    print(data.stats)
    if args.smoke:  # Finetuner validates on the whole split; keep it tiny too
        rows = min(SMOKE_VALIDATION_ROWS, len(data["validation"]))
        data["validation"] = data["validation"].select(range(rows))
    test = data["test"]
    # 3. The task metrics before training, so the table shows what fine-tuning changed.
    before = evaluate(
        model, tokenizer, test, output_dir=output_dir / "eval_before", **settings["evaluation"]
    )
    # 4. Train: TensorBoard logs, metrics.jsonl, loss_curve.png, checkpoints, best/.
    finetuner = Finetuner(model, tokenizer, TrainingConfig(**settings["training"]))
    result = finetuner.fit(data, resume_from_checkpoint=args.resume)
    save_adapter(model, output_dir / "adapter", tokenizer)
    # 5. The same evaluation after training, and the before/after table.
    after = evaluate(
        model, tokenizer, test, output_dir=output_dir / "eval", **settings["evaluation"]
    )
    print(f"\n{task} on {args.model}: test metrics before and after fine-tuning")
    compare(before, after)
    return finish(output_dir, {"task": task, "model": args.model}, before, after, result)


def finish(output_dir: Path, run: dict, before: dict, after: dict, result) -> dict[str, Any]:
    """Write ``eval_before_after.json``, show one prediction and where the outputs are."""
    report = {
        **run,
        "before": before,
        "after": after,
        "global_step": result.global_step,
        "best_val_loss": result.best_val_loss,
        "train_tokens": result.train_tokens,
        "tokens_per_second": result.tokens_per_second,
        "peak_memory_bytes": result.peak_memory_bytes,
    }
    write_json(output_dir / "eval_before_after.json", report)
    show_prediction(output_dir / "eval" / "predictions.jsonl")
    print(f"\nadapter: {output_dir / 'adapter'}   loss plot: {output_dir / 'loss_curve.png'}")
    print(f"TensorBoard: tensorboard --logdir {output_dir / 'runs'}")
    return report


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    """JSON with non-finite floats written as null (strict JSON has no NaN)."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        return value

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(dict(payload)), indent=2) + "\n", encoding="utf-8")


def show_prediction(path: Path) -> None:
    """Print the first test example's prediction next to its reference."""
    if not path.is_file():
        return
    with open(path, encoding="utf-8") as handle:
        first = json.loads(handle.readline() or "{}")
    if first.get("prediction") is None:
        return
    print("\nfirst test example after fine-tuning")
    print(f"  prompt (end): {(first.get('prompt') or '')[-120:]!r}")
    print(f"  prediction:   {first['prediction'][:200]!r}")
    print(f"  reference:    {(first.get('references') or [''])[0][:200]!r}")


def main(spec: ExampleSpec, argv: Sequence[str] | None = None) -> int:
    """Entry point of every example script."""
    run_example(spec, argv)
    return 0
