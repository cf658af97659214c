"""The one base checkpoint every system loads: random-init LLaMA weights plus a tokenizer.

Written once per (workload shape, tokenizer, seed, transformers version) into the cache dir as
bf16 safetensors, then loaded with ``from_pretrained`` by each system's subprocess, so the three
systems quantize exactly the same weights. Random init needs no download; throughput and memory
do not depend on the weight values.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from benchmarks.workloads import LLAMA2_TOKENIZER_DIR, Workload

TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "tokenizer_class": "LlamaTokenizer",
}


def tokenizer_kind() -> str:
    """``"llama-2"`` when the real tokenizer is in ``../shared``, else ``"byte"`` (tiny preset)."""
    return "llama-2" if (LLAMA2_TOKENIZER_DIR / "tokenizer.model").is_file() else "byte"


def write_tokenizer(directory: Path) -> None:
    """Write the benchmark tokenizer's files into ``directory``."""
    if tokenizer_kind() == "llama-2":
        shutil.copy(LLAMA2_TOKENIZER_DIR / "tokenizer.model", directory / "tokenizer.model")
        (directory / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
        return
    from llama_lora.model.presets import build_byte_tokenizer

    build_byte_tokenizer().save_pretrained(directory)


def llama_config(workload: Workload, vocab_size: int):
    """The ``LlamaConfig`` of ``workload`` with ``vocab_size`` rows (LLaMA-2 special ids)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=workload.vocab_size or vocab_size,
        hidden_size=workload.hidden_size,
        intermediate_size=workload.intermediate_size,
        num_hidden_layers=workload.num_layers,
        num_attention_heads=workload.num_heads,
        num_key_value_heads=workload.num_kv_heads,
        max_position_embeddings=workload.max_position_embeddings,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        architectures=["LlamaForCausalLM"],
    )


def ensure_checkpoint(workload: Workload, cache_dir: Path, seed: int = 0) -> Path:
    """Return the workload's checkpoint directory, writing it first if it is not cached.

    The directory is built in a temporary sibling and renamed into place, so an interrupted
    build is never mistaken for a complete one.

    Raises:
        RuntimeError: the workload draws its weights on CUDA and no GPU is available.
    """
    import transformers

    kind = tokenizer_kind()
    vocab = _tokenizer_vocab_size(kind)
    config = llama_config(workload, vocab)
    key = json.dumps([config.to_dict(), kind, seed, transformers.__version__], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    target = Path(cache_dir) / f"{workload.name}-{digest}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{workload.name}-", dir=target.parent))
    try:
        _write_random_weights(config, staging, workload.init_device, seed)
        write_tokenizer(staging)
        os.replace(staging, target) if not target.exists() else shutil.rmtree(staging)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _tokenizer_vocab_size(kind: str) -> int:
    """Vocabulary rows for ``kind``, rounded up to a multiple of 64 like the tiny preset."""
    if kind == "llama-2":
        return 32000
    from llama_lora.model.presets import build_byte_tokenizer

    return -(-len(build_byte_tokenizer()) // 64) * 64


def _write_random_weights(config, directory: Path, init_device: str, seed: int) -> None:
    """Draw the weights (on ``init_device``: a 7B model is drawn on the GPU) and save bf16."""
    import torch
    from transformers import LlamaForCausalLM

    if init_device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "this workload draws its 7B weights on a GPU and none is available; "
            "run it on a CUDA machine (or use --workload cpu-small)"
        )
    with torch.random.fork_rng(devices=[]), torch.device(init_device):
        torch.manual_seed(seed)
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(directory, max_shard_size="2GB")
    del model
