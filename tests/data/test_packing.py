"""Packing and the collator: packed examples must train exactly as they would alone."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llama_lora.data import DataCollator, build_dataset
from llama_lora.data.collator import block_causal_mask
from llama_lora.data.tokenization import IGNORE_INDEX

MAX_LENGTH = 96


@pytest.fixture
def short_rows():
    """Sentiment rows of varied length, so several fit in one packed row."""
    return [
        {"text": f"Review {i}: " + "so " * (i % 9), "label": ["bad", "good"][i % 3 == 0]}
        for i in range(24)
    ]


def _build(rows, tokenizer, packing: bool):
    return build_dataset(
        "sentiment",
        rows,
        tokenizer,
        template="{text}\n",
        max_length=MAX_LENGTH,
        packing=packing,
        seed=3,
    )


def _token_losses(model, batch) -> torch.Tensor:
    """(B, T) next-token cross-entropy, 0 where there is no label (position t predicts t+1)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs).logits.float()  # (B, T, V)
    labels = batch["labels"][:, 1:]  # (B, T-1)
    losses = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels, reduction="none")
    losses = losses * (labels != IGNORE_INDEX)
    return F.pad(losses, (1, 0))  # (B, T): loss of predicting token t, aligned with labels


def _per_example_losses(model, batch) -> list[float]:
    """Mean loss of each example in the batch, examples split where position_ids restart."""
    losses, labelled = _token_losses(model, batch), batch["labels"] != IGNORE_INDEX
    positions = batch.get("position_ids")
    if positions is None:
        positions = torch.arange(batch["input_ids"].shape[1]).expand_as(batch["input_ids"])
    out = []
    for b in range(losses.shape[0]):
        segments = (positions[b] == 0).cumsum(0)
        for segment in segments.unique():
            keep = (segments == segment) & labelled[b]
            if keep.any():
                out.append((losses[b][keep].sum() / keep.sum()).item())
    return out


@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_packed_loss_equals_each_example_alone(
    attn_implementation, short_rows, byte_tokenizer, tiny_llama
):
    model = tiny_llama(attn_implementation)
    collator = DataCollator.for_model(byte_tokenizer, model)
    unpacked = _build(short_rows, byte_tokenizer, packing=False)["train"]
    packed = _build(short_rows, byte_tokenizer, packing=True)["train"]
    assert len(packed) < len(unpacked)  # packing actually combined examples

    alone = [_per_example_losses(model, collator([row]))[0] for row in unpacked]
    together = _per_example_losses(model, collator(list(packed)))
    assert len(together) == len(alone)
    assert torch.allclose(torch.tensor(together), torch.tensor(alone), atol=1e-5, rtol=0)

    # Control: without the block mask, packed examples see their neighbours and the loss moves.
    leaky = collator(list(packed))
    leaky["attention_mask"] = (leaky["input_ids"] != -1).long()
    leaked = torch.tensor(_per_example_losses(model, leaky))
    assert (leaked - torch.tensor(alone)).abs().max() > 1e-3


def test_packed_rows_restart_positions_and_mask_boundaries(short_rows, byte_tokenizer):
    unpacked = _build(short_rows, byte_tokenizer, packing=False)["train"]
    packed = _build(short_rows, byte_tokenizer, packing=True)["train"]
    assert packed.column_names == ["input_ids", "attention_mask", "labels", "position_ids"]
    flat_ids, flat_labels = [], []
    for row in packed:
        assert len(row["input_ids"]) <= MAX_LENGTH
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
        assert starts[0] == 0
        for start in starts:  # nothing is trained to predict across a boundary
            assert row["labels"][start] == IGNORE_INDEX
        flat_ids += row["input_ids"]
        flat_labels += row["labels"]
    assert flat_ids == [t for row in unpacked for t in row["input_ids"]]
    assert flat_labels == [t for row in unpacked for t in row["labels"]]


def test_validation_and_test_stay_per_example_when_packing(short_rows, byte_tokenizer):
    data = _build(short_rows, byte_tokenizer, packing=True)
    for split in ("validation", "test"):
        assert "position_ids" not in data[split].column_names
        assert {"prompt", "response", "references"} <= set(data[split].column_names)
    assert data.stats.packing_efficiency is not None and 0 < data.stats.packing_efficiency <= 1


@pytest.mark.parametrize("multiple", [8, 1, None])
def test_collator_pads_unpacked_rows(multiple, byte_tokenizer):
    rows = [
        {"input_ids": [1, 5, 6, 2], "attention_mask": [1] * 4, "labels": [-100, -100, 6, 2]},
        {"input_ids": [1, 7, 2], "attention_mask": [1] * 3, "labels": [-100, 7, 2], "prompt": "x"},
    ]
    batch = DataCollator(byte_tokenizer, pad_to_multiple_of=multiple)(rows)
    width = 8 if multiple == 8 else 4
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert batch["input_ids"].shape == (2, width) and batch["input_ids"].dtype == torch.long
    assert batch["input_ids"][1, 3:].eq(byte_tokenizer.pad_token_id).all()
    assert batch["labels"][1, 3:].eq(IGNORE_INDEX).all()
    assert batch["attention_mask"].tolist()[1] == [1, 1, 1] + [0] * (width - 3)


def test_block_causal_mask_is_block_diagonal_and_causal():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2]])
    mask = block_causal_mask(positions)[0, 0]
    segments = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    for i in range(8):
        for j in range(8):
            assert mask[i, j].item() == (j <= i and segments[i] == segments[j])


@pytest.mark.parametrize(
    ("implementation", "dtype"),
    [("sdpa", torch.bool), ("eager", torch.float32), ("flex_attention", torch.float32)],
)
def test_packed_mask_format_follows_attention_implementation(implementation, dtype, byte_tokenizer):
    rows = [{"input_ids": [1, 5, 1, 6, 7], "labels": [-100] * 5, "position_ids": [0, 1, 0, 1, 2]}]
    batch = DataCollator(byte_tokenizer, attn_implementation=implementation)(rows)
    assert batch["attention_mask"].shape == (1, 1, 8, 8)
    assert batch["attention_mask"].dtype == dtype
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2, 0, 1, 2]]
    if dtype is torch.float32:  # additive: 0 keeps, a huge negative blocks
        assert (
            batch["attention_mask"][0, 0, 2, 1] < -1e30 and batch["attention_mask"][0, 0, 2, 2] == 0
        )


def test_flash_attention_refuses_packed_rows(byte_tokenizer):
    rows = [{"input_ids": [1, 5, 1, 6], "labels": [-100] * 4, "position_ids": [0, 1, 0, 1]}]
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        DataCollator(byte_tokenizer, attn_implementation="flash_attention_2")(rows)
