"""Reference attention: plain torch, materialized, readable first. Tests (and the demo) import it.

Layouts: q (B, M, H, D), k/v (B, N, HK, D). Returns out (B, M, H, D) and lse (B, H, M), computed in
``compute_dtype`` (fp64 by default). Mask convention (bottom-right aligned): query i may see key j iff
``i + (N - M) - left <= j <= i + (N - M) + right`` with ``right = 0`` under ``causal`` and -1 meaning
unbounded.
"""
from __future__ import annotations

import math

import torch


def visible_mask(M: int, N: int, causal: bool, window_size=(-1, -1), device=None, shift: int | None = None):
    """Boolean (M, N): True where query i may see key j."""
    left, right = window_size
    if causal:
        right = 0 if right < 0 else min(right, 0)
    if shift is None:
        shift = N - M
    i = torch.arange(M, device=device).unsqueeze(1)
    j = torch.arange(N, device=device).unsqueeze(0)
    ok = torch.ones(M, N, dtype=torch.bool, device=device)
    if right >= 0:
        ok &= j <= i + shift + right
    if left >= 0:
        ok &= j >= i + shift - left
    return ok


def attention_ref(q, k, v, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                  compute_dtype=torch.float64, dropout_p=0.0, keep=None, shift=None, alibi_slopes=None):
    """Materialized attention. ``keep`` (B, H, M, N) bool applies dropout with 1/(1-p) scaling. ``alibi_slopes``
    (H,) or (B, H): scores get ``-slope · |i + shift - j|`` after the scale and softcap (flash_attn's ALiBi)."""
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    scale = softmax_scale if softmax_scale is not None else 1.0 / math.sqrt(D)
    g = H // HK
    qc = q.to(compute_dtype).transpose(1, 2)  # B H M D
    kc = k.to(compute_dtype).transpose(1, 2).repeat_interleave(g, dim=1)
    vc = v.to(compute_dtype).transpose(1, 2).repeat_interleave(g, dim=1)
    s = torch.matmul(qc, kc.transpose(-1, -2)) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    if alibi_slopes is not None:
        i = torch.arange(M, device=q.device, dtype=compute_dtype).unsqueeze(1)
        j = torch.arange(N, device=q.device, dtype=compute_dtype).unsqueeze(0)
        dist = (i + (N - M if shift is None else shift) - j).abs()
        s = s - alibi_slopes.to(compute_dtype).expand(B, H).reshape(B, H, 1, 1) * dist
    ok = visible_mask(M, N, causal, window_size, device=q.device, shift=shift)
    s = s.masked_fill(~ok, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    lse_safe = torch.where(torch.isneginf(lse), torch.zeros_like(lse), lse)
    p = torch.exp(s - lse_safe.unsqueeze(-1))
    if dropout_p > 0 or keep is not None:
        from ..common.philox_torch import keep_scale
        p = p * keep.to(p.dtype) * keep_scale(dropout_p)
    out = torch.matmul(p, vc).transpose(1, 2)
    return out.to(compute_dtype), lse.float() if compute_dtype != torch.float64 else lse


def varlen_attention_ref(q, k, v, cu_seqlens_q, cu_seqlens_k, **kw):
    """Per-sequence loop over ``attention_ref``: q (Tq, H, D), k/v (Tk, HK, D). lse (H, Tq)."""
    cdt = kw.get("compute_dtype", torch.float64)
    slopes = kw.pop("alibi_slopes", None)
    outs, lses = [], []
    for b in range(len(cu_seqlens_q) - 1):
        qs, qe = int(cu_seqlens_q[b]), int(cu_seqlens_q[b + 1])
        ks, ke = int(cu_seqlens_k[b]), int(cu_seqlens_k[b + 1])
        sb = None if slopes is None else slopes if slopes.dim() == 1 else slopes[b]
        o, l = attention_ref(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], alibi_slopes=sb, **kw)
        outs.append(o[0])
        lses.append(l[0])
    H, D = q.shape[1], v.shape[2]
    out = torch.cat(outs, 0) if outs else q.new_zeros((0, H, D), dtype=cdt)
    lse = torch.cat(lses, 1) if lses else q.new_zeros((H, 0), dtype=torch.float64)
    return out, lse
