"""Model shapes for memory planning, read from a config alone (no weights, no model built).

The planner needs only the sizes of the tensors a LLaMA-family decoder holds: the seven linear
layers of each block, the embeddings, the head and the norms. Those follow from ``config.json``,
so a 70 B model can be planned on a laptop in milliseconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llama_lora.model.presets import PRESETS

ATTENTION_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_LINEARS = ("gate_proj", "up_proj", "down_proj")
LINEAR_NAMES = ATTENTION_LINEARS + MLP_LINEARS
_REQUIRED_FIELDS = (
    "hidden_size",
    "num_hidden_layers",
    "intermediate_size",
    "num_attention_heads",
    "vocab_size",
)


@dataclass(frozen=True)
class LinearShape:
    """One linear layer of a decoder block, as ``nn.Linear(in_features, out_features)``."""

    name: str
    """Leaf module name, e.g. ``"q_proj"`` (what peft's ``target_modules`` matches)."""
    in_features: int
    """Input width."""
    out_features: int
    """Output width."""
    bias: bool
    """Whether the layer has a bias vector (kept unquantized in the compute dtype)."""

    @property
    def weight_numel(self) -> int:
        """Elements of the weight matrix."""
        return self.in_features * self.out_features


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a LLaMA-layout decoder (RMSNorm, SwiGLU MLP, rotary, optional GQA)."""

    model_type: str
    """``config.model_type``, shown in the plan's title."""
    hidden_size: int
    """Width of the residual stream."""
    num_layers: int
    """Number of decoder blocks."""
    intermediate_size: int
    """Width of the SwiGLU MLP."""
    num_heads: int
    """Query heads."""
    num_kv_heads: int
    """Key/value heads (fewer than query heads with grouped-query attention)."""
    head_dim: int
    """Width of one attention head."""
    vocab_size: int
    """Rows of the embedding and of the output head."""
    tie_word_embeddings: bool = False
    """Whether ``lm_head`` shares the embedding matrix (stored once)."""
    attention_bias: bool = False
    """Whether q/k/v/o projections carry biases."""
    mlp_bias: bool = False
    """Whether the MLP projections carry biases."""

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "intermediate_size", "num_heads", "vocab_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be a positive integer")
        if self.num_kv_heads <= 0 or self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_kv_heads={self.num_kv_heads!r} must divide num_heads={self.num_heads}"
            )

    @property
    def q_width(self) -> int:
        """Output width of ``q_proj`` (and input width of ``o_proj``)."""
        return self.num_heads * self.head_dim

    @property
    def kv_width(self) -> int:
        """Output width of ``k_proj`` and ``v_proj``."""
        return self.num_kv_heads * self.head_dim

    def layer_linears(self) -> tuple[LinearShape, ...]:
        """The seven linear layers of one decoder block, in forward order."""
        h, i = self.hidden_size, self.intermediate_size
        ab, mb = self.attention_bias, self.mlp_bias
        return (
            LinearShape("q_proj", h, self.q_width, ab),
            LinearShape("k_proj", h, self.kv_width, ab),
            LinearShape("v_proj", h, self.kv_width, ab),
            LinearShape("o_proj", self.q_width, h, ab),
            LinearShape("gate_proj", h, i, mb),
            LinearShape("up_proj", h, i, mb),
            LinearShape("down_proj", i, h, mb),
        )

    @property
    def parameter_count(self) -> int:
        """Parameters of the unquantized model (tied head counted once)."""
        per_layer = sum(
            lin.weight_numel + lin.bias * lin.out_features for lin in self.layer_linears()
        )
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_word_embeddings else 2)
        norms = (2 * self.num_layers + 1) * self.hidden_size
        return self.num_layers * per_layer + embeddings + norms


def model_shape(model: Any) -> ModelShape:
    """The :class:`ModelShape` of ``model``: a config, a ``config.json`` path or its directory,
    a hub id whose config is cached (or downloadable), or a preset name such as ``"tiny-llama"``.

    Raises:
        ValueError: the config cannot be found, or it lacks a LLaMA-layout field.
    """
    config = load_config(model)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    missing = [name for name in _REQUIRED_FIELDS if getattr(config, name, None) is None]
    if missing:
        raise ValueError(
            f"config of {model!r} (model_type={getattr(config, 'model_type', None)!r}) lacks "
            f"{missing}; the planner handles LLaMA-layout decoders "
            f"(fields {list(_REQUIRED_FIELDS)})"
        )
    heads = config.num_attention_heads
    return ModelShape(
        model_type=str(getattr(config, "model_type", "unknown")),
        hidden_size=config.hidden_size,
        num_layers=config.num_hidden_layers,
        intermediate_size=config.intermediate_size,
        num_heads=heads,
        num_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // heads,
        vocab_size=config.vocab_size,
        tie_word_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        attention_bias=bool(getattr(config, "attention_bias", False)),
        mlp_bias=bool(getattr(config, "mlp_bias", False)),
    )


def load_config(model: Any):
    """Load a ``transformers.PretrainedConfig`` without touching any weight file.

    A hub id is looked up in the local cache first, so a cached config never needs the network;
    only when it is not cached (and ``HF_HUB_OFFLINE`` is not set) is ``config.json`` fetched.

    Raises:
        ValueError: nothing named ``model`` can be found (the message lists the accepted forms).
    """
    from transformers import PretrainedConfig

    if isinstance(model, PretrainedConfig):
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise ValueError(
            f"model={model!r} ({type(model).__name__}) is not a PretrainedConfig, a path, a hub id "
            f"or a preset {list(PRESETS)}"
        )
    name = os.fspath(model)
    if name in PRESETS:
        from llama_lora.model.presets import tiny_llama_config

        return tiny_llama_config()
    path = Path(name).expanduser()
    if path.exists():
        return _config_from_path(path)
    if name.startswith((".", "/", "~")) or name.endswith(".json") or name.count("/") > 1:
        raise ValueError(f"model path {name!r} does not exist")
    return _config_from_hub(name)


def _config_from_path(path: Path):
    from transformers import AutoConfig

    config_file = path / "config.json" if path.is_dir() else path
    if not config_file.is_file():
        raise ValueError(f"model path {str(path)!r} has no config.json")
    return AutoConfig.from_pretrained(config_file)


def _config_from_hub(repo_id: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(repo_id, local_files_only=True)
    except (OSError, ValueError):
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ValueError(
            f"model {repo_id!r}: not a path, not a preset {list(PRESETS)}, and its config is "
            f"not in the local Hugging Face cache (HF_HUB_OFFLINE is set); pass a config.json "
            f"path"
        )
    try:
        return AutoConfig.from_pretrained(repo_id)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"model {repo_id!r}: not a path, not a preset {list(PRESETS)}, and no config could be "
            f"fetched for it as a hub id ({err})"
        ) from err
