"""Evaluation: loss/perplexity, the metric each task is judged by, and before/after tables.

The implementation lives in ``evaluator.py`` (not ``evaluate.py``, which the ``evaluate``
function exported here would shadow as an attribute of this package).
"""

from llama_lora.evaluation.evaluator import compare, evaluate
from llama_lora.evaluation.metrics import METRICS, TASK_METRICS, TASKS

__all__ = ["METRICS", "TASKS", "TASK_METRICS", "compare", "evaluate"]
