"""A user script run by ``test_multiprocess.py`` under ``accelerate launch`` and ``torchrun``.

Usage: ``python distributed_fit.py OUTPUT_DIR RECORD_DIR [CHECKPOINT]``. Trains for two epochs
with ``Finetuner`` exactly as a user would: a hand-built tiny LoRA model, or, given a
CHECKPOINT directory, QLoRA (NF4) through ``prepare_model`` with its default device map. Writes,
per rank and outside OUTPUT_DIR, what the test checks: the train rows this rank collated (by
key), its final adapter tensors, and every write into OUTPUT_DIR this rank attempted (seen
through a Python audit hook).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

import torch  # noqa: E402

from llama_lora.data.collator import DataCollator  # noqa: E402
from llama_lora.model.presets import build_byte_tokenizer  # noqa: E402
from llama_lora.training import Finetuner, TrainingConfig  # noqa: E402
from tests.training.helpers import adapter_tensors, tiny_lora_model, toy_data  # noqa: E402

TRAIN_ROWS = 16
VALIDATION_ROWS = 6  # not a multiple of 2 ranks x batch 2: accelerate pads the last batch
#: Per-process settings; 2 processes x batch 2 x accumulation 2 = 8 rows per optimizer step.
SETTINGS = dict(
    num_epochs=2,
    batch_size=2,
    gradient_accumulation_steps=2,
    learning_rate=1e-2,
    mixed_precision="no",
    logging_steps=1,
    report_to=(),
)


def watch_writes(output_dir: Path, seen: list[str]) -> None:
    """Record opens-for-writing, mkdirs and renames under ``output_dir`` by this process."""
    root = str(output_dir.resolve())

    def hook(event: str, args: tuple) -> None:
        if event == "open" and args and isinstance(args[0], (str, os.PathLike)):
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else "r"
            writing = any(flag in mode for flag in "wax+")
            if writing and os.path.abspath(args[0]).startswith(root):
                seen.append(f"open {args[0]}")
        elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "shutil.rmtree"):
            if args and str(os.path.abspath(str(args[0]))).startswith(root):
                seen.append(f"{event} {args[0]}")

    sys.addaudithook(hook)


class RecordingCollator(DataCollator):
    """The library's collator, noting which train rows (by key) it batched."""

    def __init__(self, tokenizer, keys_by_ids: dict, seen: list[int]) -> None:
        super().__init__(tokenizer)
        self.keys_by_ids, self.seen = keys_by_ids, seen

    def __call__(self, rows):
        for row in rows:
            key = self.keys_by_ids.get(tuple(row["input_ids"]))
            if key is not None:
                self.seen.append(key)
        return super().__call__(rows)


def build_model(checkpoint: str | None):
    """(model, tokenizer): tiny LoRA by hand, or QLoRA from ``checkpoint`` via prepare_model."""
    if checkpoint is None:
        return tiny_lora_model(), build_byte_tokenizer()
    from llama_lora.model.loading import prepare_model

    return prepare_model(checkpoint, quantization="nf4", lora_dropout=0.0)


def main(output_dir: Path, record_dir: Path, checkpoint: str | None) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ.get("RANK", "0"))
    model, tokenizer = build_model(checkpoint)
    data = toy_data(tokenizer, train=TRAIN_ROWS, validation=VALIDATION_ROWS)
    keys_by_ids = {tuple(ids): key for key, ids in enumerate(data["train"]["input_ids"])}
    seen_rows: list[int] = []
    writes: list[str] = []
    if rank != 0:
        watch_writes(output_dir, writes)
    config = TrainingConfig(output_dir=output_dir, progress_bar=False, **SETTINGS)
    collator = RecordingCollator(tokenizer, keys_by_ids, seen_rows)
    result = Finetuner(model, tokenizer, config, data_collator=collator).fit(data)
    record_dir.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    save_file(adapter_tensors(model), str(record_dir / f"adapter-rank{rank}.safetensors"))
    record = {
        "rank": rank,
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "seen_rows": seen_rows,
        "writes": writes,
        "global_step": result.global_step,
        "train_tokens": result.train_tokens,
        "history": result.history,
        "devices": sorted({str(p.device) for p in model.parameters()}),
    }
    (record_dir / f"rank{rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
