"""Named workloads: the model shape, the data and the default run length of a benchmark.

A workload fixes everything that must be identical for the three systems: the LLaMA shape of
the random-init base model, the instruction records, the longest example (``max_length``) and
the packed row length (``pack_length``). Records come from the real Alpaca file when it is
present, else from a generator with Alpaca's token-length distribution.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = REPO_ROOT.parent / "shared"
ALPACA_PATH = SHARED_DIR / "datasets" / "alpaca-5k.json"
LLAMA2_TOKENIZER_DIR = SHARED_DIR / "assets" / "llama-2-tokenizer"

# Alpaca (first 2,000 records, LLaMA-2 tokenizer): log-normal fits of each field's token count
# (mean and std of the log), and the share of records with a non-empty ``input``.
ALPACA_LENGTHS = {"instruction": (2.46, 0.32), "input": (2.30, 0.93), "output": (3.49, 1.23)}
ALPACA_INPUT_SHARE = 0.44
_LONGEST_FIELD = 600  # tokens; the real file's longest output is about 470


@dataclass(frozen=True)
class Workload:
    """One benchmark workload.

    Example:
        >>> get_workload("cpu-small").pack_length
        768
    """

    name: str
    """Name given to ``--workload``."""
    description: str
    """One line for the report."""
    hidden_size: int
    """Model width."""
    num_layers: int
    """Decoder blocks."""
    num_heads: int
    """Attention heads."""
    num_kv_heads: int
    """Key/value heads (grouped-query attention when fewer than ``num_heads``)."""
    intermediate_size: int
    """SwiGLU width."""
    vocab_size: int | None
    """Vocabulary rows; None takes the tokenizer's size (rounded up to a multiple of 64)."""
    max_position_embeddings: int
    """RoPE context of the config (at least ``pack_length``)."""
    max_length: int
    """Longest example in tokens (BOS and EOS included); longer records are left out."""
    pack_length: int
    """Packed row length for llama_lora and TRL (batch 1 row per optimizer step)."""
    num_records: int
    """Records read from the data file (or generated)."""
    steps: int
    """Default measured optimizer steps (after warm-up)."""
    warmup_steps: int
    """Default warm-up steps, trained but left out of the timing."""
    repeats: int
    """Default alternation rounds (A B C per round)."""
    log_every: int
    """Loss logging interval; the final loss is the mean over the last interval."""
    init_device: str = "cpu"
    """Where the random weights are drawn before they are saved ("cuda" for 7B)."""
    threads: int | None = None
    """Default torch threads per process; None keeps torch's default (all cores)."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"Workload.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"workload {self.name!r}: hidden_size {self.hidden_size} must divide into "
                f"{self.num_heads} heads, and those into {self.num_kv_heads} key/value groups"
            )
        if self.pack_length < self.max_length or self.max_position_embeddings < self.pack_length:
            raise ValueError(
                f"workload {self.name!r}: need max_length ({self.max_length}) <= pack_length "
                f"({self.pack_length}) <= max_position_embeddings ({self.max_position_embeddings})"
            )


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            name="cpu-small",
            description="LLaMA shape, 58M params (h512, 8 layers), Alpaca 2k, NF4 + LoRA r16",
            hidden_size=512,
            num_layers=8,
            num_heads=8,
            num_kv_heads=8,
            intermediate_size=1376,
            vocab_size=32000,
            max_position_embeddings=2048,
            max_length=512,
            pack_length=768,
            num_records=2000,
            steps=15,
            warmup_steps=3,
            repeats=3,
            log_every=3,
        ),
        Workload(
            name="llama2-7b",
            description="LLaMA-2-7B shapes (random init), Alpaca 5k, seq 2048, NF4 + LoRA r16",
            hidden_size=4096,
            num_layers=32,
            num_heads=32,
            num_kv_heads=32,
            intermediate_size=11008,
            vocab_size=32000,
            max_position_embeddings=4096,
            max_length=2048,
            pack_length=2048,
            num_records=5000,
            steps=15,
            warmup_steps=3,
            repeats=2,
            log_every=3,
            init_device="cuda",
        ),
        Workload(
            name="quick",
            description="smoke run: tiny LLaMA (h128, 2 layers), 160 records, a few steps",
            hidden_size=128,
            num_layers=2,
            num_heads=4,
            num_kv_heads=4,
            intermediate_size=384,
            vocab_size=None,
            max_position_embeddings=1024,
            max_length=256,
            pack_length=512,
            num_records=160,
            steps=3,
            warmup_steps=1,
            repeats=1,
            log_every=2,
            threads=1,  # tiny matmuls: thread synchronisation would cost more than it saves
        ),
    )
}


def get_workload(name: str) -> Workload:
    """The workload called ``name``.

    Raises:
        ValueError: unknown name (lists the known ones).
    """
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; choose one of {sorted(WORKLOADS)}")
    return WORKLOADS[name]


def load_records(workload: Workload, tokenizer, seed: int = 0) -> tuple[list[dict], str]:
    """The workload's instruction records and where they came from.

    Returns:
        ``(records, source)``: ``{instruction, input, output}`` dicts, and ``"alpaca-5k"`` or
        ``"generated"``.
    """
    if ALPACA_PATH.is_file():
        records = json.loads(ALPACA_PATH.read_text(encoding="utf-8"))[: workload.num_records]
        return [{k: r.get(k) or "" for k in ("instruction", "input", "output")} for r in records], (
            "alpaca-5k"
        )
    return generate_records(workload.num_records, tokenizer, seed), "generated"


def generate_records(count: int, tokenizer, seed: int = 0) -> list[dict]:
    """Synthetic instruction records whose token counts follow Alpaca's (``ALPACA_LENGTHS``).

    Lengths are drawn in tokens of ``tokenizer`` (so a byte tokenizer gets byte-length texts),
    then filled with random lowercase words cut to that many tokens.
    """
    rng = random.Random(seed)
    words = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(500)
    ]

    def text(field: str) -> str:
        mean, std = ALPACA_LENGTHS[field]
        length = max(1, min(_LONGEST_FIELD, round(rng.lognormvariate(mean, std))))
        draft = " ".join(rng.choices(words, k=length))  # >= length tokens for any tokenizer
        ids = tokenizer(draft, add_special_tokens=False)["input_ids"][:length]
        return tokenizer.decode(ids).strip() or words[0]

    return [
        {
            "instruction": text("instruction"),
            "input": text("input") if rng.random() < ALPACA_INPUT_SHARE else "",
            "output": text("output"),
        }
        for _ in range(count)
    ]
