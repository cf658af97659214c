"""System (a): llama_lora, through its public path and nothing else.

``prepare_model`` (NF4 + LoRA) -> ``build_dataset("instruction", records, packing=True,
max_length=pack_length)`` -> ``Finetuner(...).fit``; the benchmark only listens through a
``Callback`` and a forward pre-hook, so whatever the library does to go faster is measured.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.config import BenchConfig
from benchmarks.examples import build_packed, read_records
from benchmarks.measure import Recorder


def run(config: BenchConfig, scratch_dir: Path) -> dict:
    """Train with ``llama_lora.Finetuner`` and return the ``Recorder`` summary."""
    from llama_lora.model.loading import prepare_model
    from llama_lora.training import Finetuner, TrainingConfig

    model, tokenizer = prepare_model(
        config.model_dir,
        quantization="nf4",
        lora_r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        compute_dtype="bf16",
        gradient_checkpointing=config.llama_lora_checkpointing,
    )
    records = read_records(config.records_path)
    train = build_packed(records, tokenizer, config.pack_length, config.seed)
    training = TrainingConfig(
        output_dir=scratch_dir,
        max_steps=config.total_steps,
        learning_rate=config.learning_rate,
        batch_size=1,
        gradient_accumulation_steps=1,
        lr_scheduler="constant",
        warmup_ratio=0.0,
        weight_decay=0.0,
        max_grad_norm=config.max_grad_norm,
        optimizer="adamw",
        mixed_precision="bf16",
        logging_steps=config.log_every,
        save_steps=config.total_steps + 1,  # only the final checkpoint, after the clock stops
        report_to=(),
        seed=config.seed,
        progress_bar=False,
    )
    recorder = Recorder(
        config.warmup_steps, config.total_steps, config.device, tokenizer.pad_token_id
    )
    recorder.attach(model)
    callback = _callback(recorder, model)
    Finetuner(model, tokenizer, training, callbacks=[callback]).fit({"train": train})
    measurements = recorder.summary()
    measurements["recomputed_blocks"] = callback.recomputed_blocks
    measurements["batch_size"] = 1
    measurements["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return measurements


def _callback(recorder: Recorder, model):
    """A ``llama_lora`` ``Callback`` feeding ``recorder``; it also notes how many blocks the
    run recomputed (``gradient_checkpointing="auto"`` decides inside ``fit``)."""
    from llama_lora.model.recompute import checkpointing_layers
    from llama_lora.training import Callback

    class _RecorderCallback(Callback):
        recomputed_blocks: int | None = None

        def on_step_end(self, state, metrics):
            if self.recomputed_blocks is None:
                blocks = checkpointing_layers(model.get_base_model())
                self.recomputed_blocks = sum(block.gradient_checkpointing for block in blocks)
            recorder.step_end()
            if metrics and metrics.get("train_loss") is not None:
                recorder.log_loss(state.step, metrics["train_loss"])

    return _RecorderCallback()
