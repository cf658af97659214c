"""Everything ``Finetuner.fit`` builds before its first step: the ``Accelerator``, the data
loaders, the checkpoint to resume from and the progress restored from it.

Kept apart from the loop so ``finetuner.py`` shows the algorithm, and this module the plumbing
that makes it run the same on one CPU, one GPU or many processes.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from llama_lora.model.dtypes import best_half_dtype
from llama_lora.training import checkpoint as ckpt
from llama_lora.training.config import TrainingConfig
from llama_lora.training.state import TrainState

logger = logging.getLogger(__name__)

#: Columns the model consumes; everything else (text columns) stays out of the DataLoader.
MODEL_COLUMNS = ("input_ids", "attention_mask", "labels", "position_ids")


def accelerator_type() -> str:
    """``"cuda"``, ``"xpu"``, ``"mps"``... for the machine's accelerator, or ``"cpu"``."""
    if torch.accelerator.is_available():
        return torch.accelerator.current_accelerator().type
    return "cpu"


def resolve_mixed_precision(requested: str, device_type: str) -> str:
    """Turn ``"auto"`` into ``"bf16"``, ``"fp16"`` or ``"no"`` for a device type.

    The same rule as ``prepare_model``'s ``compute_dtype="auto"`` (``model/dtypes.py``): bf16
    where the device runs it natively (Ampere+ GPUs, CPUs with AVX512-BF16/AMX), fp16 with loss
    scaling on older GPUs, else fp32.
    """
    if requested != "auto":
        return requested
    if device_type not in ("cuda", "cpu"):
        return "no"
    names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
    return names.get(best_half_dtype(device_type), "no")


def build_accelerator(config: TrainingConfig):
    """An ``Accelerator`` for this machine and launcher, with a reproducible data order.

    Raises:
        RuntimeError: the launcher started several processes that accelerate did not connect.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DataLoaderConfiguration

    # AcceleratorState is a process-wide singleton that refuses a second mixed-precision
    # setting; like transformers.Trainer, reset it (keeping the process group) so a second
    # fit in the same process may use another precision.
    AcceleratorState._reset_state(reset_partial_state=False)
    device_type = accelerator_type()
    # The seedable sampler shuffles each epoch with seed + epoch on every process alike, which
    # is what makes the data order reproducible and resumable.
    data_config = DataLoaderConfiguration(use_seedable_sampler=True, data_seed=config.seed)
    accelerator = Accelerator(
        # Without an accelerator, accelerate starts gloo (MULTI_CPU) under torchrun or
        # `accelerate launch` only when told cpu=True; otherwise every rank trains alone.
        cpu=device_type == "cpu",
        mixed_precision=resolve_mixed_precision(config.mixed_precision, device_type),
        dataloader_config=data_config,
        step_scheduler_with_optimizer=False,
    )
    _check_world_size(accelerator)
    return accelerator


def _check_world_size(accelerator) -> None:
    """Refuse to run when the launcher started processes that do not see each other (each
    would train on all the data and overwrite the others' files)."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and accelerator.num_processes != launched:
        raise RuntimeError(
            f"launched with WORLD_SIZE={launched} but accelerate set up "
            f"{accelerator.num_processes} process(es) ({accelerator.distributed_type}); was "
            "accelerate.PartialState() created before Finetuner.fit without cpu=True on a "
            "machine without GPUs? Let Finetuner create it, or pass cpu=True."
        )


def select_splits(data: Mapping[str, Any], config: TrainingConfig) -> tuple[Any, Any]:
    """The train and (optional, non-empty) validation splits, checked against the row contract
    and reduced to the model's columns.

    Raises:
        ValueError: no or empty train split, a split without ``input_ids``/``labels``, or early
            stopping without validation data.
    """
    if "train" not in data:
        raise ValueError(f"fit: data has no 'train' split; it has {list(data)}")
    splits = {"train": data["train"], "validation": data.get("validation")}
    for name, split in splits.items():
        if split is None or not hasattr(split, "column_names"):
            continue
        missing = sorted({"input_ids", "labels"} - set(split.column_names))
        if missing:
            raise ValueError(
                f"fit: the {name!r} split lacks column(s) {missing}; rows need "
                f"{list(MODEL_COLUMNS[:3])} (build them with llama_lora.build_dataset)"
            )
        splits[name] = split.select_columns([c for c in MODEL_COLUMNS if c in split.column_names])
    if len(splits["train"]) == 0:
        raise ValueError("fit: the 'train' split is empty")
    validation = splits["validation"]
    if validation is not None and len(validation) == 0:
        validation = None
    if config.early_stopping_patience is not None and validation is None:
        raise ValueError(
            f"TrainingConfig.early_stopping_patience={config.early_stopping_patience} needs a "
            f"non-empty 'validation' split; data has splits {list(data)}"
        )
    return splits["train"], validation


def build_dataloaders(
    train_split: Any, val_split: Any, config: TrainingConfig, collator: Callable
) -> tuple[Any, Any]:
    """Plain DataLoaders; ``accelerator.prepare`` later shards them and reseeds the shuffle."""
    from torch.utils.data import DataLoader

    def loader(split: Any, shuffle: bool) -> DataLoader:
        # An own generator keeps DataLoader iterators from drawing on the global torch RNG, so
        # evaluation and resumption leave dropout's random stream untouched.
        return DataLoader(
            split,
            batch_size=config.batch_size,
            shuffle=shuffle,
            collate_fn=collator,
            num_workers=config.dataloader_num_workers,
            generator=torch.Generator().manual_seed(config.seed),
        )

    val_loader = loader(val_split, shuffle=False) if val_split is not None else None
    return loader(train_split, shuffle=True), val_loader


def total_steps(config: TrainingConfig, batches_per_epoch: int) -> int:
    """Planned optimizer steps: ``max_steps``, else epochs x ceil(batches / accumulation)."""
    steps_per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation_steps)
    return config.max_steps or config.num_epochs * steps_per_epoch


def resolve_resume(resume: bool | str | Path | None, output_dir: Path) -> Path | None:
    """The checkpoint to resume from, verified against its manifest, or None.

    Raises:
        FileNotFoundError: ``resume`` is a path but not a complete checkpoint.
        IntegrityError: a checkpoint file differs from its manifest.
    """
    if resume is None or resume is False:
        return None
    if resume is True:
        path = ckpt.find_latest_checkpoint(output_dir)
        if path is None:
            logger.warning("no checkpoint in %s; starting fresh", output_dir)
            return None
    else:
        path = Path(resume)
    ckpt.verify_complete_checkpoint(path)
    return path


def restore_progress(
    path: Path, accelerator, model, optimizer, scheduler, config: TrainingConfig
) -> TrainState:
    """Optimizer, scheduler and progress from ``path`` (adapter weights are already in)."""
    state, saved = ckpt.read_trainer_state(path)
    ckpt.load_training_state(accelerator, model, optimizer, scheduler, path)
    saved_shape = (state.world_size, saved.get("batch_size"))
    if saved_shape != (accelerator.num_processes, config.batch_size):
        # Same examples seen, re-expressed in the new per-process batch count; the order after
        # this point differs from the original run, so such a resume is not bit-exact.
        examples = state.batches_in_epoch * state.world_size * (saved_shape[1] or 1)
        per_batch = accelerator.num_processes * config.batch_size
        gas = config.gradient_accumulation_steps
        state.batches_in_epoch = examples // per_batch // gas * gas
        logger.warning(
            "resuming %s with %d process(es) x batch %d (saved with %d x %s): the data "
            "position is converted approximately",
            path,
            accelerator.num_processes,
            config.batch_size,
            *saved_shape,
        )
    state.world_size = accelerator.num_processes
    state.is_main_process = accelerator.is_main_process
    return state


def adapt_fsdp_plugin(accelerator, model) -> None:
    """Under FSDP, wrap LoRA layers separately and use the 4-bit storage dtype for mixed
    precision, exactly as ``transformers.Trainer`` does (it owns the helper), before prepare."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        from transformers.distributed.fsdp import update_fsdp_plugin_peft

        update_fsdp_plugin_peft(model, accelerator)


def clip_parameters(accelerator, model) -> list[torch.nn.Parameter]:
    """What to pass to ``accelerator.clip_grad_norm_``: the trainable parameters, or under
    FSDP all of them (accelerate then uses FSDP's own sharded clipping)."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return list(model.parameters())
    return [p for p in model.parameters() if p.requires_grad]


def choose_recomputation(model, accelerator, train_split, config: TrainingConfig):
    """For a ``gradient_checkpointing="auto"`` model, checkpoint only the blocks the memory
    budget needs (``llama_lora/model/recompute.py``) and log the decision.

    Returns the decision (None when the model is not in auto mode or cannot be planned, and
    every block stays checkpointed).
    """
    from llama_lora.model import recompute
    from llama_lora.planning.budget import format_gib, parse_bytes

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not recompute.is_auto(base):
        return None
    if config.memory_budget is not None:
        budget = parse_bytes(config.memory_budget)
    else:
        total = recompute.device_memory_bytes(accelerator.device)
        budget = int(recompute.DEFAULT_BUDGET_FRACTION * total)
    tokens = config.batch_size * recompute.longest_row(train_split)
    decision = recompute.choose_recomputation(
        model,
        tokens=tokens,
        budget_bytes=budget,
        optimizer=config.optimizer,
        mixed_precision=accelerator.mixed_precision,
    )
    if decision is None:
        logger.info("gradient_checkpointing='auto': no memory plan for this model; all blocks")
        return None
    recompute.set_recomputed_layers(base, decision.recomputed_layers)
    log = logger.info if decision.fits else logger.warning
    log(
        "gradient_checkpointing='auto': recomputing %d of %d blocks; planned peak %s for "
        "micro-batches of up to %d tokens, budget %s%s",
        decision.recomputed_layers,
        decision.num_layers,
        format_gib(decision.planned_bytes),
        decision.tokens,
        format_gib(decision.budget_bytes),
        "" if decision.fits else " (does not fit even with every block recomputed)",
    )
    return decision
