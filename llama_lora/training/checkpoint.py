"""Checkpoints that are either complete or absent, and an exact resume from them.

A checkpoint directory ``checkpoint-<step>/`` holds:

- the adapter in PEFT format (``adapter_config.json``, ``adapter_model.safetensors``), loadable
  with ``PeftModel.from_pretrained``;
- ``optimizer.pt`` and ``scheduler.pt`` (state dicts), ``rng_state.pt`` (Python, NumPy, torch and
  CUDA generators of every rank), ``trainer_state.json`` (step, epoch, data position, best loss,
  counters, history, config);
- ``manifest.json``: the sha256 of every other file, checked before a resume reads anything.

Everything is written into a hidden temporary sibling, flushed to disk (fsync) and renamed into
place with ``os.replace``, which is atomic on POSIX: a kill at any moment leaves either the old
state or the new complete checkpoint, never a directory that looks complete but is not. Only rank
0 writes (under FSDP with sharded optimizer state every rank writes its shard into the same
temporary directory, as ``accelerate`` does).

All ``.pt`` files hold only tensors and plain containers, so they load with
``torch.load(weights_only=True)``: resuming never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llama_lora.model.integrity import verify_checkpoint, write_manifest
from llama_lora.training.state import TrainState

CHECKPOINT_PREFIX = "checkpoint-"
BEST_DIR = "best"
OPTIMIZER_FILE = "optimizer.pt"
SCHEDULER_FILE = "scheduler.pt"
RNG_FILE = "rng_state.pt"
STATE_FILE = "trainer_state.json"
MANIFEST_FILE = "manifest.json"
BEST_METRICS_FILE = "best_metrics.json"
_CHECKPOINT_RE = re.compile(rf"^{CHECKPOINT_PREFIX}(\d+)$")


# ----------------------------------------------------------------------------- RNG state


def capture_rng_state() -> dict[str, Any]:
    """This process's generator states in a ``weights_only``-loadable form."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of ``capture_rng_state``."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------- atomic dirs


def _fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` so the rename publishes durable data."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(directory)


def _fsync_dir(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def staging_dir(target: Path) -> Path:
    """The temporary sibling a checkpoint is built in: hidden, and named by the target so every
    rank agrees on it without communicating."""
    return target.parent / f".tmp-{target.name}"


def begin_atomic_dir(target: Path) -> Path:
    """Create a fresh staging directory for ``target`` (removing a stale one from a kill)."""
    staging = staging_dir(target)
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    return staging


def commit_atomic_dir(staging: Path, target: Path) -> None:
    """Write the manifest, fsync, and rename ``staging`` to ``target`` atomically.

    An existing ``target`` is first moved aside, so the rename never merges two versions.
    """
    write_manifest(staging, staging / MANIFEST_FILE)
    _fsync_tree(staging)
    previous = target.parent / f".old-{target.name}"
    if target.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(target, previous)
    try:
        os.replace(staging, target)
    except OSError:
        if previous.exists() and not target.exists():
            os.replace(previous, target)  # put the old version back rather than lose it
        raise
    _fsync_dir(target.parent)
    if previous.exists():
        shutil.rmtree(previous)


# ----------------------------------------------------------------------------- discovery


def checkpoint_step(path: Path) -> int | None:
    """Step encoded in a ``checkpoint-<step>`` name, else None."""
    match = _CHECKPOINT_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint is complete when it was renamed into place, i.e. carries its manifest."""
    path = Path(path)
    return (path / MANIFEST_FILE).is_file() and (path / STATE_FILE).is_file()


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete ``checkpoint-<step>`` directories under ``output_dir``, oldest first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [
        p
        for p in output_dir.iterdir()
        if p.is_dir() and checkpoint_step(p) is not None and is_complete_checkpoint(p)
    ]
    return sorted(found, key=lambda p: checkpoint_step(p))


def find_latest_checkpoint(output_dir: Path) -> Path | None:
    """Newest complete checkpoint in ``output_dir``, or None."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def rotate_checkpoints(output_dir: Path, limit: int | None) -> list[Path]:
    """Delete the oldest checkpoints beyond ``limit`` (``best/`` is separate and kept).

    Returns:
        The deleted directories.
    """
    if limit is None:
        return []
    checkpoints = list_checkpoints(output_dir)
    doomed = checkpoints[: max(0, len(checkpoints) - limit)]
    for path in doomed:
        shutil.rmtree(path)
    return doomed


# ----------------------------------------------------------------------------- save


def _write_adapter(accelerator, model, directory: Path, adapter_state: dict) -> None:
    # peft filters the full state dict down to the adapter and writes PEFT-format safetensors.
    accelerator.unwrap_model(model).save_pretrained(
        str(directory), state_dict=adapter_state, safe_serialization=True
    )


def _is_fsdp(accelerator) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def save_checkpoint(
    accelerator,
    model,
    optimizer,
    scheduler,
    state: TrainState,
    *,
    output_dir: Path,
    config: dict[str, Any],
) -> Path:
    """Write ``output_dir/checkpoint-<step>`` atomically. Every process must call this.

    Returns:
        The checkpoint directory.
    """
    from accelerate.utils import gather_object

    target = Path(output_dir) / f"{CHECKPOINT_PREFIX}{state.step}"
    rng_states = gather_object([capture_rng_state()])  # one entry per rank, in rank order
    adapter_state = accelerator.get_state_dict(model)  # a collective under FSDP
    staging = staging_dir(target)
    if accelerator.is_main_process:
        begin_atomic_dir(target)
    accelerator.wait_for_everyone()
    if _is_fsdp(accelerator):
        from accelerate.utils import save_fsdp_optimizer

        save_fsdp_optimizer(accelerator.state.fsdp_plugin, accelerator, optimizer, model, staging)
    elif accelerator.is_main_process:
        torch.save(optimizer.state_dict(), staging / OPTIMIZER_FILE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_adapter(accelerator, model, staging, adapter_state)
        torch.save(scheduler.state_dict(), staging / SCHEDULER_FILE)
        torch.save(rng_states, staging / RNG_FILE)
        payload = {"state": state.to_dict(), "config": config}
        (staging / STATE_FILE).write_text(json.dumps(payload, indent=2) + "\n")
        commit_atomic_dir(staging, target)
    accelerator.wait_for_everyone()
    return target


def save_best_adapter(accelerator, model, state: TrainState, *, output_dir: Path) -> Path:
    """Replace ``output_dir/best`` with the current adapter. Every process must call this."""
    target = Path(output_dir) / BEST_DIR
    adapter_state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        staging = begin_atomic_dir(target)
        _write_adapter(accelerator, model, staging, adapter_state)
        best = {"step": state.step, "val_loss": state.best_val_loss, "epoch": state.epoch}
        (staging / BEST_METRICS_FILE).write_text(json.dumps(best, indent=2) + "\n")
        commit_atomic_dir(staging, target)
    accelerator.wait_for_everyone()
    return target


# ----------------------------------------------------------------------------- load


def verify_complete_checkpoint(path: Path) -> None:
    """Check that ``path`` is a complete checkpoint whose files match its manifest.

    Raises:
        FileNotFoundError: not a complete checkpoint directory.
        IntegrityError: a file is missing, unlisted or altered.
    """
    path = Path(path)
    if not is_complete_checkpoint(path):
        raise FileNotFoundError(
            f"{path} is not a complete checkpoint (expected {MANIFEST_FILE} and {STATE_FILE})"
        )
    verify_checkpoint(path, path / MANIFEST_FILE)


def load_adapter_weights(model, path: Path) -> None:
    """Copy the checkpoint's adapter tensors into ``model`` in place (before ``prepare``)."""
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    weights = load_peft_weights(str(path), device="cpu")
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise ValueError(f"{path}: adapter tensors {unexpected[:5]} do not match the model")


def read_trainer_state(path: Path) -> tuple[TrainState, dict[str, Any]]:
    """``(state, config_dict)`` stored in a checkpoint."""
    payload = json.loads((Path(path) / STATE_FILE).read_text())
    return TrainState.from_dict(payload["state"]), payload.get("config", {})


def load_training_state(accelerator, model, optimizer, scheduler, path: Path) -> None:
    """Restore optimizer and scheduler from ``path`` (after ``prepare``)."""
    path = Path(path)
    if _is_fsdp(accelerator):
        from accelerate.utils import load_fsdp_optimizer

        load_fsdp_optimizer(accelerator.state.fsdp_plugin, accelerator, optimizer, model, path)
    else:
        optimizer_state = torch.load(path / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(optimizer_state)
    scheduler.load_state_dict(torch.load(path / SCHEDULER_FILE, weights_only=True))


def restore_rank_rng_state(path: Path, process_index: int) -> None:
    """Restore this rank's generators; a rank the checkpoint did not have reuses rank 0's."""
    states = torch.load(Path(path) / RNG_FILE, weights_only=True)
    restore_rng_state(states[process_index] if process_index < len(states) else states[0])
