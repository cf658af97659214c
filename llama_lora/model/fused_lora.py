"""One autograd node per LoRA layer during training: ``base(x) + s B A dropout(x)``.

peft computes a LoRA layer as ``result = base(x).clone(); result = result + lora_B(lora_A(
dropout(x))) * scaling``: besides the two small matmuls, that is a clone, a multiply and an add
over the layer's whole output, a dropout pass over its whole input (scale, then zero), and in
backward another multiply over the output gradient and two over the input gradient (scale, then
mask), plus six autograd nodes and two autocast weight casts. Doing without them took the
median step on the cpu-small data from 0.549 to 0.533 s (``benchmarks/levers.py
--lora-dropout 0.05 [--no-fused-lora]``, ``benchmarks/README.md``, "Levers").

:func:`fused_lora_forward` swaps, for the duration of a ``with`` block, the forward of each
plain peft LoRA linear for one that does the same arithmetic in one ``autograd.Function``:

* the dropout's ``1 / (1 - p)`` moves from the input onto the rank-r intermediate (``N x r``
  instead of ``N x in`` elements), so the dropped-out input is one copy with the dropped
  positions zeroed, sparsely (the positions come from :mod:`llama_lora.model.dropout`);
* ``B`` and ``scaling`` and the residual add are one ``addmm`` into the base output;
* backward zeroes the same positions of the input gradient in place and passes the output
  gradient straight through to the base layer.

Saved for backward, per adapter: the dropped-out input and the intermediate, as peft saves them,
the compute-dtype weight copies autocast would save, and, instead of peft's bool mask (one byte
per input element), the dropped positions as int32 (4 bytes per dropped element: 0.2 bytes per
input element at p = 0.05). Above ``SPARSE_DROPOUT_MAX_P``, or off the CPU, the mask comes from
``torch.native_dropout`` as in ``nn.Dropout``. Anything else (several active adapters, DoRA and
other variants, merged or disabled adapters, LoRA biases, extra forward arguments, a base output
not in the compute dtype) runs peft's own forward unchanged; so do adapters whose ``lora_A`` or
``lora_B`` is not a plain ``nn.Linear``, such as FSDP units (peft's FSDP wrap policy shards them
separately and only their own forward gathers their weights).

Why by hand: peft's layer is written for every variant and dtype; no library offers a fused
LoRA forward/backward for the CPU (Unsloth's fused LoRA kernels are Triton, CUDA only). The
adapters' weights and state dict are untouched: only the forward method of each module is
replaced, and restored on exit. ``tests/model/test_fused_lora.py`` checks outputs and every
gradient against peft's forward.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import torch

from llama_lora.model.dropout import dropped_positions

#: Above this dropout rate the dropped positions (4 bytes each) would not be much smaller than a
#: bool mask (1 byte per element), so the mask path is used.
SPARSE_DROPOUT_MAX_P = 0.1


def _lora_layer_types() -> tuple[type, ...]:
    """peft's plain LoRA linear layers (exact types: subclasses may change the forward)."""
    from peft.tuners.lora import bnb as lora_bnb
    from peft.tuners.lora.layer import Linear

    quantized = ("Linear4bit", "Linear8bitLt")
    return (Linear,) + tuple(getattr(lora_bnb, n) for n in quantized if hasattr(lora_bnb, n))


@contextlib.contextmanager
def fused_lora_forward(model: torch.nn.Module) -> Iterator[int]:
    """Within the block, every plain peft LoRA linear of ``model`` runs :class:`_LoraBranch`.

    Yields the number of layers switched. Their forward methods are restored on exit, also
    when the block raises.
    """
    layer_types = _lora_layer_types()
    layers = [m for m in model.modules() if type(m) in layer_types and "forward" not in vars(m)]
    for layer in layers:
        layer.forward = types.MethodType(_fused_forward, layer)
    try:
        yield len(layers)
    finally:
        for layer in layers:
            vars(layer).pop("forward", None)


def _fused_forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """The LoRA layer's forward: :class:`_LoraBranch` when it computes what peft would."""
    plan = None if args or kwargs else _branch_plan(self, x)
    if plan is None:
        return type(self).forward(self, x, *args, **kwargs)
    name, compute_dtype, p = plan
    result = self.base_layer(x)
    if result.dtype != compute_dtype:
        # e.g. a bitsandbytes compute dtype unlike autocast's: peft's forward casts the sum
        return _peft_branch(self, name, x, result)
    return _LoraBranch.apply(
        result,
        x,
        self.lora_A[name].weight,
        self.lora_B[name].weight,
        float(self.scaling[name]),
        p,
        compute_dtype,
    )


def _branch_plan(layer, x: torch.Tensor) -> tuple[str, torch.dtype, float] | None:
    """``(adapter, compute dtype, dropout p)`` for the fused path, or None for peft's."""
    if layer.disable_adapters or layer.merged or len(layer.active_adapters) != 1:
        return None
    name = layer.active_adapters[0]
    if name not in layer.lora_A or name in layer.lora_variant:
        return None
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    if type(lora_a) is not torch.nn.Linear or type(lora_b) is not torch.nn.Linear:
        return None
    if lora_a.bias is not None or lora_b.bias is not None:
        return None
    dropout = layer.lora_dropout[name]
    if isinstance(dropout, torch.nn.Dropout):
        p = dropout.p if dropout.training else 0.0
    elif isinstance(dropout, torch.nn.Identity):
        p = 0.0
    else:
        return None
    device = x.device.type
    if torch.is_autocast_enabled(device):
        compute_dtype = torch.get_autocast_dtype(device)
    else:
        compute_dtype = lora_a.weight.dtype
        if x.dtype != compute_dtype:  # peft would cast x; keep its path for that
            return None
    return name, compute_dtype, p


def _peft_branch(layer, name: str, x: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """peft's vanilla LoRA update of an already computed base output."""
    lora_a, lora_b = layer.lora_A[name], layer.lora_B[name]
    x = layer._cast_input_dtype(x, lora_a.weight.dtype)
    update = lora_b(lora_a(layer.lora_dropout[name](x))) * layer.scaling[name]
    return (result + update).to(result.dtype)


class _LoraBranch(torch.autograd.Function):
    """``result + scaling * dropout(x) @ A^T @ B^T`` in ``dtype``, with hand-written backward.

    Shapes: ``result`` (..., out), ``x`` (..., in), ``weight_a`` (r, in), ``weight_b`` (out, r).
    """

    @staticmethod
    def forward(ctx, result, x, weight_a, weight_b, scaling: float, p: float, dtype):
        x2 = x.reshape(-1, x.shape[-1])
        a, b = weight_a.to(dtype), weight_b.to(dtype)
        dropped = mask = None
        keep_scale = 1.0
        if p == 0.0:
            x_in = x2.to(dtype)
        elif x.device.type == "cpu" and p <= SPARSE_DROPOUT_MAX_P:
            positions = dropped_positions(x2.numel(), p)
            dropped = positions.to(torch.int32) if x2.numel() < 2**31 else positions
            x_in = x2.to(dtype, copy=True)
            x_in.view(-1).index_fill_(0, positions, 0.0)
            keep_scale = 1.0 / (1.0 - p)
        else:
            x_in, mask = torch.native_dropout(x2.to(dtype), p, True)
        h = x_in @ a.t()  # (N, r)
        if keep_scale != 1.0:
            h.mul_(keep_scale)
        out = torch.addmm(result.reshape(-1, result.shape[-1]), h, b.t(), alpha=scaling)
        ctx.save_for_backward(x_in, h, a, b, dropped, mask)
        ctx.scaling, ctx.keep_scale, ctx.p = scaling, keep_scale, p
        ctx.x_shape, ctx.x_dtype = x.shape, x.dtype
        ctx.a_dtype, ctx.b_dtype = weight_a.dtype, weight_b.dtype
        return out.view(result.shape)

    @staticmethod
    def backward(ctx, grad):
        x_in, h, a, b, dropped, mask = ctx.saved_tensors
        need_result, need_x, need_a, need_b = ctx.needs_input_grad[:4]
        g = grad.reshape(-1, grad.shape[-1]).to(h.dtype)
        grad_a = grad_b = grad_x = None
        if need_b:
            grad_b = (g.t() @ h).mul_(ctx.scaling).to(ctx.b_dtype)
        if need_a or need_x:
            dh = (g @ b).mul_(ctx.scaling * ctx.keep_scale)  # gradient of x_in @ a^T
            if need_a:
                grad_a = (dh.t() @ x_in).to(ctx.a_dtype)
            if need_x:
                dx = dh @ a
                if dropped is not None:
                    dx.view(-1).index_fill_(0, dropped.long(), 0.0)
                elif mask is not None:
                    dx = torch.ops.aten.native_dropout_backward(dx, mask, 1.0 / (1.0 - ctx.p))
                grad_x = dx.view(ctx.x_shape).to(ctx.x_dtype)
        return grad if need_result else None, grad_x, grad_a, grad_b, None, None, None
