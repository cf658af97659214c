"""Build real (quantized, LoRA-wrapped) models on the CPU and count the bytes they hold.

The planner predicts from shapes alone; these helpers produce the ground truth it is held to:
a random-init checkpoint saved to disk, loaded through transformers + bitsandbytes exactly as
``prepare_model`` loads it, wrapped with peft, and stepped once.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from llama_lora.planning.shapes import LINEAR_NAMES

LINEAR_WEIGHT_SUFFIXES = tuple(f"{name}.weight" for name in LINEAR_NAMES) + tuple(
    f"{name}.base_layer.weight" for name in LINEAR_NAMES
)

SHAPES = {
    # The tiny preset: GQA (6 query, 2 key/value heads), vocab 320.
    "tiny-llama": None,
    # The benchmark's cpu-small workload: ~58 M parameters, vocab 32000.
    "cpu-small": {
        "hidden_size": 512,
        "num_hidden_layers": 8,
        "intermediate_size": 1376,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "vocab_size": 32000,
    },
}


def llama_config(name: str):
    """The ``LlamaConfig`` of a shape in ``SHAPES``."""
    from transformers import LlamaConfig

    from llama_lora.model.presets import tiny_llama_config

    if SHAPES[name] is None:
        return tiny_llama_config()
    return LlamaConfig(**SHAPES[name], tie_word_embeddings=False)


def save_checkpoint(name: str, directory: Path) -> Path:
    """Write a seeded random-init checkpoint of shape ``name`` (config.json + safetensors)."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(llama_config(name)).save_pretrained(directory)
    return directory


def bnb_config(quantization: str | None):
    """The BitsAndBytesConfig llama_lora uses for ``quantization`` (None: unquantized)."""
    from transformers import BitsAndBytesConfig

    if quantization is None:
        return None
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_lora_model(
    directory: Path, quantization: str | None, *, lora_r: int = 16, checkpointing: bool = False
):
    """Load ``directory`` quantized and prepare it with llama_lora's own code (fp32 norms and
    residual stream for quantized bases, LoRA on all linears with dropout 0.05)."""
    from transformers import AutoModelForCausalLM

    from llama_lora.model.loading import _freeze_and_prepare, attach_lora

    base = AutoModelForCausalLM.from_pretrained(
        directory, quantization_config=bnb_config(quantization), dtype=torch.bfloat16
    )
    _freeze_and_prepare(
        base,
        norm_dtype=torch.float32 if quantization is not None else None,
        compute_dtype=torch.bfloat16,
        gradient_checkpointing=checkpointing,
    )
    model = attach_lora(base, lora_r=lora_r, lora_alpha=32, lora_dropout=0.05)
    model.train()
    return model


def forward_loss(
    model, batch_size: int, seq_len: int, vocab_size: int, recorder=None
) -> torch.Tensor:
    """Summed next-token loss of a random batch, under bf16 autocast like the Finetuner.

    With a ``SavedTensorRecorder``, the forward records what autograd keeps for backward.
    """
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=generator)
    hooks = recorder.hooks() if recorder is not None else contextlib.nullcontext()
    with hooks, torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=ids).logits
    predictions = logits[:, :-1, :].float()
    return torch.nn.functional.cross_entropy(
        predictions.reshape(-1, vocab_size), ids[:, 1:].reshape(-1), reduction="sum"
    )


def make_optimizer(name: str, params):
    """The optimizer llama_lora builds for ``name``."""
    from llama_lora.training.optimization import build_optimizer

    return build_optimizer(name, params, learning_rate=1e-4, weight_decay=0.0)


class StorageCounter:
    """Sums the bytes of distinct storages, so a tensor reachable twice counts once."""

    def __init__(self) -> None:
        self._seen: set[int] = set()

    def __call__(self, tensors) -> int:
        total = 0
        for tensor in tensors:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in self._seen:
                self._seen.add(storage.data_ptr())
                total += storage.nbytes()
        return total


def attached_tensors(obj, depth: int = 0) -> list[torch.Tensor]:
    """Tensors hanging off ``obj`` as attributes: a Params4bit's QuantState (and its nested
    state), an Int8Params' row scales. Found generically, so a new bitsandbytes field would show
    up here (and break the equality) instead of being silently missed."""
    found = []
    if depth > 3:
        return found
    for value in vars(obj).values():
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif hasattr(value, "__dict__") and type(value).__module__.startswith("bitsandbytes"):
            found += attached_tensors(value, depth + 1)
    return found


def count_model_bytes(model) -> dict[str, int]:
    """Bytes the model holds, in the planner's categories (distinct storages only)."""
    count = StorageCounter()
    totals = dict.fromkeys(("quantized", "constants", "unquantized", "norms", "lora", "buffers"), 0)
    for name, param in model.named_parameters():
        if "lora_" in name:
            totals["lora"] += count([param])
        elif name.endswith(LINEAR_WEIGHT_SUFFIXES):  # quantized, or compute dtype if not
            totals["quantized"] += count([param])
            totals["constants"] += count(attached_tensors(param))
        elif "norm" in name:
            totals["norms"] += count([param])
        else:
            totals["unquantized"] += count([param])
    totals["buffers"] = count(buffer for _, buffer in model.named_buffers())
    return totals


def gradient_bytes(model) -> int:
    """Bytes of every parameter gradient."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return StorageCounter()(grads)


def optimizer_device_bytes(optimizer) -> int:
    """Bytes of the optimizer's state tensors, except torch's 0-dim host ``step`` counters."""
    tensors = []
    for state in optimizer.state.values():
        for key, value in state.items():
            if key == "step":
                assert not isinstance(value, torch.Tensor) or value.dim() == 0
                continue
            if isinstance(value, torch.Tensor):
                tensors.append(value)
    return StorageCounter()(tensors)


class SavedTensorRecorder:
    """Bytes autograd saves for backward during a forward, attributed to each decoder layer.

    Distinct storages only, and never a parameter (weights are counted as weights).
    """

    def __init__(self, model) -> None:
        self._params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self._seen: set[int] = set()
        self._current = "embeddings"
        self.per_layer: dict[str, int] = {}
        layers = model.get_base_model().model.layers
        for index, layer in enumerate(layers):
            layer.register_forward_pre_hook(self._enter(f"layer{index}"))
        model.get_base_model().model.norm.register_forward_pre_hook(self._enter("head"))

    def _enter(self, name: str):
        def hook(module, args):
            self._current = name

        return hook

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        pointer = storage.data_ptr()
        if pointer not in self._params and pointer not in self._seen:
            self._seen.add(pointer)
            self.per_layer[self._current] = self.per_layer.get(self._current, 0) + storage.nbytes()
        return tensor

    def hooks(self):
        """The context manager that records while active."""
        return torch.autograd.graph.saved_tensors_hooks(self._pack, lambda tensor: tensor)
