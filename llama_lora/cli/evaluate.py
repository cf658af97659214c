"""``llama-lora evaluate CONFIG.yaml [--adapter DIR]``: task metrics of a base or tuned model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a model (optionally with an adapter) on a run file's test split",
        description="Build the data of a YAML run file and evaluate the base model named in it, "
        "or the base plus --adapter, printing the task metrics as JSON.",
    )
    parser.add_argument("config", help="YAML run file (its model, data, evaluation sections)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides")
    parser.add_argument("--adapter", help="adapter directory saved by training")
    parser.add_argument("--output-dir", help="write predictions.jsonl and metrics.json here")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from llama_lora.cli.config import load_run_config
    from llama_lora.data import build_dataset
    from llama_lora.evaluation import evaluate
    from llama_lora.model.adapters import load_adapter
    from llama_lora.model.loading import prepare_model
    from llama_lora.model.source import resolve_model_dir
    from llama_lora.model.tokenizer import load_tokenizer

    config = load_run_config(args.config, args.overrides)
    model_args = dict(config.model)
    name = model_args.pop("name")
    if args.adapter:
        keep = {"quantization", "compute_dtype", "device_map", "allow_pickle", "trust_remote_code"}
        options = {k: v for k, v in model_args.items() if k in keep}
        model = load_adapter(name, args.adapter, **options)
        # The adapter's own tokenizer (chat template included) when training saved one.
        saved = Path(args.adapter, "tokenizer_config.json").is_file()
        tokenizer = load_tokenizer(args.adapter if saved else resolve_model_dir(name))
    else:
        model, tokenizer = prepare_model(name, **model_args)
    data_args = dict(config.data)
    data = build_dataset(
        data_args.pop("task"), data_args.pop("source", "sample"), tokenizer, **data_args
    )
    eval_args = {k: v for k, v in config.evaluation.items() if k != "before"}
    split = data[eval_args.pop("split", "test")]
    scores = evaluate(model, tokenizer, split, output_dir=args.output_dir, **eval_args)
    print(json.dumps(scores, indent=2))
    return 0
