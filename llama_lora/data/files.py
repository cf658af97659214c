"""Load a data file through ``datasets`` and, when that fails, say exactly where the file is bad.

``datasets`` turns each file into a memory-mapped Arrow table in its cache, so a file larger than
memory streams instead of becoming a Python list. Its errors, though, say "An error occurred while
generating the dataset". When a load fails we re-read the file ourselves, only then, to find the
byte offset of invalid UTF-8 or the line of a malformed JSON record, and raise a ``DataError``
that names it.
"""

from __future__ import annotations

import codecs
import json
from pathlib import Path

from llama_lora.data.errors import DataError

# extension -> (datasets packaged builder, extra builder kwargs)
_BUILDERS: dict[str, tuple[str, dict]] = {
    ".jsonl": ("json", {}),
    ".json": ("json", {}),
    ".csv": ("csv", {"keep_default_na": False}),
    ".tsv": ("csv", {"sep": "\t", "keep_default_na": False}),
    ".parquet": ("parquet", {}),
    ".txt": ("text", {"sample_by": "paragraph"}),
}
SUPPORTED_EXTENSIONS = tuple(_BUILDERS)
_TEXT_EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv", ".txt")
_CHUNK_BYTES = 1 << 20


def load_file(path: str | Path):
    """Read one data file into a ``datasets.Dataset``.

    CSV/TSV cells are read with ``keep_default_na=False`` so an empty cell is ``""`` (not NaN)
    and a review that says "NA" stays text. A ``.txt`` file yields one ``text`` row per
    paragraph (paragraphs are separated by blank lines).

    Args:
        path: a ``.jsonl``, ``.json`` (array of records or JSON lines), ``.csv``, ``.tsv``,
            ``.parquet`` or ``.txt`` file.

    Returns:
        The rows as a ``datasets.Dataset`` backed by the ``datasets`` cache.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DataError: unsupported extension, empty file, invalid UTF-8 (with the byte offset),
            malformed JSON (with the line number) or any other parse failure (with the file).
    """
    from datasets import load_dataset

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in _BUILDERS:
        raise DataError(
            f"unsupported data file {path}: extension {suffix!r} is not one of "
            f"{list(SUPPORTED_EXTENSIONS)}"
        )
    if path.stat().st_size == 0:
        raise DataError(f"empty source: {path} is an empty file")
    _check_utf8(path)
    builder, kwargs = _BUILDERS[suffix]
    try:
        dataset = load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except Exception as error:  # any parse failure: find where, then re-raise with that
        raise _diagnose(path, error) from error
    if suffix == ".txt":
        dataset = _clean_paragraphs(dataset)
    return dataset


def _clean_paragraphs(dataset):
    """Strip the paragraphs of a ``.txt`` file and drop the empty ones (runs of blank lines)."""
    dataset = dataset.map(lambda batch: {"text": [t.strip() for t in batch["text"]]}, batched=True)
    return dataset.filter(lambda batch: [bool(t) for t in batch["text"]], batched=True)


def _check_utf8(path: Path) -> None:
    """Raise ``DataError`` naming the byte offset if a text file is not UTF-8.

    Checked up front, not only when loading fails, because Arrow's JSON reader accepts invalid
    UTF-8 and the error would otherwise surface later, far from the file. Decoding runs at
    memory speed, far faster than the tokenization that follows.
    """
    if path.suffix.lower() not in _TEXT_EXTENSIONS:
        return
    offset = find_invalid_utf8(path)
    if offset is not None:
        raise DataError(
            f"{path} is not valid UTF-8: undecodable byte at byte offset {offset}; "
            "re-save the file as UTF-8"
        )


def _diagnose(path: Path, error: Exception) -> DataError:
    """Turn a failed load into a ``DataError`` that says where in ``path`` the problem is."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        problem = find_malformed_json(path)
        if problem is not None:
            return DataError(problem)
    if suffix in _TEXT_EXTENSIONS and not _has_records(path):
        return DataError(f"empty source: {path} has no data rows")
    cause = error.__cause__ or error
    return DataError(f"could not read {path}: {type(cause).__name__}: {cause}")


def _has_records(path: Path) -> bool:
    """Whether a text file has any data: a CSV/TSV needs a line after its header."""
    needed = 2 if path.suffix.lower() in (".csv", ".tsv") else 1
    found = 0
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            found += bool(line.strip())
            if found >= needed:
                return True
    return False


def find_invalid_utf8(path: Path) -> int | None:
    """Return the byte offset of the first byte that is not valid UTF-8, or None if none is.

    Reads in 1 MiB chunks with an incremental decoder so a multi-gigabyte file is never held in
    memory; a character split across two chunks is carried over by the decoder.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    consumed = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            buffered = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                return consumed - buffered + error.start
            consumed += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as error:
            return consumed - len(decoder.getstate()[0]) + error.start
    return None


def find_malformed_json(path: Path) -> str | None:
    """Describe the first malformed JSON record of ``path`` (file and line), or return None.

    A file whose first non-blank character is ``[`` is parsed as one JSON array; anything else is
    read as JSON Lines, one record per non-blank line.
    """
    with path.open(encoding="utf-8") as handle:
        head = handle.read(4096).lstrip()
    if head.startswith("["):
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            return f"{path}: line {error.lineno}, column {error.colno}: malformed JSON: {error.msg}"
        return None
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                snippet = line.strip()[:80]
                return f"{path}: line {line_number}: malformed JSON: {error.msg}: {snippet!r}"
            if not isinstance(record, dict):
                kind = type(record).__name__
                return f"{path}: line {line_number}: expected a JSON object per line, got {kind}"
    return None
