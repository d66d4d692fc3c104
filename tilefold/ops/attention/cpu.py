"""The CPU path: the same fold in torch, tiled over keys (memory O(M·tile), never M×N).

Each key tile gives a state (o_t, lse_t) that is merged into the running state with the one ⊕ of
``tilefold.state``. The backward walks the same tiles, recomputing P from the saved lse. Arithmetic is
fp32 (fp64 inputs stay fp64); outputs are cast back to the input dtype. Varlen runs the batch path per
sequence on views of the packed tensors.

Cost on a CPU is the elementwise passes over each (rows x KEY_TILE) tile, so: a tile only covers the query
rows that see one of its keys (causal / window: about half the work of a causal call is never done), the
mask is applied only to tiles it cuts, the scale is folded into q once, and the tile's buffers are updated
in place (scores -> probabilities -> dS).
"""
from __future__ import annotations

import functools

import torch

from ...state import merge, tile_state
from ..common.philox_torch import dropout_keep_torch, dropout_threshold, keep_scale

KEY_TILE = 256


def _no_autocast(fn):
    """The fold's arithmetic is in _acc_dtype (fp32 for 16-bit inputs) whatever the caller's autocast says: under CPU
    autocast its matmuls ran in bf16, so the forward's lse came from bf16 scores while the backward (outside autocast)
    recomputed P in fp32 against it -- gradients inconsistent with the forward, and eager unlike the compiled op."""
    @functools.wraps(fn)
    def wrapped(first, *args, **kwargs):
        with torch.autocast(first.device.type, enabled=False):
            return fn(first, *args, **kwargs)
    return wrapped


def _tile_visible(M, n0, n1, seqlen_k, shift, window, device, r0=0):
    """visible[i - r0, j - n0] for query rows r0..M-1 and keys n0..n1-1."""
    left, right = window
    i = torch.arange(r0, M, device=device).unsqueeze(1)
    j = torch.arange(n0, n1, device=device).unsqueeze(0)
    ok = j < seqlen_k
    if right >= 0:
        ok = ok & (j - i <= shift + right)
    if left >= 0:
        ok = ok & (j - i >= shift - left)
    return ok


def _tile_rows(M, n0, n1, shift, window):
    """(r0, r1, cut): the query rows [r0, r1) that can see a key of [n0, n1) (key j is visible to row i when
    shift - left <= j - i <= shift + right), and whether the mask cuts that block (else every pair is visible)."""
    left, right = window
    r0, r1 = 0, M
    if right >= 0:
        r0 = max(r0, n0 - shift - right)
    if left >= 0:
        r1 = min(r1, n1 - 1 - shift + left + 1)
    r1 = max(r0, r1)
    cut = (right >= 0 and n1 - 1 - r0 > shift + right) or (left >= 0 and n0 - (r1 - 1) < shift - left)
    return r0, r1, cut


def _alibi_bias(alibi, HK, r0, r1, n0, n1, shift, dtype):
    """(B, HK, G, r1 - r0, n1 - n0) tile of ``-slope · |i + shift - j|`` (ALiBi, flash_attn's convention) for query
    rows r0..r1-1 and keys n0..n1-1; ``alibi`` the (B, H) slopes."""
    i = torch.arange(r0, r1, dtype=dtype, device=alibi.device).unsqueeze(1)
    j = torch.arange(n0, n1, dtype=dtype, device=alibi.device).unsqueeze(0)
    B, H = alibi.shape
    return -alibi.to(dtype).reshape(B, HK, H // HK, 1, 1) * (i + shift - j).abs()


def _acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grouped(q, HK):
    """(B, M, H, D) -> (B, HK, G, M, D) view."""
    B, M, H, D = q.shape
    return q.transpose(1, 2).reshape(B, HK, H // HK, M, D)


def _scores(qg, kt, scale, softcap):
    s = torch.matmul(qg, kt.unsqueeze(2).transpose(-1, -2)) * scale
    t = None
    if softcap > 0:
        t = torch.tanh(s / softcap)
        s = softcap * t
    return s, t


def _keep(B, HK, G, M, n0, n1, dropout_p, seed, offset, b_offset=0, r0=0):
    """Dropout keep-mask (B, HK, G, M - r0, n) for query rows r0..M-1 and key columns n0..n1 (the kernels'
    Philox stream)."""
    H = HK * G
    bh = ((torch.arange(B) + b_offset) * H).view(B, 1, 1, 1, 1) + torch.arange(H).view(1, HK, G, 1, 1)
    rows = torch.arange(r0, M).view(M - r0, 1)
    cols = torch.arange(n0, n1).view(1, n1 - n0)
    return dropout_keep_torch(seed, offset, bh, rows, cols, dropout_threshold(dropout_p))


@_no_autocast
def attention_fwd_cpu(q, k, v, *, softmax_scale, window, softcap, shift_extra=0, dropout_p=0.0, seed=0,
                      offset=0, b_offset=0, alibi=None):
    """q (B, M, H, D), k/v (B, N, HK, D) -> out (B, M, H, D) in q.dtype, lse (B, H, M) fp32. ``alibi``: (B, H)
    slopes or None."""
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    adt = _acc_dtype(q.dtype)
    qs = _grouped(q, HK).to(adt) * softmax_scale  # B HK G M D, scaled once
    kt_all = k.transpose(1, 2).to(adt)  # B HK N D
    vt_all = v.transpose(1, 2).to(adt)
    shift = N - M + shift_extra
    o = torch.zeros(B, HK, H // HK, M, v.shape[-1], dtype=adt)
    lse = torch.full((B, HK, H // HK, M), float("-inf"), dtype=torch.float32)
    for n0 in range(0, N, KEY_TILE):
        n1 = min(N, n0 + KEY_TILE)
        r0, r1, cut = _tile_rows(M, n0, n1, shift, window)
        if r0 >= r1:
            continue
        s = torch.matmul(qs[..., r0:r1, :], kt_all[:, :, n0:n1].unsqueeze(2).transpose(-1, -2))
        if softcap > 0:
            s = torch.tanh(s.div_(softcap)).mul_(softcap)
        if alibi is not None:
            s.add_(_alibi_bias(alibi, HK, r0, r1, n0, n1, shift, adt))
        if cut:
            ok = _tile_visible(r1, n0, n1, N, shift, window, q.device, r0)
            if not bool(ok.any()):
                continue
            s.masked_fill_(~ok, float("-inf"))
        keep = _keep(B, HK, H // HK, r1, n0, n1, dropout_p, seed, offset, b_offset, r0) if dropout_p > 0 else None
        o_t, lse_t = tile_state(s, vt_all[:, :, n0:n1].unsqueeze(2), keep, consume=True)
        o_r, lse_r = merge(o[..., r0:r1, :], lse[..., r0:r1], o_t, lse_t)
        o[..., r0:r1, :] = o_r
        lse[..., r0:r1] = lse_r
    if dropout_p > 0:
        o = o * keep_scale(dropout_p)
    out = o.reshape(B, H, M, v.shape[-1]).transpose(1, 2).to(q.dtype).contiguous()
    return out, lse.reshape(B, H, M).contiguous()


@_no_autocast
def attention_bwd_cpu(dout, q, k, v, out, lse, *, dlse=None, softmax_scale, window, softcap, shift_extra=0,
                      dropout_p=0.0, seed=0, offset=0, b_offset=0, alibi=None):
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    G = H // HK
    adt = _acc_dtype(q.dtype)
    qs = _grouped(q, HK).to(adt) * softmax_scale  # scaled once: S = qs K^T, dK = dS^T qs
    dog = _grouped(dout, HK).to(adt)
    # delta_i = sum_j P_ij dP_ij (the softmax backward's row term). With all keys in one tile it is that sum, as torch's
    # softmax backward computes it, so a row that sees a single key gets dP - delta = 0 exactly (seqlen_k = 1: dq = dk
    # = 0, as torch's; dO . O, rounded apart from dP's matmul, left ~1e-5 in dk over 1000 rows). Over several tiles
    # the row is not whole in any of them: rowsum(dO * O), the same value up to rounding.
    one_tile = N <= KEY_TILE
    dlse_g = dlse.to(adt).reshape(B, HK, G, M) if dlse is not None else None
    if not one_tile:
        delta = (dout.to(adt) * out.to(adt)).sum(-1).transpose(1, 2).reshape(B, HK, G, M)
        if dlse_g is not None:
            delta = delta - dlse_g
    lse_g = lse.to(adt).reshape(B, HK, G, M)
    lse_g = torch.where(torch.isneginf(lse_g), torch.full_like(lse_g, float("inf")), lse_g)
    kt_all = k.transpose(1, 2).to(adt)
    vt_all = v.transpose(1, 2).to(adt)
    shift = N - M + shift_extra
    dq = torch.zeros_like(qs)
    dk = torch.zeros(B, HK, N, D, dtype=adt)
    dv = torch.zeros(B, HK, N, v.shape[-1], dtype=adt)
    for n0 in range(0, N, KEY_TILE):
        n1 = min(N, n0 + KEY_TILE)
        r0, r1, cut = _tile_rows(M, n0, n1, shift, window)
        if r0 >= r1:
            continue
        kt = kt_all[:, :, n0:n1].unsqueeze(2)
        vt = vt_all[:, :, n0:n1].unsqueeze(2)
        qr, dor = qs[..., r0:r1, :], dog[..., r0:r1, :]
        s = torch.matmul(qr, kt.transpose(-1, -2))  # B HK G m n
        t = None
        if softcap > 0:
            t = torch.tanh(s.div_(softcap))
            s = t * softcap
        if alibi is not None:
            s.add_(_alibi_bias(alibi, HK, r0, r1, n0, n1, shift, adt))
        p = s.sub_(lse_g[..., r0:r1].unsqueeze(-1)).exp_()  # in place: S -> P
        if cut:
            ok = _tile_visible(r1, n0, n1, N, shift, window, q.device, r0)
            if not bool(ok.any()):
                continue
            p.masked_fill_(~ok, 0.0)
        dp = torch.matmul(dor, vt.transpose(-1, -2))
        if dropout_p > 0:
            keep = _keep(B, HK, G, r1, n0, n1, dropout_p, seed, offset, b_offset, r0)
            rs = keep_scale(dropout_p)
            dv[:, :, n0:n1] = torch.matmul((p * keep * rs).transpose(-1, -2), dor).sum(2)
            dp = torch.where(keep, dp * rs, torch.zeros_like(dp))
        else:
            dv[:, :, n0:n1] = torch.matmul(p.transpose(-1, -2), dor).sum(2)
        if one_tile:
            d_rows = (p * dp).sum(-1, keepdim=True)
            if dlse_g is not None:
                d_rows = d_rows - dlse_g[..., r0:r1].unsqueeze(-1)
        else:
            d_rows = delta[..., r0:r1].unsqueeze(-1)
        ds = dp.sub_(d_rows).mul_(p)  # in place: dP -> dS
        if t is not None:
            ds.mul_(1.0 - t * t)
        dq[..., r0:r1, :] += torch.matmul(ds, kt)
        dk[:, :, n0:n1] = torch.matmul(ds.transpose(-1, -2), qr).sum(2)
    dq = (dq * softmax_scale).reshape(B, H, M, D).transpose(1, 2).to(q.dtype).contiguous()
    dk = dk.transpose(1, 2).to(k.dtype).contiguous()
    dv = dv.transpose(1, 2).to(v.dtype).contiguous()
    return dq, dk, dv


def _split(t, cu, b):
    return t[int(cu[b]):int(cu[b + 1])].unsqueeze(0)


def varlen_fwd_cpu(q, k, v, cu_q, cu_k, alibi=None, **kw):
    T, H, D = q.shape
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    lse = torch.empty(H, T, dtype=torch.float32)
    cu_q, cu_k = cu_q.tolist(), cu_k.tolist()
    for b in range(len(cu_q) - 1):
        o, l = attention_fwd_cpu(_split(q, cu_q, b), _split(k, cu_k, b), _split(v, cu_k, b), b_offset=b,
                                 alibi=None if alibi is None else alibi[b:b + 1], **kw)
        out[cu_q[b]:cu_q[b + 1]] = o[0]
        lse[:, cu_q[b]:cu_q[b + 1]] = l[0]
    return out, lse


def varlen_bwd_cpu(dout, q, k, v, out, lse, cu_q, cu_k, *, dlse=None, alibi=None, **kw):
    dq = torch.empty(q.shape, dtype=q.dtype)
    dk = torch.zeros(k.shape, dtype=k.dtype)
    dv = torch.zeros(v.shape, dtype=v.dtype)
    cu_q, cu_k = cu_q.tolist(), cu_k.tolist()
    for b in range(len(cu_q) - 1):
        qs, qe, ks, ke = cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1]
        dl = None if dlse is None else dlse[:, qs:qe].unsqueeze(0)
        g = attention_bwd_cpu(dout[qs:qe].unsqueeze(0), q[qs:qe].unsqueeze(0), k[ks:ke].unsqueeze(0),
                              v[ks:ke].unsqueeze(0), out[qs:qe].unsqueeze(0), lse[:, qs:qe].unsqueeze(0),
                              dlse=dl, b_offset=b, alibi=None if alibi is None else alibi[b:b + 1], **kw)
        dq[qs:qe], dk[ks:ke], dv[ks:ke] = g[0][0], g[1][0], g[2][0]
    return dq, dk, dv


@_no_autocast
def attention_probs(q, k, lse, *, softmax_scale, window, softcap, shift_extra=0, dropout_p=0.0, seed=0,
                    offset=0, b_offset=0, alibi=None):
    """The normalized probabilities (B, H, M, N) fp32 from the saved lse — the one O(M·N) output
    (``return_attn_probs``; for testing and analysis). Device-agnostic torch."""
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    qg = _grouped(q, HK).float()
    s, _ = _scores(qg, k.transpose(1, 2).float(), softmax_scale, softcap)
    if alibi is not None:
        s = s + _alibi_bias(alibi, HK, 0, M, 0, N, N - M + shift_extra, torch.float32)
    ok = _tile_visible(M, 0, N, N, N - M + shift_extra, window, q.device)
    lse_g = lse.float().reshape(B, HK, H // HK, M)
    lse_g = torch.where(torch.isneginf(lse_g), torch.full_like(lse_g, float("inf")), lse_g)
    p = torch.exp(s - lse_g.unsqueeze(-1)).masked_fill(~ok, 0.0)
    if dropout_p > 0:
        keep = _keep(B, HK, H // HK, M, 0, N, dropout_p, seed, offset, b_offset)
        p = torch.where(ok & ~keep, -p, p)  # sign bit = dropped (a dropped 0 is -0.0)
    return p.reshape(B, H, M, N)
