"""Next-token loss straight from the final hidden states: target positions only, in chunks.

A causal LM's ``lm_head`` maps every position to a vocabulary-sized row of logits, and the usual
loss keeps all of them, in fp32, for backward: (B, T, 32000) x 4 bytes is 200 MB for 8 x 192
tokens, and for LLaMA-2 the head is a third of a small model's FLOPs. Two facts make almost all
of that unnecessary when the head is frozen (LoRA never trains it by default):

1. Only positions whose next token is a target contribute to the loss. With the prompt masked
   that is often under half of the tokens, so the head runs on ``N`` target rows, not ``B * T``.
2. The gradient of the summed cross entropy with respect to a hidden row is
   ``(softmax(z) - onehot(y)) @ W``. It can be computed in the forward pass, chunk by chunk, so
   no logits outlive their chunk and backward is a single multiply.

Why by hand: fused linear-cross-entropy kernels exist (Liger, Apple's cut-cross-entropy), but
they are Triton/CUDA only, and this must run on CPU too. The mathematics is the same as
``F.cross_entropy(lm_head(h).float(), y, reduction="sum")``; tests/training/test_fused_loss.py
checks both the loss and the gradients against it.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from llama_lora.training.loss import IGNORE_INDEX, shifted_targets

#: Config attributes that transform logits after the head, with their no-op values.
_LOGIT_TRANSFORMS = (
    ("logits_scaling", 1.0),
    ("logit_scale", 1.0),
    ("final_logit_softcapping", None),
)

#: Logit elements per chunk (fp32): 4 M elements = 16 MB, e.g. 131 rows of a 32000 vocabulary.
#: Half the transient buffers of the 32 MB chunks used before, at no measured cost
#: (``benchmarks/ops.py --only loss`` times both sizes).
CHUNK_ELEMENTS = 1 << 22


class _LinearCrossEntropySum(torch.autograd.Function):
    """sum_i CE(h_i @ W^T, y_i) with the input gradient computed during the forward pass."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk_rows: int):
        # hidden (N, H), weight (V, H) frozen, targets (N,)
        need_grad = hidden.requires_grad
        grad_hidden = torch.empty_like(hidden) if need_grad else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, hidden.size(0), chunk_rows):
            rows = slice(start, start + chunk_rows)
            h = hidden[rows].to(weight.dtype)
            logits = F.linear(h, weight)  # (n, V) in the head's (or autocast's) dtype
            # One fused kernel for log-probabilities; exp_ then turns them into the softmax in
            # place (logsumexp + exp(z - lse) went over the chunk four times).
            log_probs = torch.log_softmax(logits, dim=-1, dtype=torch.float32)  # (n, V)
            y = targets[rows]
            total -= log_probs.gather(1, y[:, None]).sum()
            if need_grad:
                probs = log_probs.exp_()  # softmax, (n, V)
                probs[torch.arange(y.numel(), device=y.device), y] -= 1.0
                # Cast like autograd would for a half-precision logits tensor.
                grad_hidden[rows] = (probs.to(logits.dtype) @ weight.to(logits.dtype)).to(
                    hidden.dtype
                )
        ctx.save_for_backward(grad_hidden if need_grad else None)
        return total

    @staticmethod
    def backward(ctx, grad_output):
        (grad_hidden,) = ctx.saved_tensors
        if grad_hidden is None:
            return None, None, None, None
        return grad_hidden * grad_output.to(grad_hidden.dtype), None, None, None


def linear_cross_entropy_sum(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Summed cross entropy of ``hidden @ weight.T`` against ``targets``, chunked.

    Args:
        hidden: (N, H) hidden states of the target positions only.
        weight: (V, H) frozen output-embedding matrix.
        targets: (N,) token ids (no ignore index: select the target rows first).

    Returns:
        0-dim fp32 tensor, differentiable with respect to ``hidden``.
    """
    chunk_rows = max(1, CHUNK_ELEMENTS // weight.size(0))
    return _LinearCrossEntropySum.apply(hidden, weight, targets, chunk_rows)


def target_hidden_states(
    hidden: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden rows that predict a target, and those targets.

    Args:
        hidden: (B, T, H) final hidden states.
        labels: (B, T) labels with ``-100`` where no loss is taken.

    Returns:
        ``(rows, targets)``: (N, H) and (N,), N = number of target tokens.
    """
    targets = shifted_targets(labels)  # (B, T-1): position t predicts token t + 1
    keep = targets != IGNORE_INDEX
    return hidden[:, :-1][keep], targets[keep]


def fused_loss_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """``(decoder, lm_head)`` when the fused loss computes the same thing as the model, else None.

    Eligible: a ``transformers`` causal LM whose forward takes ``logits_to_keep`` (so the full
    logits can be skipped) and whose head is a plain, frozen, bias-free ``nn.Linear`` (a head
    with LoRA or ``modules_to_save`` needs its weight gradient: the usual path handles it).
    """
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    get_decoder = getattr(inner, "get_decoder", None)
    head = inner.get_output_embeddings() if hasattr(inner, "get_output_embeddings") else None
    if get_decoder is None or head is None:
        return None
    if "logits_to_keep" not in inspect.signature(inner.forward).parameters:
        return None
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None
    # Architectures that post-process the logits (Granite's logits_scaling, Cohere's
    # logit_scale, Gemma-2/3's final soft-capping) would train on a different objective.
    config = getattr(inner, "config", None)
    for attribute, neutral in _LOGIT_TRANSFORMS:
        if getattr(config, attribute, neutral) not in (neutral, None):
            return None
    if any(p.requires_grad for p in head.parameters()):
        return None
    return get_decoder(), head


class HiddenStateTap:
    """Keeps the decoder's last output while the model runs, via a forward hook.

    The model is still called as a whole (so DDP/FSDP wrappers see their forward and sync
    gradients); only the tensor the head would have consumed is taken from inside.
    """

    def __init__(self, decoder: torch.nn.Module) -> None:
        self.hidden: torch.Tensor | None = None
        self._handle = decoder.register_forward_hook(self._keep)

    def _keep(self, module, args, output) -> None:
        self.hidden = output[0] if isinstance(output, tuple) else output.last_hidden_state

    def pop(self) -> torch.Tensor:
        hidden, self.hidden = self.hidden, None
        if hidden is None:
            raise RuntimeError("the decoder did not run during the forward pass")
        return hidden

    def remove(self) -> None:
        self._handle.remove()
