"""Public merge of attention states: ``merge_state`` (two states) and ``merge_states`` (N stacked).

A state is what attention returns with ``return_lse=True``: out (batch, seqlen_q, heads, headdim) with
lse (batch, heads, seqlen_q), or varlen out (total_q, heads, headdim) with lse (heads, total_q). The
merge is the ⊕ of DESIGN.md §1: associative, commutative, ``(0, -inf)`` is its identity, two empty
states give ``(0, -inf)`` (no NaN), huge or tiny lse values merge without overflow. Arithmetic is fp32;
out comes back in the dtype of the input outs, lse in fp32 (natural log).

CUDA tensors (or ``TRITON_INTERPRET=1``) run the Triton kernel (``kernel.py``), CPU tensors the torch
⊕ of ``tilefold.state``. Both are differentiable; the backward is the closed form (one formula for
both backends, fp32)::

    w_i = exp(lse_i - lse)      d out_i = w_i · d out      d lse_i = w_i · (d lse + <d out, out_i - out>)

so empty states get zero gradient (no NaN).
"""
from __future__ import annotations

import torch

from ... import state
from ..common.dispatch import backend_for
from ..common.validate import _validate_last_contiguous, _validate_tensor

OUT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
LSE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

# ----------------------------------------------------------------------------------------------------
# forward implementations on the batched layout with a state dim: outs (N, B, M, H, D), lses (N, B, H, M)


def _fwd_torch(outs, lses):
    if outs.shape[0] == 0:
        o, lse = state.identity(outs.shape[1:], device=outs.device, dtype=outs.dtype)
        return o, lse.transpose(-1, -2).contiguous()
    o, lse = state.merge_many(outs, lses.transpose(-1, -2))
    return o.to(outs.dtype), lse.transpose(-1, -2).contiguous()


def _fwd(outs, lses, out_b=None, lse_b=None):
    if backend_for(outs) == "triton":
        from .kernel import merge_fwd

        if outs.stride(-1) != 1:
            outs = outs.contiguous()
        if out_b is not None and out_b.stride(-1) != 1:
            out_b = out_b.contiguous()
        return merge_fwd(outs, lses, out_b, lse_b, out_dtype=outs.dtype)
    if out_b is not None:
        outs = torch.cat([outs, out_b.unsqueeze(0).to(outs.dtype)], 0)
        lses = torch.cat([lses.float(), lse_b.unsqueeze(0).float()], 0)
    return _fwd_torch(outs, lses.float())


def _bwd(douts, dlse, outs, lses, lse):
    """Closed-form gradient of the merge; all (N, B, M, H, D)/(N, B, H, M); returns fp32 grads."""
    lse_c = lse.float().transpose(-1, -2)  # B M H
    lses_c = lses.float().transpose(-1, -2)  # N B M H
    w = torch.exp(lses_c - lse_c.unsqueeze(0))
    w = torch.where(torch.isneginf(lse_c).unsqueeze(0), torch.zeros_like(w), w)
    w = torch.nan_to_num(w, nan=0.0)
    o32 = outs.float()
    d_outs = None
    d_lses = None
    if douts is not None:
        g = douts.float()
        d_outs = w.unsqueeze(-1) * g.unsqueeze(0)
        out32 = (w.unsqueeze(-1) * o32).sum(0)
        inner = (g.unsqueeze(0) * (o32 - out32.unsqueeze(0))).sum(-1)  # N B M H
    else:
        inner = torch.zeros_like(w)
    extra = dlse.float().transpose(-1, -2).unsqueeze(0) if dlse is not None else 0.0
    d_lses = (w * (inner + extra)).transpose(-1, -2)
    return d_outs, d_lses


class MergeStatesFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, outs, lses):
        out, lse = _fwd(outs, lses)
        ctx.save_for_backward(outs, lses, lse)
        ctx.lse_dtype = lses.dtype
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        outs, lses, lse = ctx.saved_tensors
        d_outs, d_lses = _bwd(dout, dlse, outs, lses, lse)
        d_outs = None if d_outs is None else d_outs.to(outs.dtype)
        return d_outs, d_lses.to(ctx.lse_dtype)


class MergeStateFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out_a, lse_a, out_b, lse_b):
        out, lse = _fwd(out_a.unsqueeze(0), lse_a.unsqueeze(0), out_b, lse_b)
        ctx.save_for_backward(out_a, lse_a, out_b, lse_b, lse)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        out_a, lse_a, out_b, lse_b, lse = ctx.saved_tensors
        outs = torch.stack([out_a.float(), out_b.float()])
        lses = torch.stack([lse_a.float(), lse_b.float()])
        d_outs, d_lses = _bwd(dout, dlse, outs, lses, lse)
        da = db = None
        if d_outs is not None:
            da, db = d_outs[0].to(out_a.dtype), d_outs[1].to(out_b.dtype)
        return da, d_lses[0].to(lse_a.dtype), db, d_lses[1].to(lse_b.dtype)


# ----------------------------------------------------------------------------------------------------
# validation


def _check_pair(out_name, out, lse_name, lse, stacked):
    """Returns True for the varlen layout. ``stacked``: a leading state dim on both."""
    s = 1 if stacked else 0
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{out_name}: expected a torch.Tensor, got {type(out).__name__}")
    if out.dim() - s not in (3, 4):
        want = "(N, batch, seqlen_q, heads, headdim) or (N, total_q, heads, headdim)" if stacked else \
            "(batch, seqlen_q, heads, headdim) or (total_q, heads, headdim)"
        raise ValueError(f"{out_name}: expected shape {want}, got {tuple(out.shape)}")
    varlen = out.dim() - s == 3
    _validate_tensor(out_name, out, out.dim(), OUT_DTYPES)
    _validate_tensor(lse_name, lse, out.dim() - 1, LSE_DTYPES)
    if varlen:
        want = out.shape[:s] + (out.shape[s + 1], out.shape[s])
        layout = "(heads, total_q)"
    else:
        want = out.shape[:s] + (out.shape[s], out.shape[s + 2], out.shape[s + 1])
        layout = "(batch, heads, seqlen_q)"
    if tuple(lse.shape) != tuple(want):
        raise ValueError(f"{lse_name}: expected shape {tuple(want)} {layout} to match {out_name} "
                         f"{tuple(out.shape)}, got {tuple(lse.shape)}")
    if lse.device != out.device:
        raise ValueError(f"{lse_name}: expected device {out.device} (as {out_name}), got {lse.device}")
    return varlen


def merge_state(out_a, lse_a, out_b, lse_b):
    """Merge two attention states over disjoint key sets: ``(out_a, lse_a) ⊕ (out_b, lse_b)``.

    Args:
        out_a, out_b: (batch, seqlen_q, heads, headdim) or varlen (total_q, heads, headdim), same
            shape/dtype/device.
        lse_a, lse_b: (batch, heads, seqlen_q) or varlen (heads, total_q), natural log; -inf marks a
            row that saw no key (its out must be 0... or anything finite: its weight is 0). +inf and NaN
            are not states (a sum of exponentials is finite): rows holding them come out NaN; they are not
            checked, since that would synchronize with the GPU.
    Returns:
        (out, lse): out in the dtype of out_a, lse fp32. Equal to attention over the union of the keys.
    """
    va = _check_pair("out_a", out_a, "lse_a", lse_a, False)
    _check_pair("out_b", out_b, "lse_b", lse_b, False)
    if out_b.shape != out_a.shape:
        raise ValueError(f"out_b: expected shape {tuple(out_a.shape)} (as out_a), got {tuple(out_b.shape)}")
    if out_b.dtype != out_a.dtype:
        raise ValueError(f"out_b: expected dtype {out_a.dtype} (as out_a), got {out_b.dtype}")
    if out_b.device != out_a.device:
        raise ValueError(f"out_b: expected device {out_a.device} (as out_a), got {out_b.device}")
    if va:
        out, lse = MergeStateFunction.apply(out_a.unsqueeze(0), lse_a.unsqueeze(0),
                                            out_b.unsqueeze(0), lse_b.unsqueeze(0))
        return out[0], lse[0]
    return MergeStateFunction.apply(out_a, lse_a, out_b, lse_b)


def merge_states(outs, lses):
    """Merge N attention states stacked on dim 0: ``⊕_i (outs[i], lses[i])`` (any order gives the same).

    Args:
        outs: (N, batch, seqlen_q, heads, headdim) or varlen (N, total_q, heads, headdim).
        lses: (N, batch, heads, seqlen_q) or varlen (N, heads, total_q). N = 0 gives the identity
            (out 0, lse -inf).
    Returns:
        (out, lse) without the state dim; out in outs.dtype, lse fp32.
    """
    varlen = _check_pair("outs", outs, "lses", lses, True)
    if varlen:
        out, lse = MergeStatesFunction.apply(outs.unsqueeze(1), lses.unsqueeze(1))
        return out[0], lse[0]
    return MergeStatesFunction.apply(outs, lses)
