"""What is measured, the same way for every system: step times, tokens, losses, memory, FLOPs.

``Recorder`` sees a system only through two doors every trainer has: a forward pre-hook on the
model (to count the real and padded tokens of each micro-batch) and the trainer's step-end and
log callbacks (to stamp the time and collect the loss). The clock starts at the end of the last
warm-up step and stops at the end of the last step, so model loading, data preparation, the
first slow steps and the final checkpoint are all outside the measured window.
"""

from __future__ import annotations

import math
import resource
import sys
import time
from dataclasses import dataclass, field
from statistics import median
from typing import Any


@dataclass
class Recorder:
    """Collects per-step times, token counts and logged losses of one training run.

    Args:
        warmup_steps: steps before the measured window.
        total_steps: all steps (warm-up included).
        device: ``cpu`` or ``cuda`` (CUDA is synchronised at the window's two ends only, so
            the measurement adds no synchronisation inside the window).
        pad_token_id: tells padding from text in rows without a 2D mask (packed rows); give it
            only when that id never occurs in text.
    """

    warmup_steps: int
    total_steps: int
    device: str = "cpu"
    pad_token_id: int | None = None
    step_ends: list[float] = field(default_factory=list)
    step_tokens: list[tuple[Any, Any]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    _pending: list[tuple[Any, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 1 <= self.warmup_steps < self.total_steps:
            raise ValueError(
                f"need 1 <= warmup_steps < total_steps (the clock starts at the end of the last "
                f"warm-up step), got warmup_steps={self.warmup_steps}, "
                f"total_steps={self.total_steps}"
            )

    def attach(self, model) -> None:
        """Count tokens of every training forward of ``model`` (kwargs calls, as trainers do)."""
        model.register_forward_pre_hook(self._count_tokens, with_kwargs=True)

    def _count_tokens(self, module, args, kwargs) -> None:
        if not module.training:
            return
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        if input_ids is None:
            return
        self._pending.append((real_tokens(input_ids, kwargs, self.pad_token_id), input_ids.numel()))

    def step_end(self) -> None:
        """Call at the end of every optimizer step."""
        step = len(self.step_ends) + 1
        if self.device == "cuda" and step in (self.warmup_steps, self.total_steps):
            import torch

            torch.cuda.synchronize()
        self.step_ends.append(time.perf_counter())
        self.step_tokens.append(
            (sum(r for r, _ in self._pending), sum(t for _, t in self._pending))
        )
        self._pending = []

    def log_loss(self, step: int, loss: float) -> None:
        """Call with each logged training loss (the mean over the steps since the last log)."""
        self.losses.append((int(step), float(loss)))

    def summary(self) -> dict:
        """Raw numbers of the measured window (the steps after warm-up)."""
        measured = self.step_ends[self.warmup_steps :]
        if len(self.step_ends) < self.total_steps or not measured:
            raise RuntimeError(
                f"the trainer ran {len(self.step_ends)} of {self.total_steps} steps; the "
                "benchmark needs them all (is the data shorter than the run?)"
            )
        window = measured[-1] - self.step_ends[self.warmup_steps - 1]
        tokens = [(int(r), int(t)) for r, t in self.step_tokens]
        real = sum(r for r, _ in tokens[self.warmup_steps :])
        total = sum(t for _, t in tokens[self.warmup_steps :])
        starts = self.step_ends[self.warmup_steps - 1 : -1]
        times = [end - start for start, end in zip(starts, measured, strict=True)]
        return {
            "steps_measured": len(measured),
            "window_seconds": window,
            "seconds_per_step": window / len(measured),
            "step_seconds": times,
            "real_tokens": real,
            "padded_tokens": total,
            "real_tokens_per_second": real / window if window > 0 else 0.0,
            "real_tokens_per_step": real / len(measured),
            "padding_fraction": 1.0 - real / total if total else 0.0,
            "tokens_per_step_all": [r for r, _ in tokens],
            "losses": self.losses,
            "first_loss": self.losses[0][1] if self.losses else None,
            "final_loss": self.losses[-1][1] if self.losses else None,
            "final_loss_step": self.losses[-1][0] if self.losses else None,
        }


def real_tokens(input_ids, kwargs: dict, pad_token_id: int | None):
    """Non-padding tokens of one micro-batch, whatever form its attention information takes.

    A 2D mask marks real tokens (HF padding). Otherwise (llama_lora's packed rows, with a 4D
    block mask or padding-free position ids) padding is found by ``pad_token_id``, which the
    caller gives only when the pad id never occurs in text (llama_lora pads with ``<unk>``).
    Without either (TRL's padding-free rows, whose pad id is EOS) every token is real.
    """
    mask = kwargs.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return mask.sum()
    if pad_token_id is not None:
        return (input_ids != pad_token_id).sum()
    return input_ids.numel()


def memory_report(device: str) -> dict:
    """Peak memory of this process: RSS (CPU) and, on CUDA, allocated and reserved bytes."""
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {"peak_rss_bytes": peak_rss * (1 if sys.platform == "darwin" else 1024)}
    if device == "cuda":
        import torch

        report["cuda_max_allocated_bytes"] = torch.cuda.max_memory_allocated()
        report["cuda_max_reserved_bytes"] = torch.cuda.max_memory_reserved()
    return report


def matmul_ceiling(device: str, size: int = 2048, repeats: int = 10) -> dict:
    """Measured bf16 ``size``^3 matmul throughput on ``device``, in GFLOP/s (the best of runs).

    The best repetition, not the mean, because the ceiling is what the hardware can do; a
    loaded machine only ever lowers it.
    """
    import torch

    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    seconds = []
    for index in range(repeats + 2):  # two untimed warm-ups
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if device == "cuda":
            torch.cuda.synchronize()
        if index >= 2:
            seconds.append(time.perf_counter() - start)
    flops = 2.0 * size**3
    return {
        "gflops": flops / min(seconds) / 1e9,
        "gflops_median": flops / median(seconds) / 1e9,
        "size": size,
        "repeats": repeats,
        "dtype": "bfloat16",
        "device": device,
    }


def training_flops_per_token(
    config, lora_r: int, context_tokens: float, checkpointing: bool
) -> dict:
    """Training FLOPs per real token of a LLaMA model with LoRA on all block linears.

    With ``N`` the weights of every matmul (block linears and ``lm_head``; the embedding is a
    lookup), ``N_lora`` the adapter weights and ``A = 2 * layers * q_width * context`` the
    attention score and value matmuls of one forward token (``context`` = ``sum(n^2)/sum(n)``,
    each example attending to itself, causally: on average half its length, times the 2 of a
    multiply-add, times 2 matmuls):

    * forward: ``2N + 2N_lora + A``;
    * backward: ``2N`` (input gradients through every frozen weight: no weight gradients
      for them, which is why LoRA is ``4N``, not the ``6N`` of full fine-tuning)
      ``+ 4N_lora + 2A``;
    * model FLOPs = ``4N + 6N_lora + 3A`` (what the fraction of the ceiling uses);
    * gradient checkpointing recomputes the blocks' forward once more (hardware FLOPs add
      ``2(N - N_head) + 2N_lora + A``), which is real work but not useful work.
    """
    h, layers, vocab = config.hidden_size, config.num_hidden_layers, config.vocab_size
    head_dim = getattr(config, "head_dim", None) or h // config.num_attention_heads
    q_width = config.num_attention_heads * head_dim
    kv_width = config.num_key_value_heads * head_dim
    inter = config.intermediate_size
    shapes = [(h, q_width), (h, kv_width), (h, kv_width), (q_width, h)]
    shapes += [(h, inter), (h, inter), (inter, h)]
    block = sum(i * o for i, o in shapes)
    block_lora = sum(lora_r * (i + o) for i, o in shapes)
    n_head = h * vocab
    n = layers * block + n_head
    n_lora = layers * block_lora
    attention = 2.0 * layers * q_width * context_tokens
    model = 4.0 * n + 6.0 * n_lora + 3.0 * attention
    recompute = 2.0 * (n - n_head) + 2.0 * n_lora + attention if checkpointing else 0.0
    return {
        "matmul_params": n,
        "lora_params": n_lora,
        "context_tokens": context_tokens,
        "attention_forward_flops": attention,
        "model_flops_per_token": model,
        "hardware_flops_per_token": model + recompute,
        "formula": "model = 4*N + 6*N_lora + 3*A; hardware adds 2*(N - N_head) + 2*N_lora + A "
        "with gradient checkpointing",
    }


def finite(value: Any) -> bool:
    """True for a real, finite number."""
    return isinstance(value, (int, float)) and math.isfinite(value)
