"""The ``llama-lora`` command: one subcommand module per job.

Each module in ``llama_lora.cli`` registers its own parser (``register``) and handler (``run``),
so adding a subcommand never edits a dispatch ``if`` chain here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# subcommand modules, in the order ``--help`` lists them
SUBCOMMANDS = ("train", "evaluate", "merge", "verify", "plan", "bench")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llama-lora",
        description="LoRA and 4-bit QLoRA fine-tuning for LLaMA-family models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"llama_lora.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"llama_lora.cli.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``llama-lora`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as err:
        print(f"llama-lora {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
