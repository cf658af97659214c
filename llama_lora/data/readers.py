"""Turn whatever the user passes as ``source`` into a ``datasets.Dataset`` or ``DatasetDict``.

Everything downstream (validation, templating, tokenization, splitting) works on ``datasets``
objects, so each kind of source only has to be converted once, here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from llama_lora.data.errors import DataError
from llama_lora.data.files import load_file

SAMPLE = "sample"
SAMPLES_DIR = Path(__file__).with_name("samples")
SAMPLE_FILES = {
    "generation": "generation.txt",
    "instruction": "instruction.jsonl",
    "chat": "chat.jsonl",
    "sentiment": "sentiment.jsonl",
    "qa": "qa.jsonl",
    "summarization": "summarization.jsonl",
    "translation": "translation_en_vi.jsonl",
}


def sample_path(task: str) -> Path:
    """The bundled sample file for ``task`` (``llama_lora/data/samples/...``)."""
    return SAMPLES_DIR / SAMPLE_FILES[task]


def read_source(source, task: str):
    """Load ``source`` as a ``datasets.Dataset`` (one table) or ``DatasetDict`` (given splits).

    Args:
        source: ``"sample"`` (the bundled file for ``task``); a path (str or ``os.PathLike``) to
            a ``.jsonl``/``.json``/``.csv``/``.tsv``/``.parquet``/``.txt`` file; a list of dicts;
            a pandas ``DataFrame``; a ``datasets.Dataset`` or ``DatasetDict``.
        task: the task name, used to pick the sample file and to reject ``.txt`` for tasks that
            need fields.

    Returns:
        A ``Dataset`` or ``DatasetDict`` with at least one row.

    Raises:
        FileNotFoundError: a path (or the sample file) does not exist.
        TypeError: ``source`` is none of the supported kinds.
        DataError: the source is empty or cannot be parsed.
    """
    from datasets import Dataset, DatasetDict

    if isinstance(source, (Dataset, DatasetDict)):
        data = source
    elif isinstance(source, (str, os.PathLike)):
        data = _read_path(source, task)
    elif _is_dataframe(source):
        data = Dataset.from_pandas(source, preserve_index=False)
    elif isinstance(source, Sequence) and not isinstance(source, (bytes, bytearray)):
        data = _from_records(source)
    else:
        raise TypeError(
            f"unsupported source of type {type(source).__name__}; pass 'sample', a file path, "
            "a list of dicts, a pandas DataFrame, or a datasets.Dataset/DatasetDict"
        )
    _require_rows(data, source)
    return data


def _read_path(source: str | os.PathLike, task: str):
    """Load a file path, or the bundled sample file when ``source == "sample"``."""
    if str(source) == SAMPLE:
        path = sample_path(task)
        if not path.is_file():
            raise FileNotFoundError(f"bundled sample for task {task!r} is missing: {path}")
    else:
        path = Path(source).expanduser()
    if path.suffix.lower() == ".txt" and task != "generation":
        raise DataError(
            f"{path} is plain text, which only task 'generation' reads; task {task!r} needs "
            "named fields, so use .jsonl, .json, .csv, .tsv or .parquet"
        )
    return load_file(path)


def _is_dataframe(source) -> bool:
    """True for a pandas DataFrame, without importing pandas for other sources."""
    return type(source).__name__ == "DataFrame" and hasattr(source, "to_dict")


def _from_records(records: Sequence):
    """Build a ``Dataset`` from a list of dicts, naming the first element that is not a dict."""
    from datasets import Dataset

    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise DataError(
                f"source list element {index} is a {type(record).__name__}; expected a dict "
                "of field name -> value"
            )
    if not records:
        raise DataError("empty source: the list has no rows")
    # Dataset.from_list takes its columns from the first record only, silently dropping a field
    # that the first record lacks; build the columns from every record instead.
    names = list(dict.fromkeys(name for record in records for name in record))
    try:
        return Dataset.from_dict({name: [record.get(name) for record in records] for name in names})
    except Exception as error:  # arrow cannot unify types across rows
        raise DataError(
            _mixed_types(records, names) or f"could not build a table: {error}"
        ) from error


def _mixed_types(records: Sequence[Mapping], names: list[str]) -> str | None:
    """Describe the first value whose type differs from its field's earlier values."""
    for name in names:
        first = None
        for index, record in enumerate(records):
            value = record.get(name)
            if value is None:
                continue
            if first is None:
                first = type(value)
            elif type(value) is not first:
                return (
                    f"field {name!r} in row {index + 1} is {type(value).__name__} "
                    f"({value!r:.60}); earlier rows hold {first.__name__}: each field must hold "
                    "one type in every row"
                )
    return None


def _require_rows(data, source) -> None:
    """Raise ``DataError`` if ``data`` (or every split of it) has no rows."""
    from datasets import DatasetDict

    sizes = (
        [len(split) for split in data.values()] if isinstance(data, DatasetDict) else [len(data)]
    )
    if sum(sizes) == 0:
        described = source if isinstance(source, (str, os.PathLike)) else type(source).__name__
        raise DataError(f"empty source: {described} has no rows")
