"""Find the local directory behind a model argument: a path, a preset, or a hub id."""

from __future__ import annotations

import os
from pathlib import Path

from llama_lora.model.integrity import PICKLE_SUFFIXES, weight_files
from llama_lora.model.presets import PRESETS, materialize_preset

_HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer.model", "*.txt", "*.jinja"]


def resolve_model_dir(model: str | os.PathLike, *, allow_pickle: bool = False) -> Path:
    """Return the local checkpoint directory for ``model``.

    ``model`` is tried as a preset name, then an existing path, then a hub id. A hub id goes
    through ``huggingface_hub.snapshot_download``, which honours ``HF_HUB_OFFLINE`` and reuses
    the local cache; only safetensors weights are fetched unless ``allow_pickle``.

    Raises:
        FileNotFoundError: a path that does not exist, a directory without ``config.json``, or
            a hub id that is neither cached nor downloadable (the message says how to get it).
    """
    name = os.fspath(model)
    if name in PRESETS:
        return materialize_preset(name)
    path = Path(name).expanduser()
    if path.exists():
        return _checked_dir(path)
    if _looks_like_path(name):
        raise FileNotFoundError(
            f"model {name!r}: no such directory. Pass a local checkpoint directory "
            f"(config.json + *.safetensors + tokenizer files), a hub id like "
            f"'meta-llama/Llama-2-7b-hf', or a preset {list(PRESETS)}"
        )
    return _checked_dir(_download(name, allow_pickle=allow_pickle))


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~")) or name.count("/") != 1 or os.sep in name.replace("/", "")
    )


def _download(repo_id: str, *, allow_pickle: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    patterns = _HUB_PATTERNS + (["*.bin"] if allow_pickle else [])
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except HFValidationError as err:
        raise FileNotFoundError(
            f"model {repo_id!r} is not a local directory, a preset "
            f"{list(PRESETS)}, or a valid hub id: {err}"
        ) from err
    except Exception as err:  # offline and not cached, gated, or no network: one clear message
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
        reason = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else str(err)
        raise FileNotFoundError(
            f"model {repo_id!r} could not be found ({reason}). On a machine with network run "
            f"`hf download {repo_id}` (run `hf auth login` first for gated models such as "
            f"meta-llama/*), then copy the cache (~/.cache/huggingface) or the downloaded "
            f"directory here and pass its path."
        ) from err


def _checked_dir(path: Path) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"model {str(path)!r} is a file; pass the checkpoint directory")
    if not (path / "config.json").is_file():
        present = sorted(p.name for p in path.iterdir())[:20]
        raise FileNotFoundError(f"{path}: no config.json in the model directory (found {present})")
    return path


def check_weight_format(path: Path, *, allow_pickle: bool) -> bool:
    """Return whether safetensors weights exist; refuse pickle-only checkpoints.

    Raises:
        FileNotFoundError: no weight files at all.
        ValueError: only pickle weights and ``allow_pickle=False``.
    """
    files = weight_files(path)
    if any(f.endswith(".safetensors") for f in files):
        return True
    pickles = [f for f in files if f.endswith(PICKLE_SUFFIXES)]
    if not pickles:
        raise FileNotFoundError(f"{path}: no weight files (*.safetensors or *.bin) found")
    if not allow_pickle:
        raise ValueError(
            f"{path}: weights {pickles} are Python pickles, and loading a pickle can run arbitrary "
            f"code. Convert them to safetensors, or pass allow_pickle=True if you trust the source."
        )
    return False
