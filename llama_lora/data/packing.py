"""Pack tokenized examples into rows of at most ``max_length`` tokens.

Short examples padded to the longest in a batch waste most of the compute; packing several
examples into one row removes the padding. Packing alone would let an example attend to, and be
trained to predict across, the one before it, so each packed example keeps its own
``position_ids`` (restarting at 0, which is how ``DataCollator`` finds the boundaries and builds a
block-diagonal attention mask) and the label of its first token is -100 (no example is trained to
predict its first token from the previous example's last).

Written by hand because neither ``datasets`` nor ``transformers`` packs while keeping
per-example position ids and boundary labels (``DataCollatorWithFlattening`` flattens a whole
batch into one row for flash-attention only).
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_lora.data.tokenization import IGNORE_INDEX

PACKED_COLUMNS = ("input_ids", "attention_mask", "labels", "position_ids")
PACK_BATCH_SIZE = 1000  # examples read at a time: bounds memory; rows never span two reads


def pack_examples(dataset, max_length: int):
    """Greedily pack the rows of ``dataset`` (in order) into rows of at most ``max_length``.

    Args:
        dataset: a ``datasets.Dataset`` with ``input_ids`` and ``labels`` (each row at most
            ``max_length`` tokens).
        max_length: the length of a packed row.

    Returns:
        A ``Dataset`` with ``PACKED_COLUMNS`` (text columns are dropped).
    """
    from datasets import Features, List, Value

    types = {
        "input_ids": "int32",
        "attention_mask": "int8",
        "labels": "int32",
        "position_ids": "int32",
    }
    return dataset.map(
        _Packer(max_length),
        batched=True,
        batch_size=PACK_BATCH_SIZE,
        remove_columns=dataset.column_names,
        features=Features({column: List(Value(types[column])) for column in PACKED_COLUMNS}),
        desc="Packing",
    )


@dataclass
class _Packer:
    """``datasets.map`` function (batched): examples in, packed rows out."""

    max_length: int

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        out: dict[str, list] = {column: [] for column in PACKED_COLUMNS}
        row: dict[str, list] = {column: [] for column in PACKED_COLUMNS}
        for input_ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
            if len(input_ids) > self.max_length:
                raise ValueError(f"an example of {len(input_ids)} tokens exceeds {self.max_length}")
            if len(row["input_ids"]) + len(input_ids) > self.max_length:
                _flush(row, out)
            row["input_ids"] += input_ids
            row["attention_mask"] += [1] * len(input_ids)
            row["labels"] += [IGNORE_INDEX] + list(labels[1:])
            row["position_ids"] += list(range(len(input_ids)))
        _flush(row, out)
        return out


def _flush(row: dict[str, list], out: dict[str, list]) -> None:
    """Move the row being filled to ``out`` (if it has tokens) and start an empty one."""
    if row["input_ids"]:
        for column in PACKED_COLUMNS:
            out[column].append(row[column])
            row[column] = []
