"""Validate raw rows and turn them into prompt text and response text, task by task.

Output columns: ``prompt_head``, ``prompt_cut``, ``prompt_tail`` (the prompt is their
concatenation; ``prompt_cut`` is the field that may be shortened when the example is too long,
e.g. the QA context, so truncation never has to re-run the template), ``response`` and
``references``. Every problem raises ``DataError`` naming the field and the row, so nothing is
dropped silently.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field

from llama_lora.data.chat import parse_messages, render_chat_prompt
from llama_lora.data.errors import DataError
from llama_lora.data.labels import LabelSet
from llama_lora.data.tasks import TaskSpec

OUTPUT_COLUMNS = ("prompt_head", "prompt_cut", "prompt_tail", "response", "references")
_MARK = "\x00llama_lora_cut\x00"  # stands in for the cuttable field to find where it sits


def select_task_columns(dataset, spec: TaskSpec, columns: dict[str, str] | None):
    """Keep only the task's columns, renamed to the task's field names.

    Args:
        dataset: a ``datasets.Dataset``.
        spec: the task.
        columns: ``{task field: source column}`` for sources whose names differ.

    Raises:
        DataError: ``columns`` names an unknown field, or a required field has no column; the
            message lists the columns present and the mapping expected.
    """
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(spec.fields))
    if unknown:
        raise DataError(
            f"columns= maps unknown field(s) {unknown} for task {spec.name!r}; its fields are "
            f"{list(spec.fields)}"
        )
    present = list(dataset.column_names)
    chosen, missing = {}, []
    for name in spec.fields:
        candidates = [columns[name]] if name in columns else [name, *spec.aliases.get(name, ())]
        source = next((column for column in candidates if column in present), None)
        if source is not None:
            chosen[name] = source
        elif name in spec.required:
            missing.append(candidates[0])
    if missing:
        expected = {name: columns.get(name, name) for name in spec.required}
        raise DataError(
            f"missing column(s) {missing} for task {spec.name!r}: the source has columns "
            f"{present}; expected columns {expected} (map yours with "
            f"columns={{'<task field>': '<your column>'}})"
        )
    selected = dataset.select_columns(list(dict.fromkeys(chosen.values())))
    renames = {source: name for name, source in chosen.items() if source != name}
    return selected.rename_columns(renames) if renames else selected


def check_template(template: str | None, spec: TaskSpec) -> None:
    """Reject a ``template`` whose placeholders are not fields of the task.

    Raises:
        DataError: an unknown or positional placeholder, a malformed format string, or a
            template for ``generation`` (which has no prompt).
    """
    if template is None or spec.name == "chat":  # chat templates are Jinja, checked on use
        return
    if spec.name == "generation":
        raise DataError("task 'generation' has no prompt, so template= does not apply")
    allowed = tuple(name for name in spec.fields if name != spec.response) + spec.extras
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise DataError(f"template is not a valid format string: {error}") from error
    for name in names:
        base = name.split(".")[0].split("[")[0]
        if base == spec.response:
            raise DataError(
                f"template placeholder {{{name}}} is the response of task {spec.name!r}; the "
                "prompt must not contain the answer the model is trained to produce"
            )
        if base not in allowed:
            raise DataError(
                f"template placeholder {{{name}}} is not a field of task {spec.name!r}; "
                f"use {['{' + a + '}' for a in allowed]}"
            )


@dataclass
class RowNormalizer:
    """``datasets.map`` function (batched, with indices) producing ``OUTPUT_COLUMNS``.

    Attributes:
        spec: the task.
        template: the user's prompt template (format string; Jinja for chat) or None.
        extras: values of non-field placeholders (``label_words``, language names).
        label_set: the closed label set (sentiment), else None.
        tokenizer: needed for chat templates only.
        bos_added: whether the tokenizer adds BOS itself (chat strips a rendered one).
        split: the split name for error messages, or None for a single table.
        tokenizer_key: ``tokenizer_fingerprint(tokenizer)``, for ``cache_key``.
    """

    spec: TaskSpec
    template: str | None = None
    extras: dict[str, str] = field(default_factory=dict)
    label_set: LabelSet | None = None
    tokenizer: object = None
    bos_added: bool = True
    split: str | None = None
    tokenizer_key: str = ""

    def cache_key(self) -> list:
        """Everything that decides the output, with the tokenizer as its fingerprint."""
        labels = None
        if self.label_set is not None:
            labels = [self.label_set.words, sorted(map(repr, self.label_set.mapping.items()))]
        extras = sorted(self.extras.items())
        return [
            "normalize",
            self.spec.name,
            self.template,
            extras,
            labels,
            self.bos_added,
            self.split,
            self.tokenizer_key,
        ]

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, list]:
        rows = [{name: values[k] for name, values in batch.items()} for k in range(len(indices))]
        out = [
            self.normalize(row, self._where(index))
            for row, index in zip(rows, indices, strict=True)
        ]
        return {column: [row[i] for row in out] for i, column in enumerate(OUTPUT_COLUMNS)}

    def _where(self, index: int) -> str:
        split = f" of split {self.split!r}" if self.split else ""
        return f"row {index + 1}{split}"

    def normalize(self, row: dict, where: str) -> tuple[str, str, str, str, list[str]]:
        """One row -> (prompt_head, prompt_cut, prompt_tail, response, references)."""
        if self.spec.name == "chat":
            messages = parse_messages(row.get("messages"), where)
            prompt = render_chat_prompt(
                messages, self.tokenizer, self.template, where, self.bos_added
            )
            return prompt, "", "", messages[-1]["content"], [messages[-1]["content"]]
        values = {name: self._text(row, name, where) for name in self.spec.fields}
        if self.spec.name == "generation":
            return "", "", "", values["text"], [values["text"]]
        references = [values[self.spec.response]]
        if self.spec.name == "qa":
            references = _answers(row.get("answer"), where)
            values["answer"] = references[0]
        template = self.template or self.spec.default_template(values)
        head, cut, tail = _render(template, {**values, **self.extras}, self.spec.truncate)
        return head, cut, tail, values[self.spec.response], references

    def _text(self, row: dict, name: str, where: str) -> str:
        """The string value of field ``name``; label and answer are converted elsewhere."""
        value = row.get(name)
        if name == "label" and self.label_set is not None:
            return self.label_set.word(value, where)
        if name == "answer" and self.spec.name == "qa":
            return ""  # filled from _answers
        if name in self.spec.optional and _missing(value):
            return ""
        if not isinstance(value, str):
            raise DataError(
                f"field {name!r} in {where} is {type(value).__name__} ({value!r:.60}); "
                "expected a string"
            )
        if not value.strip():
            raise DataError(f"field {name!r} in {where} is empty")
        return value


def _missing(value) -> bool:
    """None, NaN (pandas' empty cell) and "" all mean an optional field is absent."""
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _answers(value, where: str) -> list[str]:
    """Gold answers from a string, a list of strings or a SQuAD ``{"text": [...]}`` dict."""
    if isinstance(value, str):
        value = [value]
    elif isinstance(value, dict):
        value = value.get("text")
    if not isinstance(value, list) or not all(isinstance(answer, str) for answer in value):
        raise DataError(
            f"field 'answer' in {where} is {type(value).__name__}; expected a string, a list of "
            "strings or a SQuAD-style {'text': [...]} dict"
        )
    answers = list(dict.fromkeys(answer for answer in value if answer.strip()))
    if not answers:
        raise DataError(
            f"field 'answer' in {where} has no answer text (unanswerable questions cannot be "
            "trained as generation; filter them out)"
        )
    return answers


def _render(template: str, values: dict[str, str], cut_field: str | None) -> tuple[str, str, str]:
    """Fill ``template`` and split it around ``cut_field`` when it occurs exactly once."""
    if cut_field and values.get(cut_field):
        marked = template.format(**{**values, cut_field: _MARK})
        if marked.count(_MARK) == 1:
            head, tail = marked.split(_MARK)
            return head, values[cut_field], tail
    return template.format(**values), "", ""
