"""Helpers for the training tests: a tiny LLaMA + LoRA model and a learnable toy dataset.

The toy task maps a two-digit key to a fixed word (``"k=07;v=" -> "cat"``): learnable by a
hidden-64 model in a few dozen steps, with prompt tokens masked out of the loss exactly like
``build_dataset`` rows, and responses of different lengths so token-level normalisation matters.
"""

from __future__ import annotations

import random

import torch

WORDS = ("cat", "horse", "ox", "zebra", "emu", "lion", "wolf", "python")
IGNORE_INDEX = -100


def tiny_lora_model(seed: int = 0, lora_dropout: float = 0.0, rank: int = 8):
    """A hidden-64, 2-layer LLaMA (vocab 320) with LoRA on all linear layers, seeded."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    from llama_lora.model.presets import TinyLlamaSpec, tiny_llama_config

    spec = TinyLlamaSpec(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    config = tiny_llama_config(spec)
    # The default init (std 0.02) leaves a frozen 64-wide lm_head able to move logits by about
    # +-1 only, so nothing is learnable through adapters; a trained checkpoint has larger weights.
    config.initializer_range = 0.2
    torch.manual_seed(seed)
    base = LlamaForCausalLM(config)
    lora = LoraConfig(
        task_type="CAUSAL_LM",
        target_modules="all-linear",
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=lora_dropout,
    )
    return get_peft_model(base, lora)


def toy_rows(tokenizer, count: int, seed: int, offset: int = 0) -> list[dict]:
    """Rows per the data contract: BOS + prompt masked, response + EOS as targets."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        key = offset + index
        prompt = f"k={key:02d};v="
        response = WORDS[key % len(WORDS)] + " " * rng.randint(0, 3)
        prompt_ids = tokenizer(prompt)["input_ids"]
        response_ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        input_ids = prompt_ids + response_ids + [tokenizer.eos_token_id]
        rows.append(
            {
                "input_ids": input_ids,
                "attention_mask": [1] * len(input_ids),
                "labels": [IGNORE_INDEX] * len(prompt_ids) + input_ids[len(prompt_ids) :],
                "prompt": prompt,
                "response": response,
                "references": [response],
            }
        )
    return rows


def toy_data(tokenizer, train: int = 16, validation: int = 8, seed: int = 0):
    """A ``DatasetDict`` with train (keys 0..train-1) and validation (keys after them)."""
    from datasets import Dataset, DatasetDict

    splits = {"train": Dataset.from_list(toy_rows(tokenizer, train, seed))}
    if validation:
        splits["validation"] = Dataset.from_list(
            toy_rows(tokenizer, validation, seed + 1, offset=train)
        )
    return DatasetDict(splits)


def adapter_tensors(model) -> dict[str, torch.Tensor]:
    """Copies of the trainable (LoRA) tensors, by name."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def quiet_config(output_dir, **overrides):
    """A TrainingConfig for tests: fp32, no bar, no TensorBoard unless asked."""
    from llama_lora.training import TrainingConfig

    values = {
        "output_dir": output_dir,
        "num_epochs": 1,
        "batch_size": 4,
        "learning_rate": 1e-2,
        "warmup_ratio": 0.0,
        "mixed_precision": "no",
        "logging_steps": 1,
        "progress_bar": False,
        "report_to": (),
    }
    values.update(overrides)
    return TrainingConfig(**values)
