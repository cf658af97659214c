"""Training: the ``Finetuner`` loop, its config, checkpoints, callbacks and monitoring."""

from llama_lora.training.callbacks import Callback, EarlyStopping
from llama_lora.training.checkpoint import find_latest_checkpoint
from llama_lora.training.config import TrainingConfig
from llama_lora.training.finetuner import Finetuner
from llama_lora.training.state import FitResult, TrainState

__all__ = [
    "Callback",
    "EarlyStopping",
    "Finetuner",
    "FitResult",
    "TrainState",
    "TrainingConfig",
    "find_latest_checkpoint",
]
