"""llama_lora: LoRA and 4-bit QLoRA fine-tuning for LLaMA-family models.

The public API is small and imported lazily (PEP 562), so ``import llama_lora`` stays fast and
never pulls in torch, tensorflow, trl or matplotlib until a name is used::

    from llama_lora import prepare_model, build_dataset, Finetuner, TrainingConfig, evaluate
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "prepare_model": "llama_lora.model.loading",
    "load_adapter": "llama_lora.model.adapters",
    "save_adapter": "llama_lora.model.adapters",
    "merge_and_export": "llama_lora.model.adapters",
    "verify_checkpoint": "llama_lora.model.integrity",
    "write_manifest": "llama_lora.model.integrity",
    "IntegrityError": "llama_lora.errors",
    "build_dataset": "llama_lora.data",
    "DataCollator": "llama_lora.data",
    "DatasetStats": "llama_lora.data",
    "DataError": "llama_lora.data",
    "Finetuner": "llama_lora.training",
    "TrainingConfig": "llama_lora.training",
    "FitResult": "llama_lora.training",
    "Callback": "llama_lora.training",
    "evaluate": "llama_lora.evaluation",
    "compare": "llama_lora.evaluation",
    "plan_memory": "llama_lora.planning",
    "suggest": "llama_lora.planning",
    "MemoryPlan": "llama_lora.planning",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from llama_lora.data import DataCollator, DataError, DatasetStats, build_dataset  # noqa: F401
    from llama_lora.errors import IntegrityError  # noqa: F401
    from llama_lora.evaluation import compare, evaluate  # noqa: F401
    from llama_lora.model.adapters import load_adapter, merge_and_export, save_adapter  # noqa: F401
    from llama_lora.model.integrity import verify_checkpoint, write_manifest  # noqa: F401
    from llama_lora.model.loading import prepare_model  # noqa: F401
    from llama_lora.planning import MemoryPlan, plan_memory, suggest  # noqa: F401
    from llama_lora.training import Callback, Finetuner, FitResult, TrainingConfig  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llama_lora' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
