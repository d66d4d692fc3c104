"""chunk_gla backward, variant v5 (``TILEFOLD_GLA_BWD=v5``, the default): one kernel computes dq, dk,
dv and dg of every whole-chunk ("fast", decay range <= 20) chunk, with 16-bit dot operands.

Why (v4, compiled offline for sm_90, bf16 K = V = 128): bwd_dqkv held four [64, 128] fp32 accumulators
at 4 warps: 255 registers, a 3208-byte stack and 6158 spill instructions, 213 KB of shared memory (one
CTA per SM), tf32 dots with fp32 operands (half the bf16 rate); then bwd_dg read q, k, dq, dk (fp32),
h and dh again and dq, dk were cast to bf16 by two more passes.

v5, per chunk (BT = 64, K, V <= 128; computed by cdiv(V, BS) dv programs and cdiv(K, BS) dq/dk/dg
programs, each over 64-column reduction blocks, so no tile exceeds [64, 64] fp32 + [64, 128] bf16):

    A  = mask(qn kn^T)                          qn = scale q e^(gc-g0), kn = k e^(g0-gc), kd = k e^(gl-gc)
    dA = mask(do v^T)
    Q  = (do h^T) * e^g0 + dA kn                dq = Q e^(gc-g0)          (one accumulator, not two)
    Kh = (v dh^T) * e^(gl-g0);  Kt = Kh + dA^T qn                 dk = Kt e^(g0-gc)
    dv = A^T do + kd dh
    dg = revcumsum_chunk(qn Q - kn Kt) + e^gl sum_v(h dh) + sum_s kn Kh

dg precision without tf32: the intra-chunk terms of q dq and k dk are the same pairs
qn_t dA_ts kn_s and cancel in the chunk sum; formed from the *rounded* operands (qn, kn as the dots saw
them, and the dots' own accumulators) they cancel exactly, so only consistent rounding remains. Likewise
the state-exit term sum_v(h_end dh) is rebuilt from h (start) and Kh instead of loading h_end, so its
kd^T v part cancels exactly against k dk's state part. Torch emulation (B2 T1000 H4 K=V=128, bf16,
gates logsigmoid/4, vs the fp64 recurrence): dq 3.2e-3, dk 3.1e-3, dv 3.6e-3, dg 3.6e-3 RMS-relative
(v4's tf32 emulated: 1.2e-3, 1.1e-3, 1.2e-3, 3.3e-3; all-bf16 without the consistent dg: dg 9e-3).

Chunks that are not whole-chunk fast (strong or floored gates) are left to v4's sub-chunk kernel and
v4's dg kernel (SKIP_FAST=True: each handles only the chunks this kernel skips). fp16 inputs and K or
V > 128 use v4 throughout (fp16 operands would overflow on e^(g0-gc) <= e^20).
"""
from __future__ import annotations

import os

import torch
import triton
from ..common.host import cdiv, next_pow2
import triton.language as tl

from .chunk import _chunk_fast, _row, _tile

VARIANTS = ("v4", "v5", "v5b")
# the v5 kernel: warps, pipelining stages of its reduction loops, the output column block of one
# program (BS) and the reduction block (BI); sm_90 resources from scripts/gla_compile_check.py
# (overridable per call by TILEFOLD_GLA_V5_{WARPS,STAGES,BS} for sweeps: scripts/gla_profile.py).
# sm_90, bf16, K = V = 128, no spills in either: BS 64 at 8 warps (192 regs, 82 KB: one CTA per SM) or
# BS 32 at 4 warps (189 regs, 62 KB: two CTAs per SM, A and dA recomputed by 4 programs per chunk each)
V5_WARPS, V5_STAGES, V5_BS = 8, 2, 64
V5_BI = 64
# bwd_dh under v5 (BV cap, warps, stages): value blocks of 64 give 2 * N*H sequential chains (256 at the
# bench shape, two per SM: 82 KB smem, 230 registers at 4 warps, 2 stages, sm_90) instead of v4's
# 128 chains of BV 128 (213 KB, one per SM, 4 SMs idle); the chains are the latency-bound part.
DH_CFG = (64, 4, 2)


def bwd_variant(dtype, K, V, device_type="cuda"):
    """The backward variant for these inputs: TILEFOLD_GLA_BWD (default v5), falling back to v4 where
    v5 does not apply: fp16 inputs, K or V > 128, and fp32 inputs on the GPU (fp32 operands with ieee
    dots compile to FMA loops with a 53 KB stack for sm_90; v4 keeps its vetted fp32 path). Under the
    interpreter (CPU tensors) fp32 runs v5: that is how the CPU tier tests v5's math."""
    want = os.environ.get("TILEFOLD_GLA_BWD", "v5")
    if want not in VARIANTS:
        raise ValueError(f"TILEFOLD_GLA_BWD: expected one of {VARIANTS}, got {want!r}")
    if want == "v4" or max(K, V) > 128:
        return "v4"
    if dtype == torch.bfloat16 or (dtype == torch.float32 and device_type != "cuda"):
        return want
    return "v4"


def state_dtype(dtype, K, V, device_type="cuda"):
    """Materialized states h, dh: fp32, except variant v5b with bf16 inputs (bf16 states: half the
    bytes in fwd_h, bwd_dh and the per-chunk backward; v5's dots and fwd_o round them to bf16 anyway,
    but v4's sub-chunk fallback (strong or floored gates) then reads rounded states: unmeasured)."""
    # no validation here: a bad TILEFOLD_GLA_BWD must not break an inference-only forward (the backward
    # raises on it); the backward takes v5b exactly when the states it is given are bf16
    if dtype == torch.bfloat16 and os.environ.get("TILEFOLD_GLA_BWD") == "v5b" and max(K, V) <= 128:
        return torch.bfloat16
    return torch.float32


@triton.jit
def chunk_gla_bwd_v5_kernel(q, k, v, g, gc, do, h, dh, dq, dk, dv, dg, cu_seqlens, chunk_indices, scale, H,
                            K: tl.constexpr, V: tl.constexpr, BT: tl.constexpr, BK: tl.constexpr,
                            BS: tl.constexpr, BI: tl.constexpr, G_MIN: tl.constexpr, PREC: tl.constexpr):
    """Grid (NS * NT_total, H) with NS = cdiv(V, BS) + cdiv(K, BS), for a whole-chunk-fast chunk (others: nothing):
    program i_s < NV writes dv of value columns [i_s*BS, +BS), forming A = qn kn^T over key blocks of
    BI; program NV + j writes dq, dk, dg of key columns [j*BS, +BS), forming dA = do v^T, do h^T and
    v dh^T over value blocks of BI. A and dA are recomputed per program (cheap) so every tile stays
    [BT, <= BS] and the loops pipeline. BK >= K (the fast test). Dot operands in v's dtype (bf16, or
    fp32 with PREC ieee)."""
    # grid (NS * NT_total, H): the NS programs of a chunk side by side; the chunk count on axis 0 (limit
    # 2^31 - 1; axis 1 would stop at 65535 chunks, ~4.2M tokens at BT = 64)
    NS: tl.constexpr = (K + BS - 1) // BS + (V + BS - 1) // BS
    i_s, i_c, i_h = tl.program_id(0) % NS, tl.program_id(0) // NS, tl.program_id(1)
    i_n = tl.load(chunk_indices + 2 * i_c)
    i_t = tl.load(chunk_indices + 2 * i_c + 1)
    bos = tl.load(cu_seqlens + i_n).to(tl.int64)
    T = tl.load(cu_seqlens + i_n + 1).to(tl.int64) - bos
    row0 = bos + i_t * BT
    L = tl.minimum(T - i_t * BT, BT)
    if _chunk_fast(gc, row0, L, i_h, H, K, BK, 20.0):
        DT = v.dtype.element_ty
        r = tl.arange(0, BT)
        m_t = r < L
        causal = (r[:, None] >= r[None, :]) & m_t[:, None]
        p_h = (i_c.to(tl.int64) * H + i_h) * K * V
        NV = tl.cdiv(V, BS)
        if i_s < NV:
            # dv[:, block] = A^T do[:, block] + kd dh[:, block]
            o_s = i_s * BS + tl.arange(0, BS)
            m_s = o_s < V
            b_A = tl.zeros([BT, BT], dtype=tl.float32)
            b_dv = tl.zeros([BT, BS], dtype=tl.float32)
            for i_k in range(0, tl.cdiv(K, BI)):
                o_i = i_k * BI + tl.arange(0, BI)
                m_i = o_i < K
                b_g0 = _row(gc, row0, i_h, H, K, o_i, m_i)
                b_gl = _row(gc, row0 + L - 1, i_h, H, K, o_i, m_i)
                b_gc = _tile(gc, row0 + r, m_t, i_h, H, K, o_i, m_i)
                b_k = _tile(k, row0 + r, m_t, i_h, H, K, o_i, m_i).to(tl.float32)
                b_qn = (_tile(q, row0 + r, m_t, i_h, H, K, o_i, m_i).to(tl.float32) * scale *
                        tl.exp(tl.where(m_t[:, None], b_gc - b_g0[None, :], 0.0))).to(DT)
                b_kn = (b_k * tl.exp(b_g0[None, :] - b_gc)).to(DT)
                b_kd = (b_k * tl.exp(b_gl[None, :] - b_gc)).to(DT)
                b_dh = tl.load(dh + p_h + o_i[:, None] * V + o_s[None, :], mask=m_i[:, None] & m_s[None, :],
                               other=0.0).to(DT)
                b_A = tl.dot(b_qn, tl.trans(b_kn), b_A, input_precision=PREC)
                b_dv = tl.dot(b_kd, b_dh, b_dv, input_precision=PREC)
            b_A = tl.where(causal, b_A, 0.0).to(DT)
            b_do = _tile(do, row0 + r, m_t, i_h, H, V, o_s, m_s).to(DT)
            b_dv = tl.dot(tl.trans(b_A), b_do, b_dv, input_precision=PREC)
            tl.store(dv + (row0 + r)[:, None] * H * V + i_h * V + o_s[None, :], b_dv.to(dv.dtype.element_ty),
                     mask=m_t[:, None] & m_s[None, :])
        else:
            # dq, dk, dg of key columns [(i_s - NV)*BS, +BS)
            o_b = (i_s - NV) * BS + tl.arange(0, BS)
            m_b = o_b < K
            b_dA = tl.zeros([BT, BT], dtype=tl.float32)
            b_Q = tl.zeros([BT, BS], dtype=tl.float32)
            b_Kt = tl.zeros([BT, BS], dtype=tl.float32)
            b_c = tl.zeros([BS], dtype=tl.float32)
            for i_v in range(0, tl.cdiv(V, BI)):
                o_i = i_v * BI + tl.arange(0, BI)
                m_i = o_i < V
                b_do = _tile(do, row0 + r, m_t, i_h, H, V, o_i, m_i).to(DT)
                b_v = _tile(v, row0 + r, m_t, i_h, H, V, o_i, m_i).to(DT)
                m_hb = m_b[:, None] & m_i[None, :]
                b_hb = tl.load(h + p_h + o_b[:, None] * V + o_i[None, :], mask=m_hb, other=0.0).to(DT)
                b_dhb = tl.load(dh + p_h + o_b[:, None] * V + o_i[None, :], mask=m_hb, other=0.0).to(DT)
                b_c += tl.sum(b_hb.to(tl.float32) * b_dhb.to(tl.float32), axis=1)
                b_dA = tl.dot(b_do, tl.trans(b_v), b_dA, input_precision=PREC)
                b_Q = tl.dot(b_do, tl.trans(b_hb), b_Q, input_precision=PREC)
                b_Kt = tl.dot(b_v, tl.trans(b_dhb), b_Kt, input_precision=PREC)
            b_dA = tl.where(causal, b_dA, 0.0).to(DT)
            b_g0 = _row(gc, row0, i_h, H, K, o_b, m_b)
            b_gl = _row(gc, row0 + L - 1, i_h, H, K, o_b, m_b)
            b_gc = _tile(gc, row0 + r, m_t, i_h, H, K, o_b, m_b)
            b_qn = (_tile(q, row0 + r, m_t, i_h, H, K, o_b, m_b).to(tl.float32) * scale *
                    tl.exp(tl.where(m_t[:, None], b_gc - b_g0[None, :], 0.0))).to(DT)
            b_kn = (_tile(k, row0 + r, m_t, i_h, H, K, o_b, m_b).to(tl.float32) *
                    tl.exp(b_g0[None, :] - b_gc)).to(DT)
            # Q = (do h^T) e^g0 + dA kn;  dq = Q e^(gc - g0)
            b_Q = tl.dot(b_dA, b_kn, b_Q * tl.exp(b_g0)[None, :], input_precision=PREC)
            off = (row0 + r)[:, None] * H * K + i_h * K + o_b[None, :]
            m_tb = m_t[:, None] & m_b[None, :]
            tl.store(dq + off, (b_Q * tl.exp(tl.where(m_t[:, None], b_gc - b_g0[None, :], 0.0)) * scale)
                     .to(dq.dtype.element_ty), mask=m_tb)
            b_x = b_qn.to(tl.float32) * b_Q
            # Kh = (v dh^T) e^(gl - g0);  Kt = Kh + dA^T qn;  dk = Kt e^(g0 - gc)
            b_Kt = b_Kt * tl.exp(b_gl - b_g0)[None, :]
            b_knf = b_kn.to(tl.float32)
            b_c = b_c * tl.exp(b_gl) + tl.sum(b_knf * b_Kt, axis=0)
            b_Kt = tl.dot(tl.trans(b_dA), b_qn, b_Kt, input_precision=PREC)
            tl.store(dk + off, (b_Kt * tl.exp(b_g0[None, :] - b_gc)).to(dk.dtype.element_ty), mask=m_tb)
            # dg: in-chunk reverse cumulative sum + the state-exit term; 0 where the gate was floored
            b_x -= b_knf * b_Kt
            b_dg = tl.sum(b_x, axis=0)[None, :] - tl.cumsum(b_x, axis=0) + b_x + b_c[None, :]
            b_graw = tl.load(g + off, mask=m_tb, other=0.0).to(tl.float32)
            b_dg = tl.where(b_graw >= G_MIN, b_dg, 0.0)
            tl.store(dg + off, b_dg.to(dg.dtype.element_ty), mask=m_tb)


def chunk_gla_bwd_v5(q, k, v, g, do, scale, ht, dht, h, dh, gc, dq, dk, dv, info, BK, prec):
    """dq, dk (q's dtype), dv written in place; returns dg. h, dh: states from fwd_h / bwd_dh."""
    from .chunk import BC, CFG, chunk_gla_bwd_dg_kernel, chunk_gla_bwd_dqkv_kernel, _dqkv_bv
    from .utils import G_FLOOR, empty

    B, T, H, K = q.shape
    V = v.shape[3]
    N, cu, chunk_indices, chunk_offsets, NT, BT = info
    dg = empty(*g.shape, dtype=g.dtype, device=g.device)
    if NT == 0:
        return dg
    env = os.environ.get
    warps, stages = int(env("TILEFOLD_GLA_V5_WARPS", V5_WARPS)), int(env("TILEFOLD_GLA_V5_STAGES", V5_STAGES))
    BS = min(int(env("TILEFOLD_GLA_V5_BS", V5_BS)), max(16, next_pow2(min(K, V))))
    BI = min(V5_BI, max(16, next_pow2(max(K, V))))
    NS = cdiv(K, BS) + cdiv(V, BS)
    chunk_gla_bwd_v5_kernel[(NS * NT, H)](
        q, k, v, g, gc, do, h, dh, dq, dk, dv, dg, cu, chunk_indices, scale, H, K, V, BT, BK, BS, BI, G_FLOOR,
        prec, num_warps=warps, num_stages=stages)
    # chunks that are not whole-chunk fast: v4's sub-chunk kernel (fp32 dq, dk) and v4's dg kernel,
    # which also casts their dq, dk into the outputs; both return at once for the other chunks
    wide = q.dtype != torch.float32
    dq32 = empty(B, T, H, K, dtype=torch.float32, device=q.device) if wide else dq
    dk32 = empty(B, T, H, K, dtype=torch.float32, device=q.device) if wide else dk
    chunk_gla_bwd_dqkv_kernel[(NT, H)](
        q, k, v, gc, do, h, dh, dq32, dk32, dv, cu, chunk_indices, scale, H, K, V, BT, BC, BK,
        _dqkv_bv(V, BK, q.element_size()), prec, True, num_warps=CFG["bwd_dqkv"][1], num_stages=1)
    has_dht = dht is not None and ht is not None
    chunk_gla_bwd_dg_kernel[(NT, H, cdiv(K, 64))](
        q, k, dq32, dk32, g, dg, h, dh, ht if has_dht else h, cu, chunk_indices, H, K, V, BT, 64, 64,
        int(has_dht), G_FLOOR, gc, dq, dk, BK, True, num_warps=4)
    return dg
