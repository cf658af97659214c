"""Built-in model presets: LLaMA-architecture models that need no download.

``tiny-llama`` is a randomly initialised LLaMA model (about 10 M parameters) with a byte-level
tokenizer. It exists so that the README's main job, the examples and the tests run offline on a
CPU in seconds, through exactly the code path a real checkpoint takes (it is written to a local
directory and loaded with ``from_pretrained``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

PRESETS = ("tiny-llama",)
PRESET_SEED = 0


@dataclass(frozen=True)
class TinyLlamaSpec:
    """Shape of the ``tiny-llama`` preset (LLaMA-2 layout: RMSNorm, SwiGLU, RoPE, GQA)."""

    vocab_size: int = 320  # 256 bytes + 3 specials, rounded up to a multiple of 64
    hidden_size: int = 384
    intermediate_size: int = 1024
    num_hidden_layers: int = 6
    num_attention_heads: int = 6
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2048


def build_byte_tokenizer():
    """A byte-level LLaMA-style tokenizer: ``<unk>``=0, ``<s>``=1, ``</s>``=2, then 256 bytes.

    Byte level means every string (Vietnamese included) round-trips exactly with no trained
    vocabulary file to ship. BOS is prepended like the LLaMA-2 checkpoints' tokenizer config
    (``add_bos_token: true``). The pad token is ``<unk>``: never EOS (see ``tokenizer.py``).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(specials + alphabet)}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<unk>",
        padding_side="right",
        model_max_length=TinyLlamaSpec.max_position_embeddings,
    )


def tiny_llama_config(spec: TinyLlamaSpec | None = None):
    """The ``LlamaConfig`` of the tiny preset."""
    from transformers import LlamaConfig

    spec = spec or TinyLlamaSpec()
    return LlamaConfig(
        **asdict(spec),
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )


def cache_root() -> Path:
    """Where presets are materialised: ``$LLAMA_LORA_CACHE`` or ``~/.cache/llama_lora``."""
    return Path(os.environ.get("LLAMA_LORA_CACHE", Path.home() / ".cache" / "llama_lora"))


def materialize_preset(name: str) -> Path:
    """Write preset ``name`` to a local checkpoint directory (once) and return its path.

    The directory name carries a hash of the spec and the transformers version, so a change to
    either builds a fresh copy instead of reusing a stale one. The directory is written to a
    temporary sibling and renamed into place, so a killed build never looks complete.

    Raises:
        ValueError: ``name`` is not a preset.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; presets are {list(PRESETS)}")
    import torch
    import transformers
    from transformers import LlamaForCausalLM

    spec = TinyLlamaSpec()
    key = json.dumps([asdict(spec), PRESET_SEED, transformers.__version__], sort_keys=True)
    target = cache_root() / "presets" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    staging.chmod(0o755)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(PRESET_SEED)
            model = LlamaForCausalLM(tiny_llama_config(spec))
        model.save_pretrained(staging)
        build_byte_tokenizer().save_pretrained(staging)
        os.replace(staging, target) if not target.exists() else shutil.rmtree(staging)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target
