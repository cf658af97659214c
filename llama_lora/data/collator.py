"""Batch rows for the trainer: dynamic padding, and block-diagonal attention for packed rows.

For packed rows (rows with ``position_ids``) per-example ``position_ids`` are not enough: checked
against transformers 5.25, under SDPA and eager attention a packed example still attends to the
examples before it in the row unless the model gets a 4D mask that forbids it. So the collator
builds a block-diagonal causal mask of shape ``(B, 1, T, T)`` from the position ids (a new block
starts wherever the position id is 0).

What that mask must look like depends on the attention implementation
(``transformers/masking_utils.py`` passes a 4D mask through unchanged):

* ``sdpa`` hands it to ``torch.nn.functional.scaled_dot_product_attention``, which reads a bool
  mask as True = may attend. That is the default format here.
* ``eager`` and ``flex_attention`` *add* the mask to the attention scores, so a bool mask would
  add 0/1 and mask nothing; they get an additive float mask (0 = attend, dtype min = blocked).
* flash attention takes no 4D mask at all; packed rows are refused there with a clear error.

``DataCollator.for_model(tokenizer, model)`` picks the right one from the model's config.
"""

from __future__ import annotations

from dataclasses import dataclass

from llama_lora.data.tokenization import IGNORE_INDEX

KEPT_COLUMNS = ("input_ids", "attention_mask", "labels", "position_ids")
BOOL_MASK_IMPLEMENTATIONS = ("sdpa",)
#: Implementations that find example boundaries from ``position_ids`` themselves
#: (``llama_lora.model.packed_attention``): packed rows need no (B, 1, T, T) mask for them.
SEGMENT_AWARE_IMPLEMENTATIONS = ("llama_lora_packed_sdpa",)


@dataclass
class DataCollator:
    """Collate tokenized rows into padded tensors.

    Args:
        tokenizer: its ``pad_token_id`` pads ``input_ids`` (falling back to ``unk_token_id``,
            then 0, for tokenizers without one: padded positions are masked out and labelled
            -100, so the value never matters, and EOS is never used so it is never confused with
            a real end of text).
        pad_to_multiple_of: pad the batch length up to a multiple of this (8 suits tensor cores);
            None pads to the longest row exactly.
        attn_implementation: the model's ``config._attn_implementation``; decides the format of
            the packed-row mask (bool for ``sdpa``, additive float otherwise).

    Returns (when called on a list of rows):
        ``input_ids`` (B, T) long, ``labels`` (B, T) long padded with -100, and ``attention_mask``
        (B, T) long for unpacked rows, or, when any row is packed, ``attention_mask``
        (B, 1, T, T) block-diagonal causal plus ``position_ids`` (B, T).

    Example:
        >>> collator = DataCollator.for_model(tokenizer, model)
        >>> loader = torch.utils.data.DataLoader(data["train"], batch_size=8, collate_fn=collator)
    """

    tokenizer: object
    pad_to_multiple_of: int | None = 8
    attn_implementation: str = "sdpa"

    def __post_init__(self) -> None:
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(
                f"pad_to_multiple_of must be >= 1 or None, got {self.pad_to_multiple_of}"
            )

    @classmethod
    def for_model(cls, tokenizer, model, pad_to_multiple_of: int | None = 8) -> DataCollator:
        """A collator whose packed-row mask suits ``model``'s attention implementation."""
        config = getattr(model, "config", None)
        implementation = getattr(config, "_attn_implementation", None) or "sdpa"
        return cls(tokenizer, pad_to_multiple_of, implementation)

    @property
    def pad_token_id(self) -> int:
        """The id used to pad ``input_ids``."""
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.unk_token_id):
            if candidate is not None:
                return candidate
        return 0

    def __call__(self, rows: list[dict]) -> dict:
        import torch

        if not rows:
            raise ValueError("cannot collate an empty list of rows")
        lengths = [len(row["input_ids"]) for row in rows]
        width = _round_up(max(lengths), self.pad_to_multiple_of)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)  # (B, T)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)  # (B, T)
        for b, (row, length) in enumerate(zip(rows, lengths, strict=True)):
            input_ids[b, :length] = torch.as_tensor(row["input_ids"], dtype=torch.long)
            labels[b, :length] = torch.as_tensor(row["labels"], dtype=torch.long)
        batch = {"input_ids": input_ids, "labels": labels}
        if not any("position_ids" in row for row in rows):
            positions = torch.arange(width)[None, :]  # (1, T)
            batch["attention_mask"] = (positions < torch.tensor(lengths)[:, None]).long()
            return batch
        batch["position_ids"] = _position_ids(rows, lengths, width)
        if self.attn_implementation not in SEGMENT_AWARE_IMPLEMENTATIONS:
            batch["attention_mask"] = self._packed_mask(batch["position_ids"])
        return batch

    def _packed_mask(self, position_ids):
        """Block-diagonal causal mask (B, 1, T, T) in the format the attention code reads."""
        import torch

        if self.attn_implementation.startswith("flash"):
            raise ValueError(
                f"packed rows need a block-diagonal 4D attention mask, which attention "
                f"{self.attn_implementation!r} does not take; load the model with "
                "attn_implementation='sdpa' (or 'eager'), or build the data with packing=False"
            )
        mask = block_causal_mask(position_ids)
        if self.attn_implementation in BOOL_MASK_IMPLEMENTATIONS:
            return mask
        blocked = torch.finfo(torch.float32).min
        return torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, blocked)


def block_causal_mask(position_ids):
    """Bool (B, 1, T, T): query i may attend key j iff j <= i and both are in the same example.

    An example starts wherever ``position_ids`` is 0. Padding gets positions 0, 1, ... of its
    own, so it forms one more block: its rows are never empty (no NaN from a softmax over
    nothing) and no real token can see it.
    """
    import torch

    segments = (position_ids == 0).cumsum(dim=-1)  # (B, T)
    same = segments[:, :, None] == segments[:, None, :]  # (B, T, T)
    width = position_ids.shape[-1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()  # (T, T)
    return (same & causal)[:, None, :, :]  # (B, 1, T, T)


def _position_ids(rows: list[dict], lengths: list[int], width: int):
    """(B, T) position ids: a row's own, or 0..n-1 for an unpacked row; padding restarts at 0."""
    import torch

    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (row, length) in enumerate(zip(rows, lengths, strict=True)):
        own = row.get("position_ids")
        values = torch.as_tensor(own, dtype=torch.long) if own is not None else torch.arange(length)
        position_ids[b, :length] = values
        position_ids[b, length:] = torch.arange(width - length)
    return position_ids


def _round_up(length: int, multiple: int | None) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (unchanged when None)."""
    if not multiple:
        return length
    return -(-length // multiple) * multiple
