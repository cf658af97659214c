"""``llama-lora merge ADAPTER OUT``: merge an adapter into its base and export safetensors."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge a LoRA adapter into its base model and export it",
        description="Load the base named in the adapter's adapter_config.json (or --base), "
        "unquantized, apply the adapter, and write a standalone model that "
        "AutoModelForCausalLM.from_pretrained loads.",
    )
    parser.add_argument("adapter", help="adapter directory (adapter_config.json + weights)")
    parser.add_argument("output", help="output directory for the merged model")
    parser.add_argument("--base", help="base model path, hub id or preset (default: from config)")
    parser.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from llama_lora.model.adapters import load_adapter, merge_and_export
    from llama_lora.model.source import resolve_model_dir
    from llama_lora.model.tokenizer import load_tokenizer

    config_file = Path(args.adapter) / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{args.adapter}: no adapter_config.json (not a PEFT adapter)")
    base = resolve_model_dir(
        args.base or json.loads(config_file.read_text())["base_model_name_or_path"]
    )
    # Merging into an unquantized base: a 4-bit base would re-quantize the update away.
    model = load_adapter(base, args.adapter, quantization=None, compute_dtype=args.dtype)
    has_tokenizer = (Path(args.adapter) / "tokenizer_config.json").is_file()
    tokenizer = load_tokenizer(args.adapter if has_tokenizer else base)
    out = merge_and_export(model, args.output, tokenizer=tokenizer, dtype=args.dtype)
    print(f"merged model written to {out}")
    return 0
