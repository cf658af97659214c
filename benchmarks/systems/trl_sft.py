"""Baseline (c): TRL ``SFTTrainer`` with ``packing=True``, QLoRA as TRL's docs write it.

The NF4 base is loaded with ``BitsAndBytesConfig`` and handed to ``SFTTrainer`` together with a
``LoraConfig``; TRL attaches the adapters itself (casting them to bf16 for a quantized base, its
QLoRA default) and packs with its default best-fit-decreasing strategy into padding-free rows of
``trl_pack_length`` tokens (see ``examples.py``: the same real tokens as one llama_lora row),
one row per optimizer step like llama_lora. The data is given as a TRL
user gives instruction data: prompt/completion text (so the loss is on the completion only).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.config import BenchConfig
from benchmarks.examples import build_unpacked, read_records
from benchmarks.measure import Recorder
from benchmarks.systems.hf_common import load_nf4_base, lora_config, run_trainer, training_arguments


def run(config: BenchConfig, scratch_dir: Path) -> dict:
    """Train with ``trl.SFTTrainer`` and return the ``Recorder`` summary."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(config.model_dir)
    records = read_records(config.records_path)
    examples = build_unpacked(records, tokenizer, config.max_length, config.seed)
    train = Dataset.from_dict({"prompt": examples["prompt"], "completion": examples["response"]})

    model = load_nf4_base(config)
    args = SFTConfig(
        **training_arguments(config, str(scratch_dir), batch_size=1),
        packing=True,
        max_length=config.trl_pack_length,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=lora_config(config),
    )
    recorder = Recorder(config.warmup_steps, config.total_steps, config.device)
    measurements = run_trainer(trainer, recorder)
    measurements["batch_size"] = 1
    measurements["trainable_params"] = sum(
        p.numel() for p in trainer.model.parameters() if p.requires_grad
    )
    return measurements
