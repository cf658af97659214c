"""``evaluate``: the numbers a fine-tune is judged by, in one call; ``compare``: before vs after.

Every dataset gets ``loss`` and ``perplexity`` over its target tokens (masked exactly as in
training). Each task adds the metric it is usually reported with (see
``metrics.TASK_METRICS``). Closed label sets (sentiment, or any split whose metadata lists
``label_words``) are predicted by scoring each label's log-likelihood, never by parsing free
text; the other tasks are predicted by batched greedy generation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from llama_lora.data.collator import DataCollator
from llama_lora.evaluation.generation import generate_continuations
from llama_lora.evaluation.inputs import (
    EvalData,
    encode_continuation,
    encode_prompt,
    load_eval_data,
    pad_token_id,
)
from llama_lora.evaluation.metrics import ALWAYS, METRICS, TASK_METRICS, compute_metric
from llama_lora.evaluation.scoring import TokenLoss, score_labels, token_loss


def evaluate(
    model,
    tokenizer,
    dataset,
    *,
    task: str | None = None,
    metrics: Sequence[Any] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    num_samples: int | None = None,
    output_dir: str | Path | None = None,
) -> dict[str, float]:
    """Evaluate ``model`` on ``dataset`` and return ``{metric name: score}``.

    Args:
        model: a transformers causal LM or a peft ``PeftModel`` (4-bit included). It is put in
            eval mode for the call and given back in the modes it had.
        tokenizer: the model's tokenizer.
        dataset: a split from ``build_dataset`` (task and label words are read from its
            metadata) or raw records: dicts with ``prompt`` and ``response`` and/or
            ``references`` (then ``task`` is required).
        task: one of ``metrics.TASKS``; overrides the dataset's metadata.
        metrics: metric names (see ``metrics.METRICS``) and/or objects with a
            ``compute(predictions=..., references=...)`` method, such as modules of the optional
            Hugging Face ``evaluate`` package. Defaults to the task's metrics; ``[]`` computes
            only ``loss`` and ``perplexity``.
        batch_size: examples per forward pass or ``generate`` call.
        max_new_tokens: the most tokens generated per example.
        num_samples: evaluate only the first ``num_samples`` examples.
        output_dir: if given, per-example predictions go to ``predictions.jsonl`` and the
            scores to ``metrics.json`` there.

    Returns:
        ``loss`` (mean NLL per target token, nats), ``perplexity`` (``exp(loss)``) and the
        requested metrics.

    Raises:
        ValueError: unknown task or metric, empty dataset, or a metric that needs references
            on data without them.

    Example:
        >>> before = evaluate(model, tokenizer, splits["test"])
        >>> ...  # fine-tune
        >>> compare(before, evaluate(model, tokenizer, splits["test"]))
    """
    if batch_size < 1 or max_new_tokens < 1:
        raise ValueError(
            f"batch_size and max_new_tokens must be >= 1, got {batch_size} and {max_new_tokens}"
        )
    data = load_eval_data(dataset, tokenizer, task, num_samples)
    names, modules = _resolve_metrics(data, metrics)
    with _eval_mode(model), torch.inference_mode():
        losses = token_loss(model, data.rows, DataCollator.for_model(tokenizer, model), batch_size)
        predictions = _predict(model, tokenizer, data, batch_size, max_new_tokens, names, modules)
    scores = _loss_scores(losses)
    for name in names:
        scores[name] = compute_metric(name, predictions, data.references)
    for module in modules:
        scores.update(_module_scores(module, predictions, data.references))
    if output_dir is not None:
        _write_outputs(Path(output_dir), data, losses, predictions, scores)
    return scores


def _resolve_metrics(data: EvalData, metrics) -> tuple[list[str], list[Any]]:
    """Split ``metrics`` into known names and ``.compute`` objects; check references exist."""
    requested = list(TASK_METRICS[data.task] if metrics is None else metrics)
    names: list[str] = []
    modules: list[Any] = []
    for metric in requested:
        if callable(getattr(metric, "compute", None)):
            modules.append(metric)
        elif not isinstance(metric, str) or metric not in (*METRICS, *ALWAYS):
            raise ValueError(
                f"unknown metric {metric!r}; choose from {sorted((*METRICS, *ALWAYS))} or pass "
                "an object with a compute(predictions=..., references=...) method"
            )
        elif metric not in ALWAYS and metric not in names:
            names.append(metric)
    if (names or modules) and data.references is None:
        raise ValueError(
            f"metrics {names + [_module_name(m) for m in modules]} compare predictions with "
            "references, but the dataset has no 'references' or 'response' column; add one or "
            "pass metrics=[] for loss and perplexity only"
        )
    if (names or modules) and data.prompts is None:
        raise ValueError(
            "predictions need the prompt text, but the dataset has no 'prompt' column "
            "(packed splits drop it; evaluate on the validation or test split)"
        )
    return names, modules


@contextmanager
def _eval_mode(model) -> Iterator[None]:
    """Put every submodule in eval mode, then give each back the mode it had."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _predict(model, tokenizer, data, batch_size, max_new_tokens, names, modules) -> list[str]:
    """Label-scored predictions for closed label sets, generated text otherwise."""
    if not (names or modules):
        return []
    if data.label_words is not None:
        return _predict_labels(model, tokenizer, data, batch_size)
    return generate_continuations(
        model, tokenizer, data.prompts, batch_size=batch_size, max_new_tokens=max_new_tokens
    )


def _predict_labels(model, tokenizer, data: EvalData, batch_size: int) -> list[str]:
    """The label word with the highest summed token log-probability after each prompt."""
    label_ids = [encode_continuation(tokenizer, word) for word in data.label_words]
    predictions: list[str] = []
    for start in range(0, len(data.prompts), batch_size):
        prompt_ids = [encode_prompt(tokenizer, p) for p in data.prompts[start : start + batch_size]]
        scores = score_labels(model, prompt_ids, label_ids, pad_token_id(tokenizer))  # (B, L)
        predictions.extend(data.label_words[i] for i in scores.argmax(dim=1).tolist())
    return predictions


def _loss_scores(losses: TokenLoss) -> dict[str, float]:
    if sum(losses.num_tokens) == 0:
        raise ValueError("no target tokens to score: every label is -100")
    loss = losses.mean
    return {"loss": loss, "perplexity": math.exp(loss) if loss < 700 else math.inf}


def _module_name(module) -> str:
    return str(getattr(module, "name", None) or type(module).__name__)


def _module_scores(module, predictions, references) -> dict[str, float]:
    """Scalar results of ``module.compute``; one reference per example is passed as a string."""
    if all(len(refs) == 1 for refs in references):
        references = [refs[0] for refs in references]
    result = module.compute(predictions=list(predictions), references=list(references))
    if isinstance(result, dict):
        return {
            key: float(value)
            for key, value in result.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        }
    return {_module_name(module): float(result)}


def _write_outputs(directory: Path, data: EvalData, losses, predictions, scores) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "predictions.jsonl", "w", encoding="utf-8") as file:
        for index, (nll, count) in enumerate(zip(losses.nll, losses.num_tokens, strict=True)):
            record = {
                "index": index,
                "prompt": data.prompts[index] if data.prompts is not None else None,
                "prediction": predictions[index] if predictions else None,
                "references": data.references[index] if data.references is not None else None,
                "loss": nll / count if count else None,
                "num_target_tokens": count,
            }
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    (directory / "metrics.json").write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")


def compare(before: dict[str, float], after: dict[str, float]) -> str:
    """Print and return a table of each metric before, after, and the change.

    Metrics present on one side only show ``-`` on the other. For ``loss`` and ``perplexity``
    lower is better; for every other metric higher is better.

    Example:
        >>> print(compare({"loss": 2.0}, {"loss": 1.5}))  # doctest: +SKIP
        metric      before     after    change
        loss        2.0000    1.5000   -0.5000
    """
    names = list(before) + [name for name in after if name not in before]
    width = max([len("metric"), *map(len, names)])
    lines = [f"{'metric':<{width}}  {'before':>10}  {'after':>10}  {'change':>10}"]
    for name in names:
        old, new = before.get(name), after.get(name)
        change = new - old if old is not None and new is not None else None
        lines.append(
            f"{name:<{width}}  {_cell(old):>10}  {_cell(new):>10}  {_cell(change, sign=True):>10}"
        )
    table = "\n".join(lines)
    print(table)
    return table


def _cell(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.4f}" if sign else f"{value:.4f}"
