"""GLA by chunks: chunk_gla (states materialized, chunks in parallel) and fused_chunk_gla (state on chip).

Inside a chunk of BT = 64 positions, gc is the chunk-local cumulative sum of the floored gates. The
output of row t is  scale * (q_t * exp(gc_t)) @ h_chunk_start  +  sum_{s <= t} A[t, s] v_s  with
A[t, s] = scale * sum_k q_tk k_sk exp(gc_tk - gc_sk). A is built from sub-chunks of BC = 16:
an off-diagonal block (rows in sub-chunk i, columns in sub-chunk j < i) is re-referenced to the gate at
the first row n of sub-chunk i:  (q_i * exp(gc_i - gc_n)) @ (k_j * exp(gc_n - gc_j))^T, both exponents
<= 0; a diagonal block is formed column by column with exp(gc_t - gc_s), t >= s. No exp() ever sees a
positive argument, so no inf, and no inf * 0.

Kernels: fwd_h (states at chunk starts, the gc table, final state), fwd_o (per chunk; with FUSED the
same program walks all chunks carrying the state), bwd_dh (state gradients, reverse), bwd_dqkv (per chunk).
"""
from __future__ import annotations

import torch
import triton
from ..common.host import cdiv, next_pow2, rows_grid
from ..common.masks import grid_row
import triton.language as tl

from ..common.dispatch import interpreter_enabled
from .utils import G_FLOOR, dot_precision, empty

BT = 64  # default chunk size; chunk_size() picks per call
BC = 16
# Launch configs per kernel: (BV cap, num_warps). Measured reasons go in benchmarks/NOTES.md (## GLA).
# The interpreter ignores warps; tests run these same block shapes.
CFG = {"fwd_h": (128, 8), "fwd_o": (128, 8), "fused": (64, 4), "bwd_dh": (128, 8), "bwd_dqkv": (64, 4)}
# Software-pipelining depth: bwd_dqkv asked for 311 KB of shared memory at Triton's default 3 stages
# (H200 limit 227 KB; seen on the device, v3), so it runs unpipelined; the chunk loops of fwd_h/bwd_dh
# get as many stages (<= 3) as their per-chunk tiles fit in ~200 KB (3 for bf16 K = V = 128, as measured).
STAGES = {"bwd_dqkv": 1}
# fwd_h / bwd_dh_v5 (BV, warps, stages) when (sequences x heads) x value blocks would fill fewer than half
# the SMs (see _serial_cfg)
SMALL_NH_CFG = {"fwd_h": (32, 4, 2), "bwd_dh_v5": (32, 4, 3)}


def chunk_size(K, V):
    """64 positions per chunk; 32 when K or V > 128, where the backward's fp32 [BT, K] operand tiles
    would not fit in shared memory at 64 (sm_90, checked by compiling offline)."""
    return 64 if max(K, V) <= 128 else 32


def _dqkv_bv(V, BK, es):
    """bwd_dqkv's V block: fp32 inputs with K > 128 need 254 KB at BV = 64 (BT = 32), so 32 there."""
    return _bv(V, 32 if (BK > 128 and es == 4) else CFG["bwd_dqkv"][0])


def _stages(es, BK, BV, BT, cap=3):
    per_stage = BT * (BK * (es + 4) + BV * es)  # a [BT, BK] input tile, its fp32 gc tile, a [BT, BV] tile
    return max(1, min(cap, (200 * 1024) // per_stage))


@triton.jit
def _tile(ptr, rows, m_rows, i_h, H, D: tl.constexpr, cols, m_cols):
    return tl.load(ptr + rows[:, None] * H * D + i_h * D + cols[None, :],
                   mask=m_rows[:, None] & m_cols[None, :], other=0.0)


@triton.jit
def _row(ptr, row, i_h, H, D: tl.constexpr, cols, m_cols):
    return tl.load(ptr + row * H * D + i_h * D + cols, mask=m_cols, other=0.0).to(tl.float32)


@triton.jit
def _diag_A(k, gc, b_q, b_g, row0, L, i_h, H, K: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr):
    """A[t, s] = sum_k b_q[t] k_s exp(b_g[t] - gc_s) for s <= t < L (rows of one sub-chunk starting at
    global row row0, L valid rows); b_q already scaled, fp32."""
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    r = tl.arange(0, BC)
    b_A = tl.zeros([BC, BC], dtype=tl.float32)
    for s in range(0, tl.minimum(L, BC)):
        b_ks = _row(k, row0 + s, i_h, H, K, o_k, m_k)
        b_gs = _row(gc, row0 + s, i_h, H, K, o_k, m_k)
        cond = (r >= s) & (r < L)
        b_e = tl.exp(tl.where(cond[:, None], b_g - b_gs[None, :], 0.0))
        b_a = tl.where(cond, tl.sum(b_q * b_ks[None, :] * b_e, axis=1), 0.0)
        b_A = tl.where(r[None, :] == s, b_a[:, None], b_A)
    return b_A


@triton.jit
def _fast_range(DT: tl.constexpr):
    """Decay range up to which a chunk or sub-chunk is re-referenced to its first row (_chunk_fast / _diag_fast): its
    k operands grow by up to exp(range) before the cast to DT. fp32 / bf16 hold exp(20) · |k|; fp16 (max 65504) does
    not (k = 1 overflowed from a range of ~11: NaN outputs with per-step gates of -0.7 over 16 steps), so fp16 takes
    the re-referenced dots only for chunks without decay and the sub-chunk / column paths otherwise."""
    if DT == tl.float16:
        return 0.0
    else:
        return 20.0


@triton.jit
def _diag_fast(gc, b_gn, row0, L, i_h, H, K: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, RANGE):
    """True when the sub-chunk's decay range max_k(gc_first - gc_last) <= RANGE: then its diagonal block
    can be re-referenced to its first row too (factors exp(gc_n - gc_s) <= exp(RANGE): see _fast_range) and formed
    by one masked dot instead of a column loop."""
    o_k = tl.arange(0, BK)
    b_gl = _row(gc, row0 + tl.minimum(L, BC) - 1, i_h, H, K, o_k, o_k < K)
    return tl.max(b_gn - b_gl, axis=0) <= RANGE


@triton.jit
def _diag(k, gc, b_q, b_g, b_gn, row0, L, i_h, H, K: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
          RANGE, DT: tl.constexpr, PREC: tl.constexpr):
    """The diagonal block A[t, s] (s <= t < L) of one sub-chunk: one dot when the decay range allows
    (_diag_fast), else the exact column loop (_diag_A). b_q scaled fp32, b_g its gc, b_gn gc of row0;
    DT: the dot operands' dtype."""
    o_k = tl.arange(0, BK)
    r = tl.arange(0, BC)
    m_r = r < L
    if _diag_fast(gc, b_gn, row0, L, i_h, H, K, BC, BK, RANGE):
        b_k = _tile(k, row0 + r, m_r, i_h, H, K, o_k, o_k < K).to(tl.float32)
        b_qn = (b_q * tl.exp(tl.where(m_r[:, None], b_g - b_gn[None, :], 0.0))).to(DT)
        b_kn = (b_k * tl.exp(b_gn[None, :] - b_g)).to(DT)
        b_A = tl.dot(b_qn, tl.trans(b_kn), input_precision=PREC)
        b_A = tl.where((r[:, None] >= r[None, :]) & m_r[:, None], b_A, 0.0)
    else:
        b_A = _diag_A(k, gc, b_q, b_g, row0, L, i_h, H, K, BC, BK)
    return b_A


@triton.jit
def _chunk_fast(gc, row0, L, i_h, H, K: tl.constexpr, BK: tl.constexpr, RANGE):
    """True when the chunk's decay range max_k(gc_first - gc_last) <= RANGE: the whole chunk can then be
    re-referenced to its first row (factors <= exp(RANGE): see _fast_range) and its intra-chunk
    part formed by [BT, BT] dots. Masked or strong gates take the sub-chunk path instead."""
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    b_g0 = _row(gc, row0, i_h, H, K, o_k, m_k)
    b_gl = _row(gc, row0 + L - 1, i_h, H, K, o_k, m_k)
    return tl.max(b_g0 - b_gl, axis=0) <= RANGE


@triton.jit
def _chunk_fwd_o(q, k, v, gc, o, b_h, row0, L, i_h, H, i_v, scale, K: tl.constexpr, V: tl.constexpr,
                 BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                 PREC: tl.constexpr):
    """o rows [row0, row0 + L) of one chunk, V columns of block i_v, given the chunk-start state b_h."""
    if _chunk_fast(gc, row0, L, i_h, H, K, BK, _fast_range(k.dtype.element_ty)):  # operands in k's dtype
        _chunk_fwd_o_full(q, k, v, gc, o, b_h, row0, L, i_h, H, i_v, scale, K, V, BT, BK, BV, PREC)
    else:
        _chunk_fwd_o_sub(q, k, v, gc, o, b_h, row0, L, i_h, H, i_v, scale, K, V, BT, BC, BK, BV, PREC)


@triton.jit
def _chunk_fwd_o_full(q, k, v, gc, o, b_h, row0, L, i_h, H, i_v, scale, K: tl.constexpr, V: tl.constexpr,
                      BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    """The whole chunk re-referenced to its first row: three [BT, *] dots."""
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    r = tl.arange(0, BT)
    m_t = r < L
    DT = k.dtype.element_ty
    b_g0 = _row(gc, row0, i_h, H, K, o_k, m_k)
    b_g = _tile(gc, row0 + r, m_t, i_h, H, K, o_k, m_k)
    b_q = _tile(q, row0 + r, m_t, i_h, H, K, o_k, m_k).to(tl.float32) * scale
    b_o = tl.dot((b_q * tl.exp(b_g)).to(DT), b_h.to(DT), input_precision=PREC)
    b_qn = (b_q * tl.exp(tl.where(m_t[:, None], b_g - b_g0[None, :], 0.0))).to(DT)
    b_k = _tile(k, row0 + r, m_t, i_h, H, K, o_k, m_k).to(tl.float32)
    b_kn = (b_k * tl.exp(b_g0[None, :] - b_g)).to(DT)
    b_A = tl.dot(b_qn, tl.trans(b_kn), input_precision=PREC)
    b_A = tl.where((r[:, None] >= r[None, :]) & m_t[:, None], b_A, 0.0)
    b_v = _tile(v, row0 + r, m_t, i_h, H, V, o_v, m_v)
    b_o += tl.dot(b_A.to(DT), b_v, input_precision=PREC)
    tl.store(o + (row0 + r)[:, None] * H * V + i_h * V + o_v[None, :], b_o.to(o.dtype.element_ty),
             mask=m_t[:, None] & m_v[None, :])


@triton.jit
def _chunk_fwd_o_sub(q, k, v, gc, o, b_h, row0, L, i_h, H, i_v, scale, K: tl.constexpr, V: tl.constexpr,
                     BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                     PREC: tl.constexpr):
    """Sub-chunks of BC re-referenced to their own first rows (any gates)."""
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    DT = k.dtype.element_ty
    b_hc = b_h.to(DT)
    for i in tl.static_range(BT // BC):
        if i * BC < L:
            r_i = i * BC + tl.arange(0, BC)
            m_i = r_i < L
            b_q = _tile(q, row0 + r_i, m_i, i_h, H, K, o_k, m_k).to(tl.float32) * scale
            b_g = _tile(gc, row0 + r_i, m_i, i_h, H, K, o_k, m_k)
            b_gn = _row(gc, row0 + i * BC, i_h, H, K, o_k, m_k)
            b_o = tl.dot((b_q * tl.exp(b_g)).to(DT), b_hc, input_precision=PREC)
            b_qn = (b_q * tl.exp(tl.where(m_i[:, None], b_g - b_gn[None, :], 0.0))).to(DT)
            for j in tl.static_range(i):
                r_j = j * BC + tl.arange(0, BC)
                m_j = r_j < L
                b_k = _tile(k, row0 + r_j, m_j, i_h, H, K, o_k, m_k).to(tl.float32)
                b_gk = _tile(gc, row0 + r_j, m_j, i_h, H, K, o_k, m_k)
                b_kn = (b_k * tl.exp(b_gn[None, :] - b_gk)).to(DT)
                b_A = tl.dot(b_qn, tl.trans(b_kn), input_precision=PREC)
                b_vj = _tile(v, row0 + r_j, m_j, i_h, H, V, o_v, m_v)
                b_o += tl.dot(b_A.to(DT), b_vj, input_precision=PREC)
            b_A = _diag(k, gc, b_q, b_g, b_gn, row0 + i * BC, L - i * BC, i_h, H, K, BC, BK, _fast_range(DT), DT,
                        PREC)
            b_vi = _tile(v, row0 + r_i, m_i, i_h, H, V, o_v, m_v)
            b_o += tl.dot(b_A.to(DT), b_vi, input_precision=PREC)
            p_o = o + (row0 + r_i)[:, None] * H * V + i_h * V + o_v[None, :]
            tl.store(p_o, b_o.to(o.dtype.element_ty), mask=m_i[:, None] & m_v[None, :])


@triton.jit
def _chunk_gc(g, row0, L, i_h, H, K: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, G_MIN: tl.constexpr):
    """(gc [BT, BK] chunk-local cumsum of floored gates (0 on invalid rows... continued), gc at last row)."""
    o_k = tl.arange(0, BK)
    r = tl.arange(0, BT)
    m_t = r < L
    b_g = tl.load(g + (row0 + r)[:, None] * H * K + i_h * K + o_k[None, :],
                  mask=m_t[:, None] & (o_k < K)[None, :], other=0.0).to(tl.float32)
    b_g = tl.where(m_t[:, None], tl.maximum(b_g, G_MIN, propagate_nan=tl.PropagateNan.ALL), 0.0)
    b_gc = tl.cumsum(b_g, axis=0)
    b_glast = tl.sum(tl.where((r == L - 1)[:, None], b_gc, 0.0), axis=0)
    return b_gc, b_glast


@triton.jit
def _state_update(k, v, b_h, b_gc, b_glast, row0, L, i_h, H, i_v, K: tl.constexpr, V: tl.constexpr,
                  BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    r = tl.arange(0, BT)
    m_t = r < L
    b_k = _tile(k, row0 + r, m_t, i_h, H, K, o_k, o_k < K).to(tl.float32)
    b_v = _tile(v, row0 + r, m_t, i_h, H, V, o_v, o_v < V)
    b_kd = (b_k * tl.exp(b_glast[None, :] - b_gc)).to(k.dtype.element_ty)
    return b_h * tl.exp(b_glast)[:, None] + tl.dot(tl.trans(b_kd), b_v, input_precision=PREC)


@triton.jit
def chunk_gla_fwd_gc_kernel(g, gc, cu_seqlens, chunk_indices, H, K: tl.constexpr, BT: tl.constexpr,
                            BK: tl.constexpr, G_MIN: tl.constexpr):
    """Grid (NT_total, H, cdiv(K, BK)): gc = chunk-local cumulative sum of the floored gates (fp32)."""
    i_c, i_h, i_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n = tl.load(chunk_indices + 2 * i_c)
    i_t = tl.load(chunk_indices + 2 * i_c + 1)
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    T = tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos
    row0 = bos + i_t * BT
    L = tl.minimum(T - i_t * BT, BT)
    r = tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m = (r < L)[:, None] & (o_k < K)[None, :]
    off = (row0 + r)[:, None] * H * K + i_h * K + o_k[None, :]
    b_g = tl.load(g + off, mask=m, other=0.0).to(tl.float32)
    b_g = tl.where(m, tl.maximum(b_g, G_MIN, propagate_nan=tl.PropagateNan.ALL), 0.0)
    tl.store(gc + off, tl.cumsum(b_g, axis=0), mask=m)


@triton.jit
def chunk_gla_fwd_h_kernel(k, v, g, gc, h, h0, ht, cu_seqlens, chunk_offsets, H, K: tl.constexpr,
                           V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                           HAS_H0: tl.constexpr, STORE_H: tl.constexpr,
                           STORE_HT: tl.constexpr, G_MIN: tl.constexpr, PREC: tl.constexpr):
    """Grid (NV, N*H). h[c] = state at the start of global chunk c (stored in h's dtype), from gc."""
    i_v, i_nh = tl.program_id(0), grid_row(1)[0]
    i_n, i_h = i_nh // H, i_nh % H
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    T = tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos
    boh = tl.load(chunk_offsets + i_n).to(tl.int64)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_h = (o_k < K)[:, None] & (o_v < V)[None, :]
    off_h = o_k[:, None] * V + o_v[None, :]
    b_h = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_H0:
        b_h += tl.load(h0 + i_nh.to(tl.int64) * K * V + off_h, mask=m_h, other=0.0)
    r = tl.arange(0, BT)
    for i_t in range(0, tl.cdiv(T, BT)):
        if STORE_H:
            tl.store(h + ((boh + i_t) * H + i_h) * K * V + off_h, b_h.to(h.dtype.element_ty), mask=m_h)
        row0 = bos + i_t * BT
        L = tl.minimum(T - i_t * BT, BT)
        b_gc = _tile(gc, row0 + r, r < L, i_h, H, K, o_k, o_k < K)
        b_glast = _row(gc, row0 + L - 1, i_h, H, K, o_k, o_k < K)
        b_gc = tl.where((r < L)[:, None], b_gc, b_glast[None, :])
        b_h = _state_update(k, v, b_h, b_gc, b_glast, row0, L, i_h, H, i_v, K, V, BT, BK, BV, PREC)
    if STORE_HT:
        tl.store(ht + i_nh.to(tl.int64) * K * V + off_h, b_h, mask=m_h)


@triton.jit
def chunk_gla_fwd_o_kernel(q, k, v, g, gc, o, h, h0, ht, cu_seqlens, chunk_indices, scale, H,
                           K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                           BK: tl.constexpr, BV: tl.constexpr, FUSED: tl.constexpr, HAS_H0: tl.constexpr,
                           STORE_HT: tl.constexpr, G_MIN: tl.constexpr, PREC: tl.constexpr):
    """FUSED=False: grid (NV * NT_total, H) (value block fastest; the chunk count on axis 0, whose limit is
    2^31 - 1, not axis 1's 65535), one chunk per program, its start state read from h.
    FUSED=True: grid (NV, N*H), the program walks its sequence's chunks with the state in registers,
    writing each chunk's gc (read back by the same program after a barrier)."""
    if FUSED:
        i_v = tl.program_id(0)
    else:
        i_v = tl.program_id(0) % ((V + BV - 1) // BV)
    o_k = tl.arange(0, BK)
    o_v = i_v * BV + tl.arange(0, BV)
    m_h = (o_k < K)[:, None] & (o_v < V)[None, :]
    off_h = o_k[:, None] * V + o_v[None, :]
    if FUSED:
        i_nh = grid_row(1)[0]
        i_n, i_h = i_nh // H, i_nh % H
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos
        b_h = tl.zeros([BK, BV], dtype=tl.float32)
        if HAS_H0:
            b_h += tl.load(h0 + i_nh.to(tl.int64) * K * V + off_h, mask=m_h, other=0.0)
        r = tl.arange(0, BT)
        for i_t in range(0, tl.cdiv(T, BT)):
            row0 = bos + i_t * BT
            L = tl.minimum(T - i_t * BT, BT)
            b_gc, b_glast = _chunk_gc(g, row0, L, i_h, H, K, BT, BK, G_MIN)
            tl.store(gc + (row0 + r)[:, None] * H * K + i_h * K + o_k[None, :], b_gc,
                     mask=(r < L)[:, None] & (o_k < K)[None, :])
            tl.debug_barrier()
            _chunk_fwd_o(q, k, v, gc, o, b_h, row0, L, i_h, H, i_v, scale, K, V, BT, BC, BK, BV, PREC)
            b_h = _state_update(k, v, b_h, b_gc, b_glast, row0, L, i_h, H, i_v, K, V, BT, BK, BV, PREC)
        if STORE_HT:
            tl.store(ht + i_nh.to(tl.int64) * K * V + off_h, b_h, mask=m_h)
    else:
        i_c, i_h = tl.program_id(0) // ((V + BV - 1) // BV), tl.program_id(1)
        i_n = tl.load(chunk_indices + 2 * i_c)
        i_t = tl.load(chunk_indices + 2 * i_c + 1)
        bos = tl.load(cu_seqlens + i_n).to(tl.int64)
        T = tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos
        row0 = bos + i_t * BT
        L = tl.minimum(T - i_t * BT, BT)
        b_h = tl.load(h + (i_c.to(tl.int64) * H + i_h) * K * V + off_h, mask=m_h, other=0.0).to(tl.float32)
        _chunk_fwd_o(q, k, v, gc, o, b_h, row0, L, i_h, H, i_v, scale, K, V, BT, BC, BK, BV, PREC)


@triton.jit
def chunk_gla_bwd_dh_kernel(q, gc, do, dh, dht, dh0, cu_seqlens, chunk_offsets, scale, H, K: tl.constexpr,
                            V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                            HAS_DHT: tl.constexpr, STORE_DH0: tl.constexpr, PREC: tl.constexpr,
                            LOWP: tl.constexpr = False):
    """Grid (NV, N*H), reverse over chunks: dh[c] = gradient of the state at the END of chunk c.
    LOWP (v5): the dot's operands q e^gc and do in do's dtype (bf16) instead of fp32 (tf32)."""
    i_v, i_nh = tl.program_id(0), grid_row(1)[0]
    i_n, i_h = i_nh // H, i_nh % H
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    T = tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos
    boh = tl.load(chunk_offsets + i_n).to(tl.int64)
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    o_v = i_v * BV + tl.arange(0, BV)
    m_v = o_v < V
    m_h = m_k[:, None] & m_v[None, :]
    off_h = o_k[:, None] * V + o_v[None, :]
    b_dh = tl.zeros([BK, BV], dtype=tl.float32)
    if HAS_DHT:
        b_dh += tl.load(dht + i_nh.to(tl.int64) * K * V + off_h, mask=m_h, other=0.0)
    r = tl.arange(0, BT)
    NT = tl.cdiv(T, BT)
    for i in range(0, NT):
        i_t = NT - 1 - i
        tl.store(dh + ((boh + i_t) * H + i_h) * K * V + off_h, b_dh.to(dh.dtype.element_ty), mask=m_h)
        row0 = bos + i_t * BT
        L = tl.minimum(T - i_t * BT, BT)
        m_t = r < L
        b_q = _tile(q, row0 + r, m_t, i_h, H, K, o_k, m_k).to(tl.float32)
        b_g = _tile(gc, row0 + r, m_t, i_h, H, K, o_k, m_k)
        b_glast = _row(gc, row0 + L - 1, i_h, H, K, o_k, m_k)
        b_do = _tile(do, row0 + r, m_t, i_h, H, V, o_v, m_v).to(tl.float32)
        b_qe = (b_q * tl.exp(b_g) * scale)
        if LOWP:
            b_qe = b_qe.to(do.dtype.element_ty)
            b_do = b_do.to(do.dtype.element_ty)
        b_dh = b_dh * tl.exp(b_glast)[:, None] + tl.dot(tl.trans(b_qe), b_do, input_precision=PREC)
    if STORE_DH0:
        tl.store(dh0 + i_nh.to(tl.int64) * K * V + off_h, b_dh, mask=m_h)


@triton.jit
def _chunk_bwd_full(q, k, v, gc, do, h, dh, dq, dk, dv, p_hc, row0, L, i_h, H, scale, K: tl.constexpr,
                    V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr):
    """dq, dk, dv of one chunk re-referenced to its first row (see _chunk_fast): [BT, *] dots."""
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    r = tl.arange(0, BT)
    m_t = r < L
    DT = tl.float32  # backward dots: fp32 operands (tf32 for 16-bit inputs)
    causal = (r[:, None] >= r[None, :]) & m_t[:, None]
    b_g0 = _row(gc, row0, i_h, H, K, o_k, m_k)
    b_gl = _row(gc, row0 + L - 1, i_h, H, K, o_k, m_k)
    b_g = _tile(gc, row0 + r, m_t, i_h, H, K, o_k, m_k)
    b_q = _tile(q, row0 + r, m_t, i_h, H, K, o_k, m_k).to(tl.float32) * scale
    b_k = _tile(k, row0 + r, m_t, i_h, H, K, o_k, m_k).to(tl.float32)
    b_qn = (b_q * tl.exp(tl.where(m_t[:, None], b_g - b_g0[None, :], 0.0))).to(DT)
    b_kn = (b_k * tl.exp(b_g0[None, :] - b_g)).to(DT)
    b_kd = (b_k * tl.exp(b_gl[None, :] - b_g)).to(DT)
    b_A = tl.where(causal, tl.dot(b_qn, tl.trans(b_kn), input_precision=PREC), 0.0).to(DT)
    b_dq_h = tl.zeros([BT, BK], dtype=tl.float32)
    b_dq_a = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk_h = tl.zeros([BT, BK], dtype=tl.float32)
    b_dk_a = tl.zeros([BT, BK], dtype=tl.float32)
    for i_v in range(0, tl.cdiv(V, BV)):
        o_v = i_v * BV + tl.arange(0, BV)
        m_v = o_v < V
        m_hv = m_k[:, None] & m_v[None, :]
        b_do = _tile(do, row0 + r, m_t, i_h, H, V, o_v, m_v).to(tl.float32)
        b_v = _tile(v, row0 + r, m_t, i_h, H, V, o_v, m_v).to(tl.float32)
        b_h = tl.load(h + p_hc + o_k[:, None] * V + o_v[None, :], mask=m_hv, other=0.0).to(DT)
        b_dh = tl.load(dh + p_hc + o_k[:, None] * V + o_v[None, :], mask=m_hv, other=0.0).to(DT)
        b_dA = tl.where(causal, tl.dot(b_do, tl.trans(b_v), input_precision=PREC), 0.0).to(DT)
        b_dq_h += tl.dot(b_do, tl.trans(b_h), input_precision=PREC)
        b_dq_a += tl.dot(b_dA, b_kn, input_precision=PREC)
        b_dk_h += tl.dot(b_v, tl.trans(b_dh), input_precision=PREC)
        b_dk_a += tl.dot(tl.trans(b_dA), b_qn, input_precision=PREC)
        b_dv = tl.dot(tl.trans(b_A), b_do, input_precision=PREC) + tl.dot(b_kd, b_dh, input_precision=PREC)
        tl.store(dv + (row0 + r)[:, None] * H * V + i_h * V + o_v[None, :], b_dv.to(dv.dtype.element_ty),
                 mask=m_t[:, None] & m_v[None, :])
    b_dq = (b_dq_h * tl.exp(b_g) + b_dq_a * tl.exp(tl.where(m_t[:, None], b_g - b_g0[None, :], 0.0))) * scale
    b_dk = b_dk_h * tl.exp(b_gl[None, :] - b_g) + b_dk_a * tl.exp(b_g0[None, :] - b_g)
    off = (row0 + r)[:, None] * H * K + i_h * K + o_k[None, :]
    tl.store(dq + off, b_dq, mask=m_t[:, None] & m_k[None, :])
    tl.store(dk + off, b_dk, mask=m_t[:, None] & m_k[None, :])


@triton.jit
def chunk_gla_bwd_dqkv_kernel(q, k, v, gc, do, h, dh, dq, dk, dv, cu_seqlens, chunk_indices, scale, H,
                              K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BC: tl.constexpr,
                              BK: tl.constexpr, BV: tl.constexpr, PREC: tl.constexpr,
                              SKIP_FAST: tl.constexpr = False):
    """Grid (NT_total, H): dq, dk (fp32) and dv of one chunk; V in blocks of BV. SKIP_FAST (under v5):
    whole-chunk-fast chunks are left to chunk_bwd's kernel, this one does only the sub-chunk path."""
    i_c, i_h = tl.program_id(0), tl.program_id(1)
    i_n = tl.load(chunk_indices + 2 * i_c)
    i_t = tl.load(chunk_indices + 2 * i_c + 1)
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    T = tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos
    row0 = bos + i_t * BT
    L = tl.minimum(T - i_t * BT, BT)
    o_k = tl.arange(0, BK)
    m_k = o_k < K
    r = tl.arange(0, BC)
    DT = tl.float32  # backward dots: fp32 operands (tf32 for 16-bit inputs)
    p_hc = (i_c.to(tl.int64) * H + i_h) * K * V
    NV = tl.cdiv(V, BV)
    b_glast = _row(gc, row0 + L - 1, i_h, H, K, o_k, m_k)
    if _chunk_fast(gc, row0, L, i_h, H, K, BK, 20.0):
        if not SKIP_FAST:
            _chunk_bwd_full(q, k, v, gc, do, h, dh, dq, dk, dv, p_hc, row0, L, i_h, H, scale, K, V, BT, BK,
                            BV, PREC)
    else:
        # dq, row sub-chunk by row sub-chunk
        for i in tl.static_range(BT // BC):
            if i * BC < L:
                r_i = i * BC + r
                m_i = r_i < L
                b_g = _tile(gc, row0 + r_i, m_i, i_h, H, K, o_k, m_k)
                b_gn = _row(gc, row0 + i * BC, i_h, H, K, o_k, m_k)
                b_inter = tl.zeros([BC, BK], dtype=tl.float32)
                b_off = tl.zeros([BC, BK], dtype=tl.float32)
                b_dA = tl.zeros([BC, BC], dtype=tl.float32)
                for i_v in range(0, NV):
                    o_v = i_v * BV + tl.arange(0, BV)
                    m_v = o_v < V
                    b_do = _tile(do, row0 + r_i, m_i, i_h, H, V, o_v, m_v).to(tl.float32)
                    b_h = tl.load(h + p_hc + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :],
                                  other=0.0)
                    b_inter += tl.dot(b_do, tl.trans(b_h.to(DT)), input_precision=PREC)
                    for j in tl.static_range(i):
                        r_j = j * BC + r
                        b_vj = _tile(v, row0 + r_j, r_j < L, i_h, H, V, o_v, m_v).to(tl.float32)
                        b_dAj = tl.dot(b_do, tl.trans(b_vj), input_precision=PREC)
                        b_k = _tile(k, row0 + r_j, r_j < L, i_h, H, K, o_k, m_k).to(tl.float32)
                        b_gk = _tile(gc, row0 + r_j, r_j < L, i_h, H, K, o_k, m_k)
                        b_kn = (b_k * tl.exp(b_gn[None, :] - b_gk)).to(DT)
                        b_off += tl.dot(b_dAj.to(DT), b_kn, input_precision=PREC)
                    b_vi = _tile(v, row0 + r_i, m_i, i_h, H, V, o_v, m_v).to(tl.float32)
                    b_dA += tl.dot(b_do, tl.trans(b_vi), input_precision=PREC)
                b_dq = b_inter * tl.exp(b_g) + b_off * tl.exp(tl.where(m_i[:, None], b_g - b_gn[None, :], 0.0))
                if _diag_fast(gc, b_gn, row0 + i * BC, L - i * BC, i_h, H, K, BC, BK, 20.0):
                    b_ki = _tile(k, row0 + r_i, m_i, i_h, H, K, o_k, m_k).to(tl.float32)
                    b_kn = (b_ki * tl.exp(b_gn[None, :] - b_g)).to(DT)
                    b_dAm = tl.where((r[:, None] >= r[None, :]) & m_i[:, None], b_dA, 0.0).to(DT)
                    b_dq += tl.dot(b_dAm, b_kn, input_precision=PREC) * \
                        tl.exp(tl.where(m_i[:, None], b_g - b_gn[None, :], 0.0))
                else:
                    for s in range(0, tl.minimum(L - i * BC, BC)):
                        b_ks = _row(k, row0 + i * BC + s, i_h, H, K, o_k, m_k)
                        b_gs = _row(gc, row0 + i * BC + s, i_h, H, K, o_k, m_k)
                        cond = (r >= s) & m_i
                        b_col = tl.sum(tl.where(r[None, :] == s, b_dA, 0.0), axis=1)
                        b_e = tl.exp(tl.where(cond[:, None], b_g - b_gs[None, :], 0.0))
                        b_dq += tl.where(cond[:, None], b_col[:, None] * b_ks[None, :] * b_e, 0.0)
                tl.store(dq + (row0 + r_i)[:, None] * H * K + i_h * K + o_k[None, :], b_dq * scale,
                         mask=m_i[:, None] & m_k[None, :])
        # dk, dv, column sub-chunk by column sub-chunk
        for j in tl.static_range(BT // BC):
            if j * BC < L:
                r_j = j * BC + r
                m_j = r_j < L
                b_k = _tile(k, row0 + r_j, m_j, i_h, H, K, o_k, m_k).to(tl.float32)
                b_gk = _tile(gc, row0 + r_j, m_j, i_h, H, K, o_k, m_k)
                b_qj = _tile(q, row0 + r_j, m_j, i_h, H, K, o_k, m_k).to(tl.float32) * scale
                b_kd = (b_k * tl.exp(b_glast[None, :] - b_gk)).to(DT)
                b_inter = tl.zeros([BC, BK], dtype=tl.float32)
                b_intra = tl.zeros([BC, BK], dtype=tl.float32)
                b_gnj = _row(gc, row0 + j * BC, i_h, H, K, o_k, m_k)
                b_Ajj = _diag(k, gc, b_qj, b_gk, b_gnj, row0 + j * BC, L - j * BC, i_h, H, K, BC, BK, 20.0, DT,
                              PREC)
                b_dAjj = tl.zeros([BC, BC], dtype=tl.float32)
                for i_v in range(0, NV):
                    o_v = i_v * BV + tl.arange(0, BV)
                    m_v = o_v < V
                    b_v = _tile(v, row0 + r_j, m_j, i_h, H, V, o_v, m_v).to(tl.float32)
                    b_doj = _tile(do, row0 + r_j, m_j, i_h, H, V, o_v, m_v).to(tl.float32)
                    b_dh = tl.load(dh + p_hc + o_k[:, None] * V + o_v[None, :], mask=m_k[:, None] & m_v[None, :],
                                   other=0.0)
                    b_inter += tl.dot(b_v, tl.trans(b_dh.to(DT)), input_precision=PREC)
                    b_dv = tl.dot(b_kd, b_dh.to(DT), input_precision=PREC)
                    for i in tl.static_range(j + 1, BT // BC):
                        if i * BC < L:
                            r_i = i * BC + r
                            m_i = r_i < L
                            b_q = _tile(q, row0 + r_i, m_i, i_h, H, K, o_k, m_k).to(tl.float32) * scale
                            b_g = _tile(gc, row0 + r_i, m_i, i_h, H, K, o_k, m_k)
                            b_gn = _row(gc, row0 + i * BC, i_h, H, K, o_k, m_k)
                            b_qn = (b_q * tl.exp(tl.where(m_i[:, None], b_g - b_gn[None, :], 0.0))).to(DT)
                            b_kn = (b_k * tl.exp(b_gn[None, :] - b_gk)).to(DT)
                            b_A = tl.dot(b_qn, tl.trans(b_kn), input_precision=PREC)
                            b_do = _tile(do, row0 + r_i, m_i, i_h, H, V, o_v, m_v).to(tl.float32)
                            b_dv += tl.dot(tl.trans(b_A.to(DT)), b_do, input_precision=PREC)
                            b_dA = tl.dot(b_do, tl.trans(b_v), input_precision=PREC)
                            b_intra += tl.dot(tl.trans(b_dA.to(DT)), b_qn, input_precision=PREC) * \
                                tl.exp(b_gn[None, :] - b_gk)
                    b_dv += tl.dot(tl.trans(b_Ajj.to(DT)), b_doj, input_precision=PREC)
                    b_dAjj += tl.dot(b_doj, tl.trans(b_v), input_precision=PREC)
                    tl.store(dv + (row0 + r_j)[:, None] * H * V + i_h * V + o_v[None, :],
                             b_dv.to(dv.dtype.element_ty), mask=m_j[:, None] & m_v[None, :])
                b_dk = b_inter * tl.exp(b_glast[None, :] - b_gk) + b_intra
                if _diag_fast(gc, b_gnj, row0 + j * BC, L - j * BC, i_h, H, K, BC, BK, 20.0):
                    b_qn = (b_qj * tl.exp(tl.where(m_j[:, None], b_gk - b_gnj[None, :], 0.0))).to(DT)
                    b_dAm = tl.where((r[:, None] >= r[None, :]) & m_j[:, None], b_dAjj, 0.0).to(DT)
                    b_dk += tl.dot(tl.trans(b_dAm), b_qn, input_precision=PREC) * tl.exp(b_gnj[None, :] - b_gk)
                else:
                    for t in range(0, tl.minimum(L - j * BC, BC)):
                        b_qt = _row(q, row0 + j * BC + t, i_h, H, K, o_k, m_k) * scale
                        b_gt = _row(gc, row0 + j * BC + t, i_h, H, K, o_k, m_k)
                        cond = (r <= t) & m_j
                        b_rowdA = tl.sum(tl.where(r[:, None] == t, b_dAjj, 0.0), axis=0)
                        b_e = tl.exp(tl.where(cond[:, None], b_gt[None, :] - b_gk, 0.0))
                        b_dk += tl.where(cond[:, None], b_rowdA[:, None] * b_qt[None, :] * b_e, 0.0)
                tl.store(dk + (row0 + r_j)[:, None] * H * K + i_h * K + o_k[None, :], b_dk,
                         mask=m_j[:, None] & m_k[None, :])


@triton.jit
def chunk_gla_bwd_dg_kernel(q, k, dq, dk, g, dg, h, dh, ht, cu_seqlens, chunk_indices, H, K: tl.constexpr,
                            V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                            HAS_DHT: tl.constexpr, G_MIN: tl.constexpr, gc=None, dq_out=None, dk_out=None,
                            BKF: tl.constexpr = 16, SKIP_FAST: tl.constexpr = False):
    """Grid (NT_total, H, cdiv(K, BK)). dg_t = sum_{s >= t in the chunk} (q_s dq_s - k_s dk_s)
    + sum_v (h_end * dh_end): the second term is the gradient of a shift of every later log-decay, i.e.
    of the state leaving the chunk (exact). Summing only inside the chunk keeps the rounding of dq, dk
    from being amplified by a reverse cumulative sum over the whole sequence. Zero where g was floored.
    SKIP_FAST (under v5): only chunks that are not whole-chunk fast (gc, BKF >= K), and dq, dk also
    written to dq_out, dk_out in their dtype."""
    i_c, i_h, i_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    i_n = tl.load(chunk_indices + 2 * i_c)
    i_t = tl.load(chunk_indices + 2 * i_c + 1)
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    T = tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos
    NT = tl.cdiv(T, BT)
    row0 = bos + i_t * BT
    L = tl.minimum(T - i_t * BT, BT)
    if SKIP_FAST:
        if _chunk_fast(gc, row0, L, i_h, H, K, BKF, 20.0):
            return
    r = tl.arange(0, BT)
    o_k = i_k * BK + tl.arange(0, BK)
    m_k = o_k < K
    m = (r < L)[:, None] & m_k[None, :]
    off = (row0 + r)[:, None] * H * K + i_h * K + o_k[None, :]
    if SKIP_FAST:
        tl.store(dq_out + off, tl.load(dq + off, mask=m, other=0.0).to(dq_out.dtype.element_ty), mask=m)
        tl.store(dk_out + off, tl.load(dk + off, mask=m, other=0.0).to(dk_out.dtype.element_ty), mask=m)
    b_x = tl.load(q + off, mask=m, other=0.0).to(tl.float32) * tl.load(dq + off, mask=m, other=0.0) - \
        tl.load(k + off, mask=m, other=0.0).to(tl.float32) * tl.load(dk + off, mask=m, other=0.0)
    b_dg = tl.sum(b_x, axis=0)[None, :] - tl.cumsum(b_x, axis=0) + b_x
    # the state leaving the chunk: the final state (fp32) for the last chunk, else the next chunk's start
    # state (fp32, or bf16 under v5b) -- two pointers of possibly different element types, so the branch
    # is taken per load (both give fp32 tiles), not on the pointer
    last = i_t == NT - 1
    p_ht = ht + (i_n.to(tl.int64) * H + i_h) * K * V
    p_hn = h + ((i_c.to(tl.int64) + 1) * H + i_h) * K * V
    p_dh = dh + (i_c.to(tl.int64) * H + i_h) * K * V
    b_c = tl.zeros([BK], dtype=tl.float32)
    if (NT - 1 - i_t + HAS_DHT) > 0:
        for i_v in range(0, tl.cdiv(V, BV)):
            o_v = i_v * BV + tl.arange(0, BV)
            m_hv = m_k[:, None] & (o_v < V)[None, :]
            if last:
                b_h = tl.load(p_ht + o_k[:, None] * V + o_v[None, :], mask=m_hv, other=0.0).to(tl.float32)
            else:
                b_h = tl.load(p_hn + o_k[:, None] * V + o_v[None, :], mask=m_hv, other=0.0).to(tl.float32)
            b_dh = tl.load(p_dh + o_k[:, None] * V + o_v[None, :], mask=m_hv, other=0.0).to(tl.float32)
            b_c += tl.sum(b_h * b_dh, axis=1)
    b_dg += b_c[None, :]
    b_g = tl.load(g + off, mask=m, other=0.0).to(tl.float32)
    b_dg = tl.where(b_g >= G_MIN, b_dg, 0.0)
    tl.store(dg + off, b_dg.to(dg.dtype.element_ty), mask=m)


def _state_dtype(dtype, K, V, device):
    """Materialized states (h, dh) stay fp32 (v4: the backward reads them as fp32 operands; bf16 states
    cost dq, dk a 2^-9 relative error, which dg's reverse cumulative sum amplified past the 5e-3 bar);
    variant v5b stores them bf16 (see chunk_bwd.state_dtype)."""
    from .chunk_bwd import state_dtype

    return state_dtype(dtype, K, V, device.type)


def _serial_cfg(kernel, es, BK, V, BT, NH=None, device=None):
    """(BV, num_warps, num_stages) of the sequential kernels: CFG for fwd_h / bwd_dh (v4), chunk_bwd.DH_CFG
    for bwd_dh_v5; TILEFOLD_GLA_FWDH / TILEFOLD_GLA_DH = "BV,warps,stages" override fwd_h / bwd_dh_v5
    (sweeps on the device: scripts/gla_profile.py entries like v5:fh64/4/2).

    On a GPU where the grid would fill fewer than half the SMs, fwd_h and bwd_dh_v5 take SMALL_NH_CFG (BV 32):
    each program walks all T/BT chunks of its sequence one after another, so at B 2 x H 16 (32 programs at
    BV 128) the serial walk was the whole forward's cost (bench gla, 2026-12-02: chunk fwd 2.02 ms at
    B2 T16384 vs 1.14 ms at B8 T4096, same FLOPs). Sweep (results/gla-serial-sweep-h200-2026-12-02.jsonl,
    B2 T16384): fwd_h 32/4/2 + bwd_dh 32/4/3 fwd 1.47 ms, fwd+bwd 5.29 (128/8/3 + 64/4/2: 2.05 / 5.99);
    at B8 T4096 the large tiles stay best (1.13 / 4.69 vs 1.23 / 5.03)."""
    import os

    env = {"fwd_h": "TILEFOLD_GLA_FWDH", "bwd_dh_v5": "TILEFOLD_GLA_DH"}.get(kernel)
    if env and os.environ.get(env):
        bv, nw, ns = (int(x) for x in os.environ[env].replace("/", ",").split(","))
        return _bv(V, bv), nw, ns
    if kernel == "bwd_dh_v5":
        from .chunk_bwd import DH_CFG

        BV, nw, ns = _bv(V, DH_CFG[0]), DH_CFG[1], DH_CFG[2]
    else:
        BV, nw = _bv(V, CFG[kernel][0]), CFG[kernel][1]
        ns = _stages(es, BK, BV, BT)
    if env and NH is not None and device is not None and device.type == "cuda" and not interpreter_enabled():
        if NH * cdiv(V, BV) < _sm_count(device) // 2:
            bv, nw, ns = SMALL_NH_CFG[kernel]
            BV = _bv(V, bv)
    return BV, nw, ns


_SMS = {}


def _sm_count(device):
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SMS:
        _SMS[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SMS[idx]


def _bk(K):
    return max(16, next_pow2(K))


def _bv(V, cap):
    return min(max(16, next_pow2(V)), cap)


def chunk_gla_fwd(q, k, v, g, scale, h0, output_final_state, info, fused):
    """Returns (o, ht or None, h [NT_total, H, K, V] fp32 or None (fused), gc [B, T, H, K] fp32)."""
    B, T, H, K = q.shape
    V = v.shape[3]
    N, cu, chunk_indices, chunk_offsets, NT, BT = info
    BK = _bk(K)
    prec = dot_precision(q.dtype)
    gc = empty(B, T, H, K, dtype=torch.float32, device=q.device)
    o = empty(*v.shape, dtype=v.dtype, device=v.device)
    ht = empty(N, H, K, V, dtype=torch.float32, device=q.device) if output_final_state else None
    dummy = gc
    if N * H == 0:
        return o, ht, None, gc
    if fused:
        BV, nw = _bv(V, CFG["fused"][0]), CFG["fused"][1]
        NV = cdiv(V, BV)
        chunk_gla_fwd_o_kernel[(NV, *rows_grid(N, H))](
            q, k, v, g, gc, o, dummy, h0 if h0 is not None else dummy, ht if ht is not None else dummy, cu,
            chunk_indices, scale, H, K, V, BT, BC, BK, BV, True, h0 is not None, ht is not None, G_FLOOR, prec,
            num_warps=nw, num_stages=1)
        return o, ht, None, gc
    if NT > 0:
        chunk_gla_fwd_gc_kernel[(NT, H, cdiv(K, 64))](g, gc, cu, chunk_indices, H, K, BT, 64, G_FLOOR,
                                                             num_warps=4)
    h = empty(NT, H, K, V, dtype=_state_dtype(q.dtype, K, V, q.device), device=q.device)
    BV, nw, ns = _serial_cfg("fwd_h", q.element_size(), BK, V, BT, N * H, q.device)
    NV = cdiv(V, BV)
    chunk_gla_fwd_h_kernel[(NV, *rows_grid(N, H))](
        k, v, g, gc, h, h0 if h0 is not None else dummy, ht if ht is not None else dummy, cu, chunk_offsets,
        H, K, V, BT, BK, BV, h0 is not None, True, ht is not None, G_FLOOR, prec, num_warps=nw, num_stages=ns)
    if NT > 0:
        BV, nw = _bv(V, CFG["fwd_o"][0]), CFG["fwd_o"][1]
        NV = cdiv(V, BV)
        chunk_gla_fwd_o_kernel[(NV * NT, H)](
            q, k, v, g, gc, o, h, dummy, dummy, cu, chunk_indices, scale, H, K, V, BT, BC, BK, BV, False,
            False, False, G_FLOOR, prec, num_warps=nw, num_stages=_stages(q.element_size(), BK, BV, BT))
    return o, ht, h, gc


def chunk_gla_bwd(q, k, v, g, do, scale, h0, ht, dht, h, gc, info):
    """The backward; TILEFOLD_GLA_BWD picks the variant (chunk_bwd.bwd_variant: v5 by default, v4 the
    previous tf32 kernels)."""
    from .chunk_bwd import bwd_variant

    B, T, H, K = q.shape
    V = v.shape[3]
    N, cu, chunk_indices, chunk_offsets, NT, BT = info
    variant = bwd_variant(q.dtype, K, V, q.device.type)
    # the forward chose the state dtype (bf16 only under v5b); follow it if the switch changed since
    if h is not None and variant != "v4":
        variant = "v5b" if h.dtype == torch.bfloat16 else "v5"
    elif h is not None and h.dtype == torch.bfloat16:
        h = h.float()
    BK = _bk(K)
    prec = dot_precision(q.dtype)
    if variant != "v4":
        dq = empty(B, T, H, K, dtype=q.dtype, device=q.device)
        dk = empty(B, T, H, K, dtype=k.dtype, device=q.device)
    else:
        dq = empty(B, T, H, K, dtype=torch.float32, device=q.device)
        dk = empty(B, T, H, K, dtype=torch.float32, device=q.device)
    dv = empty(*v.shape, dtype=v.dtype, device=v.device)
    dh0 = empty(*h0.shape, dtype=h0.dtype, device=h0.device) if h0 is not None else None
    if N * H == 0:
        return dq.to(q.dtype), dk.to(k.dtype), dv, torch.zeros_like(g), dh0
    if h is None:
        h = empty(NT, H, K, V, dtype=_state_dtype(q.dtype, K, V, q.device), device=q.device)
        BV, nw, ns = _serial_cfg("fwd_h", q.element_size(), BK, V, BT, N * H, q.device)
        NV = cdiv(V, BV)
        chunk_gla_fwd_h_kernel[(NV, *rows_grid(N, H))](
            k, v, g, gc, h, h0 if h0 is not None else gc, gc, cu, chunk_offsets, H, K, V, BT, BK, BV,
            h0 is not None, True, False, G_FLOOR, prec, num_warps=nw, num_stages=ns)
    dh = empty(*h.shape, dtype=h.dtype, device=h.device)
    BV, nw, ns = _serial_cfg("bwd_dh" if variant == "v4" else "bwd_dh_v5", q.element_size(), BK, V, BT,
                             N * H, q.device)
    NV = cdiv(V, BV)
    chunk_gla_bwd_dh_kernel[(NV, *rows_grid(N, H))](
        q, gc, do, dh, dht if dht is not None else gc, dh0 if dh0 is not None else gc, cu, chunk_offsets,
        scale, H, K, V, BT, BK, BV, dht is not None, dh0 is not None, prec, variant != "v4", num_warps=nw,
        num_stages=ns)
    if variant != "v4":
        from .chunk_bwd import chunk_gla_bwd_v5

        dg = chunk_gla_bwd_v5(q, k, v, g, do, scale, ht, dht, h, dh, gc, dq, dk, dv, info, BK, prec)
        return dq, dk, dv, dg, dh0
    if NT > 0:
        BV, nw = _dqkv_bv(V, BK, q.element_size()), CFG["bwd_dqkv"][1]
        chunk_gla_bwd_dqkv_kernel[(NT, H)](
            q, k, v, gc, do, h, dh, dq, dk, dv, cu, chunk_indices, scale, H, K, V, BT, BC, BK, BV, prec,
            num_warps=nw, num_stages=STAGES["bwd_dqkv"])
    dg = empty(*g.shape, dtype=g.dtype, device=g.device)
    if NT > 0:
        has_dht = dht is not None and ht is not None
        chunk_gla_bwd_dg_kernel[(NT, H, cdiv(K, 64))](
            q, k, dq, dk, g, dg, h, dh, ht if has_dht else h, cu, chunk_indices, H, K, V, BT, 64, 64,
            int(has_dht), G_FLOOR, num_warps=4)
    return dq.to(q.dtype), dk.to(k.dtype), dv, dg, dh0
