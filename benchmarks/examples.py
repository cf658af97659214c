"""The training examples all three systems share, and the statistics that size their batches.

Fairness rests on three choices made here:

* Records longer than the workload's ``max_length`` (in tokens, under llama_lora's Alpaca
  template) are left out before any system sees the data, so nobody truncates, and llama_lora's
  packed build (whose ``max_length`` is the packed row length) keeps the very same examples.
* The unpacked examples (token ids and prompt-masked labels) come from
  ``llama_lora.build_dataset(..., packing=False)``; HF ``Trainer`` trains on those ids, TRL on
  their prompt/response text (tokenizing it itself, as a TRL user's data would be).
* The real tokens per optimizer step are matched to one packed row of llama_lora (greedy
  packing into rows of ``pack_length``): HF's batch is ``round(mean packed-row tokens / mean
  example tokens)`` examples, and TRL's rows (best-fit-decreasing packing fills them almost
  completely) are ``mean packed-row tokens`` long instead of ``pack_length``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataPlan:
    """Facts about the shared examples, computed once by the parent process."""

    source: str
    """``alpaca-5k`` or ``generated``."""
    records_read: int
    """Records read before the length filter."""
    examples: int
    """Examples kept (all fit in ``max_length`` tokens)."""
    mean_example_tokens: float
    """Mean tokens per example, BOS and EOS included."""
    context_tokens: float
    """Token-weighted mean example length ``sum(n^2) / sum(n)``: the mean attention span
    per token when each example attends only to itself (used by the FLOPs count)."""
    mean_packed_row_tokens: float
    """Mean real tokens per packed row of ``pack_length`` (llama_lora's greedy packing)."""
    hf_batch_size: int
    """HF Trainer examples per optimizer step giving the same mean real tokens."""
    trl_pack_length: int
    """TRL's packed row length (``SFTConfig.max_length``) giving the same mean real tokens."""

    def to_dict(self) -> dict:
        return asdict(self)


def example_token_count(record: dict, tokenizer) -> int:
    """Tokens of ``record`` as llama_lora tokenizes it: prompt (with BOS) + response + EOS.

    Uses the task's own template (``llama_lora.data.TASKS``), and, like llama_lora, tokenizes
    prompt and response separately.
    """
    from llama_lora.data import TASKS

    spec = TASKS["instruction"]
    prompt = spec.default_template(record).format(**record)
    prompt_ids = tokenizer(prompt)["input_ids"]
    response_ids = tokenizer(record["output"], add_special_tokens=False)["input_ids"]
    return len(prompt_ids) + len(response_ids) + 1


def select_records(records: list[dict], tokenizer, max_length: int) -> list[dict]:
    """The usable records whose examples fit in ``max_length`` tokens, in their order.

    Records with an empty instruction or output (a few Alpaca rows) are left out too:
    ``build_dataset`` rejects them, rightly, as errors.
    """
    usable = [r for r in records if r["instruction"].strip() and r["output"].strip()]
    return [r for r in usable if example_token_count(r, tokenizer) <= max_length]


def build_unpacked(records: list[dict], tokenizer, max_length: int, seed: int):
    """``build_dataset(..., packing=False)`` train split of ``records`` (no val/test split).

    Raises:
        RuntimeError: the build truncated or dropped an example, which would mean the records
            were not length-filtered with this tokenizer.
    """
    from llama_lora.data import build_dataset

    data = build_dataset(
        "instruction",
        records,
        tokenizer,
        max_length=max_length,
        val_size=0.0,
        test_size=0.0,
        seed=seed,
        packing=False,
    )
    train = data.stats.splits["train"]
    if train.truncated or train.dropped:
        raise RuntimeError(
            f"the shared examples must fit max_length={max_length} untouched, but "
            f"{train.truncated} were truncated and {train.dropped} dropped; filter the records "
            "with select_records using the same tokenizer"
        )
    return data["train"]


def build_packed(records: list[dict], tokenizer, pack_length: int, seed: int):
    """llama_lora's packed train split: ``build_dataset(..., packing=True, max_length=pack)``."""
    from llama_lora.data import build_dataset

    return build_dataset(
        "instruction",
        records,
        tokenizer,
        max_length=pack_length,
        val_size=0.0,
        test_size=0.0,
        seed=seed,
        packing=True,
    )["train"]


def plan_data(
    records: list[dict],
    source: str,
    records_read: int,
    tokenizer,
    *,
    max_length: int,
    pack_length: int,
    seed: int,
) -> DataPlan:
    """Measure the shared examples and choose HF's batch size (see the module docstring)."""
    import numpy as np

    unpacked = build_unpacked(records, tokenizer, max_length, seed)
    lengths = np.array([len(ids) for ids in unpacked["input_ids"]], dtype=np.float64)
    packed = build_packed(records, tokenizer, pack_length, seed)
    packed_tokens = sum(sum(mask) for mask in packed["attention_mask"]) / len(packed)
    return DataPlan(
        source=source,
        records_read=records_read,
        examples=len(unpacked),
        mean_example_tokens=float(lengths.mean()),
        context_tokens=float((lengths**2).sum() / lengths.sum()),
        mean_packed_row_tokens=float(packed_tokens),
        hf_batch_size=max(1, round(packed_tokens / lengths.mean())),
        trl_pack_length=max(max_length, round(packed_tokens)),
    )


def save_records(records: list[dict], path: Path) -> None:
    """Write the shared records for the system subprocesses."""
    Path(path).write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")


def read_records(path: Path) -> list[dict]:
    """Read the records written by ``save_records``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))
