"""GLA, one step at a time: S_t = diag(exp(g_t)) S_{t-1} + k_t^T v_t,  o_t = scale * q_t S_t.

Grid (cdiv(V, BV), N*H): each program keeps a [K, BV] fp32 slice of the state in registers and walks its
sequence. The backward kernel walks forward once more (recomputing S_t for dq) and then backward
(carrying dS for dk, dv and d initial_state); dq and dk are partial over V blocks and summed by the launcher.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .utils import G_FLOOR, empty, gla_bwd_dg


@triton.jit
def fused_recurrent_gla_fwd_kernel(q, k, v, g, o, h0, ht, cu_seqlens, scale, H, K: tl.constexpr,
                                   V: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                                   HAS_H0: tl.constexpr, STORE_HT: tl.constexpr, G_MIN: tl.constexpr):
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
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
    for _ in range(bos, eos):
        b_q = tl.load(q + p_k, mask=m_k, other=0.0).to(tl.float32)
        b_k = tl.load(k + p_k, mask=m_k, other=0.0).to(tl.float32)
        b_g = tl.maximum(tl.load(g + p_k, mask=m_k, other=0.0).to(tl.float32), G_MIN)
        b_v = tl.load(v + p_v, mask=m_v, other=0.0).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_o = tl.sum(b_h * b_q[:, None], axis=0) * scale
        tl.store(o + p_v, b_o.to(o.dtype.element_ty), mask=m_v)
        p_k += H * K
        p_v += H * V
    if STORE_HT:
        tl.store(ht + i_nh.to(tl.int64) * K * V + o_k[:, None] * V + o_v[None, :], b_h, mask=m_h)


@triton.jit
def fused_recurrent_gla_bwd_kernel(q, k, v, g, do, dq, dk, dv, h0, dh0, dht, cu_seqlens, scale, H,
                                   NHT, K: tl.constexpr, V: tl.constexpr, BK: tl.constexpr,
                                   BV: tl.constexpr, HAS_H0: tl.constexpr, HAS_DHT: tl.constexpr,
                                   STORE_DH0: tl.constexpr, G_MIN: tl.constexpr):
    """dq, dk: [NV, B*T, H, K] fp32 partials (NHT = B*T*H*K is the stride between them)."""
    i_v, i_nh = tl.program_id(0), tl.program_id(1)
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
    for _ in range(bos, eos):
        b_k = tl.load(k + p_k, mask=m_k, other=0.0).to(tl.float32)
        b_g = tl.maximum(tl.load(g + p_k, mask=m_k, other=0.0).to(tl.float32), G_MIN)
        b_v = tl.load(v + p_v, mask=m_v, other=0.0).to(tl.float32)
        b_do = tl.load(do + p_v, mask=m_v, other=0.0).to(tl.float32)
        b_h = b_h * tl.exp(b_g)[:, None] + b_k[:, None] * b_v[None, :]
        b_dq = tl.sum(b_h * b_do[None, :], axis=1) * scale
        tl.store(dq + part + p_k, b_dq, mask=m_k)
        p_k += H * K
        p_v += H * V
    # pass 2: backward, dS += scale * q_t^T do_t; dk_t = dS v_t; dv_t = k_t dS; dS *= exp(g_t)
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        b_dh += tl.load(dht + off_h, mask=m_h, other=0.0)
    for _ in range(bos, eos):
        p_k -= H * K
        p_v -= H * V
        b_q = tl.load(q + p_k, mask=m_k, other=0.0).to(tl.float32)
        b_k = tl.load(k + p_k, mask=m_k, other=0.0).to(tl.float32)
        b_g = tl.maximum(tl.load(g + p_k, mask=m_k, other=0.0).to(tl.float32), G_MIN)
        b_v = tl.load(v + p_v, mask=m_v, other=0.0).to(tl.float32)
        b_do = tl.load(do + p_v, mask=m_v, other=0.0).to(tl.float32)
        b_dh += (b_q * scale)[:, None] * b_do[None, :]
        b_dk = tl.sum(b_dh * b_v[None, :], axis=1)
        b_dv = tl.sum(b_dh * b_k[:, None], axis=0)
        tl.store(dk + part + p_k, b_dk, mask=m_k)
        tl.store(dv + p_v, b_dv.to(dv.dtype.element_ty), mask=m_v)
        b_dh = b_dh * tl.exp(b_g)[:, None]
    if STORE_DH0:
        tl.store(dh0 + off_h, b_dh, mask=m_h)


# (max state elements per program, num_warps); the state slice is [K, BV] fp32 in registers.
CFG = {"state": 2048, "warps": 2}


def _blocks(K, V):
    BK = triton.next_power_of_2(K)
    BV = min(triton.next_power_of_2(V), max(16, CFG["state"] // BK))
    return BK, BV


def fused_recurrent_gla_fwd(q, k, v, g, scale, h0, output_final_state, cu, N):
    """q, k, g: [B, T, H, K]; v: [B, T, H, V] (contiguous). Returns (o, ht or None)."""
    H, K, V = q.shape[2], q.shape[3], v.shape[3]
    BK, BV = _blocks(K, V)
    o = empty(*v.shape, dtype=v.dtype, device=v.device)
    ht = empty(N, H, K, V, dtype=torch.float32, device=q.device) if output_final_state else None
    grid = (triton.cdiv(V, BV), N * H)
    if N * H > 0:
        fused_recurrent_gla_fwd_kernel[grid](q, k, v, g, o, h0 if h0 is not None else q, ht if ht is not None else q,
                                             cu, scale, H, K, V, BK, BV, h0 is not None, ht is not None, G_FLOOR,
                                             num_warps=CFG["warps"])
    return o, ht


def fused_recurrent_gla_bwd(q, k, v, g, do, scale, h0, ht, dht, cu, N):
    B, T, H, K = q.shape
    V = v.shape[3]
    BK, BV = _blocks(K, V)
    NV = triton.cdiv(V, BV)
    dq = empty(NV, B, T, H, K, dtype=torch.float32, device=q.device)
    dk = empty(NV, B, T, H, K, dtype=torch.float32, device=q.device)
    dv = empty(*v.shape, dtype=v.dtype, device=v.device)
    dh0 = empty(*h0.shape, dtype=h0.dtype, device=h0.device) if h0 is not None else None
    if N * H > 0:
        fused_recurrent_gla_bwd_kernel[(NV, N * H)](
            q, k, v, g, do, dq, dk, dv, h0 if h0 is not None else q, dh0 if dh0 is not None else q,
            dht if dht is not None else q, cu, scale, H, B * T * H * K, K, V, BK, BV, h0 is not None,
            dht is not None, dh0 is not None, G_FLOOR, num_warps=CFG["warps"])
    dq = dq.sum(0)
    dk = dk.sum(0)
    dg = gla_bwd_dg(q, k, dq, dk, g, cu, N, ht, dht)
    return dq.to(q.dtype), dk.to(k.dtype), dv, dg, dh0
