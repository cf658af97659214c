"""Data: read task data, render prompts, tokenize with masked labels, split, pack and collate.

``build_dataset`` is the entry point; ``DataCollator`` batches its rows for training.
"""

from llama_lora.data.build import build_dataset
from llama_lora.data.collator import DataCollator
from llama_lora.data.errors import DataError
from llama_lora.data.metadata import read_metadata, write_metadata
from llama_lora.data.stats import DatasetStats, SplitStats
from llama_lora.data.tasks import TASKS

__all__ = [
    "TASKS",
    "DataCollator",
    "DataError",
    "DatasetStats",
    "SplitStats",
    "build_dataset",
    "read_metadata",
    "write_metadata",
]
