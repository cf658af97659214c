"""Machine translation, English to Vietnamese.

Data: rows with ``source`` (English) and ``target`` (Vietnamese). The prompt names both
languages; a pair too long for ``--max-length`` is dropped (cutting a sentence would teach a wrong
translation). Metrics: corpus BLEU and chrF (sacrebleu, default tokenizer). Vietnamese diacritics
are several UTF-8 bytes each, so byte-level ``tiny-llama`` sequences run longer than the text.

    python examples/translation_en_vi.py --smoke
    python examples/translation_en_vi.py --model meta-llama/Llama-2-7b-hf --data en_vi.jsonl

Same run from YAML: ``llama-lora train examples/configs/translation_en_vi.yaml``.
"""

from _common import ExampleSpec, main

SPEC = ExampleSpec(
    name="translation_en_vi",
    description="English-to-Vietnamese translation (bundled: everyday sentence pairs).",
    tasks=("translation",),
    max_length=384,
    data_options={"source_lang": "English", "target_lang": "Vietnamese"},
    evaluation={"max_new_tokens": 96},
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
