"""``llama-lora plan``: print the memory breakdown of a run and whether it fits a GPU.

Exit status: 0 when the plan fits ``--gpu``, 1 when it does not, 2 on a bad argument.
"""

from __future__ import annotations

import argparse
import sys

from llama_lora.planning.storage import OPTIMIZER_CHOICES

QUANTIZATION_NAMES = ("nf4", "fp4", "int8", "none")


def register(subparsers) -> None:
    """Add the ``plan`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "plan",
        help="predict peak GPU memory of a LoRA/QLoRA run from the model config (no weights)",
        description=(
            "Predict the peak GPU memory of fine-tuning CONFIG_OR_ID with (Q)LoRA from its "
            "config alone, print the breakdown, and say whether it fits --gpu. Exit status 0 "
            "when it fits, 1 when it does not."
        ),
    )
    parser.add_argument(
        "model",
        metavar="CONFIG_OR_ID",
        help="config.json, a checkpoint directory, a cached hub id, or the preset 'tiny-llama'",
    )
    parser.add_argument("--gpu", default="16GB", help="device memory, e.g. 16GB or 24GiB")
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence")
    parser.add_argument("--batch-size", type=int, default=1, help="sequences per micro-batch")
    parser.add_argument(
        "--quantization", default="nf4", choices=QUANTIZATION_NAMES, help="base weight storage"
    )
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank")
    parser.add_argument(
        "--target-modules",
        nargs="+",
        default=["all-linear"],
        help="'all-linear' or layer names such as q_proj v_proj",
    )
    parser.add_argument(
        "--no-gradient-checkpointing",
        dest="gradient_checkpointing",
        action="store_false",
        help="keep every block's activations instead of recomputing them",
    )
    parser.add_argument("--optimizer", default="adamw", choices=OPTIMIZER_CHOICES)
    parser.add_argument("--compute-dtype", default="bf16", choices=("bf16", "fp16", "fp32"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the plan, the verdict for ``--gpu`` and the largest micro-batch that fits."""
    from llama_lora.planning import model_shape, parse_bytes, plan_memory, suggest

    quantization = None if args.quantization == "none" else args.quantization
    targets = args.target_modules
    target_modules = "all-linear" if targets == ["all-linear"] else targets
    try:
        budget = parse_bytes(args.gpu)
        shape = model_shape(args.model)
        plan = plan_memory(
            shape,
            quantization=quantization,
            lora_r=args.lora_r,
            target_modules=target_modules,
            seq_len=args.seq_len,
            batch_size=args.batch_size,
            gradient_checkpointing=args.gradient_checkpointing,
            optimizer=args.optimizer,
            compute_dtype=args.compute_dtype,
        )
    except ValueError as err:
        print(f"llama-lora plan: error: {err}", file=sys.stderr)
        return 2
    print(plan.table())
    fits = plan.fits(budget)
    margin = (budget - plan.total_bytes) / 2**30
    verdict = (
        f"fits, {margin:.3f} GiB to spare" if fits else f"does NOT fit, {-margin:.3f} GiB over"
    )
    print(f"GPU {args.gpu} ({budget / 2**30:.3f} GiB): {verdict}")
    print(_suggestion_line(suggest, shape, args, quantization, target_modules))
    return 0 if fits else 1


def _suggestion_line(suggest, shape, args, quantization, target_modules) -> str:
    try:
        best = suggest(
            shape,
            args.gpu,
            args.seq_len,
            quantization=quantization,
            lora_r=args.lora_r,
            target_modules=target_modules,
            compute_dtype=args.compute_dtype,
        )
    except ValueError as err:
        return f"suggestion: {err}"
    checkpointing = "on" if best.gradient_checkpointing else "off"
    return (
        f"suggestion: largest micro-batch that fits {args.gpu} at seq {args.seq_len}: "
        f"{best.batch_size} (checkpointing {checkpointing}, {best.optimizer}, "
        f"{best.plan.total_bytes / 2**30:.3f} GiB)"
    )
