"""``build_dataset``: task data in, tokenized and masked train/validation/test splits out.

The path a row takes: read (``readers``) -> select and rename columns, validate, render the prompt
(``normalize``) -> split (``splits``) -> tokenize, mask, truncate (``tokenization``) -> pack the
train split (``packing``) -> metadata and stats.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence

from llama_lora.data.fingerprint import map_fingerprint, tokenizer_fingerprint
from llama_lora.data.labels import LabelSet, resolve_label_set
from llama_lora.data.metadata import write_metadata
from llama_lora.data.normalize import RowNormalizer, check_template, select_task_columns
from llama_lora.data.packing import pack_examples
from llama_lora.data.readers import read_source
from llama_lora.data.splits import SPLITS, check_split_sizes, make_splits, split_names
from llama_lora.data.stats import DatasetStats, SplitStats, padding_efficiency, token_counts
from llama_lora.data.tasks import TaskSpec, get_task
from llama_lora.data.tokenization import ExampleTokenizer, token_features

logger = logging.getLogger(__name__)
_FLAGS = ["_truncated", "_too_long"]
ROW_COLUMNS = ["input_ids", "attention_mask", "labels", "prompt", "response", "references"]


def build_dataset(
    task: str,
    source,
    tokenizer,
    *,
    columns: Mapping[str, str] | None = None,
    template: str | None = None,
    max_length: int = 1024,
    val_size: float = 0.1,
    test_size: float = 0.1,
    seed: int = 0,
    packing: bool = False,
    train_on_inputs: bool = False,
    labels: Sequence[str] | Mapping | None = None,
    source_lang: str = "English",
    target_lang: str = "Vietnamese",
):
    """Build tokenized ``train``/``validation``/``test`` splits for fine-tuning on ``task``.

    Args:
        task: ``generation`` (text), ``instruction`` (instruction, optional input, output),
            ``chat`` (messages), ``sentiment`` (text, label), ``qa`` (optional context, question,
            answer or SQuAD ``answers``), ``summarization`` (document, summary) or
            ``translation`` (source, target).
        source: ``"sample"`` (the bundled data for ``task``), a path to a ``.jsonl``, ``.json``,
            ``.csv``, ``.tsv``, ``.parquet`` or (generation) ``.txt`` file, a list of dicts, a
            pandas ``DataFrame``, or a ``datasets.Dataset``/``DatasetDict`` (its splits are kept).
        tokenizer: the model's Hugging Face tokenizer (it must have an EOS token).
        columns: ``{task field: your column}``, e.g. ``{"text": "review", "label": "stars"}``.
        template: prompt format string over the task's fields (e.g. ``"Review: {text}\\n"``);
            for chat, a Jinja chat template. Defaults to an Alpaca-style prompt per task.
        max_length: the most tokens per example (BOS and EOS included) and per packed row.
        val_size: fraction of rows for validation (when the source has no such split).
        test_size: fraction of rows for test (when the source has no such split).
        seed: seed of the split permutation.
        packing: pack the train split into rows of ``max_length`` (validation/test stay
            per-example); use ``DataCollator.for_model`` to batch them.
        train_on_inputs: compute the loss on the prompt tokens too.
        labels: sentiment label words: a list (int label i -> word i) or ``{raw: word}``.
            Defaults to the data set's ClassLabel names or its sorted distinct string labels.
        source_lang: translation source language name used in the prompt.
        target_lang: translation target language name used in the prompt.

    Returns:
        A ``datasets.DatasetDict`` with ``train``, ``validation`` and ``test``; rows have
        ``input_ids``, ``attention_mask``, ``labels`` (-100 over the prompt), ``prompt``,
        ``response`` and ``references`` (packed train rows: token columns and ``position_ids``).
        Its ``.stats`` is a ``DatasetStats``; each split carries ``read_metadata`` metadata.

    Raises:
        FileNotFoundError: a path does not exist.
        TypeError: ``source`` or ``labels`` is of an unsupported type.
        ValueError: bad arguments; ``DataError`` (a ``ValueError``) for bad data, naming the
            file and line, byte offset, or split and row.

    Example:
        >>> data = build_dataset("sentiment", "sample", tokenizer, max_length=256)
        >>> print(data.stats)
    """
    spec = get_task(task)
    _check_arguments(spec, max_length, val_size, test_size, labels, template)
    tokenizer_key = tokenizer_fingerprint(tokenizer)
    encoder = ExampleTokenizer(tokenizer, max_length, train_on_inputs, tokenizer_key)
    data = _select(read_source(source, task), spec, columns)
    label_set = _label_set(data, spec, labels)
    extras = {"source_lang": source_lang, "target_lang": target_lang}
    if label_set is not None:
        extras["label_words"] = ", ".join(label_set.words)
    bos_added = tokenizer.bos_token_id is not None and tokenizer.bos_token_id in encoder.prefix
    normalizer = RowNormalizer(
        spec, template, extras, label_set, tokenizer, bos_added, tokenizer_key=tokenizer_key
    )
    splits = make_splits(_normalize(data, normalizer), val_size, test_size, seed)
    result, stats = _tokenize_splits(splits, encoder, packing, spec.name)
    metadata = _metadata(spec, label_set, source_lang, target_lang)
    for split in result.values():
        write_metadata(split, metadata)
    result.stats = stats
    logger.info("built %s data set\n%s", spec.name, stats)
    return result


def _check_arguments(spec: TaskSpec, max_length, val_size, test_size, labels, template) -> None:
    """Reject bad arguments before any data is read."""
    if not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1:
        raise ValueError(f"max_length must be a positive int, got {max_length!r}")
    check_split_sizes(val_size, test_size)
    if labels is not None and spec.name != "sentiment":
        raise ValueError(f"labels= sets sentiment label words; task {spec.name!r} takes none")
    check_template(template, spec)


def _select(data, spec: TaskSpec, columns):
    """Keep the train/validation/test splits (aliases resolved) and the task's columns."""
    from datasets import DatasetDict

    if isinstance(data, DatasetDict):
        names = split_names(data)
        return DatasetDict(
            {split: select_task_columns(data[name], spec, columns) for split, name in names.items()}
        )
    return select_task_columns(data, spec, columns)


def _label_set(data, spec: TaskSpec, labels) -> LabelSet | None:
    """The sentiment label set, from ``labels=``, ClassLabel names or the distinct labels."""
    from datasets import ClassLabel, DatasetDict

    if spec.name != "sentiment":
        return None
    parts = list(data.values()) if isinstance(data, DatasetDict) else [data]
    feature = parts[0].features.get("label")
    class_names = feature.names if isinstance(feature, ClassLabel) else None
    raw_values = {value for part in parts for value in part.unique("label")}
    return resolve_label_set(raw_values, labels, class_names)


def _normalize(data, normalizer: RowNormalizer):
    """Run ``normalizer`` over every split (each named in its error messages)."""
    from datasets import DatasetDict

    def run(dataset, split):
        function = dataclasses.replace(normalizer, split=split)
        return dataset.map(
            function,
            batched=True,
            with_indices=True,
            remove_columns=dataset.column_names,
            new_fingerprint=map_fingerprint(dataset, function.cache_key()),
            desc="Validating",
        )

    if isinstance(data, DatasetDict):
        return DatasetDict({name: run(split, name) for name, split in data.items()})
    return run(data, None)


def _tokenize_splits(splits, encoder: ExampleTokenizer, packing: bool, task: str):
    """Tokenize every split, drop examples that cannot fit, pack train; return data and stats."""
    from datasets import DatasetDict

    stats = DatasetStats(task=task, max_length=encoder.max_length, packing=packing)
    result = DatasetDict()
    for name in SPLITS:
        tokenized, truncated, dropped = _tokenize(splits[name], encoder, name)
        lengths, targets = token_counts(tokenized)
        rows = tokenized
        if packing and name == "train":
            rows = pack_examples(tokenized, encoder.max_length)
            stats.packing_efficiency = float(lengths.sum()) / max(1, len(rows) * encoder.max_length)
        elif name == "train":
            stats.padding_efficiency = padding_efficiency(lengths)
        stats.splits[name] = SplitStats(
            len(tokenized), len(rows), int(lengths.sum()), targets, truncated, dropped
        )
        result[name] = rows
    _warn_dropped(stats, encoder.max_length)
    return result, stats


def _tokenize(dataset, encoder: ExampleTokenizer, name: str):
    """(tokenized split without the dropped examples, truncated count, dropped count)."""
    import numpy as np
    from datasets import Dataset

    features = token_features()
    if len(dataset) == 0:
        empty = Dataset.from_dict({column: [] for column in features}, features=features)
        return empty.select_columns(ROW_COLUMNS), 0, 0
    tokenized = dataset.map(
        encoder,
        batched=True,
        remove_columns=["prompt_head", "prompt_cut", "prompt_tail"],
        features=features,
        new_fingerprint=map_fingerprint(dataset, encoder.cache_key()),
        desc=f"Tokenizing {name}",
    )
    flags = tokenized.with_format("numpy", columns=_FLAGS)[:]
    truncated, too_long = int(np.sum(flags["_truncated"])), int(np.sum(flags["_too_long"]))
    if too_long:
        keep = np.flatnonzero(~flags["_too_long"].astype(bool))
        tokenized = tokenized.select(keep)
    return tokenized.select_columns(ROW_COLUMNS), truncated, too_long


def _warn_dropped(stats: DatasetStats, max_length: int) -> None:
    """Warn with the per-split count of examples dropped for length, if any."""
    dropped = {name: split.dropped for name, split in stats.splits.items() if split.dropped}
    if dropped:
        raise_hint = "raise max_length or shorten those responses"
        warnings.warn(
            f"dropped {sum(dropped.values())} example(s) whose response (with the prompt's fixed "
            f"text) does not fit max_length={max_length}: {dropped}; {raise_hint}",
            UserWarning,
            stacklevel=4,
        )


def _metadata(spec: TaskSpec, label_set: LabelSet | None, source_lang: str, target_lang: str):
    """The metadata every split carries (see ``llama_lora.data.metadata``)."""
    metadata: dict = {"task": spec.name}
    if label_set is not None:
        metadata["label_words"] = list(label_set.words)
    if spec.name == "translation":
        metadata.update(source_lang=source_lang, target_lang=target_lang)
    return metadata
