"""llama_lora: LoRA and 4-bit QLoRA fine-tuning for LLaMA-family models."""
