"""evaluate() end to end on hand-built splits: keys per task, files written, modes, bad input."""

from __future__ import annotations

import json
import math
import warnings

import pytest
import sacrebleu
import torch
from rouge_score import rouge_scorer

from llama_lora.evaluation import TASK_METRICS, TASKS, compare, evaluate
from llama_lora.evaluation.metrics import compute_metric


def _read_predictions(directory):
    lines = (directory / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


@pytest.mark.parametrize("task", TASKS)
def test_every_task_returns_its_metrics_and_writes_them(
    model, tokenizer, sample_split, tmp_path, task
):
    split = sample_split(task)
    scores = evaluate(model, tokenizer, split, batch_size=2, max_new_tokens=4, output_dir=tmp_path)
    assert set(scores) == {"loss", "perplexity", *TASK_METRICS[task]}
    assert all(isinstance(value, float) for value in scores.values())
    assert json.loads((tmp_path / "metrics.json").read_text()) == scores
    rows = _read_predictions(tmp_path)
    assert [row["references"] for row in rows] == split["references"]
    assert [row["prompt"] for row in rows] == split["prompt"]
    # the written predictions reproduce every score, so the file is the evidence for them
    predictions = [row["prediction"] for row in rows]
    for name in TASK_METRICS[task]:
        assert compute_metric(name, predictions, split["references"]) == scores[name]
    per_example = sum(row["loss"] * row["num_target_tokens"] for row in rows)
    assert per_example / sum(row["num_target_tokens"] for row in rows) == pytest.approx(
        scores["loss"]
    )


def test_translation_scores_equal_sacrebleu_on_the_predictions(
    model, tokenizer, sample_split, tmp_path
):
    split = sample_split("translation")
    scores = evaluate(model, tokenizer, split, max_new_tokens=4, output_dir=tmp_path)
    predictions = [row["prediction"] for row in _read_predictions(tmp_path)]
    references = [[refs[0] for refs in split["references"]]]
    assert scores["bleu"] == sacrebleu.corpus_bleu(predictions, references).score
    assert scores["chrf"] == sacrebleu.corpus_chrf(predictions, references).score


def test_summarization_scores_equal_rouge_score_on_the_predictions(
    model, tokenizer, sample_split, tmp_path
):
    split = sample_split("summarization")
    scores = evaluate(model, tokenizer, split, max_new_tokens=4, output_dir=tmp_path)
    predictions = [row["prediction"] for row in _read_predictions(tmp_path)]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for name in ("rouge1", "rouge2", "rougeL"):
        per_example = [
            scorer.score(refs[0], pred)[name].fmeasure
            for pred, refs in zip(predictions, split["references"], strict=True)
        ]
        assert scores[name] == pytest.approx(sum(per_example) / len(per_example))


def test_sentiment_predictions_are_label_words(model, tokenizer, sample_split, tmp_path):
    split = sample_split("sentiment")
    scores = evaluate(model, tokenizer, split, output_dir=tmp_path)
    predictions = [row["prediction"] for row in _read_predictions(tmp_path)]
    assert set(predictions) <= {"negative", "positive"}
    gold = [refs[0] for refs in split["references"]]
    hits = sum(p == g for p, g in zip(predictions, gold, strict=True))
    assert scores["accuracy"] == pytest.approx(hits / len(gold))


def test_raw_records_score_like_the_equivalent_split(model, tokenizer, sample_records, make_split):
    records = sample_records["qa"]
    split = make_split(tokenizer, "qa", records)
    from_split = evaluate(model, tokenizer, split, max_new_tokens=4)
    from_records = evaluate(model, tokenizer, records, task="qa", max_new_tokens=4)
    assert from_records == pytest.approx(from_split)


def test_task_argument_overrides_metadata_and_metrics_override_the_task(
    model, tokenizer, sample_split
):
    split = sample_split("instruction")
    scores = evaluate(model, tokenizer, split, task="qa", max_new_tokens=2)
    assert set(scores) == {"loss", "perplexity", "exact_match", "f1"}
    scores = evaluate(model, tokenizer, split, metrics=["bleu", "loss"], max_new_tokens=2)
    assert set(scores) == {"loss", "perplexity", "bleu"}


def test_num_samples_limits_the_examples(model, tokenizer, sample_split, tmp_path):
    evaluate(model, tokenizer, sample_split("sentiment"), num_samples=2, output_dir=tmp_path)
    assert len(_read_predictions(tmp_path)) == 2


class _RecordingMetric:
    """Stands in for a Hugging Face ``evaluate`` module: anything with ``compute``."""

    name = "recording"

    def __init__(self, result):
        self.result = result
        self.calls = []

    def compute(self, *, predictions, references):
        self.calls.append((predictions, references))
        return self.result


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"score": 0.25, "counts": [1, 2], "name": "x"}, {"score": 0.25}),  # scalars only
        (0.5, {"recording": 0.5}),
    ],
)
def test_metric_objects_with_compute_are_accepted(model, tokenizer, sample_split, result, expected):
    metric = _RecordingMetric(result)
    split = sample_split("translation")
    scores = evaluate(model, tokenizer, split, metrics=[metric, "chrf"], max_new_tokens=2)
    assert {k: v for k, v in scores.items() if k not in {"loss", "perplexity", "chrf"}} == expected
    (predictions, references), *_ = metric.calls
    assert len(predictions) == len(split)
    assert references == [refs[0] for refs in split["references"]]  # single refs as strings


def test_eval_mode_during_the_call_and_modes_restored_after(tiny_model, tokenizer, sample_split):
    model = tiny_model(attention_dropout=0.5)  # dropout would make two runs differ
    model.train()
    model.model.layers[0].eval()  # a mixed state must come back exactly
    modes = {name: module.training for name, module in model.named_modules()}
    split = sample_split("sentiment")
    first = evaluate(model, tokenizer, split)
    second = evaluate(model, tokenizer, split)
    assert first == second
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert torch.is_grad_enabled()


def test_compare_prints_a_table_of_changes(capsys):
    table = compare(
        {"loss": 2.0, "perplexity": 7.389, "accuracy": 0.5},
        {"loss": 1.5, "perplexity": 4.4817, "accuracy": 0.75, "macro_f1": 0.7},
    )
    assert capsys.readouterr().out.strip() == table.strip()
    lines = table.splitlines()
    assert lines[0].split() == ["metric", "before", "after", "change"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["loss"] == ["2.0000", "1.5000", "-0.5000"]
    assert rows["accuracy"] == ["0.5000", "0.7500", "+0.2500"]
    assert rows["macro_f1"] == ["-", "0.7000", "-"]


# --- bad input ---------------------------------------------------------------------------------


def _unlabelled_split(tokenizer, make_split, sample_records):
    """A tokenised qa split without text columns (like a user's own pre-tokenised data)."""
    return make_split(tokenizer, "qa", sample_records["qa"]).remove_columns(
        ["prompt", "response", "references"]
    )


@pytest.mark.parametrize(
    ("case", "kwargs", "message"),
    [
        ("qa", {"task": "poetry"}, r"unknown task 'poetry'; choose from \['generation'"),
        ("qa", {"metrics": ["bleurt"]}, r"unknown metric 'bleurt'; choose from \['accuracy'"),
        ("qa", {"metrics": [42]}, "unknown metric 42"),
        ("qa", {"num_samples": 0}, "num_samples must be a positive integer"),
        ("qa", {"batch_size": 0}, "batch_size and max_new_tokens must be >= 1"),
        ("empty_list", {"task": "qa"}, "the dataset to evaluate is empty"),
        ("empty_split", {}, "the dataset to evaluate is empty"),
        ("records_without_task", {}, "carries no task metadata.*pass task= one of"),
        ("no_references", {}, r"metrics \['exact_match', 'f1'\] compare predictions with ref"),
        ("no_response", {"task": "qa"}, "record 0 has neither input_ids\\+labels nor prompt"),
        ("bad_references", {"task": "qa"}, "'references' must be a non-empty list"),
    ],
)
def test_bad_input_raises_clear_errors(
    model, tokenizer, make_split, sample_records, case, kwargs, message
):
    qa = sample_records["qa"]
    datasets = {
        "qa": lambda: make_split(tokenizer, "qa", qa),
        "empty_list": lambda: [],
        "empty_split": lambda: make_split(tokenizer, "qa", qa).select([]),
        "records_without_task": lambda: qa,
        "no_references": lambda: _unlabelled_split(tokenizer, make_split, sample_records),
        "no_response": lambda: [{"prompt": "only a prompt"}],
        "bad_references": lambda: [{"prompt": "p", "references": []}],
    }
    with pytest.raises(ValueError, match=message):
        evaluate(model, tokenizer, datasets[case](), **kwargs)


def test_loss_only_works_without_references(model, tokenizer, make_split, sample_records):
    split = _unlabelled_split(tokenizer, make_split, sample_records)
    assert set(evaluate(model, tokenizer, split, metrics=[])) == {"loss", "perplexity"}


def test_non_dataset_input_is_a_type_error(model, tokenizer):
    with pytest.raises(TypeError, match="datasets.Dataset or a list of dicts"):
        evaluate(model, tokenizer, "not a dataset", task="qa")


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_bundled_sample_test_split_gives_the_documented_keys(model, tokenizer, task):
    """The issue's acceptance check, through the real build_dataset on the bundled samples."""
    data = pytest.importorskip("llama_lora.data")
    if not hasattr(data, "build_dataset"):
        pytest.skip("llama_lora.data.build_dataset is not available")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped over-long sample examples are expected here
        split = data.build_dataset(task, "sample", tokenizer)["test"]
    scores = evaluate(model, tokenizer, split, batch_size=2, max_new_tokens=2, num_samples=2)
    assert set(scores) == {"loss", "perplexity", *TASK_METRICS[task]}
    assert all(math.isfinite(value) for value in scores.values())
