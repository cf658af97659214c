"""Time the single operations behind llama_lora's CPU levers, in isolation.

    python benchmarks/ops.py            # all probes, torch's default thread count
    python benchmarks/ops.py --threads 2
    python benchmarks/ops.py --threads 2 --only loss adamw

* Causal attention forward + backward for one example (8 heads of 64, bf16): SDPA's flash and
  math backends and llama_lora's eager path, by length: where ``model/packed_attention.py``
  switches from the eager path to flash.
* LoRA-input dropout (p = 0.05) on a cpu-small row, ``nn.Dropout`` against ``GapDropout``
  (``model/dropout.py``).
* The target-only loss (``training/fused_loss.py``), forward + backward, for 700 target rows of
  a 32000-word bf16 head under bf16 autocast, in chunks of 262 and 131 rows.
* One AdamW step over cpu-small's 112 adapter matrices: torch's per-tensor loop, ``foreach``
  and ``fused`` (``training/optimization.py``).

Each number is the mean over 20 calls after 3 warm-up calls; rerun for the noise.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def mean_ms(fn, calls: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e3


def attention_ms(length: int, backend) -> float:
    """``backend``: an ``SDPBackend``, or None for llama_lora's eager path."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import sdpa_kernel

    from llama_lora.model.packed_attention import _eager_causal_attention

    q, k, v = (
        torch.randn(1, 8, length, 64, dtype=torch.bfloat16, requires_grad=True) for _ in range(3)
    )
    grad = torch.randn(1, 8, length, 64, dtype=torch.bfloat16)

    def step():
        if backend is None:
            out = _eager_causal_attention(q, k, v, 64**-0.5).transpose(1, 2)
        else:
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.backward(grad)

    return mean_ms(step)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="+", choices=sorted(PROBES), default=sorted(PROBES))
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in PROBES:
        if name in args.only:
            PROBES[name]()


def attention_probe() -> None:
    from torch.nn.attention import SDPBackend

    print("attention forward+backward, 8 heads x 64, bf16, causal (ms): length  flash  math  eager")
    for length in (40, 86, 162, 319, 512, 1024):
        flash = attention_ms(length, SDPBackend.FLASH_ATTENTION)
        math_ = attention_ms(length, SDPBackend.MATH)
        eager = attention_ms(length, None)
        print(f"  {length:4d}  {flash:6.2f}  {math_:6.2f}  {eager:6.2f}")


def dropout_probe() -> None:
    import torch

    from llama_lora.model.dropout import GapDropout

    print("LoRA dropout p=0.05, forward (ms): shape  nn.Dropout  GapDropout")
    torch_dropout, gap_dropout = torch.nn.Dropout(0.05), GapDropout(0.05)
    for shape in ((720, 512), (720, 1376)):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(*shape, dtype=dtype)
            dense = mean_ms(lambda x=x: torch_dropout(x))
            sparse = mean_ms(lambda x=x: gap_dropout(x))
            print(f"  {shape} {str(dtype)[6:]:8s}  {dense:6.2f}  {sparse:6.2f}")


def loss_probe() -> None:
    import llama_lora.training.fused_loss as fused_loss

    default = fused_loss.CHUNK_ELEMENTS
    timings = {}
    for chunk in (1 << 23, 1 << 22):  # 32 MB and 16 MB fp32 chunks of logits
        fused_loss.CHUNK_ELEMENTS = chunk
        timings[chunk] = loss_ms()
    fused_loss.CHUNK_ELEMENTS = default
    print(
        "target-only loss, 700 rows x 32000 words, forward+backward (ms): "
        + "  ".join(f"{chunk // 32000} rows/chunk {ms:.1f}" for chunk, ms in timings.items())
    )


def adamw_probe() -> None:
    import torch

    shapes = []
    for _ in range(8):  # cpu-small: 8 blocks, r = 16 on q, k, v, o, gate, up, down
        for fan_in, fan_out in [(512, 512)] * 4 + [(512, 1376)] * 2 + [(1376, 512)]:
            shapes += [(16, fan_in), (fan_out, 16)]

    def step_ms(**options) -> float:
        params = [torch.nn.Parameter(torch.randn(shape) * 0.01) for shape in shapes]
        for param in params:
            param.grad = torch.randn_like(param)
        optimizer = torch.optim.AdamW(params, lr=1e-4, **options)
        return mean_ms(optimizer.step)

    loop, foreach, fused = step_ms(), step_ms(foreach=True), step_ms(fused=True)
    print(
        f"AdamW step, 112 adapter matrices (ms): loop {loop:.2f}  foreach {foreach:.2f}  "
        f"fused {fused:.2f}"
    )


def loss_ms() -> float:
    import torch

    from llama_lora.training.fused_loss import linear_cross_entropy_sum

    hidden = torch.randn(700, 512, requires_grad=True)
    weight = (torch.randn(32000, 512) * 0.02).bfloat16()
    targets = torch.randint(0, 32000, (700,))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = linear_cross_entropy_sum(hidden, weight, targets)
        loss.backward()

    return mean_ms(step, calls=5, warmup=2)


PROBES = {
    "attention": attention_probe,
    "dropout": dropout_probe,
    "loss": loss_probe,
    "adamw": adamw_probe,
}

if __name__ == "__main__":
    main()
