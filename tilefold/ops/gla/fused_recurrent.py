"""GLA, one step at a time: S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,  o_t = scale * q_t S_t.

Grid (cdiv(V, BV), N*H): each program keeps a [K, BV] fp32 slice of the state in registers and walks its
sequence. The backward kernel walks forward once more (recomputing S_t for dq) and then backward
(carrying dS for dk, dv and d initial_state); dq and dk are partial over V blocks and summed by the launcher.
Every loop loads its inputs two steps ahead (they do not depend on the state), so a step waits on its
arithmetic and its reduction over K, not on a global-memory round trip.
"""
from __future__ import annotations

import torch
import triton
from ..common.host import cdiv, next_pow2, rows_grid
from ..common.masks import grid_row
import triton.language as tl

from .utils import G_FLOOR, empty


@triton.jit
def _load_qkgv(q, k, g, v, p_k, p_v, m_k, m_v):
    """One step's q, k, g rows (at p_k) and v row (at p_v) in their stored dtype; masked-off lanes 0."""
    return (tl.load(q + p_k, mask=m_k, other=0.0), tl.load(k + p_k, mask=m_k, other=0.0),
            tl.load(g + p_k, mask=m_k, other=0.0), tl.load(v + p_v, mask=m_v, other=0.0))


@triton.jit
def _load_kgvd(k, g, v, do, p_k, p_v, m_k, m_v):
    """One step's k, g rows (at p_k) and v, do rows (at p_v) in their stored dtype; masked-off lanes 0."""
    return (tl.load(k + p_k, mask=m_k, other=0.0), tl.load(g + p_k, mask=m_k, other=0.0),
            tl.load(v + p_v, mask=m_v, other=0.0), tl.load(do + p_v, mask=m_v, other=0.0))


@triton.jit
def fused_recurrent_gla_fwd_kernel(q, k, v, g, o, h0, ht, cu_seqlens, scale, H, K: tl.constexpr,
                                   V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                                   HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, G_MIN: tl.constexpr):
    i_v, i_nh = tl.program_id(0), grid_row(1)[0]
    i_n, i_h = i_nh // H, i_nh % H
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h += tl.load(h0 + i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :], mask=m_h, other=0.0)
    p_k = bos * H * K + i_h * K + o_k
    p_v = bos * H * V + i_h * V + o_v
    # Inputs are loaded two steps ahead (register double buffer): a step's loads do not depend on the
    # state, so their latency hides behind the two steps before it instead of stalling every step.
    l0, l1 = (bos < eos).to(tl.int32), (bos + 1 < eos).to(tl.int32)  # steps 0 and 1 exist
    a_q, a_k, a_g, a_v = _load_qkgv(q, k, g, v, p_k, p_v, o_k < l0 * K, o_v < l0 * V)
    b_q, b_k, b_g, b_v = _load_qkgv(q, k, g, v, p_k + H * K, p_v + H * V, o_k < l1 * K,
                                    o_v < l1 * V)
    for t in range(bos, eos):
        ln = (t + 2 < eos).to(tl.int32)  # 1 while the step two ahead exists (masks the prefetch)
        c_q, c_k, c_g, c_v = _load_qkgv(q, k, g, v, p_k + 2 * H * K, p_v + 2 * H * V, o_k < ln * K,
                                        o_v < ln * V)
        b_gate = tl.exp(tl.maximum(a_g.to(tl.float32), G_MIN, propagate_nan=tl.PropagateNan.ALL))
        b_h = b_h * b_gate[:, None] + a_k.to(tl.float32)[:, None] * a_v.to(tl.float32)[None, :]
        b_o = tl.sum(b_h * a_q.to(tl.float32)[:, None], axis=0) * scale
        tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_v)
        p_k += H * K
        p_v += H * V
        a_q, a_k, a_g, a_v = b_q, b_k, b_g, b_v
        b_q, b_k, b_g, b_v = c_q, c_k, c_g, c_v
    if STORE_HT:
        tl.store(ht + i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :], b_h, mask=m_h)


@triton.jit
def fused_recurrent_gla_bwd_kernel(q, k, v, g, do, dq, dk, dv, h0, dh0, dht, cu_seqlens, scale, H,
                                   NHT, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
                                   BV: tl.constexpr, HAS_H0: tl.constexpr, HAS_DHT: tl.constexpr,
                                   STORE_DH0: tl.constexpr, G_MIN: tl.constexpr):
    """dq, dk: [NV, B*T, H, K] fp32 partials (NHT = B*T*H*K is the stride between them)."""
    i_v, i_nh = tl.program_id(0), grid_row(1)[0]
    i_n, i_h = i_nh // H, i_nh % H
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_k = o_k < K
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    off_h = i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
    part = i_v.to(tl.int64) * NHT
    # pass 1: forward, recompute S_t, dq_t = scale * S_t do_t
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h += tl.load(h0 + off_h, mask=m_h, other=0.0)
    p_k = bos * H * K + i_h * K + o_k
    p_v = bos * H * V + i_h * V + o_v
    # loads two steps ahead in both passes, as in the forward
    l0, l1 = (bos < eos).to(tl.int32), (bos + 1 < eos).to(tl.int32)  # steps 0 and 1 exist
    a_k, a_g, a_v, a_do = _load_kgvd(k, g, v, do, p_k, p_v, o_k < l0 * K, o_v < l0 * V)
    b_k, b_g, b_v, b_do = _load_kgvd(k, g, v, do, p_k + H * K, p_v + H * V, o_k < l1 * K,
                                     o_v < l1 * V)
    for t in range(bos, eos):
        ln = (t + 2 < eos).to(tl.int32)  # 1 while the step two ahead exists (masks the prefetch)
        c_k, c_g, c_v, c_do = _load_kgvd(k, g, v, do, p_k + 2 * H * K, p_v + 2 * H * V, o_k < ln * K,
                                         o_v < ln * V)
        b_gate = tl.exp(tl.maximum(a_g.to(tl.float32), G_MIN, propagate_nan=tl.PropagateNan.ALL))
        b_h = b_h * b_gate[:, None] + a_k.to(tl.float32)[:, None] * a_v.to(tl.float32)[None, :]
        b_dq = tl.sum(b_h * a_do.to(tl.float32)[None, :], axis=1) * scale
        tl.store(dq + part + p_k, b_dq, mask=m_k)
        p_k += H * K
        p_v += H * V
        a_k, a_g, a_v, a_do = b_k, b_g, b_v, b_do
        b_k, b_g, b_v, b_do = c_k, c_g, c_v, c_do
    # pass 2: backward, dS += scale * q_t^T do_t; dk_t = dS v_t; dv_t = k_t dS; dS *= exp(g_t)
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        b_dh += tl.load(dht + off_h, mask=m_h, other=0.0)
    # p_k, p_v are one past the last step; steps eos-1, eos-2 first, then two ahead going down
    a_k, a_g, a_v, a_do = _load_kgvd(k, g, v, do, p_k - H * K, p_v - H * V, o_k < l0 * K,
                                     o_v < l0 * V)
    a_q = tl.load(q + p_k - H * K, mask=o_k < l0 * K, other=0.0)
    b_k, b_g, b_v, b_do = _load_kgvd(k, g, v, do, p_k - 2 * H * K, p_v - 2 * H * V, o_k < l1 * K,
                                     o_v < l1 * V)
    b_q = tl.load(q + p_k - 2 * H * K, mask=o_k < l1 * K, other=0.0)
    for t in range(bos, eos):
        # this iteration handles step eos-1-(t-bos); the prefetch is the step two below it
        ln = (eos - 3 - (t - bos) >= bos).to(tl.int32)
        c_k, c_g, c_v, c_do = _load_kgvd(k, g, v, do, p_k - 3 * H * K, p_v - 3 * H * V, o_k < ln * K,
                                         o_v < ln * V)
        c_q = tl.load(q + p_k - 3 * H * K, mask=o_k < ln * K, other=0.0)
        p_k -= H * K
        p_v -= H * V
        b_dh += (a_q.to(tl.float32) * scale)[:, None] * a_do.to(tl.float32)[None, :]
        b_dk = tl.sum(b_dh * a_v.to(tl.float32)[None, :], axis=1)
        b_dv = tl.sum(b_dh * a_k.to(tl.float32)[:, None], axis=0)
        tl.store(dk + part + p_k, b_dk, mask=m_k)
        tl.store(dv + p_v, b_dv.to(dv.dtype.element_ty), mask=m_v)
        b_dh = b_dh * tl.exp(tl.maximum(a_g.to(tl.float32), G_MIN,
                                        propagate_nan=tl.PropagateNan.ALL))[:, None]
        a_q, a_k, a_g, a_v, a_do = b_q, b_k, b_g, b_v, b_do
        b_q, b_k, b_g, b_v, b_do = c_q, c_k, c_g, c_v, c_do
    if STORE_DH0:
        tl.store(dh0 + off_h, b_dh, mask=m_h)


# (max state elements per program, num_warps); the state slice is [K, BV] fp32 in registers.
CFG = {"state": 2048, "warps": 2}


def _blocks(K, V):
    BK = next_pow2(K)
    BV = min(next_pow2(V), max(16, CFG["state"] // BK))
    return BK, BV


def fused_recurrent_gla_fwd(q, k, v, g, scale, h0, output_final_state, cu, N):
    """q, k, g: [B, T, H, K]; v: [B, T, H, V] (contiguous). Returns (o, ht or None)."""
    H, K, V = q.shape[2], q.shape[3], v.shape[3]
    BK, BV = _blocks(K, V)
    o = empty(*v.shape, dtype=v.dtype, device=v.device)
    ht = empty(N, H, K, V, dtype=torch.float32, device=q.device) if output_final_state else None
    grid = (cdiv(V, BV), *rows_grid(N, H))
    if N * H > 0:
        fused_recurrent_gla_fwd_kernel[grid](q, k, v, g, o, h0 if h0 is not None else q, ht if ht is not None else q,
                                             cu, scale, H, K, V, BK, BV, h0 is not None, ht is not None, G_FLOOR,
                                             num_warps=CFG["warps"])
    return o, ht


def fused_recurrent_gla_bwd(q, k, v, g, do, scale, h0, ht, dht, cu, N):
    B, T, H, K = q.shape
    V = v.shape[3]
    BK, BV = _blocks(K, V)
    NV = cdiv(V, BV)
    dq = empty(NV, B, T, H, K, dtype=torch.float32, device=q.device)
    dk = empty(NV, B, T, H, K, dtype=torch.float32, device=q.device)
    dv = empty(*v.shape, dtype=v.dtype, device=v.device)
    dh0 = empty(*h0.shape, dtype=h0.dtype, device=h0.device) if h0 is not None else None
    if N * H > 0:
        fused_recurrent_gla_bwd_kernel[(NV, *rows_grid(N, H))](
            q, k, v, g, do, dq, dk, dv, h0 if h0 is not None else q, dh0 if dh0 is not None else q,
            dht if dht is not None else q, cu, scale, H, B * T * H * K, K, V, BK, BV, h0 is not None,
            dht is not None, dh0 is not None, G_FLOOR, num_warps=CFG["warps"])
    dq = dq.sum(0)
    dk = dk.sum(0)
    dg = gla_bwd_dg(q, k, dq, dk, g, cu, N, ht, dht)
    return dq.to(q.dtype), dk.to(k.dtype), dv, dg, dh0


@triton.jit
def gla_bwd_dg_kernel(q, k, dq, dk, g, dg, ht, dht, cu_seqlens, H, K: tl.constexpr, V: tl.constexpr,
                      BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, HAS_DHT: tl.constexpr,
                      G_MIN: tl.constexpr):
    """dg_t = sum_{s >= t in its sequence} (q_s*dq_s - k_s*dk_s) + sum_v(h_T * dh_T), zero where the
    gate was floored. Grid (cdiv(K, BK), N*H); reverse over the sequence, one carry per key column."""
    i_k, i_nh = tl.program_id(0), grid_row(1)[0]
    i_n, i_h = i_nh // H, i_nh % H
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    eos = tl.load(cu_seqlens + i_n + 1).to(tl.int64)
    T = eos - bos
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    carry = tl.zeros([BK], dtype=tl.float32)
    if HAS_DHT:
        for i_v in range(0, tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m = m_k[:, None] & (o_v < V)[None, :]
            off = i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :]
            b_h = tl.load(ht + off, mask=m, other=0.0)
            b_dh = tl.load(dht + off, mask=m, other=0.0)
            carry += tl.sum(b_h * b_dh, axis=1)
    NT = tl.cdiv(T, BT)
    for i in range(0, NT):
        i_t = NT - 1 - i
        o_t = i_t * BT + tl.arange(0, BT)
        m = (o_t < T)[:, None] & m_k[None, :]
        off = (bos + o_t)[:, None] * H * K + i_h * K + o_k[None, :]
        b_q = tl.load(q + off, mask=m, other=0.0).to(tl.float32)
        b_k = tl.load(k + off, mask=m, other=0.0).to(tl.float32)
        b_dq = tl.load(dq + off, mask=m, other=0.0).to(tl.float32)
        b_dk = tl.load(dk + off, mask=m, other=0.0).to(tl.float32)
        b_g = tl.load(g + off, mask=m, other=0.0).to(tl.float32)
        b_x = b_q * b_dq - b_k * b_dk
        # reverse cumsum inside the block: total - inclusive prefix + self
        b_dg = tl.sum(b_x, axis=0)[None, :] - tl.cumsum(b_x, axis=0) + b_x + carry[None, :]
        carry += tl.sum(b_x, axis=0)
        b_dg = tl.where(b_g >= G_MIN, b_dg, 0.0)
        tl.store(dg + off, b_dg.to(dg.dtype.element_ty), mask=m)


def gla_bwd_dg(q, k, dq, dk, g, cu, N, ht=None, dht=None):
    """q, k, dq, dk, g: [B, T, H, K] (contiguous); returns dg like g."""
    H, K = q.shape[-2], q.shape[-1]
    dg = empty(*g.shape, dtype=g.dtype, device=g.device)
    BK = min(64, next_pow2(K))
    has_dht = dht is not None and ht is not None
    V = dht.shape[-1] if has_dht else 1
    BV = min(64, next_pow2(V))
    grid = (cdiv(K, BK), *rows_grid(N, H))
    if N * H > 0:
        gla_bwd_dg_kernel[grid](q, k, dq, dk, g, dg, ht if has_dht else q, dht.contiguous() if has_dht else q,
                                cu, H, K, V, 64, BK, BV, has_dht, G_FLOOR)
    return dg
