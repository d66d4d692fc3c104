"""Attention as torch.library custom ops (fake implementations for torch.compile, autograd
registered), dispatching to the Triton launchers or the CPU fold by device.

The forward saves q, k, v, out and lse — O(seqlen) beyond the inputs; nothing N×N.

Eager calls do not go through the custom ops: ``attention_forward`` runs the same implementation through a
plain ``torch.autograd.Function`` (or no autograd node at all when no input needs a gradient). The
custom-op layers (dispatcher, ``torch._library`` autograd wrapper, schema defaults) cost ~85 us of host time
per forward with grad on a 2-core x86 and several times that on the H200 machine's host
(benchmarks/NOTES.md, "Host overhead"), which decides the time of every call below ~4k tokens. Under
``torch.compile`` (and for tensor subclasses such as fake tensors) the custom op is used, as before.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..common.dispatch import HAVE_TRITON, backend_for, missing_triton
from ..common.philox_torch import rng_seed_offset
from . import cpu

if HAVE_TRITON:
    from .backward import attention_bwd
    from .forward import attention_fwd
else:
    attention_bwd = attention_fwd = missing_triton("the attention kernels")


def _lse_shape(q, cu_seqlens_q):
    if cu_seqlens_q is not None:
        return (q.shape[1], q.shape[0])
    return (q.shape[0], q.shape[2], q.shape[1])


def _torch_drop(dropout_p, seed, offset, rng) -> dict:
    """The torch path's dropout arguments: (seed, offset) as integers, or from the words ``rng`` as 0-dim tensors
    (read on the device, so graph capture and torch.compile work there too)."""
    if rng is not None:
        seed, offset = rng_seed_offset(rng)
    return dict(dropout_p=dropout_p, seed=seed, offset=offset)


def _fwd_impl(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
              window_left, window_right, softcap, shift_extra, dropout_p=0.0, seed=0, offset=0, rng=None, alibi=None):
    window = (window_left, window_right)
    if backend_for(q) == "triton":
        return attention_fwd(q, k, v, softmax_scale=softmax_scale, window=window, softcap=softcap,
                             cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                             max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, shift_extra=shift_extra,
                             dropout_p=dropout_p, seed=seed, offset=offset, rng=rng, alibi=alibi)
    kw = dict(softmax_scale=softmax_scale, window=window, softcap=softcap, shift_extra=shift_extra,
              alibi=alibi, **_torch_drop(dropout_p, seed, offset, rng))
    if cu_seqlens_q is not None:
        return cpu.varlen_fwd_cpu(q, k, v, cu_seqlens_q, cu_seqlens_k, **kw)
    return cpu.attention_fwd_cpu(q, k, v, **kw)


@torch.library.custom_op("tilefold::attention_fwd", mutates_args=())
def attention_fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     cu_seqlens_q: Optional[torch.Tensor], cu_seqlens_k: Optional[torch.Tensor],
                     max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float,
                     window_left: int, window_right: int, softcap: float,
                     shift_extra: int, dropout_p: float = 0.0, seed: int = 0,
                     offset: int = 0, rng: Optional[torch.Tensor] = None,
                     alibi: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    return _fwd_impl(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                     window_left, window_right, softcap, shift_extra, dropout_p, seed, offset, rng, alibi)


@attention_fwd_op.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
      window_left, window_right, softcap, shift_extra, dropout_p=0.0, seed=0, offset=0, rng=None, alibi=None):
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype, device=q.device)
    lse = torch.empty(_lse_shape(q, cu_seqlens_q), dtype=torch.float32, device=q.device)
    return out, lse


def _bwd_impl(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
              softmax_scale, window_left, window_right, softcap, shift_extra, dropout_p=0.0, seed=0, offset=0,
              rng=None, alibi=None):
    window = (window_left, window_right)
    if backend_for(q) == "triton":
        return attention_bwd(dout, q, k, v, out, lse, dlse=dlse, softmax_scale=softmax_scale, window=window,
                             softcap=softcap, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k,
                             max_seqlen_q=max_seqlen_q, max_seqlen_k=max_seqlen_k, shift_extra=shift_extra,
                             dropout_p=dropout_p, seed=seed, offset=offset, rng=rng, alibi=alibi)
    kw = dict(softmax_scale=softmax_scale, window=window, softcap=softcap, shift_extra=shift_extra,
              alibi=alibi, **_torch_drop(dropout_p, seed, offset, rng))
    if cu_seqlens_q is not None:
        return cpu.varlen_bwd_cpu(dout, q, k, v, out, lse, cu_seqlens_q, cu_seqlens_k, dlse=dlse, **kw)
    return cpu.attention_bwd_cpu(dout, q, k, v, out, lse, dlse=dlse, **kw)


@torch.library.custom_op("tilefold::attention_bwd", mutates_args=())
def attention_bwd_op(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                     out: torch.Tensor, lse: torch.Tensor, dlse: Optional[torch.Tensor],
                     cu_seqlens_q: Optional[torch.Tensor], cu_seqlens_k: Optional[torch.Tensor],
                     max_seqlen_q: int, max_seqlen_k: int, softmax_scale: float,
                     window_left: int, window_right: int, softcap: float,
                     shift_extra: int, dropout_p: float = 0.0, seed: int = 0,
                     offset: int = 0, rng: Optional[torch.Tensor] = None, alibi: Optional[torch.Tensor] = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _bwd_impl(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                     softmax_scale, window_left, window_right, softcap, shift_extra, dropout_p, seed, offset, rng,
                     alibi)


@attention_bwd_op.register_fake
def _(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
      softmax_scale, window_left, window_right, softcap, shift_extra, dropout_p=0.0, seed=0, offset=0, rng=None,
      alibi=None):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup_context(ctx, inputs, output):
    ctx.set_materialize_grads(False)
    q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, softcap, shift_extra = inputs[:12]
    dropout_p, seed, offset, rng, alibi = (tuple(inputs[12:]) + (0.0, 0, 0, None, None)[len(inputs) - 12:])
    out, lse = output
    # the dropout mask is not saved: the backward regenerates it from (seed, offset) or the words rng
    ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, rng, alibi)
    ctx.args = (max_q, max_k, scale, wl, wr, softcap, shift_extra, dropout_p, seed, offset)


def _backward(ctx, dout, dlse, bwd=attention_bwd_op):
    q, k, v, out, lse, cu_q, cu_k, rng, alibi = ctx.saved_tensors
    if dout is None:
        dout = torch.zeros_like(out)
    if dout.stride(-1) != 1:
        dout = dout.contiguous()
    if dlse is not None:
        dlse = dlse.contiguous()
    dq, dk, dv = bwd(dout, q, k, v, out, lse, dlse, cu_q, cu_k, *ctx.args, rng, alibi)
    return (dq, dk, dv) + (None,) * 14


attention_fwd_op.register_autograd(_backward, setup_context=_setup_context)


class _AttentionFunction(torch.autograd.Function):
    """The eager twin of attention_fwd_op's registered autograd: same context, same backward, without the
    custom-op layers. Its separate setup_context also makes it usable under torch.func.grad (functorch runs the
    forward on the unwrapped tensors), which the custom op's generated autograd is not."""

    @staticmethod
    def forward(q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, softcap, shift_extra,
                dropout_p=0.0, seed=0, offset=0, rng=None, alibi=None):
        return _fwd_impl(q, k, v, cu_q, cu_k, max_q, max_k, scale, wl, wr, softcap, shift_extra, dropout_p, seed,
                         offset, rng, alibi)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _setup_context(ctx, inputs, output)

    @staticmethod
    def backward(ctx, dout, dlse):
        return _backward(ctx, dout, dlse, bwd=attention_backward)


def _grad_transform(*tensors) -> bool:
    """Inside torch.func.grad / vjp (outside torch.compile and vmap): some tensor is functorch's grad-tracking
    wrapper and none is batched or fake. The custom op's generated autograd refuses functorch transforms, so such calls
    take _AttentionFunction (and their backward _AttentionBackwardFunction)."""
    if torch.compiler.is_compiling():
        return False
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    wrapped = [t for t in tensors if torch._C._functorch.is_functorch_wrapped_tensor(t)]
    return bool(wrapped) and all(torch._C._functorch.is_gradtrackingtensor(t) for t in wrapped) and all(
        t.device.type != "meta" for t in tensors)


def _eager(*tensors) -> bool:
    """Plain tensors outside torch.compile / export: the custom-op layers can be skipped. Meta tensors and functorch's
    wrapped tensors (vmap, grad) are of type torch.Tensor too but need the op's fake / batching rules."""
    if torch.compiler.is_compiling():
        return False
    return all(t is None or (type(t) is torch.Tensor and t.device.type != "meta"
                             and not torch._C._functorch.is_functorch_wrapped_tensor(t)) for t in tensors)


def attention_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale,
                      window_left, window_right, softcap, shift_extra, dropout_p=0.0, seed=0, offset=0, rng=None,
                      alibi=None):
    """attention_fwd_op's semantics (returns out, lse; differentiable in q, k, v through both), with the
    custom-op layers skipped in eager mode (module docstring). ``alibi``: (batch, heads) fp32 slopes or None."""
    args = (q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, softmax_scale, window_left,
            window_right, softcap, shift_extra, dropout_p, seed, offset, rng, alibi)
    if not _eager(q, k, v, cu_seqlens_q, cu_seqlens_k, rng, alibi):  # rng: batched under vmap(randomness="different")
        if _grad_transform(q, k, v, cu_seqlens_q, cu_seqlens_k, rng, alibi):
            return _AttentionFunction.apply(*args)
        return attention_fwd_op(*args)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return _AttentionFunction.apply(*args)
    return _fwd_impl(*args)


def _records_graph(*tensors) -> bool:
    """A backward run with create_graph=True: grad mode on and an input that requires grad."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _AttentionBackwardFunction(torch.autograd.Function):
    """The backward under torch.func.grad / vjp: functorch runs this forward on the unwrapped tensors (the kernels
    need plain ones); differentiating it again raises, as attention_bwd_op's missing formula does."""

    @staticmethod
    def forward(dout, q, k, v, out, lse, dlse, cu_q, cu_k, *args):
        return _bwd_impl(dout, q, k, v, out, lse, dlse, cu_q, cu_k, *args)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, *grads):
        raise RuntimeError("tilefold attention: a second derivative (double backward) is not supported")


def attention_backward(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, *args):
    """attention_bwd_op, with the custom-op layers skipped in eager mode. Under create_graph=True the custom
    op runs: double backward is unsupported, and its missing autograd formula raises at the second backward;
    _bwd_impl would record nothing on the Triton path (a gradient penalty silently dropped) and the torch
    fold's ops on the CPU path (a backend-dependent second derivative). Under torch.func.grad:
    _AttentionBackwardFunction."""
    if _grad_transform(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, *args[-2:]):
        return _AttentionBackwardFunction.apply(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, *args)
    if (not _eager(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k)
            or _records_graph(dout, q, k, v, out, lse, dlse)):
        return attention_bwd_op(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, *args)
    return _bwd_impl(dout, q, k, v, out, lse, dlse, cu_seqlens_q, cu_seqlens_k, *args)


def _probs_impl(q, k, v, cu_q, cu_k, max_q, max_k, lse, scale, window_left, window_right, softcap, dropout_p, rng,
                alibi=None):
    """S for return_attn_probs: (batch, heads, seqlen_q, seqlen_k); varlen padded to
    (batch, heads, max_seqlen_q, max_seqlen_k) with sequence b in the top-left corner of S[b], padding
    +0.0. The Triton path recomputes it in the forward kernel (RETURN_P); the torch path from lse."""
    varlen = cu_q is not None
    window = (window_left, window_right)
    B = cu_q.numel() - 1 if varlen else q.shape[0]
    S = torch.zeros(B, q.shape[-2], max_q, max_k, device=q.device, dtype=torch.float32)
    with torch.no_grad():
        if backend_for(q) == "triton":
            attention_fwd(q, k, v, softmax_scale=scale, window=window, softcap=softcap, cu_seqlens_q=cu_q,
                          cu_seqlens_k=cu_k, max_seqlen_q=max_q, max_seqlen_k=max_k, dropout_p=dropout_p,
                          rng=rng, probs=S, alibi=alibi)
            return S
        drop = _torch_drop(dropout_p, 0, 0, rng)
        if not varlen:
            return cpu.attention_probs(q, k, lse, softmax_scale=scale, window=window, softcap=softcap, alibi=alibi,
                                       **drop)
        cq, ck = cu_q.tolist(), cu_k.tolist()
        for b in range(B):
            m, n = cq[b + 1] - cq[b], ck[b + 1] - ck[b]
            if m == 0 or n == 0:
                continue
            S[b, :, :m, :n] = cpu.attention_probs(q[cq[b]:cq[b + 1]][None], k[ck[b]:ck[b + 1]][None],
                                                  lse[:, cq[b]:cq[b + 1]][None], softmax_scale=scale,
                                                  window=window, softcap=softcap, b_offset=b,
                                                  alibi=None if alibi is None else alibi[b:b + 1], **drop)[0]
    return S


@torch.library.custom_op("tilefold::attention_probs", mutates_args=())
def attention_probs_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens_q: Optional[torch.Tensor],
                       cu_seqlens_k: Optional[torch.Tensor], max_seqlen_q: int, max_seqlen_k: int, lse: torch.Tensor,
                       softmax_scale: float, window_left: int, window_right: int, softcap: float, dropout_p: float,
                       rng: Optional[torch.Tensor], alibi: Optional[torch.Tensor] = None) -> torch.Tensor:
    return _probs_impl(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, lse, softmax_scale,
                       window_left, window_right, softcap, dropout_p, rng, alibi)


@attention_probs_op.register_fake
def _(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, lse, softmax_scale, window_left,
      window_right, softcap, dropout_p, rng, alibi=None):
    B = cu_seqlens_q.shape[0] - 1 if cu_seqlens_q is not None else q.shape[0]
    return torch.empty(B, q.shape[-2], max_seqlen_q, max_seqlen_k, device=q.device, dtype=torch.float32)


def attention_probs_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, lse, softmax_scale,
                            window_left, window_right, softcap, dropout_p, rng, alibi=None):
    """S_dmask of return_attn_probs (no gradient), through the custom op under torch.compile / for tensor subclasses
    (the Triton launch inside cannot be traced), directly in eager mode."""
    args = (q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, lse, softmax_scale, window_left,
            window_right, softcap, dropout_p, rng, alibi)
    if not _eager(q, k, v, cu_seqlens_q, cu_seqlens_k, lse, rng, alibi):
        return attention_probs_op(*(a.detach() if isinstance(a, torch.Tensor) else a for a in args))
    return _probs_impl(*args)
