"""Memory planning: will a (Q)LoRA run fit on a GPU, decided from the model's config alone."""

from llama_lora.planning.budget import parse_bytes
from llama_lora.planning.plan import MemoryPlan, plan_memory
from llama_lora.planning.shapes import ModelShape, model_shape
from llama_lora.planning.suggest import Suggestion, suggest

__all__ = [
    "MemoryPlan",
    "ModelShape",
    "Suggestion",
    "model_shape",
    "parse_bytes",
    "plan_memory",
    "suggest",
]
