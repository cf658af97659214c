"""What the two Hugging Face baselines share: loading the NF4 base, the LoRA config, the
``TrainingArguments`` values and the callback that feeds the ``Recorder``.

Written the way the QLoRA recipes in the transformers, PEFT and TRL docs write it, so the
baselines are what a user would actually run, not a strawman.
"""

from __future__ import annotations

from benchmarks.config import BenchConfig
from benchmarks.measure import Recorder


def load_nf4_base(config: BenchConfig):
    """The base model in 4-bit NF4 with double quantization, computing in bf16."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    return AutoModelForCausalLM.from_pretrained(
        config.model_dir,
        quantization_config=quantization,
        dtype=torch.bfloat16,
        device_map={"": config.device if config.device == "cpu" else 0},
    )


def lora_config(config: BenchConfig):
    """LoRA on all linear layers of the blocks (``all-linear`` leaves out ``lm_head``)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules="all-linear",
        bias="none",
        task_type="CAUSAL_LM",
    )


def training_arguments(config: BenchConfig, output_dir: str, batch_size: int) -> dict:
    """Keyword arguments shared by ``TrainingArguments`` and TRL's ``SFTConfig``."""
    return {
        "output_dir": output_dir,
        "max_steps": config.total_steps,
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": 1,
        "learning_rate": config.learning_rate,
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "weight_decay": 0.0,
        "max_grad_norm": config.max_grad_norm,
        # torch's fused AdamW kernel, as llama_lora's "adamw" uses (and HF Trainer's default)
        "optim": "adamw_torch_fused",
        "bf16": True,
        "gradient_checkpointing": config.peer_checkpointing,
        "logging_steps": config.log_every,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": [],
        "seed": config.seed,
        "data_seed": config.seed,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        "use_cpu": config.device == "cpu",
    }


def recorder_callback(recorder: Recorder):
    """A ``TrainerCallback`` stamping each optimizer step and collecting the logged loss."""
    from transformers import TrainerCallback

    class _RecorderCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            recorder.step_end()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                recorder.log_loss(state.global_step, logs["loss"])

    return _RecorderCallback()


def run_trainer(trainer, recorder: Recorder) -> dict:
    """Attach ``recorder`` to ``trainer``'s model, train, and return the recorder's summary."""
    recorder.attach(trainer.model)
    trainer.add_callback(recorder_callback(recorder))
    trainer.train()
    return recorder.summary()
