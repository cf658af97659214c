"""Causal language modelling: continue-pretrain on plain text (domain adaptation).

Data: a ``.txt`` file (paragraphs separated by blank lines) or rows with a ``text`` column. There
is no prompt: every token is a target. Packing (``build_dataset(..., packing=True)``) pays most
here, since paragraphs vary in length. Metrics: perplexity, plus ROUGE-L of a greedy generation
against the held-out paragraph.

    python examples/text_generation.py --smoke
    python examples/text_generation.py --model meta-llama/Llama-2-7b-hf --data my_corpus.txt

Same run from YAML: ``llama-lora train examples/configs/text_generation.yaml``.
"""

from _common import ExampleSpec, main

SPEC = ExampleSpec(
    name="text_generation",
    description="Text generation / continued pre-training (bundled: a plain-text corpus).",
    tasks=("generation",),
    max_length=512,
    smoke_max_length=384,
    evaluation={"max_new_tokens": 64},
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
