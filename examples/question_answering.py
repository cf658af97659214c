"""Extractive-style question answering: answer a question from a context passage.

Data: rows with ``question``, ``answer`` and optional ``context``; SQuAD-style
``answers: {"text": [...]}`` works too (every gold answer is kept for scoring). When the prompt is
too long the context is cut, never the answer. Metrics: SQuAD exact match and token F1 (best
over the gold answers) on greedy generations.

    python examples/question_answering.py --smoke
    python examples/question_answering.py --model meta-llama/Llama-2-7b-hf --data squad.jsonl

Same run from YAML: ``llama-lora train examples/configs/question_answering.yaml``.
"""

from _common import ExampleSpec, main

SPEC = ExampleSpec(
    name="question_answering",
    description="Question answering over a context (bundled: short passages with questions).",
    tasks=("qa",),
    max_length=512,
    evaluation={"max_new_tokens": 32},  # answers are short spans
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
