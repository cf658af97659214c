"""Log-likelihood scoring: masked token loss and closed-label-set classification.

Both are computed in float32 from the model's logits whatever the model's compute dtype, so a
bf16 or 4-bit model is scored with the same arithmetic as a float32 one. Callers run these
under ``torch.inference_mode()`` with the model in eval mode (``evaluate`` does both).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100

Collate = Callable[[list[dict]], dict[str, torch.Tensor]]


@dataclass
class TokenLoss:
    """Per-example summed negative log-likelihood of the target (label != -100) tokens."""

    nll: list[float]
    """Sum over each example's target tokens of -log p(token | prefix), in nats."""
    num_tokens: list[int]
    """Number of target tokens of each example."""

    @property
    def mean(self) -> float:
        """Dataset loss: total NLL / total target tokens (a token-weighted mean, not per batch)."""
        return sum(self.nll) / sum(self.num_tokens)


def input_device(model) -> torch.device:
    """Where the model's inputs go: the embedding's device (the first one under device_map)."""
    return model.get_input_embeddings().weight.device


def token_loss(model, rows: Sequence[dict], collate: Collate, batch_size: int) -> TokenLoss:
    """Negative log-likelihood of every row's target tokens, as in training (shifted labels).

    Args:
        model: a causal LM (transformers or peft).
        rows: tokenised rows with ``input_ids``, ``attention_mask`` and ``labels``.
        collate: pads a list of rows into tensors (labels padded with -100).
        batch_size: rows per forward pass.
    """
    device = input_device(model)
    nll: list[float] = []
    counts: list[int] = []
    for start in range(0, len(rows), batch_size):
        batch = collate(list(rows[start : start + batch_size]))
        batch = {key: value.to(device) for key, value in batch.items()}
        labels = batch.pop("labels")
        logits = model(**batch).logits  # (B, T, V)
        targets = labels[:, 1:]  # (B, T-1): token t is predicted from the logits at t-1
        mask = targets != IGNORE_INDEX
        # Only the target positions go to float32: the full (B, T, V) logits stay in the
        # model's dtype, which bounds memory for long prompts and large vocabularies.
        token_nll = F.cross_entropy(
            logits[:, :-1][mask].float(), targets[mask].to(logits.device), reduction="none"
        )
        row_of_token = mask.nonzero()[:, 0].to(token_nll.device)
        per_row = torch.zeros(len(labels), device=token_nll.device).index_add_(
            0, row_of_token, token_nll
        )
        nll.extend(per_row.tolist())
        counts.extend(mask.sum(dim=1).tolist())
    return TokenLoss(nll, counts)


def left_pad(sequences: Sequence[Sequence[int]], pad_token_id: int):
    """Left-pad token lists so they all end at the last column.

    Returns:
        ``(input_ids, attention_mask, position_ids)``, each ``(B, T)``; positions count real
        tokens only, so a padded prompt is positioned exactly like the same prompt unpadded.
    """
    length = max(len(s) for s in sequences)
    input_ids = torch.tensor([[pad_token_id] * (length - len(s)) + list(s) for s in sequences])
    attention_mask = torch.tensor([[0] * (length - len(s)) + [1] * len(s) for s in sequences])
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return input_ids, attention_mask, position_ids


def _cache_keyword(model) -> str:
    """``cache`` since transformers 5.2x, ``past_key_values`` before (still accepted, warned)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _right_pad(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    length = max(len(s) for s in sequences)
    return torch.tensor([list(s) + [value] * (length - len(s)) for s in sequences])


def score_labels(
    model,
    prompt_ids: Sequence[Sequence[int]],
    label_ids: Sequence[Sequence[int]],
    pad_token_id: int,
) -> torch.Tensor:
    """Sum of log p(label tokens | prompt) for every label of every prompt, in one batch.

    The prompts go through the model once; the key/value cache of that pass is then repeated
    once per label (``Cache.batch_repeat_interleave``) and all label continuations of the batch
    are scored in a second, short forward pass. Compared with scoring each ``prompt + label``
    sequence separately, the prompt (the long part) is computed once instead of once per label.

    Args:
        model: a causal LM (transformers or peft) returning a ``Cache`` as ``past_key_values``.
        prompt_ids: ``B`` prompts as token ids (BOS included when the tokenizer adds it).
        label_ids: the ``L`` label continuations as token ids (no BOS), shared by all prompts.
        pad_token_id: id used for padding; its positions are masked out.

    Returns:
        ``(B, L)`` float32 tensor of summed label log-probabilities, in nats.
    """
    num_labels = len(label_ids)
    if num_labels == 0 or any(len(ids) == 0 for ids in label_ids):
        raise ValueError(f"every label needs at least one token, got label ids {label_ids!r}")
    device = input_device(model)
    padded = left_pad(prompt_ids, pad_token_id)
    input_ids, attention_mask, position_ids = (t.to(device) for t in padded)
    prompt = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=1,
    )
    next_token_logp = prompt.logits[:, -1].float().log_softmax(dim=-1)  # (B, V)
    flat_labels = [list(ids) for _ in prompt_ids for ids in label_ids]  # B*L, example-major
    first = torch.tensor([ids[0] for ids in flat_labels], device=next_token_logp.device)
    scores = next_token_logp.repeat_interleave(num_labels, dim=0).gather(1, first[:, None])[:, 0]
    if max(len(ids) for ids in flat_labels) > 1:
        cache = getattr(prompt, "cache", None) or prompt.past_key_values
        cache.batch_repeat_interleave(num_labels)  # (B*L, ...) views of the prompt's keys/values
        scores = scores + _continuation_logp(
            model, cache, flat_labels, attention_mask, position_ids, num_labels, pad_token_id
        ).to(scores.device)
    return scores.view(len(prompt_ids), num_labels)


def _continuation_logp(
    model, cache, flat_labels, prompt_mask, prompt_positions, num_labels, pad_token_id
) -> torch.Tensor:
    """Log-prob of label tokens 2..n given the cached prompt and label tokens 1..n-1."""
    device = prompt_mask.device
    inputs = _right_pad([ids[:-1] for ids in flat_labels], pad_token_id).to(device)  # (B*L, C)
    targets = _right_pad([ids[1:] for ids in flat_labels], IGNORE_INDEX).to(device)  # (B*L, C)
    input_mask = _right_pad([[1] * (len(ids) - 1) for ids in flat_labels], 0).to(device)
    prompt_mask = prompt_mask.repeat_interleave(num_labels, dim=0)
    next_position = prompt_positions[:, -1:].repeat_interleave(num_labels, dim=0) + 1
    positions = next_position + torch.arange(inputs.shape[1], device=device)  # (B*L, C)
    logits = model(
        input_ids=inputs,
        attention_mask=torch.cat([prompt_mask, input_mask], dim=1),
        position_ids=positions,
        use_cache=True,
        **{_cache_keyword(model): cache},
    ).logits
    logp = logits.float().log_softmax(dim=-1)  # (B*L, C, V)
    valid = targets != IGNORE_INDEX
    token_logp = logp.gather(2, targets.clamp(min=0).to(logp.device)[..., None])[..., 0]
    return (token_logp * valid.to(logp.device)).sum(dim=1)
