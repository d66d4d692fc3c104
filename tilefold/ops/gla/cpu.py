"""GLA on CPU tensors: the chunked fold in plain torch, differentiable by autograd (every mode runs this
on the torch backend; the modes are GPU kernel strategies). Memory O(T * BT * K) per (batch, head).

Inside a chunk of BT positions the decay between t >= s is exp(gc_t - gc_s) with gc the chunk-local
cumulative sum of the floored gates, computed per (t, s, k) so nothing over- or underflows wrongly.
"""
from __future__ import annotations

import torch

from .utils import G_FLOOR

BT_TORCH = 32


def _chunk_one(q, k, v, g, scale, h0):
    """q, k, g: [B, T, H, K]; v: [B, T, H, V]; h0: [B, H, K, V] fp32. Returns o fp32, final state."""
    B, T, H, K = q.shape
    q, k, v = (x.float().transpose(1, 2) for x in (q, k, v))
    g = g.float().clamp(min=G_FLOOR).transpose(1, 2)
    h = h0
    outs = []
    for s in range(0, T, BT_TORCH):
        e = min(s + BT_TORCH, T)
        L = e - s
        qc, kc, vc = q[:, :, s:e], k[:, :, s:e], v[:, :, s:e]
        gc = g[:, :, s:e].cumsum(2)
        causal = torch.ones(L, L, dtype=torch.bool, device=q.device).tril()
        d = gc[:, :, :, None, :] - gc[:, :, None, :, :]
        d = d.masked_fill(~causal[:, :, None], float("-inf"))
        a = torch.einsum("bhtk,bhsk,bhtsk->bhts", qc, kc, d.exp()) * scale
        o = (qc * gc.exp()) @ h * scale + a @ vc
        outs.append(o)
        glast = gc[:, :, -1]
        h = h * glast.exp()[..., None] + (kc * (glast[:, :, None] - gc).exp()).transpose(2, 3) @ vc
    o = torch.cat(outs, 2) if outs else v.new_zeros(B, H, 0, v.shape[-1])
    if h is h0:  # empty sequence: never hand the caller's tensor back as ours
        h = h0.clone()
    return o.transpose(1, 2), h


def chunk_gla_torch(q, k, v, g, scale, initial_state, output_final_state, cu_seqlens):
    B, T, H, K = q.shape
    V = v.shape[-1]
    if cu_seqlens is None:
        h0 = initial_state if initial_state is not None else q.new_zeros(B, H, K, V, dtype=torch.float32)
        o, ht = _chunk_one(q, k, v, g, scale, h0)
        return o.to(v.dtype), (ht if output_final_state else None)
    cu = cu_seqlens.tolist()
    outs, finals = [], []
    for n in range(len(cu) - 1):
        s, e = cu[n], cu[n + 1]
        h0 = (initial_state[n:n + 1] if initial_state is not None
              else q.new_zeros(1, H, K, V, dtype=torch.float32))
        o, ht = _chunk_one(q[:, s:e], k[:, s:e], v[:, s:e], g[:, s:e], scale, h0)
        outs.append(o)
        finals.append(ht)
    o = torch.cat(outs, 1) if outs else v.new_zeros(1, 0, H, V, dtype=torch.float32)
    return o.to(v.dtype), (torch.cat(finals, 0) if output_final_state else None)
