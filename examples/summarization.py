"""Abstractive summarization: write a short summary of a document.

Data: rows with ``document`` and ``summary`` (``article``/``highlights`` as in CNN/DailyMail are
recognised). Long documents are cut to fit ``--max-length``; the summary is always kept whole.
Metrics: ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum (rouge-score, with stemming).

    python examples/summarization.py --smoke
    python examples/summarization.py --model meta-llama/Llama-2-7b-hf --data news.jsonl \\
        --max-length 2048

Same run from YAML: ``llama-lora train examples/configs/summarization.yaml``.
"""

from _common import ExampleSpec, main

SPEC = ExampleSpec(
    name="summarization",
    description="Summarization (bundled: short news-style documents with summaries).",
    tasks=("summarization",),
    max_length=768,
    smoke_max_length=384,  # documents are cut, summaries kept
    evaluation={"max_new_tokens": 96},
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
