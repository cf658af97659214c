"""The closed label set of a classification task (sentiment): raw labels -> the words trained on.

An LLM classifies by generating a word, so every raw label (an int class id or a string) must map
to one label word, and the set of words is stored in the dataset metadata so that evaluation can
score generations against exactly this set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from llama_lora.data.errors import DataError


@dataclass(frozen=True)
class LabelSet:
    """Label words and how raw labels map to them.

    Attributes:
        words: the label words, in the order users gave them (or sorted when inferred).
        mapping: explicit ``{raw label: word}`` (from a ``labels=`` mapping), else empty and
            raw labels are looked up by value (strings) or index (ints) in ``words``.
    """

    words: tuple[str, ...]
    mapping: dict = field(default_factory=dict)

    def word(self, raw, where: str) -> str:
        """Return the label word for raw label ``raw`` found at ``where`` (e.g. "row 3").

        Raises:
            DataError: ``raw`` is not an int or string, or is outside the label set.
        """
        if isinstance(raw, bool) or not isinstance(raw, (int, str)):
            raise DataError(
                f"field 'label' in {where} is {raw!r} ({type(raw).__name__}); "
                "expected an int class id or a string label"
            )
        if self.mapping:
            for key in (raw, str(raw)):
                if key in self.mapping:
                    return self.mapping[key]
            raise DataError(
                f"label {raw!r} in {where} is not in the label set; labels= maps "
                f"{list(self.mapping)} to {list(self.words)}"
            )
        if isinstance(raw, int):
            if 0 <= raw < len(self.words):
                return self.words[raw]
            raise DataError(
                f"label {raw} in {where} is outside the label set {list(self.words)} "
                f"(class ids 0..{len(self.words) - 1})"
            )
        if raw in self.words:
            return raw
        raise DataError(f"label {raw!r} in {where} is not in the label set {list(self.words)}")


def resolve_label_set(
    raw_values: Iterable,
    labels: Sequence[str] | Mapping | None = None,
    class_names: Sequence[str] | None = None,
) -> LabelSet:
    """Decide the label words for a column whose distinct values are ``raw_values``.

    Args:
        raw_values: the distinct raw labels found in the data (None values are ignored here and
            reported per row later).
        labels: the user's ``labels=``: a list of label words (string labels must be among
            them; int labels index them) or a ``{raw label: word}`` mapping.
        class_names: the names of a ``datasets.ClassLabel`` column, used when ``labels`` is None.

    Returns:
        The ``LabelSet``. Without ``labels`` or ``class_names`` the words are the sorted distinct
        string labels.

    Raises:
        DataError: ``labels`` is malformed, or integer labels come without label words.
        TypeError: ``labels`` is neither a list nor a mapping.
    """
    if isinstance(labels, Mapping):
        words = _check_words(list(dict.fromkeys(labels.values())))
        return LabelSet(words=words, mapping=dict(labels))
    if labels is not None:
        if isinstance(labels, str) or not isinstance(labels, Sequence):
            raise TypeError(
                f"labels must be a list of label words or a {{raw: word}} mapping, "
                f"got {type(labels).__name__}"
            )
        return LabelSet(words=_check_words(list(labels)))
    if class_names:
        return LabelSet(words=_check_words(list(class_names)))
    present = [value for value in raw_values if value is not None]
    if any(isinstance(value, int) and not isinstance(value, bool) for value in present):
        raise DataError(
            "integer labels need label words: pass labels=['negative', 'positive'] (class id i "
            "-> word i) or labels={0: 'negative', 1: 'positive'}"
        )
    return LabelSet(words=_check_words(sorted({str(value) for value in present})))


def _check_words(words: list) -> tuple[str, ...]:
    """Validate label words: non-empty, distinct, non-blank strings."""
    if not words:
        raise DataError("the label set is empty: the data has no labels and labels= gives none")
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise DataError(f"label word {word!r} is not a non-empty string; label words: {words}")
    if len(set(words)) != len(words):
        raise DataError(f"label words must be distinct, got {words}")
    return tuple(words)
