"""Pure metric functions and the table of which metric judges which task.

Every metric has the signature ``metric(predictions, references) -> float`` where
``predictions`` is one string per example and ``references`` is a list of gold strings per
example (several for SQuAD-style qa). Scores are on the scale of the reference implementation
each one reproduces, so numbers here can be compared with published ones:

=============================  =======  ==================================================
metric                         scale    reference implementation
=============================  =======  ==================================================
``accuracy``, ``macro_f1``     0-1      scikit-learn ``accuracy_score`` / ``f1_score(macro)``
``exact_match``, ``f1``        0-100    the official SQuAD v1.1 evaluation script
``rouge1/2/L/Lsum``            0-1      ``rouge_score.rouge_scorer`` F-measure, stemmed
``bleu``, ``chrf``             0-100    ``sacrebleu.corpus_bleu`` / ``corpus_chrf``
=============================  =======  ==================================================
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from itertools import zip_longest

Predictions = Sequence[str]
References = Sequence[Sequence[str]]
MetricFn = Callable[[Predictions, References], float]

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "generation": ("rougeL",),
    "instruction": ("rougeL",),
    "chat": ("rougeL",),
    "sentiment": ("accuracy", "macro_f1"),
    "qa": ("exact_match", "f1"),
    "summarization": ("rouge1", "rouge2", "rougeL", "rougeLsum"),
    "translation": ("bleu", "chrf"),
}
"""Metrics each task is judged by, besides ``loss`` and ``perplexity`` (always computed)."""

LABEL_METRICS = ("accuracy", "macro_f1")
"""Metrics over a closed label set: each prediction is one label, compared with the first gold."""

TASKS = tuple(TASK_METRICS)


# --- SQuAD ------------------------------------------------------------------------------------
# Written by hand because the official SQuAD v1.1 script is not a package; these four steps are
# copied from it so that scores agree with published numbers.


_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation and the articles a/an/the, collapse whitespace (SQuAD v1.1)."""
    text = text.lower()
    text = "".join(char for char in text if char not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _token_f1(prediction: str, gold: str) -> float:
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    overlap = sum((Counter(prediction_tokens) & Counter(gold_tokens)).values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def _squad_average(score: Callable[[str, str], float], predictions, references) -> float:
    """Mean over examples of the best score against any gold answer, times 100 (as SQuAD)."""
    best = [
        max(score(p, gold) for gold in refs)
        for p, refs in zip(predictions, references, strict=True)
    ]
    return 100.0 * sum(best) / len(best)


def exact_match(predictions: Predictions, references: References) -> float:
    """SQuAD exact match (0-100): normalised prediction equals some normalised gold answer."""
    return _squad_average(
        lambda p, g: float(normalize_answer(p) == normalize_answer(g)), predictions, references
    )


def token_f1(predictions: Predictions, references: References) -> float:
    """SQuAD token F1 (0-100): bag-of-tokens F1 after normalisation, best over gold answers."""
    return _squad_average(_token_f1, predictions, references)


# --- closed label sets ------------------------------------------------------------------------
# Written by hand because scikit-learn is an optional extra, not a runtime dependency; the
# definitions follow sklearn's (labels = union of gold and predicted, 0/0 counts as 0).


def accuracy(predictions: Predictions, references: References) -> float:
    """Fraction of examples whose prediction equals the (first) gold label."""
    gold = [refs[0].strip() for refs in references]
    hits = sum(p.strip() == g for p, g in zip(predictions, gold, strict=True))
    return hits / len(gold)


def macro_f1(predictions: Predictions, references: References) -> float:
    """Unweighted mean over labels of per-label F1 = 2TP / (2TP + FP + FN)."""
    predicted = [p.strip() for p in predictions]
    gold = [refs[0].strip() for refs in references]
    pairs = Counter(zip(gold, predicted, strict=True))
    scores = []
    for label in sorted(set(gold) | set(predicted)):
        true_positive = pairs[(label, label)]
        false_positive = sum(n for (g, p), n in pairs.items() if p == label and g != label)
        false_negative = sum(n for (g, p), n in pairs.items() if g == label and p != label)
        scores.append(2 * true_positive / (2 * true_positive + false_positive + false_negative))
    return sum(scores) / len(scores)


# --- ROUGE (rouge-score) ----------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentences_per_line(text: str) -> str:
    """Put one sentence per line, the input rouge-score's ``rougeLsum`` expects.

    rouge-score splits summaries on ``"\\n"``; its own ``split_summaries`` option needs NLTK's
    punkt data (a download), so text without newlines is split after ``.``, ``!`` and ``?``.
    """
    if "\n" in text:
        return text
    return "\n".join(_SENTENCE_END.split(text.strip()))


def rouge(predictions: Predictions, references: References, *, rouge_type: str) -> float:
    """Mean rouge-score F-measure (0-1, Porter-stemmed), best over references per example."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=True)
    if rouge_type == "rougeLsum":
        predictions = [sentences_per_line(p) for p in predictions]
        references = [[sentences_per_line(r) for r in refs] for refs in references]
    scores = [
        scorer.score_multi(list(refs), prediction)[rouge_type].fmeasure
        for prediction, refs in zip(predictions, references, strict=True)
    ]
    return sum(scores) / len(scores)


# --- sacrebleu --------------------------------------------------------------------------------


def _reference_streams(references: References) -> list[list[str | None]]:
    """Transpose per-example references into sacrebleu's streams; ``None`` pads short lists."""
    return [list(stream) for stream in zip_longest(*references)]


def bleu(predictions: Predictions, references: References) -> float:
    """Corpus BLEU (0-100) from ``sacrebleu.corpus_bleu`` with its default 13a tokenizer."""
    import sacrebleu

    return sacrebleu.corpus_bleu(list(predictions), _reference_streams(references)).score


def chrf(predictions: Predictions, references: References) -> float:
    """Corpus chrF (0-100) from ``sacrebleu.corpus_chrf`` with default settings."""
    import sacrebleu

    return sacrebleu.corpus_chrf(list(predictions), _reference_streams(references)).score


METRICS: dict[str, MetricFn] = {
    "accuracy": accuracy,
    "macro_f1": macro_f1,
    "exact_match": exact_match,
    "f1": token_f1,
    "rouge1": partial(rouge, rouge_type="rouge1"),
    "rouge2": partial(rouge, rouge_type="rouge2"),
    "rougeL": partial(rouge, rouge_type="rougeL"),
    "rougeLsum": partial(rouge, rouge_type="rougeLsum"),
    "bleu": bleu,
    "chrf": chrf,
}
"""Metric name -> function; every one needs gold references."""

ALWAYS = ("loss", "perplexity")
"""Computed for every dataset from the masked target tokens; no references needed."""


def compute_metric(name: str, predictions: Predictions, references: References) -> float:
    """Compute metric ``name``.

    Raises:
        ValueError: ``name`` is unknown, or the inputs are empty or of different lengths.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(METRICS)}")
    if not predictions or len(predictions) != len(references):
        raise ValueError(
            f"metric {name!r} needs as many predictions as references and at least one; "
            f"got {len(predictions)} predictions and {len(references)} references"
        )
    return float(METRICS[name](predictions, references))
