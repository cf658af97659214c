"""Sentiment classification: fine-tune a LLaMA model to label text positive or negative.

Data: rows with ``text`` and ``label`` (strings, or ints mapped to label words). The prompt lists
the label words and the model learns to answer with one; evaluation scores each label word's
log-likelihood (no free-text parsing) and reports accuracy and macro-F1.

    python examples/sentiment.py --smoke                      # under a minute on a CPU
    python examples/sentiment.py                              # tiny-llama, a few minutes
    python examples/sentiment.py --model meta-llama/Llama-2-7b-hf \\
        --data reviews.csv --columns text=review,label=stars  # your data, one 16 GB GPU

Same run from YAML: ``llama-lora train examples/configs/sentiment.yaml``.
"""

from _common import ExampleSpec, main

SPEC = ExampleSpec(
    name="sentiment",
    description="Sentiment analysis (bundled: English reviews, positive or negative).",
    tasks=("sentiment",),
    max_length=256,  # tiny-llama tokens are bytes; a review and its prompt fit
    evaluation={"max_new_tokens": 8},  # labels are scored, not generated
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
