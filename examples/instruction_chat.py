"""Instruction following and chat: teach a base model to answer like an assistant.

``--task chat`` (default): rows with ``messages``, a list of ``{"role", "content"}`` ending with
the assistant's answer, which is the training target (earlier turns are the prompt); rendered
with the tokenizer's chat template when it has one, else the LLaMA-2 ``[INST]`` format.
``--task instruction``: Alpaca rows ``instruction``, optional ``input``, ``output``. Metrics:
perplexity and ROUGE-L of the generated answer. The adapter is saved with the tokenizer (and so
with its chat template).

    python examples/instruction_chat.py --smoke
    python examples/instruction_chat.py --task instruction --smoke
    python examples/instruction_chat.py --model meta-llama/Llama-2-7b-hf --data chats.jsonl

Same run from YAML: ``llama-lora train examples/configs/instruction_chat.yaml``.
"""

from _common import ExampleSpec, main

SPEC = ExampleSpec(
    name="instruction_chat",
    description="Instruction tuning and chat (bundled: conversations and Alpaca-style items).",
    tasks=("chat", "instruction"),
    max_length=1024,  # conversations are several turns; shorter ones drop the longest chats
    smoke_max_length=512,
    evaluation={"max_new_tokens": 64},
)

if __name__ == "__main__":
    raise SystemExit(main(SPEC))
