"""Causal-LM cross entropy as a *sum over target tokens*, plus the token counts to normalise it.

Why not the model's own ``loss``: ``transformers`` returns the mean over each micro-batch's target
tokens. Averaging those means over gradient-accumulation steps (or processes) weights a short
micro-batch's tokens more than a long one's, so ``batch 2 x accumulate 2`` no longer equals
``batch 4``: the well-known gradient-accumulation bug. Summing here and dividing once by the
target tokens of the whole optimizer step (all micro-batches, all ranks) gives exactly the mean
over every target token that step, whatever the batching.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def shifted_targets(labels: torch.Tensor) -> torch.Tensor:
    """Labels aligned with the logits that predict them: position t predicts token t + 1.

    Args:
        labels: (B, T) token ids with ``-100`` where no loss is taken (prompt, padding).

    Returns:
        (B, T - 1) targets.
    """
    return labels[:, 1:]


def count_target_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Number of tokens that carry loss in a (B, T) label batch, as a 0-dim device tensor."""
    return (shifted_targets(labels) != IGNORE_INDEX).sum()


def count_real_tokens(batch: dict[str, torch.Tensor], pad_token_id: int | None) -> torch.Tensor:
    """Non-padding tokens of a batch (for tokens/s), as a 0-dim device tensor.

    A 2-D attention mask marks real tokens directly. Packed rows carry a 4-D block mask instead,
    so there the pad id tells padding apart (packed rows are padded only at their very end).
    """
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return mask.sum()
    input_ids = batch["input_ids"]
    if pad_token_id is None:
        return torch.tensor(input_ids.numel(), device=input_ids.device)
    return (input_ids != pad_token_id).sum()


def token_cross_entropy_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of the next-token cross entropy over all target tokens of a batch.

    Computed in fp32 whatever the logits' dtype, because a bf16 log-softmax over a 32k vocabulary
    loses the small differences the gradient depends on.

    Args:
        logits: (B, T, V) model outputs.
        labels: (B, T) targets with ``-100`` where no loss is taken.

    Returns:
        0-dim fp32 tensor: the summed loss (0 when no token has a target).
    """
    targets = shifted_targets(labels)  # (B, T-1)
    predictions = logits[:, :-1, :].float()  # (B, T-1, V)
    return F.cross_entropy(
        predictions.reshape(-1, predictions.size(-1)),
        targets.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )


def token_cross_entropy_per_example(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row loss sums and target counts, so evaluation can drop padded duplicate rows.

    Returns:
        ``(loss_sums, target_counts)``, each (B,): fp32 sums and int64 counts.
    """
    targets = shifted_targets(labels)  # (B, T-1)
    predictions = logits[:, :-1, :].float()  # (B, T-1, V)
    token_losses = F.cross_entropy(
        predictions.transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
    )  # (B, T-1), 0 where ignored
    return token_losses.sum(dim=1), (targets != IGNORE_INDEX).sum(dim=1)


def model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch minus ``labels``: the loss is computed here, not inside the model."""
    keys = ("input_ids", "attention_mask", "position_ids")
    return {key: batch[key] for key in keys if batch.get(key) is not None}


@torch.no_grad()
def validation_loss(accelerator, model: torch.nn.Module, loader) -> float:
    """Mean loss over every target token of a (sharded) validation loader, all processes.

    ``gather_for_metrics`` drops the rows accelerate repeats to even out the last batch across
    processes, so the result equals a single process's over the same rows.
    """
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    count = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    for batch in loader:
        logits = model(**model_inputs(batch)).logits
        sums, counts = token_cross_entropy_per_example(logits, batch["labels"])
        sums, counts = accelerator.gather_for_metrics((sums, counts))
        total += sums.double().sum()
        count += counts.double().sum()
    model.train()
    return (total / count.clamp(min=1)).item()
