"""Baseline (b): HF ``Trainer`` + PEFT, QLoRA as its docs write it.

NF4 base via ``BitsAndBytesConfig`` (double quant, bf16 compute), then
``prepare_model_for_kbit_training`` (which upcasts the non-quantized weights to fp32 and enables
gradient checkpointing) and ``get_peft_model``; ``DataCollatorForSeq2Seq`` pads each batch to
its longest example; ``bf16=True``. The examples are the shared unpacked ones (llama_lora's
tokenization, prompt tokens labelled -100), ``hf_batch_size`` of them per optimizer step.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.config import BenchConfig
from benchmarks.examples import build_unpacked, read_records
from benchmarks.measure import Recorder
from benchmarks.systems.hf_common import load_nf4_base, lora_config, run_trainer, training_arguments


def run(config: BenchConfig, scratch_dir: Path) -> dict:
    """Train with ``transformers.Trainer`` and return the ``Recorder`` summary."""
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(config.model_dir)
    if tokenizer.pad_token is None:
        # the usual user idiom; harmless here: padding is masked and labelled -100
        tokenizer.pad_token = tokenizer.eos_token
    records = read_records(config.records_path)
    train = build_unpacked(records, tokenizer, config.max_length, config.seed)
    train = train.select_columns(["input_ids", "attention_mask", "labels"])

    model = load_nf4_base(config)
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=config.peer_checkpointing
    )
    model = get_peft_model(model, lora_config(config))
    args = TrainingArguments(**training_arguments(config, str(scratch_dir), config.hf_batch_size))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=DataCollatorForSeq2Seq(tokenizer, padding="longest", label_pad_token_id=-100),
    )
    recorder = Recorder(config.warmup_steps, config.total_steps, config.device)
    measurements = run_trainer(trainer, recorder)
    measurements["batch_size"] = config.hf_batch_size
    measurements["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return measurements
