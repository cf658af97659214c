"""``prepare_model``: a checkpoint in, a (Q)LoRA model ready to train out.

The steps are the ones every QLoRA recipe performs, in order: find the files, verify them,
check the architecture, load the base (4-bit NF4 by default) through ``transformers`` and
``bitsandbytes``, prepare it for k-bit training, and attach LoRA adapters with ``peft``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from llama_lora.model.dropout import use_gap_dropout
from llama_lora.model.dtypes import resolve_dtype
from llama_lora.model.integrity import Manifest, verify_checkpoint
from llama_lora.model.recompute import AUTO, mark_auto
from llama_lora.model.source import check_weight_format, resolve_model_dir
from llama_lora.model.tokenizer import load_tokenizer

logger = logging.getLogger(__name__)

QUANTIZATION_CHOICES = ("nf4", "fp4", "int8", None)
GRADIENT_CHECKPOINTING_CHOICES = (True, False, AUTO)


def prepare_model(
    model: str | os.PathLike,
    *,
    quantization: str | None = "nf4",
    lora_r: int = 16,
    lora_alpha: float = 32,
    lora_dropout: float = 0.05,
    target_modules: str | Sequence[str] = "all-linear",
    compute_dtype: str | torch.dtype = "auto",
    gradient_checkpointing: bool | str = "auto",
    sha256: str | os.PathLike | Manifest | None = None,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    device_map: str | dict | None = "auto",
):
    """Load a LLaMA-family checkpoint and attach trainable LoRA adapters.

    LoRA replaces ``W x`` by ``W x + (lora_alpha / lora_r) * B A x`` with ``A`` (r x in) random
    and ``B`` (out x r) zero, so the model starts exactly equal to the base and only ``A`` and
    ``B`` train. QLoRA stores ``W`` in 4-bit NF4 (with double quantization of the block scales)
    and computes in ``compute_dtype``.

    Args:
        model: A local checkpoint directory, a hub id (honours ``HF_HUB_OFFLINE`` and the
            cache), or the preset ``"tiny-llama"`` (offline, CPU-sized, identical every run).
        quantization: ``"nf4"`` (QLoRA), ``"fp4"``, ``"int8"`` or ``None`` (LoRA on a
            bf16/fp32 base).
        lora_r: LoRA rank, > 0.
        lora_alpha: LoRA scale numerator; the update is scaled by ``lora_alpha / lora_r``.
        lora_dropout: Dropout on the adapter input, in [0, 1).
        target_modules: ``"all-linear"`` (every linear layer except ``lm_head``) or a list of
            linear layer names such as ``["q_proj", "v_proj"]``.
        compute_dtype: ``"auto"`` (bf16 where supported, fp16 on old GPUs, else fp32) or a dtype.
        gradient_checkpointing: Recompute activations in backward (non-reentrant) to save
            memory: ``True`` for every block, ``False`` for none, ``"auto"`` to let
            ``Finetuner.fit`` recompute only as many blocks as its memory budget needs, from
            the memory plan of its longest micro-batch (every block until then;
            ``llama_lora/model/recompute.py``).
        sha256: A manifest (``sha256sum`` file, JSON file or dict); every file is verified
            before any weight is read.
        allow_pickle: Allow ``.bin``/``.pt`` weights (pickles can execute code on load).
        trust_remote_code: Passed to ``transformers`` for custom architectures.
        device_map: ``"auto"``, a ``transformers`` device map, or None. Under a multi-process
            launch ``"auto"`` puts each rank's copy on its own device.

    Returns:
        ``(peft_model, tokenizer)``; the tokenizer pads on the right with a non-EOS pad token.

    Raises:
        FileNotFoundError: the checkpoint or its config is missing.
        ValueError: an unknown quantization, bad LoRA settings, a non-causal-LM architecture,
            pickle weights without ``allow_pickle``, or target modules that match nothing.
        IntegrityError: a file does not match ``sha256``.

    Example:
        >>> model, tokenizer = prepare_model("tiny-llama", quantization="nf4")
    """
    _validate_lora_args(quantization, lora_r, lora_alpha, lora_dropout)
    if gradient_checkpointing not in GRADIENT_CHECKPOINTING_CHOICES:
        raise ValueError(
            f"gradient_checkpointing={gradient_checkpointing!r}; choose one of "
            f"{list(GRADIENT_CHECKPOINTING_CHOICES)}"
        )
    dtype = resolve_dtype(compute_dtype)
    path = resolve_model_dir(model, allow_pickle=allow_pickle)
    if sha256 is not None:
        verify_checkpoint(path, sha256)
    base, tokenizer = load_prepared_base(
        path,
        quantization=quantization,
        compute_dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        device_map=device_map,
    )
    peft_model = attach_lora(
        base,
        lora_r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
    )
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    logger.info(
        "prepared %s: %d trainable of %d parameters (%s)",
        path,
        trainable,
        total,
        quantization or dtype,
    )
    return peft_model, tokenizer


def load_prepared_base(
    path: str | Path,
    *,
    quantization: str | None,
    compute_dtype: torch.dtype,
    gradient_checkpointing: bool | str,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    device_map: str | dict | None = "auto",
):
    """Load base model and tokenizer from a local directory, frozen and ready for adapters.

    Shared by ``prepare_model`` and ``load_adapter`` so a reloaded adapter sits on exactly the
    base it was trained on (same dtypes, same fp32 norms).
    """
    base = load_base_model(
        path,
        quantization=quantization,
        compute_dtype=compute_dtype,
        allow_pickle=allow_pickle,
        trust_remote_code=trust_remote_code,
        device_map=device_map,
    )
    tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    if len(tokenizer) > base.get_input_embeddings().num_embeddings:
        base.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)
    _freeze_and_prepare(
        base,
        norm_dtype=torch.float32 if quantization is not None else None,
        compute_dtype=compute_dtype,
        gradient_checkpointing=gradient_checkpointing,
    )
    return base, tokenizer


def _validate_lora_args(quantization, lora_r, lora_alpha, lora_dropout) -> None:
    if quantization not in QUANTIZATION_CHOICES:
        raise ValueError(
            f"quantization={quantization!r} is not supported; choose one of {QUANTIZATION_CHOICES}"
        )
    if not isinstance(lora_r, int) or lora_r <= 0:
        raise ValueError(f"lora_r={lora_r!r} must be a positive integer (typical: 8, 16, 64)")
    if lora_alpha <= 0:
        raise ValueError(f"lora_alpha={lora_alpha!r} must be > 0 (typical: 2 * lora_r)")
    if not 0.0 <= lora_dropout < 1.0:
        raise ValueError(f"lora_dropout={lora_dropout!r} must be in [0, 1)")


def quantization_config(quantization: str | None, compute_dtype: torch.dtype):
    """The ``BitsAndBytesConfig`` for a quantization name (None for an unquantized base)."""
    from transformers import BitsAndBytesConfig

    if quantization is None:
        return None
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    # FSDP can only shard parameters of one float dtype, so under an FSDP launch the packed 4-bit
    # bytes are stored viewed as the compute dtype (same bytes, different element type).
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true")
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization,
        bnb_4bit_use_double_quant=True,  # quantize the fp32 block scales too: ~0.37 bit/param saved
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_storage=compute_dtype if fsdp else torch.uint8,
    )


def resolve_device_map(device_map: str | dict | None) -> str | dict | None:
    """Map ``"auto"`` to this process's own device under DDP (one full copy per rank)."""
    if device_map != "auto":
        return device_map
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        return {"": int(os.environ.get("LOCAL_RANK", "0"))} if world_size > 1 else "auto"
    return {"": "cpu"}


def load_base_model(
    path: str | Path,
    *,
    quantization: str | None = "nf4",
    compute_dtype: torch.dtype = torch.bfloat16,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    device_map: str | dict | None = "auto",
):
    """Load the (optionally quantized) base causal LM from a local directory; no adapters.

    Raises:
        ValueError: the architecture is not a causal LM, or only pickle weights without
            ``allow_pickle``.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    path = Path(path)
    use_safetensors = check_weight_format(path, allow_pickle=allow_pickle)
    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    _check_causal_lm(config, path)
    return AutoModelForCausalLM.from_pretrained(
        path,
        config=config,
        dtype=compute_dtype,
        quantization_config=quantization_config(quantization, compute_dtype),
        device_map=resolve_device_map(device_map),
        use_safetensors=use_safetensors,
        trust_remote_code=trust_remote_code,
    )


def _check_causal_lm(config, path: Path) -> None:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    architectures = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForCausalLM") for a in architectures):
        return
    if not architectures and config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return
    raise ValueError(
        f"{path}/config.json: architecture {architectures or config.model_type!r} is not a "
        f"causal language model; llama_lora fine-tunes *ForCausalLM checkpoints such as "
        f"LlamaForCausalLM"
    )


def _freeze_and_prepare(
    base,
    *,
    norm_dtype: torch.dtype | None,
    compute_dtype: torch.dtype,
    gradient_checkpointing: bool | str,
) -> None:
    """Freeze the base and get it ready for (k-bit) adapter training.

    Not ``peft.prepare_model_for_kbit_training``: it upcasts every non-quantized parameter to
    fp32, embeddings and lm_head included (about 1 GB extra for LLaMA-2-7B). For a quantized
    base (``norm_dtype=float32``) only the norm weights go to fp32 and the residual stream is
    kept in fp32 (the embedding output is upcast), while everything the norms feed runs in the
    compute dtype: each norm's output is cast to it once. The matmuls see the same bf16 inputs
    as when each quantized layer cast an fp32 input itself, but the MLP intermediates and the
    rotary embedding no longer run (and are no longer saved) in fp32, and most casts per block
    are gone (+10% on cpu-small, benchmarks/README.md). An unquantized half-precision
    base stays as it is: its plain ``nn.Linear`` layers need half-precision inputs.
    """
    for param in base.parameters():
        param.requires_grad_(False)
    if norm_dtype is not None:
        norms = set()
        for name, param in base.named_parameters():
            if param.ndim == 1 and "norm" in name and param.is_floating_point():
                param.data = param.data.to(norm_dtype)
                norms.add(name.rpartition(".")[0])
        for name in sorted(norms):
            base.get_submodule(name).register_forward_hook(_cast_output(compute_dtype))
        base.get_input_embeddings().register_forward_hook(_cast_output(norm_dtype))
        # cos/sin follow the dtype of the hidden states they are given (now fp32); q and k are
        # in the compute dtype and must stay there, as v does, also outside autocast.
        for module in base.modules():
            if type(module).__name__.endswith("RotaryEmbedding"):
                module.register_forward_hook(_cast_output(compute_dtype))
        # The head may see other dtypes outside this setup (a caller's own hidden states);
        # casting to its weight's dtype keeps the model usable outside autocast too.
        base.get_output_embeddings().register_forward_pre_hook(_cast_input_to_weight_dtype)
    _keep_4bit_layers_differentiable(base)
    if gradient_checkpointing:
        # Non-reentrant checkpointing needs no input gradients and works with frozen inputs;
        # enable_input_require_grads is kept for models that force the reentrant variant.
        kwargs = {"use_reentrant": False}
        if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.x name
            base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        base.enable_input_require_grads()
        base.config.use_cache = False
    if gradient_checkpointing == AUTO:
        mark_auto(base)


def _keep_4bit_layers_differentiable(base) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for its CPU inference kernel.

    bitsandbytes 0.50 repacks a ``Linear4bit`` weight on its first no-grad forward on a CPU with
    AVX512-BF16 and from then on always calls ``gemv_4bit``, which has no autograd formula: after
    one evaluation, gradients no longer flow through the frozen base layers and every LoRA
    gradient below the top layer is wrong (tests/model/test_prepare_model.py shows it). The
    flag below is the one bitsandbytes reads to decide on the repack.
    """
    for module in base.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def _cast_output(dtype: torch.dtype):
    """A forward hook that returns the module's tensor output (or tuple of them) in ``dtype``."""

    def hook(module, args, output):
        if isinstance(output, tuple):
            return tuple(t.to(dtype) if isinstance(t, torch.Tensor) else t for t in output)
        return output.to(dtype) if isinstance(output, torch.Tensor) else output

    return hook


def _cast_input_to_weight_dtype(module, args):
    hidden, *rest = args
    return (hidden.to(module.weight.dtype), *rest)


def linear_layer_names(model) -> list[str]:
    """Sorted distinct leaf names of the linear layers (4-bit and 8-bit ones included)."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        }
    )


def attach_lora(
    base,
    *,
    lora_r: int,
    lora_alpha: float,
    lora_dropout: float,
    target_modules: str | Sequence[str] = "all-linear",
):
    """Wrap ``base`` in a ``peft`` LoRA model; only adapter weights stay trainable.

    The adapters' input dropout samples its mask sparsely on CPU (``model/dropout.py``): same
    distribution as peft's ``nn.Dropout``, a fraction of the random draws.

    Raises:
        ValueError: a target module name matches no linear layer (lists the ones there are).
    """
    from peft import LoraConfig, get_peft_model

    if not isinstance(target_modules, str):
        target_modules = list(target_modules)
        available = linear_layer_names(base)
        missing = [name for name in target_modules if name not in available]
        if missing or not target_modules:
            raise ValueError(
                f"target_modules {missing or target_modules} match no linear layer of this model; "
                f"its linear layers are {available} (or use 'all-linear')"
            )
    config = LoraConfig(
        r=lora_r,
        lora_alpha=lora_alpha,
        lora_dropout=lora_dropout,
        target_modules=target_modules,
        bias="none",
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        # peft still reads transformers' deprecated `is_gradient_checkpointing`; not ours to fix.
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")
        model = get_peft_model(base, config)
    use_gap_dropout(model)
    return model
