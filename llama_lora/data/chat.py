"""Render a conversation into the prompt text that precedes the final assistant answer.

The model is trained on the last assistant message; every earlier turn is context. With a
tokenizer that has a chat template (or a ``template=`` Jinja string) that template renders the
prompt, so fine-tuning matches how the checkpoint is served. Without one we fall back to Meta's
LLaMA-2 chat layout, written out here because no library function produces it for a
template-less tokenizer: ``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{user} [/INST] {answer}
</s><s>[INST] {user} [/INST]``.
"""

from __future__ import annotations

import json

from llama_lora.data.errors import DataError

ROLES = ("system", "user", "assistant")


def parse_messages(value, where: str) -> list[dict[str, str]]:
    """Validate a ``messages`` value and return it as a list of ``{role, content}`` dicts.

    A JSON string is accepted too, because CSV and TSV cells cannot hold lists.

    Raises:
        DataError: not a list of ``{role, content}`` with string contents and known roles, or the
            conversation does not end with an assistant message preceded by a user message.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise DataError(
                f"field 'messages' in {where} is a string but not JSON: {error}"
            ) from error
    if not isinstance(value, list) or not value:
        raise DataError(
            f"field 'messages' in {where} must be a non-empty list of {{role, content}}, "
            f"got {type(value).__name__}"
        )
    messages = [_parse_message(message, where, index) for index, message in enumerate(value)]
    if messages[-1]["role"] != "assistant":
        raise DataError(
            f"field 'messages' in {where} must end with an assistant message (the training "
            f"target); it ends with role {messages[-1]['role']!r}"
        )
    if not any(message["role"] == "user" for message in messages):
        raise DataError(f"field 'messages' in {where} has no user message")
    return messages


def _parse_message(message, where: str, index: int) -> dict[str, str]:
    """Validate one message of a conversation."""
    if not isinstance(message, dict) or "role" not in message or "content" not in message:
        raise DataError(
            f"message {index} of 'messages' in {where} must be a dict with role, content"
        )
    role, content = message["role"], message["content"]
    if role not in ROLES:
        raise DataError(f"message {index} in {where} has role {role!r}; roles are {list(ROLES)}")
    if not isinstance(content, str):
        raise DataError(
            f"message {index} in {where}: content is {type(content).__name__}, expected a string"
        )
    return {"role": role, "content": content}


def render_chat_prompt(
    messages: list[dict[str, str]],
    tokenizer,
    template: str | None,
    where: str,
    bos_added: bool,
) -> str:
    """The prompt text for ``messages[:-1]``, ready for the assistant's final answer.

    Args:
        messages: a validated conversation (see ``parse_messages``).
        tokenizer: used for its chat template and BOS/EOS token strings.
        template: a Jinja chat template overriding the tokenizer's, or None.
        where: "row N" for error messages.
        bos_added: whether tokenizing adds BOS itself; then a leading BOS string is removed from
            the rendered text so that the model does not see two.

    Returns:
        The prompt text.
    """
    history = messages[:-1]
    if template is not None or getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(
                history, tokenize=False, add_generation_prompt=True, chat_template=template
            )
        except Exception as error:  # a Jinja template raises arbitrary errors for bad turns
            raise DataError(f"chat template failed on 'messages' in {where}: {error}") from error
    else:
        text = _llama2_prompt(history, tokenizer.bos_token or "", tokenizer.eos_token or "", where)
        if not bos_added:
            text = (tokenizer.bos_token or "") + text
    bos = tokenizer.bos_token
    if bos_added and bos and text.startswith(bos):
        text = text[len(bos) :]
    return text


def _llama2_prompt(history: list[dict[str, str]], bos: str, eos: str, where: str) -> str:
    """Meta's LLaMA-2 chat layout for the turns before the answer (without the first BOS)."""
    system = ""
    if history and history[0]["role"] == "system":
        system, history = history[0]["content"], history[1:]
    roles = [message["role"] for message in history]
    expected = ["user", "assistant"] * (len(history) // 2) + ["user"]
    if roles != expected[: len(roles)] or len(roles) % 2 == 0:
        raise DataError(
            f"'messages' in {where}: the LLaMA-2 chat format needs an optional system message, "
            f"then alternating user/assistant turns ending with user before the answer; got {roles}"
        )
    parts = []
    for index in range(0, len(history), 2):
        user = history[index]["content"].strip()
        if index == 0 and system:
            user = f"<<SYS>>\n{system.strip()}\n<</SYS>>\n\n{user}"
        turn = f"[INST] {user} [/INST]"
        if index + 1 < len(history):
            turn += f" {history[index + 1]['content'].strip()} {eos}"
        parts.append(turn if index == 0 else bos + turn)
    return "".join(parts)
