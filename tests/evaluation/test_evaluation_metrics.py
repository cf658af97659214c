"""Metric wrappers against hand-computed cases and against the libraries they wrap."""

from __future__ import annotations

import math

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from llama_lora.evaluation import metrics
from llama_lora.evaluation.metrics import compute_metric

# --- SQuAD: hand-computed with the official v1.1 definitions -----------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  an   Apple, a day ", "apple day"),
        ("Theatre (the)", "theatre"),
        ("U.S.A.", "usa"),
    ],
)
def test_normalize_answer(text, expected):
    assert metrics.normalize_answer(text) == expected


@pytest.mark.parametrize(
    ("prediction", "golds", "exact", "f1"),
    [
        ("The Eiffel Tower!", ["eiffel tower"], 100.0, 100.0),
        # tokens {in, paris, france} vs {paris}: P = 1/3, R = 1 -> F1 = 0.5
        ("in Paris, France", ["Paris"], 0.0, 50.0),
        # tokens {blue, red} vs {red, green, blue, yellow}: P = 1, R = 1/2 -> F1 = 2/3
        ("blue red", ["red green blue yellow"], 0.0, 200.0 / 3),
        # best over gold answers: the second one matches exactly after normalisation
        ("a cat", ["the dog", "Cat"], 100.0, 100.0),
        # repeated tokens count with multiplicity: {x, x} vs {x}: P = 1/2, R = 1
        ("x x", ["x"], 0.0, 100.0 * 2 / 3),
        ("nothing", ["something"], 0.0, 0.0),
    ],
)
def test_squad_single_example(prediction, golds, exact, f1):
    assert compute_metric("exact_match", [prediction], [golds]) == pytest.approx(exact)
    assert compute_metric("f1", [prediction], [golds]) == pytest.approx(f1)


def test_squad_averages_over_examples():
    predictions = ["Paris", "in Paris, France"]
    references = [["paris"], ["Paris"]]
    assert compute_metric("exact_match", predictions, references) == pytest.approx(50.0)
    assert compute_metric("f1", predictions, references) == pytest.approx((100.0 + 50.0) / 2)


# --- closed label sets: hand-computed confusion matrices ---------------------------------------


def _from_confusion(matrix: dict[tuple[str, str], int]):
    """Expand {(gold, predicted): count} into prediction and reference lists."""
    predictions, references = [], []
    for (gold, predicted), count in matrix.items():
        predictions += [predicted] * count
        references += [[gold]] * count
    return predictions, references


@pytest.mark.parametrize(
    ("matrix", "accuracy", "macro_f1"),
    [
        # binary: F1(pos) = 2*1/(2+0+1) = 2/3, F1(neg) = 2*2/(4+1+0) = 4/5
        ({("pos", "pos"): 1, ("pos", "neg"): 1, ("neg", "neg"): 2}, 3 / 4, (2 / 3 + 4 / 5) / 2),
        # three classes, rows gold: A: [3, 1, 0], B: [0, 2, 2], C: [1, 0, 1]
        # F1(A) = 6/8, F1(B) = 4/7, F1(C) = 2/5
        (
            {
                ("A", "A"): 3,
                ("A", "B"): 1,
                ("B", "B"): 2,
                ("B", "C"): 2,
                ("C", "A"): 1,
                ("C", "C"): 1,
            },
            6 / 10,
            (6 / 8 + 4 / 7 + 2 / 5) / 3,
        ),
        # a predicted label never in gold counts as a class with F1 = 0 (as scikit-learn)
        ({("a", "a"): 1, ("a", "b"): 1}, 1 / 2, (2 / 3 + 0.0) / 2),
        ({("x", "x"): 4}, 1.0, 1.0),
    ],
)
def test_label_metrics_from_confusion_matrix(matrix, accuracy, macro_f1):
    predictions, references = _from_confusion(matrix)
    assert compute_metric("accuracy", predictions, references) == pytest.approx(accuracy)
    assert compute_metric("macro_f1", predictions, references) == pytest.approx(macro_f1)


def test_label_metrics_match_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    gold = ["a", "b", "c", "a", "b", "c", "a", "a", "b", "d"]
    predicted = ["a", "c", "c", "b", "b", "a", "a", "d", "b", "c"]
    references = [[g] for g in gold]
    assert compute_metric("accuracy", predicted, references) == pytest.approx(
        sklearn_metrics.accuracy_score(gold, predicted)
    )
    assert compute_metric("macro_f1", predicted, references) == pytest.approx(
        sklearn_metrics.f1_score(gold, predicted, average="macro", zero_division=0)
    )


# --- ROUGE and sacrebleu: the wrapper equals the library on the same inputs ---------------------

PREDICTIONS = ["the cats were sitting on the mat", "a quick brown fox", "hello world. bye now."]
REFERENCES = [
    ["the cat sat on the mat", "there is a cat on the mat"],
    ["the quick brown fox jumps"],
    ["hello there world.\nbye."],
]


@pytest.mark.parametrize("rouge_type", ["rouge1", "rouge2", "rougeL"])
def test_rouge_equals_rouge_score(rouge_type):
    scorer = rouge_scorer.RougeScorer([rouge_type], use_stemmer=True)
    expected = [
        max(scorer.score(ref, pred)[rouge_type].fmeasure for ref in refs)
        for pred, refs in zip(PREDICTIONS, REFERENCES, strict=True)
    ]
    result = compute_metric(rouge_type, PREDICTIONS, REFERENCES)
    assert result == pytest.approx(sum(expected) / len(expected))
    assert 0.0 < result < 1.0


def test_rouge_lsum_splits_sentences_onto_lines_as_rouge_score_expects():
    scorer = rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=True)
    split = metrics.sentences_per_line
    assert split("One. Two!  Three? four") == "One.\nTwo!\nThree?\nfour"
    assert split("kept\nas is. here") == "kept\nas is. here"
    expected = [
        max(scorer.score(split(ref), split(pred))["rougeLsum"].fmeasure for ref in refs)
        for pred, refs in zip(PREDICTIONS, REFERENCES, strict=True)
    ]
    result = compute_metric("rougeLsum", PREDICTIONS, REFERENCES)
    assert result == pytest.approx(sum(expected) / len(expected))


@pytest.mark.parametrize(
    ("name", "library"), [("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)]
)
def test_sacrebleu_metrics_equal_the_library(name, library):
    predictions = ["the cat sat on the mat", "a dog runs in the park", "xin chào các bạn"]
    single = [["the cat sat on a mat"], ["the dog runs in a park"], ["xin chào bạn"]]
    expected = library(predictions, [[refs[0] for refs in single]]).score
    assert compute_metric(name, predictions, single) == pytest.approx(expected)
    # variable numbers of references: sacrebleu streams padded with None
    multi = [single[0] + ["a cat sat on the mat"], single[1], single[2] + ["chào các bạn"]]
    streams = [[r[0] for r in multi], [multi[0][1], None, multi[2][1]]]
    assert compute_metric(name, predictions, multi) == pytest.approx(
        library(predictions, streams).score
    )


def test_every_task_metric_is_registered():
    for task, names in metrics.TASK_METRICS.items():
        assert set(names) <= set(metrics.METRICS), task
    assert set(metrics.TASKS) == {
        "generation",
        "instruction",
        "chat",
        "sentiment",
        "qa",
        "summarization",
        "translation",
    }


@pytest.mark.parametrize(
    ("name", "predictions", "references", "message"),
    [
        ("bleurt", ["a"], [["a"]], "unknown metric 'bleurt'; choose from"),
        ("bleu", [], [], "at least one"),
        ("f1", ["a", "b"], [["a"]], "2 predictions and 1 references"),
    ],
)
def test_compute_metric_rejects_bad_input(name, predictions, references, message):
    with pytest.raises(ValueError, match=message):
        compute_metric(name, predictions, references)


def test_perfect_predictions_score_the_maximum():
    texts = ["the cat sat on the mat.", "a quick brown fox jumps over the lazy dog."]
    references = [[t] for t in texts]
    for name, best in [("bleu", 100.0), ("chrf", 100.0), ("exact_match", 100.0), ("f1", 100.0)]:
        assert math.isclose(compute_metric(name, texts, references), best, rel_tol=1e-6)
    for name in ("rouge1", "rouge2", "rougeL", "rougeLsum", "accuracy", "macro_f1"):
        assert compute_metric(name, texts, references) == pytest.approx(1.0)
