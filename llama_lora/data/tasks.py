"""What each task reads and how its prompt looks: one ``TaskSpec`` per task in a dispatch table.

Adding a task means adding a row to ``TASKS``; nothing else branches on task names except chat
(rendered by ``chat.py``), generation (no prompt) and the sentiment label set (``labels.py``).
Default prompts follow the Alpaca layout (``### Section:`` headers, ending in a newline before the
response) so that every task reads the same way to the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llama_lora.data.errors import DataError

_ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
_ALPACA = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)


@dataclass(frozen=True)
class TaskSpec:
    """How one task maps its fields to a prompt and a response.

    Attributes:
        name: the task name users pass to ``build_dataset``.
        required: fields every row must have (non-empty).
        optional: fields a row may lack or leave empty.
        response: the field the model is trained to produce.
        templates: ``(condition, template)`` pairs; the first whose ``condition`` field is
            non-empty in the row (``None`` always matches) is used. First match wins.
        truncate: the field cut (from its end) when the prompt is too long, or ``None`` when
            cutting would make the example wrong (translation) and it is dropped instead.
        aliases: column names tried for a field when the source has no column of that name.
        extras: template placeholders that are not row fields (label set, language names).
    """

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    response: str = ""
    templates: tuple[tuple[str | None, str], ...] = ()
    truncate: str | None = None
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    extras: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        """All fields the task reads, required first."""
        return self.required + self.optional

    def default_template(self, row: dict[str, str]) -> str:
        """The first default template whose condition field is non-empty in ``row``."""
        for condition, template in self.templates:
            if condition is None or row.get(condition):
                return template
        raise AssertionError(f"task {self.name!r} has no unconditional template")


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(name="generation", required=("text",), response="text"),
        TaskSpec(
            name="instruction",
            required=("instruction", "output"),
            optional=("input",),
            response="output",
            templates=(("input", _ALPACA_INPUT), (None, _ALPACA)),
            truncate="input",
        ),
        TaskSpec(name="chat", required=("messages",)),
        TaskSpec(
            name="sentiment",
            required=("text", "label"),
            response="label",
            templates=(
                (
                    None,
                    "Classify the sentiment of the text as one of: {label_words}.\n\n"
                    "### Text:\n{text}\n\n### Sentiment:\n",
                ),
            ),
            truncate="text",
            aliases={"text": ("sentence", "review")},
            extras=("label_words",),
        ),
        TaskSpec(
            name="qa",
            required=("question", "answer"),
            optional=("context",),
            response="answer",
            templates=(
                (
                    "context",
                    "Answer the question using the context.\n\n### Context:\n{context}\n\n"
                    "### Question:\n{question}\n\n### Answer:\n",
                ),
                (None, "Answer the question.\n\n### Question:\n{question}\n\n### Answer:\n"),
            ),
            truncate="context",
            aliases={"answer": ("answers",)},
        ),
        TaskSpec(
            name="summarization",
            required=("document", "summary"),
            response="summary",
            templates=(
                (None, "Summarize the document.\n\n### Document:\n{document}\n\n### Summary:\n"),
            ),
            truncate="document",
            aliases={"document": ("article",), "summary": ("highlights",)},
        ),
        TaskSpec(
            name="translation",
            required=("source", "target"),
            response="target",
            templates=(
                (
                    None,
                    "Translate the following text from {source_lang} to {target_lang}.\n\n"
                    "### {source_lang}:\n{source}\n\n### {target_lang}:\n",
                ),
            ),
            extras=("source_lang", "target_lang"),
        ),
    )
}


def get_task(name: str) -> TaskSpec:
    """Return the spec of task ``name``.

    Raises:
        DataError: ``name`` is not a task; the message lists the tasks.
    """
    if name not in TASKS:
        raise DataError(f"unknown task {name!r}; tasks are {sorted(TASKS)}")
    return TASKS[name]
