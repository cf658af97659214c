"""``llama-lora train CONFIG.yaml [section.key=value ...]``: prepare, data, fit, evaluate."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="fine-tune from a YAML run file",
        description="Run prepare_model -> build_dataset -> Finetuner.fit -> evaluate from one "
        "YAML file (sections model, data, training, evaluation; keys are the keyword "
        "arguments of those functions). Overrides like training.num_epochs=2 follow it.",
    )
    parser.add_argument("config", help="YAML run file, e.g. examples/configs/quickstart.yaml")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="resume from the newest complete checkpoint in training.output_dir",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llama_lora.cli.config import load_run_config

    config = load_run_config(args.config, args.overrides)
    summary = train_and_evaluate(config, resume=args.resume)
    if not summary["before"]:  # compare() already printed the before/after table
        print(summary["table"])
    return 0


def train_and_evaluate(config, *, resume: bool = False) -> dict:
    """Run the four stages of a ``RunConfig``; return before/after metrics and the table."""
    from llama_lora.data import build_dataset
    from llama_lora.evaluation import compare, evaluate
    from llama_lora.model.adapters import save_adapter
    from llama_lora.model.loading import prepare_model
    from llama_lora.training import Finetuner, TrainingConfig

    model_args = dict(config.model)
    model, tokenizer = prepare_model(model_args.pop("name"), **model_args)
    data_args = dict(config.data)
    data = build_dataset(
        data_args.pop("task"), data_args.pop("source", "sample"), tokenizer, **data_args
    )
    eval_args = dict(config.evaluation)
    before_enabled = eval_args.pop("before", True)
    split = data[eval_args.pop("split", "test")]
    before = evaluate(model, tokenizer, split, **eval_args) if before_enabled else {}
    training = TrainingConfig(**config.training)
    result = Finetuner(model, tokenizer, training).fit(data, resume_from_checkpoint=resume or None)
    output_dir = Path(training.output_dir)
    main_process = int(os.environ.get("RANK", "0")) == 0
    after = evaluate(
        model,
        tokenizer,
        split,
        output_dir=output_dir / "eval" if main_process else None,
        **eval_args,
    )
    table = compare(before, after) if before else json.dumps(after, indent=2)
    if main_process:
        # A clean adapter directory (PEFT format + tokenizer), beside the resumable checkpoints.
        save_adapter(model, output_dir / "adapter", tokenizer)
        (output_dir / "eval_before_after.json").write_text(
            json.dumps({"before": before, "after": after}, indent=2) + "\n"
        )
    return {"before": before, "after": after, "table": table, "result": result}
