"""``BenchConfig``: the settings one system run receives, identical for all three systems.

The parent process builds it once, writes it as JSON, and every system subprocess reads the
same file; nothing a system does may depend on anything else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

SYSTEM_NAMES = ("llama_lora", "hf_trainer", "trl_sft")
DEVICES = ("cpu", "cuda")
CHECKPOINTING_MODES = ("defaults", "on", "off")


@dataclass
class BenchConfig:
    """Shared settings of every system run of one benchmark."""

    workload: str
    """Workload name (for the record)."""
    model_dir: str
    """The random-init base checkpoint (safetensors + tokenizer) all systems load."""
    records_path: str
    """JSON file of the shared, length-filtered instruction records."""
    max_length: int
    """Longest example, in tokens (no example exceeds it: nothing is truncated)."""
    pack_length: int
    """Packed row length of llama_lora and TRL (one row per optimizer step)."""
    hf_batch_size: int
    """HF Trainer examples per optimizer step (matches the packed rows' real tokens)."""
    trl_pack_length: int
    """TRL's packed row length (its rows are fuller; matches the packed rows' real tokens)."""
    steps: int
    """Measured optimizer steps."""
    warmup_steps: int
    """Optimizer steps trained before the clock starts."""
    log_every: int
    """Loss logging interval in steps (must divide ``warmup_steps + steps``)."""
    device: str = "cpu"
    """``cpu`` or ``cuda``."""
    seed: int = 0
    """Seed of every system (weights of LoRA, dropout, data order)."""
    learning_rate: float = 2e-4
    """Constant learning rate (no schedule warm-up, so all systems step alike)."""
    lora_r: int = 16
    """LoRA rank on every linear layer of the decoder blocks."""
    lora_alpha: float = 32.0
    """LoRA scale numerator (update scaled by alpha / r = 2)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA input."""
    gradient_checkpointing: str = "defaults"
    """Activation recompute: ``defaults`` gives each system its own QLoRA default (every block
    in HF+PEFT's ``prepare_model_for_kbit_training`` and TRL's ``SFTConfig``; llama_lora's
    ``"auto"``, as many blocks as its memory plan needs), ``on`` every block in all three,
    ``off`` none in all three."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (HF's default) in all systems."""
    threads: int | None = None
    """torch intra-op threads of every system process; None keeps torch's default."""

    @property
    def peer_checkpointing(self) -> bool:
        """HF+PEFT's and TRL's setting: every block (their QLoRA default) unless ``off``."""
        return self.gradient_checkpointing != "off"

    @property
    def llama_lora_checkpointing(self) -> bool | str:
        """``prepare_model``'s ``gradient_checkpointing`` for this mode."""
        if self.gradient_checkpointing == "defaults":
            return "auto"
        return self.gradient_checkpointing == "on"

    def __post_init__(self) -> None:
        names = ("max_length", "pack_length", "hf_batch_size", "trl_pack_length", "steps")
        for name in (*names, "warmup_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.log_every < 1 or self.total_steps % self.log_every:
            raise ValueError(
                f"log_every={self.log_every} must divide warmup_steps + steps = {self.total_steps} "
                "so that every system logs its loss at the last step"
            )
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"BenchConfig.threads must be >= 1 or None, got {self.threads}")
        if self.gradient_checkpointing not in CHECKPOINTING_MODES:
            raise ValueError(
                f"gradient_checkpointing must be one of {list(CHECKPOINTING_MODES)}, got "
                f"{self.gradient_checkpointing!r}"
            )
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if min(self.pack_length, self.trl_pack_length) < self.max_length:
            raise ValueError(
                f"packed rows ({self.pack_length}, TRL {self.trl_pack_length}) must hold the "
                f"longest example ({self.max_length} tokens)"
            )

    @property
    def total_steps(self) -> int:
        """Warm-up plus measured optimizer steps."""
        return self.warmup_steps + self.steps

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: Path) -> BenchConfig:
        return cls(**json.loads(Path(path).read_text()))
