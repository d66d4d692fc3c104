"""Gated Linear Attention: the public functions, their validation and their autograd Functions.

    S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,      o_t = scale * q_t S_t

Three modes compute the same function and agree to rounding:

* ``fused_recurrent_gla``: one step at a time, state in registers (decoding, short sequences).
* ``chunk_gla``: chunks of 64 (32 when K or V > 128); states at chunk starts are materialized first,
  then every chunk's output is computed in parallel. A chunk whose decay range max_k(gc_first - gc_last)
  is <= 20 is re-referenced to its first position as a whole (three dense dots); otherwise sub-chunks of
  16 are re-referenced to their first positions and diagonal blocks use exp(gc_t - gc_s) directly, so
  no exp() argument exceeds 20 and none is formed from two huge cumulative sums (training).
* ``fused_chunk_gla``: the same chunks walked sequentially with the state on chip (nothing materialized
  in the forward; its backward is chunk_gla's, which materializes the states).

Packing several sequences into one row: pass ``cu_seqlens`` (recommended). Each sequence then starts
from its own initial state and returns its own final state. Masking the gate at sequence starts also
works in every mode: any g <= -30 (e.g. -1e4, -0.1*finfo(dtype).max, -inf) is treated as -30, whose decay
exp(-30) = 9.4e-14 is an exact reset to fp32 precision and has a zero gradient. Why the floor: the chunk
modes form chunk-local cumulative sums of log gates and exponentiate their differences; unfloored, -inf
gives -inf - -inf = NaN, -0.1*finfo.max gives -inf after ten steps, and magnitudes of 1e37 leave no
digits for the differences between later positions. Floored, a chunk's cumulative sum stays >= -1920,
a chunk holding a floored gate has a decay range >= 30 and takes the sub-chunk path, and sub-chunk
re-referencing keeps every exponent <= 0 there. Gates in (-30, 0] are used exactly.
"""
from __future__ import annotations

import torch

from ..common.dispatch import backend_for
from ..common.validate import _finite, _is_real, _validate_bool, _validate_grid_rows
from .cpu import chunk_gla_torch
from .utils import seq_info

_FLOATS = (torch.float16, torch.bfloat16, torch.float32)
_MAX_DIM = 256


def _validate(q, k, v, g, scale, initial_state, cu_seqlens):
    for name, x in (("q", q), ("k", k), ("v", v), ("g", g)):
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if q.dim() != 4:
        raise ValueError(f"q: expected a 4-D tensor [B, T, H, K], got shape {tuple(q.shape)}")
    for name, x in (("k", k), ("g", g)):
        if x.shape != q.shape:
            raise ValueError(f"{name}: expected shape {tuple(q.shape)} (q's [B, T, H, K]), got {tuple(x.shape)}")
    if v.dim() != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v: expected shape {tuple(q.shape[:3]) + ('V',)} [B, T, H, V], got {tuple(v.shape)}")
    B, T, H, K = q.shape
    V = v.shape[3]
    if K == 0 or V == 0 or H == 0:
        raise ValueError(f"q/v: expected H, K, V >= 1, got H={H}, K={K}, V={V}")
    if K > _MAX_DIM or V > _MAX_DIM:
        raise ValueError(f"q/v: expected K, V <= {_MAX_DIM}, got K={K}, V={V}")
    if q.dtype not in _FLOATS:
        raise ValueError(f"q: expected dtype in {_FLOATS}, got {q.dtype}")
    for name, x in (("k", k), ("v", v)):
        if x.dtype != q.dtype:
            raise ValueError(f"{name}: expected dtype {q.dtype} (q's), got {x.dtype}")
    if g.dtype not in _FLOATS:
        raise ValueError(f"g: expected dtype in {_FLOATS}, got {g.dtype}")
    for name, x in (("k", k), ("v", v), ("g", g)):
        if x.device != q.device:
            raise ValueError(f"{name}: expected device {q.device} (q's), got {x.device}")
    if scale is not None and (not _is_real(scale) or not _finite(scale)):
        raise ValueError(f"scale: expected a finite real number or None, got {scale!r}")
    N = B
    if cu_seqlens is not None:
        if not isinstance(cu_seqlens, torch.Tensor):
            raise ValueError(f"cu_seqlens: expected a torch.Tensor, got {type(cu_seqlens).__name__}")
        if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
            raise ValueError(f"cu_seqlens: expected a 1-D tensor of N+1 >= 2 offsets, got shape {tuple(cu_seqlens.shape)}")
        if cu_seqlens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"cu_seqlens: expected dtype torch.int32, got {cu_seqlens.dtype}")
        if cu_seqlens.stride(0) != 1:  # the kernels read cu_seqlens[i] at stride 1
            raise ValueError(f"cu_seqlens: expected a contiguous tensor, got stride {cu_seqlens.stride(0)}")
        if B != 1:
            raise ValueError(f"q: expected batch size 1 with cu_seqlens (packed sequences), got {B}")
        cu = cu_seqlens.tolist()
        if cu[0] != 0 or cu[-1] != T:
            raise ValueError(f"cu_seqlens: expected to start at 0 and end at T={T}, got {cu[0]} and {cu[-1]}")
        if any(b < a for a, b in zip(cu, cu[1:])):
            raise ValueError(f"cu_seqlens: expected non-decreasing offsets, got {cu}")
        N = len(cu) - 1
    _validate_grid_rows("cu_seqlens" if cu_seqlens is not None else "q", N, H, q.device)
    if initial_state is not None:
        if not isinstance(initial_state, torch.Tensor):
            raise ValueError(f"initial_state: expected a torch.Tensor, got {type(initial_state).__name__}")
        if tuple(initial_state.shape) != (N, H, K, V):
            raise ValueError(f"initial_state: expected shape {(N, H, K, V)} [N, H, K, V], got {tuple(initial_state.shape)}")
        if initial_state.dtype != torch.float32:
            raise ValueError(f"initial_state: expected dtype torch.float32, got {initial_state.dtype}")
        if initial_state.device != q.device:
            raise ValueError(f"initial_state: expected device {q.device} (q's), got {initial_state.device}")


def _prep(q, k, v, g, initial_state):
    return (q.contiguous(), k.contiguous(), v.contiguous(), g.contiguous(),
            None if initial_state is None else initial_state.contiguous())


class _NoDoubleBackward(torch.autograd.Function):
    """A zero scalar that raises when differentiated (see ``_first_order_only``)."""

    @staticmethod
    def forward(ctx, *deps):
        return deps[0].new_zeros(())

    @staticmethod
    def backward(ctx, _):
        raise RuntimeError("the GLA kernels have no double backward (create_graph=True through chunk_gla / "
                           "fused_chunk_gla / fused_recurrent_gla); the torch implementation on CPU tensors has one")


def _first_order_only(grads, *deps):
    """The Triton GLA backward is not differentiable: under create_graph=True its gradients would be constants and a
    second derivative through them silently 0. Adding a zero that raises when differentiated, and that depends on
    every input of the backward that requires grad, makes the second backward fail instead (torch's
    once_differentiable does not: its error node hangs off detached copies, off any path autograd.grad follows)."""
    live = [t for t in deps if isinstance(t, torch.Tensor) and t.requires_grad]
    if not torch.is_grad_enabled() or not live:
        return grads
    z = _NoDoubleBackward.apply(*live)
    return tuple(x + z if isinstance(x, torch.Tensor) else x for x in grads)


class FusedRecurrentGLAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, h0, output_final_state, cu_seqlens):
        from .fused_recurrent import fused_recurrent_gla_fwd

        N, cu, _, _, _, _ = seq_info(q.shape[0], q.shape[1], cu_seqlens, q.device, 64)
        o, ht = fused_recurrent_gla_fwd(q, k, v, g, scale, h0, output_final_state, cu, N)
        ctx.save_for_backward(q, k, v, g, h0, ht, cu)
        ctx.scale, ctx.N = scale, N
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        from .fused_recurrent import fused_recurrent_gla_bwd

        q, k, v, g, h0, ht, cu = ctx.saved_tensors
        dq, dk, dv, dg, dh0 = fused_recurrent_gla_bwd(q, k, v, g, do.contiguous(), ctx.scale, h0, ht,
                                                      None if dht is None else dht.contiguous(), cu, ctx.N)
        return _first_order_only((dq, dk, dv, dg, None, dh0, None, None), do, dht, q, k, v, g, h0)


class ChunkGLAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, h0, output_final_state, cu_seqlens):
        from .chunk import chunk_gla_fwd, chunk_size

        info = seq_info(q.shape[0], q.shape[1], cu_seqlens, q.device, chunk_size(q.shape[3], v.shape[3]))
        o, ht, h, gc = chunk_gla_fwd(q, k, v, g, scale, h0, output_final_state, info, fused=False)
        ctx.save_for_backward(q, k, v, g, h0, ht, h, gc)
        ctx.scale, ctx.info = scale, info
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        from .chunk import chunk_gla_bwd

        q, k, v, g, h0, ht, h, gc = ctx.saved_tensors
        dq, dk, dv, dg, dh0 = chunk_gla_bwd(q, k, v, g, do.contiguous(), ctx.scale, h0, ht,
                                            None if dht is None else dht.contiguous(), h, gc, ctx.info)
        return _first_order_only((dq, dk, dv, dg, None, dh0, None, None), do, dht, q, k, v, g, h0)


class FusedChunkGLAFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, g, scale, h0, output_final_state, cu_seqlens):
        from .chunk import chunk_gla_fwd, chunk_size

        info = seq_info(q.shape[0], q.shape[1], cu_seqlens, q.device, chunk_size(q.shape[3], v.shape[3]))
        o, ht, _, gc = chunk_gla_fwd(q, k, v, g, scale, h0, output_final_state, info, fused=True)
        ctx.save_for_backward(q, k, v, g, h0, ht, gc)
        ctx.scale, ctx.info = scale, info
        return o, ht

    @staticmethod
    def backward(ctx, do, dht):
        from .chunk import chunk_gla_bwd

        q, k, v, g, h0, ht, gc = ctx.saved_tensors
        # the forward kept no states: the backward materializes them (chunk_gla's backward)
        dq, dk, dv, dg, dh0 = chunk_gla_bwd(q, k, v, g, do.contiguous(), ctx.scale, h0, ht,
                                            None if dht is None else dht.contiguous(), None, gc, ctx.info)
        return _first_order_only((dq, dk, dv, dg, None, dh0, None, None), do, dht, q, k, v, g, h0)


def _run(fn, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens):
    _validate(q, k, v, g, scale, initial_state, cu_seqlens)
    output_final_state = _validate_bool("output_final_state", output_final_state)
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    if backend_for(q) == "torch":
        return chunk_gla_torch(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)
    q, k, v, g, initial_state = _prep(q, k, v, g, initial_state)
    return fn.apply(q, k, v, g, scale, initial_state, bool(output_final_state), cu_seqlens)


_DOC_ARGS = """
    Args:
        q, k: [B, T, H, K]; v: [B, T, H, V] (float16, bfloat16 or float32, one dtype; K, V <= 256).
        g: [B, T, H, K], the log-space forget gate per key dimension (<= 0); values <= -30 act as -30
            (an exact reset to fp32 precision, zero gradient) — see the module docstring.
        scale: multiplies q; default K ** -0.5.
        initial_state: [N, H, K, V] float32 or None (zeros); N = B, or the number of sequences.
        output_final_state: also return the final state [N, H, K, V] float32.
        cu_seqlens: int32 [N+1] offsets of N sequences packed in a batch of 1 (the recommended way to
            pack; each sequence starts from its own initial state and returns its own final state).

    Returns:
        (o [B, T, H, V] in v's dtype, final_state or None). Differentiable in q, k, v, g, initial_state.
    """


def fused_recurrent_gla(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
    return _run(FusedRecurrentGLAFunction, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)


def chunk_gla(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
    return _run(ChunkGLAFunction, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)


def fused_chunk_gla(q, k, v, g, *, scale=None, initial_state=None, output_final_state=False, cu_seqlens=None):
    return _run(FusedChunkGLAFunction, q, k, v, g, scale, initial_state, output_final_state, cu_seqlens)


fused_recurrent_gla.__doc__ = "GLA one step at a time (state in registers)." + _DOC_ARGS
chunk_gla.__doc__ = "GLA by chunks of 64, states at chunk starts materialized, chunks in parallel." + _DOC_ARGS
fused_chunk_gla.__doc__ = "GLA by chunks of 64 walked in order with the state on chip." + _DOC_ARGS

__all__ = ["fused_recurrent_gla", "chunk_gla", "fused_chunk_gla"]
