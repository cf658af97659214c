"""Switch one llama_lora speed lever off and measure real tokens/s on the cpu-small data.

    python benchmarks/levers.py                   # everything on
    python benchmarks/levers.py --no-fused-loss   # full-logit loss instead of target-only chunks
    python benchmarks/levers.py --no-fused-lora   # peft's LoRA forward, not one node per layer
    python benchmarks/levers.py --block-mask      # SDPA with a (B, 1, T, T) block mask per row
    python benchmarks/levers.py --profile         # plus torch.profiler tables (by op, by shape)
    python benchmarks/levers.py --flash-attention-only  # SDPA's flash kernel for short examples too
    python benchmarks/levers.py --fp32-branches   # norms hand fp32 to their layers (as before)
    python benchmarks/levers.py --peft-input-casts  # peft casts each adapter input to fp32
    python benchmarks/levers.py --lora-dropout 0.05  # llama_lora's defaults: dropout, no recompute
    python benchmarks/levers.py --qlora-defaults  # recompute every block, LoRA dropout 0.05
    python benchmarks/levers.py --qlora-defaults --torch-dropout  # peft's nn.Dropout masks

Runs ``prepare_model`` + ``build_dataset(packing=True)`` + ``Finetuner.fit`` exactly as the
benchmark's llama_lora system does (no recompute, no LoRA dropout: the speed settings), and
reports tokens/s over the steps after the first two and the median step time. One run, so
expect +-10%: compare levers over several alternated runs.
``--qlora-defaults`` switches to the peers' QLoRA defaults instead (every block recomputed, LoRA
dropout 0.05), as in the benchmark's matched table; ``--lora-dropout`` sets the dropout alone
(``--lora-dropout 0.05`` is llama_lora's default run on this data: nothing recomputed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


LEVER_FLAGS = (
    "no_fused_loss",
    "no_fused_lora",
    "block_mask",
    "torch_dropout",
    "flash_attention_only",
    "fp32_branches",
    "peft_input_casts",
    "qlora_defaults",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--no-fused-loss", action="store_true")
    parser.add_argument("--no-fused-lora", action="store_true")
    parser.add_argument("--block-mask", action="store_true")
    parser.add_argument("--torch-dropout", action="store_true")
    parser.add_argument("--flash-attention-only", action="store_true")
    parser.add_argument("--fp32-branches", action="store_true")
    parser.add_argument("--peft-input-casts", action="store_true")
    parser.add_argument("--qlora-defaults", action="store_true")
    parser.add_argument("--lora-dropout", type=float, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-rows", type=int, default=25, help="rows of each profile table")
    parser.add_argument(
        "--cache-dir", default=str(Path(tempfile.gettempdir()) / "llama_lora_bench")
    )
    args = parser.parse_args(argv)

    import torch

    from benchmarks.checkpoint import ensure_checkpoint
    from benchmarks.examples import build_packed, select_records
    from benchmarks.workloads import ALPACA_PATH, get_workload
    from llama_lora.data.collator import DataCollator
    from llama_lora.model.dropout import GapDropout
    from llama_lora.model.loading import prepare_model
    from llama_lora.training import Callback, Finetuner, TrainingConfig

    if args.flash_attention_only:
        import llama_lora.model.packed_attention as packed_attention

        packed_attention.CPU_EAGER_MAX_LENGTH = 0
    if args.fp32_branches:  # no output casts: fp32 norm outputs, bf16 embeddings, as before
        import llama_lora.model.loading as loading

        loading._cast_output = lambda dtype: lambda module, args, output: output

    if args.peft_input_casts:  # keep peft's fp32 cast of every adapter input during fit
        import contextlib

        import llama_lora.training.finetuner as finetuner

        finetuner._autocast_adapter_inputs = lambda model: contextlib.nullcontext()
    workload = get_workload("cpu-small")
    checkpoint = ensure_checkpoint(workload, Path(args.cache_dir))
    model, tokenizer = prepare_model(
        checkpoint,
        quantization="nf4",
        compute_dtype="bf16",
        gradient_checkpointing=args.qlora_defaults,
        lora_dropout=args.lora_dropout
        if args.lora_dropout is not None
        else (0.05 if args.qlora_defaults else 0.0),
    )
    if args.torch_dropout:  # peft's own dropout modules back in place of GapDropout
        for module in model.modules():
            if isinstance(module, GapDropout):
                module.__class__ = torch.nn.Dropout
    records = json.loads(ALPACA_PATH.read_text())[:300]
    train = build_packed(
        select_records(records, tokenizer, workload.max_length), tokenizer, workload.pack_length, 0
    )
    step_ends: list[float] = []

    class StepClock(Callback):
        def on_step_end(self, state, metrics):
            step_ends.append(time.perf_counter())

    config = TrainingConfig(
        output_dir=tempfile.mkdtemp(),
        max_steps=args.steps,
        batch_size=1,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        mixed_precision="bf16",
        logging_steps=args.steps,
        save_steps=args.steps + 1,
        report_to=(),
        progress_bar=False,
        fused_loss=not args.no_fused_loss,
        fused_lora=not args.no_fused_lora,
    )
    collator = DataCollator(tokenizer, attn_implementation="sdpa") if args.block_mask else None
    finetuner = Finetuner(model, tokenizer, config, callbacks=[StepClock()], data_collator=collator)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            result = finetuner.fit({"train": train})
        table = {"sort_by": "self_cpu_time_total", "row_limit": args.profile_rows}
        print(prof.key_averages().table(**table))
        by_shape = prof.key_averages(group_by_input_shape=True)
        print(by_shape.table(**table, max_shapes_column_width=90))
    else:
        result = finetuner.fit({"train": train})
    tokens_per_row = result.train_tokens / args.steps
    measured = step_ends[-1] - step_ends[1]
    steps = zip(step_ends[1:-1], step_ends[2:], strict=True)
    median_step = statistics.median(end - start for start, end in steps)
    switched = [flag for flag in LEVER_FLAGS if getattr(args, flag)]
    print(
        f"{' '.join(switched) or 'all levers on'}: "
        f"{tokens_per_row * (args.steps - 2) / measured:.0f} real tokens/s "
        f"(steps 3-{args.steps}, {tokens_per_row:.0f} real tokens per step; "
        f"median step {median_step:.3f} s)"
    )


if __name__ == "__main__":
    main()
