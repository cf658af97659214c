"""Run files for ``llama-lora train``/``evaluate``: a YAML file plus ``key=value`` overrides.

The file has four sections, each feeding one library call, so a YAML key is exactly the keyword
of the function it configures (no second vocabulary to learn)::

    model:      prepare_model(name, **model)       # name: path, hub id or "tiny-llama"
    data:       build_dataset(task, source, tokenizer, **data)
    training:   TrainingConfig(**training)
    evaluation: evaluate(..., **evaluation)         # plus `before: true` to evaluate first

Unknown keys fail early, naming the key and the valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

SECTIONS = ("model", "data", "training", "evaluation")
_EXTRA_KEYS = {"model": {"name"}, "data": {"task", "source"}, "evaluation": {"before", "split"}}
_NOT_KEYS = {"model", "tokenizer", "dataset", "args", "kwargs"}


@dataclass
class RunConfig:
    """A parsed, validated run: one dict of keyword arguments per section."""

    model: dict[str, Any] = field(default_factory=dict)
    """Keywords of ``prepare_model`` plus ``name``."""
    data: dict[str, Any] = field(default_factory=dict)
    """Keywords of ``build_dataset`` plus ``task`` and ``source``."""
    training: dict[str, Any] = field(default_factory=dict)
    """Fields of ``TrainingConfig``."""
    evaluation: dict[str, Any] = field(default_factory=dict)
    """Keywords of ``evaluate`` plus ``before`` (evaluate before training) and ``split``."""

    def __post_init__(self) -> None:
        for section in SECTIONS:
            valid = valid_keys(section)
            for key in getattr(self, section):
                if key not in valid:
                    raise ValueError(
                        f"unknown key {section}.{key}; valid keys in {section!r}: {sorted(valid)}"
                    )
        for section, required in (("model", "name"), ("data", "task"), ("training", "output_dir")):
            if required not in getattr(self, section):
                raise ValueError(f"missing required key {section}.{required}")


def _signature_keys(function: Callable) -> set[str]:
    parameters = inspect.signature(function).parameters.values()
    return {p.name for p in parameters if p.kind is not p.VAR_KEYWORD} - _NOT_KEYS


def valid_keys(section: str) -> set[str]:
    """The keys a section accepts, read from the signature of the function it feeds."""
    if section == "model":
        from llama_lora.model.loading import prepare_model

        return _signature_keys(prepare_model) | _EXTRA_KEYS["model"]
    if section == "data":
        from llama_lora.data import build_dataset

        return _signature_keys(build_dataset) | _EXTRA_KEYS["data"]
    if section == "training":
        from llama_lora.training import TrainingConfig

        return {f.name for f in fields(TrainingConfig)}
    if section == "evaluation":
        from llama_lora.evaluation import evaluate

        return _signature_keys(evaluate) - {"task"} | _EXTRA_KEYS["evaluation"]
    raise ValueError(f"unknown section {section!r}; sections are {list(SECTIONS)}")


def load_run_config(path: str | Path, overrides: Sequence[str] = ()) -> RunConfig:
    """Read a YAML run file and apply ``section.key=value`` overrides (values parsed as YAML).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: malformed YAML structure, a malformed override, or an unknown key.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with sections {list(SECTIONS)}")
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; valid: {list(SECTIONS)}")
    sections = {name: dict(raw.get(name) or {}) for name in SECTIONS}
    for override in overrides:
        key, sep, value = override.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in SECTIONS or not name:
            raise ValueError(
                f"override {override!r} must look like section.key=value with section in "
                f"{list(SECTIONS)} (e.g. training.num_epochs=2)"
            )
        sections[section][name] = yaml.safe_load(value)
    return RunConfig(**sections)
