"""Hopper (sm_90) backward kernels in Gluon: dK / dV (key-stationary) and dQ (query-stationary), with the
tensor-core schedule written out by hand. The preprocess (delta, lse in log2 units) stays backward.py's.

Why: backward.py's Triton dK/dV kernel holds dK and dV (2 x 128 fp32 registers per thread at 64 x 128 with
8 warps) and spills at the 255-register ceiling (benchmarks/NOTES.md, "Why causal backward lags"); Triton
3.6 can neither give its math warps more registers than its loads nor keep a product in flight across the
elementwise work. Gluon can: warp specialization with register reallocation (two consumer warpgroups at
up to 256 registers, a one-warp TMA loader at 24) and the asynchronous warpgroup MMA.

dK / dV: one program owns a key block of 128 keys of one (batch, key head); each of its two consumer
warpgroups owns 64 of them (the wgmma M) and keeps their dK, dV in registers. For every query head of the
GQA group and every query tile (BLOCK_M rows) that sees the block, per warpgroup:

    S^T  = K_w Q^T            (async)
    dP^T = V_w dO^T           (async, behind S^T)
    wait for S^T -> P^T = exp2(S^T * scale * log2e - lse2)   (masked only on tiles the mask cuts)
    dV  += P^T dO            (async; P^T from registers)
    wait for dP^T -> dS^T = P^T (dP^T - delta)               (while dV runs)
    dK  += dS^T Q            (async; dS^T from registers)
    wait for both -> release the Q and dO slots

A one-warp loader streams the Q and dO tiles through a ring of STAGES slots (one "full" mbarrier per slot
and operand, one "empty" of count 2 that each warpgroup arrives on), so the two warpgroups drift apart
and one's exponentials run under the other's products. dK is scaled by softmax_scale at the end. No
atomics: deterministic, and dK / dV are summed over the GQA group in registers.

dQ: one program owns 128 query rows of one (batch, head), 64 per consumer warpgroup, with their Q and dO
in shared memory; K and V tiles stream through the forward's loader (forward_sm90._ws_loader). Per key
tile j: S_j = Q K_j^T and dP_j = dO V_j^T (async), then dQ += dS_{j-1} K_{j-1} issued behind them, so the
exponentials of tile j run while the tensor cores finish dP_j and the previous dQ product. Masks and the
key range are the forward's (_key_range, _mask_if_cut: scores to -inf, so the scale must be positive).

Rows: query rows past seqlen_q get lse2 = +inf (P = 0) and delta 0. Both kernels read the other side's
tiles through the flat (batch·seqlen, heads·head_dim) views, so a ragged last tile would read the next
batch's rows, and an inf / NaN there would reach this batch's gradients through 0·x: dK / dV needs batch 1
or seqlen_q a multiple of its 64-row query tile; dQ batch 1 or seqlen_k a multiple of its 64-key tile (32 at head
dim 256).
Each kernel is chosen on its own (the other gradient then comes from backward.py's kernel). By default (KV3D;
TILEFOLD_BWD_SM90_KV3D=0 opts out) the other side's tiles come through rank-3 (batch, seqlen, heads·head_dim)
descriptors that zero-fill past the length, so ragged lengths at batch > 1 take these kernels too. Rows of the
stationary side past the end (key rows for dK / dV, query rows for dQ) only reach their own output rows,
which are not stored.

Dropout: the forward's Philox mask is regenerated (philox.dropout_keep_gl): key-major in dK / dV, where
the sign of P^T carries it (relu for dV, scaled by 1 / (1 - p) at the end; magnitude for dS), and as
backward.py's in dQ (TILEFOLD_BWD_SM90_DROPOUT=0 sends dropout backwards to backward.py's kernels).

Head dim 256 (on by default since GPU call 35, 1.42-1.46x FA2's backward on an H200; TILEFOLD_BWD_SM90_HD256=0
sends it back to backward.py's kernels): the dQ kernel with 32-key tiles, and
attention_bwd_dkdv_sm90_hd256_kernel, which splits the head dim over the two warpgroups (64 keys per program;
64 x 256 fp32 dK and dV would not fit one warpgroup's registers) and trades P^T, dP^T and dS^T between them
through shared memory.

Scope: CUDA capability 9.x, fp16 / bf16, head dim 64, 128 or 256, fixed lengths, no softcap (those stay on
backward.py's kernels); ALiBi only with TILEFOLD_BWD_SM90_ALIBI=1 (the distance per element in _probs_t and the dQ
consumer; slower than backward.py's kernels on an H100, benchmarks/NOTES.md), and then dK / dV only with a positive scale
(the slope is divided by it). No interpreter runs Gluon: the CPU tier tests the dispatch, the GPU tier the
kernels (tests/ops/attention/test_backward_sm90.py).
"""
from __future__ import annotations

import functools
import os

import torch

try:  # Gluon is experimental in Triton 3.6; its absence only disables this path
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
    from triton.experimental.gluon.language.nvidia.hopper import (fence_async_shared, mbarrier, tma,
                                                                   warpgroup_mma, warpgroup_mma_wait)
    HAVE_GLUON = True
except Exception:  # noqa: BLE001 - any import problem means: no Gluon path
    HAVE_GLUON = False

from ..common import launch
from ..common.host import cdiv, rows_grid
from ..common.launch import LaunchCache, PLANS_MAX, arg_class, int_class, plain_descriptor
from .forward_sm90 import _major, _plan_descs, _rows_view, _smem_layout, _smem_layout3, _view_spec
from ..common.masks import query_tiles
from ..common.philox import RNG_ARGS, dropout_args, rng_ptr
if HAVE_GLUON:
    from ..common.philox import dropout_keep_gl, rng_key_gl
    from .forward_sm90 import _alibi_bias, _key_range, _mask_if_cut, _tma_rows, _ws_loader

LOG2E = 1.4426950408889634
WG_N = 64          # keys per consumer warpgroup (the wgmma M)
DQ_M = 64          # query rows per consumer warpgroup of the dQ kernel
BLOCK_N = 2 * WG_N  # keys per program


if HAVE_GLUON:

    # masks.query_tiles compiled by Gluon (its body uses only names Gluon shares with triton.language)
    _query_tiles_gl = gluon.jit(query_tiles.fn)

    @gluon.jit
    def _query_range(n0, seqlen_q, seqlen_k, shift, win_left, win_right, N_KEYS: gl.constexpr,
                     BLOCK_M: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr):
        """First query tile (a multiple of BLOCK_M) and number of query tiles that see keys
        [n0, n0 + N_KEYS): masks.query_tiles's range (its full-tile split unused: the tiles decide at run time)."""
        m_start, f_lo, f_hi, hi = _query_tiles_gl(n0, seqlen_q, seqlen_k, shift, win_left, win_right,
                                                  BLOCK_M, N_KEYS, HAS_LO, HAS_HI)
        return m_start, (hi - m_start + BLOCK_M - 1) // BLOCK_M

    @gluon.jit
    def _probs_t(s, lse2, offs_n, offs_m, nw, m, shift, win_left, win_right, qk_scale,
                 seed_lo, seed_hi, rng_offset, drop_thr, b, H, h, alibi_k,
                 WN: gl.constexpr, BLOCK_M: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr,
                 HAS_DROPOUT: gl.constexpr, HAS_ALIBI: gl.constexpr):
        """P^T of the key-major score tile S^T (keys offs_n from nw, queries offs_m from m): exp2(S^T·scale -
        lse2), zero where the mask cuts the tile (query i sees key j iff i + shift - win_left <= j <= i +
        shift + win_right; one uniform branch), and with dropout the dropped elements negated (the forward's
        Philox mask, generated key-major). HAS_ALIBI: the unscaled scores first get ``-alibi_k · |i + shift - j|``
        (the forward's ALiBi, alibi_k = slope / scale; the distance from fp32 index vectors)."""
        if HAS_ALIBI:
            s = s - alibi_k * gl.abs(gl.expand_dims(offs_n.to(gl.float32), 1)
                                     - gl.expand_dims((offs_m + shift).to(gl.float32), 0))
        p = gl.exp2(gl.fma(s, qk_scale, -gl.expand_dims(lse2, 0)))
        need = False
        if HAS_HI:
            need = need | (nw + WN - 1 > m + shift + win_right)
        if HAS_LO:
            need = need | (nw < m + BLOCK_M - 1 + shift - win_left)
        if need:
            ok = gl.expand_dims(offs_n, 1) >= 0
            if HAS_HI:
                ok = ok & (gl.expand_dims(offs_n, 1) <= gl.expand_dims(offs_m + (shift + win_right), 0))
            if HAS_LO:
                ok = ok & (gl.expand_dims(offs_n, 1) >= gl.expand_dims(offs_m + (shift - win_left), 0))
            p = gl.where(ok, p, 0.0)
        if HAS_DROPOUT:
            keep = dropout_keep_gl(seed_lo, seed_hi, rng_offset, b * H + h, gl.expand_dims(offs_m, 0), nw,
                                   gl.expand_dims(offs_n - nw, 1), drop_thr)
            p = gl.where(keep, p, -p)
        return p

    @gluon.jit
    def _ds_t(p, dp, dlt, drop_rscale, HAS_DROPOUT: gl.constexpr):
        """dS^T = P^T (dP^T - delta); with dropout |P^T| (dP^T of the kept elements / (1 - p) - delta)."""
        if HAS_DROPOUT:
            ds = gl.abs(p) * (gl.where(p > 0.0, dp * drop_rscale, 0.0) - gl.expand_dims(dlt, 0))
        else:
            ds = p * (dp - gl.expand_dims(dlt, 0))
        return ds

    @gluon.jit
    def _store_keys(acc, PTR, b, hk, n0, col0, stride_b, stride_n, stride_h, seqlen_k,
                    WN: gl.constexpr, HALF: gl.constexpr, o_layout: gl.constexpr):
        """Store rows [n0, n0 + WN) (those < seqlen_k) and columns [col0, col0 + HALF) of dK or dV."""
        rows = n0 + gl.arange(0, WN, layout=gl.SliceLayout(1, o_layout))
        cols = col0 + gl.arange(0, HALF, layout=gl.SliceLayout(0, o_layout))
        keep = gl.expand_dims(rows < seqlen_k, 1)
        r64 = gl.expand_dims(rows.to(gl.int64), 1)
        ptrs = PTR + b.to(gl.int64) * stride_b + hk.to(gl.int64) * stride_h + r64 * stride_n \
            + gl.expand_dims(cols, 0)
        gl.store(ptrs, acc.to(PTR.dtype.element_ty), mask=keep)

    @gluon.jit
    def _bwd_loader(q_desc, k_desc, v_desc, do_desc, q_smem, k_smem, v_smem, do_smem, kv_bar,
                    q_full, do_full, q_empty, do_empty, b, hk, n0, m_start, n_mt, num_tiles,
                    seqlen_q, seqlen_k, GROUP,
                    BLOCK_M: gl.constexpr, HEAD_D: gl.constexpr, STAGES: gl.constexpr, KV_TILES: gl.constexpr,
                    QD3D: gl.constexpr):
        """One warp: the KV_TILES K and V tiles of the block once, then Q and dO tiles into the ring; a slot is
        refilled once both consumer warpgroups have released it (q_empty / do_empty count two arrivals).
        QD3D: Q / dO through rank-3 (batch, seqlen_q, heads·head_dim) descriptors, zero-filled past seqlen_q."""
        WN: gl.constexpr = k_desc.block_type.shape[0]
        mbarrier.expect(kv_bar, KV_TILES * k_desc.block_type.nbytes + KV_TILES * v_desc.block_type.nbytes)
        for w in gl.static_range(KV_TILES):
            tma.async_copy_global_to_shared(k_desc, [b * seqlen_k + n0 + w * WN, hk * HEAD_D], kv_bar,
                                            k_smem.index(w))
            tma.async_copy_global_to_shared(v_desc, [b * seqlen_k + n0 + w * WN, hk * HEAD_D], kv_bar,
                                            v_smem.index(w))
        for t in range(num_tiles):
            g = t // n_mt
            m = m_start + (t - g * n_mt) * BLOCK_M
            col = (hk * GROUP + g) * HEAD_D
            slot = t % STAGES
            if t >= STAGES:
                mbarrier.wait(q_empty.index(slot), ((t // STAGES) - 1) & 1)
            mbarrier.expect(q_full.index(slot), q_desc.block_type.nbytes)
            _tma_rows(q_desc, q_full.index(slot), q_smem.index(slot), b, m, b * seqlen_q + m, col, QD3D)
            if t >= STAGES:
                mbarrier.wait(do_empty.index(slot), ((t // STAGES) - 1) & 1)
            mbarrier.expect(do_full.index(slot), do_desc.block_type.nbytes)
            _tma_rows(do_desc, do_full.index(slot), do_smem.index(slot), b, m, b * seqlen_q + m, col, QD3D)

    @gluon.jit
    def _bwd_consumer(q_smem, k_smem, v_smem, do_smem, kv_bar, q_full, do_full, q_empty, do_empty,
                      LSE2, DELTA, DK, DV, stride_lb, stride_lh, stride_dkb, stride_dkn, stride_dkh,
                      stride_dvb, stride_dvn, stride_dvh, b, hk, n0, m_start, n_mt, num_tiles,
                      seqlen_q, seqlen_k, GROUP, shift, win_left, win_right, qk_scale, sm_scale,
                      seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, H, ALIBI, stride_alb,
                      WG: gl.constexpr, WN: gl.constexpr, BLOCK_M: gl.constexpr, HEAD_D: gl.constexpr,
                      STAGES: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr,
                      HAS_DROPOUT: gl.constexpr, HAS_ALIBI: gl.constexpr):
        """One warpgroup: keys [n0 + WG·WN, + WN) of the block, their dK / dV over every query tile.
        Dropout: the forward's Philox mask regenerated key-major (rows = keys) and carried in the sign of
        P^T: its positive part feeds dV (scaled by 1 / (1 - p) once, at the end), its magnitude
        dS^T = |P^T| (dP^T_kept / (1 - p) - delta)."""
        dtype: gl.constexpr = q_smem.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_M, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, HEAD_D, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        col_o: gl.constexpr = gl.SliceLayout(0, o_layout)
        nw = n0 + WG * WN
        offs_n = nw + gl.arange(0, WN, layout=row_s)
        offs_m0 = gl.arange(0, BLOCK_M, layout=col_s)
        k_tile = k_smem.index(WG)
        v_tile = v_smem.index(WG)
        dk = gl.zeros([WN, HEAD_D], gl.float32, layout=o_layout)
        dv = gl.zeros([WN, HEAD_D], gl.float32, layout=o_layout)
        s_zero = gl.zeros([WN, BLOCK_M], gl.float32, layout=s_layout)
        mbarrier.wait(kv_bar, 0)
        for t in range(num_tiles):
            g = t // n_mt
            m = m_start + (t - g * n_mt) * BLOCK_M
            h = hk * GROUP + g
            slot = t % STAGES
            phase = (t // STAGES) & 1
            offs_m = m + offs_m0
            l_ptrs = b.to(gl.int64) * stride_lb + h.to(gl.int64) * stride_lh + offs_m
            in_q = offs_m < seqlen_q
            lse2 = gl.load(LSE2 + l_ptrs, mask=in_q, other=float("inf"))
            dlt = gl.load(DELTA + l_ptrs, mask=in_q, other=0.0)
            mbarrier.wait(q_full.index(slot), phase)
            s_tok = warpgroup_mma(k_tile, q_smem.index(slot).permute((1, 0)), s_zero, use_acc=False,
                                  is_async=True)
            mbarrier.wait(do_full.index(slot), phase)
            dp_tok = warpgroup_mma(v_tile, do_smem.index(slot).permute((1, 0)), s_zero, use_acc=False,
                                   is_async=True)
            s = warpgroup_mma_wait(1, deps=(s_tok,))
            alibi_k = 0.0
            if HAS_ALIBI:  # this tile's query head's slope, over the scale (scores are unscaled here)
                alibi_k = gl.load(ALIBI + b.to(gl.int64) * stride_alb + h) * (1.4426950408889634 / qk_scale)
            p = _probs_t(s, lse2, offs_n, offs_m, nw, m, shift, win_left, win_right, qk_scale,
                         seed_lo, seed_hi, rng_offset, drop_thr, b, H, h, alibi_k, WN, BLOCK_M, HAS_LO, HAS_HI,
                         HAS_DROPOUT, HAS_ALIBI)
            if HAS_DROPOUT:
                p_op = gl.convert_layout(gl.maximum(p, 0.0).to(dtype), p_layout)
            else:
                p_op = gl.convert_layout(p.to(dtype), p_layout)
            dv_tok = warpgroup_mma(p_op, do_smem.index(slot), dv, is_async=True)
            dp = warpgroup_mma_wait(1, deps=(dp_tok,))
            ds = _ds_t(p, dp, dlt, drop_rscale, HAS_DROPOUT)
            ds_op = gl.convert_layout(ds.to(dtype), p_layout)
            dk_tok = warpgroup_mma(ds_op, q_smem.index(slot), dk, is_async=True)
            dv, dk = warpgroup_mma_wait(0, deps=(dv_tok, dk_tok))
            gl.thread_barrier()
            mbarrier.arrive(q_empty.index(slot), count=1)
            mbarrier.arrive(do_empty.index(slot), count=1)
        dk = dk * sm_scale
        if HAS_DROPOUT:
            dv = dv * drop_rscale
        _store_keys(dk, DK, b, hk, nw, 0, stride_dkb, stride_dkn, stride_dkh, seqlen_k, WN, HEAD_D, o_layout)
        _store_keys(dv, DV, b, hk, nw, 0, stride_dvb, stride_dvn, stride_dvh, seqlen_k, WN, HEAD_D, o_layout)

    @gluon.jit(do_not_specialize=RNG_ARGS)
    def attention_bwd_dkdv_sm90_kernel(
        q_desc, k_desc, v_desc, do_desc, LSE2, DELTA, DK, DV,
        stride_lb, stride_lh, stride_dkb, stride_dkn, stride_dkh, stride_dvb, stride_dvn, stride_dvh,
        seqlen_q, seqlen_k, HK, GROUP, shift, win_left, win_right, qk_scale, sm_scale,
        seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, ALIBI, stride_alb,
        HEAD_D: gl.constexpr, STAGES: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr,
        CONSUMER_REGS: gl.constexpr, HAS_DROPOUT: gl.constexpr, num_warps: gl.constexpr,
        QD3D: gl.constexpr = False, QD_LAYOUT: gl.constexpr = None,
        RNG_PTR: gl.constexpr = False, HAS_ALIBI: gl.constexpr = False,
    ):
        """Grid (key blocks of 2·WN keys, batch·key heads); the first key blocks see the most queries under
        a causal mask and go first. QD3D: Q / dO through rank-3 descriptors (QD_LAYOUT: their tiles' 2-D
        layout)."""
        WN: gl.constexpr = k_desc.block_type.shape[0]
        BLOCK_M: gl.constexpr = q_desc.block_type.shape[1] if QD3D else q_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype
        pid_n = gl.program_id(0)
        pid_bh = gl.program_id(1) + gl.program_id(2) * gl.num_programs(1)  # host.rows_grid
        seed_lo, seed_hi, rng_offset = rng_key_gl(seed_lo, seed_hi, rng_offset, RNG_PTR)
        b = pid_bh // HK
        hk = pid_bh % HK
        n0 = pid_n * (2 * WN)
        m_start, n_mt = _query_range(n0, seqlen_q, seqlen_k, shift, win_left, win_right, 2 * WN, BLOCK_M, HAS_LO,
                                     HAS_HI)
        num_tiles = n_mt * GROUP

        qd_layout: gl.constexpr = QD_LAYOUT if QD3D else q_desc.layout  # rank-3 descriptors: their tiles' 2-D layout
        q_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_D], qd_layout)
        do_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_D], qd_layout)
        k_smem = gl.allocate_shared_memory(dtype, [2, WN, HEAD_D], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [2, WN, HEAD_D], v_desc.layout)
        kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        q_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        do_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        q_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        do_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(kv_bar, count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(q_full.index(i), count=1)
            mbarrier.init(do_full.index(i), count=1)
            mbarrier.init(q_empty.index(i), count=2)
            mbarrier.init(do_empty.index(i), count=2)
        fence_async_shared()
        gl.warp_specialize([
            (_bwd_consumer, (q_smem, k_smem, v_smem, do_smem, kv_bar, q_full, do_full, q_empty, do_empty,
                             LSE2, DELTA, DK, DV, stride_lb, stride_lh, stride_dkb, stride_dkn, stride_dkh,
                             stride_dvb, stride_dvn, stride_dvh, b, hk, n0, m_start, n_mt, num_tiles,
                             seqlen_q, seqlen_k, GROUP, shift, win_left, win_right, qk_scale, sm_scale,
                             seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, HK * GROUP, ALIBI, stride_alb,
                             0, WN, BLOCK_M, HEAD_D, STAGES, HAS_LO, HAS_HI, HAS_DROPOUT, HAS_ALIBI)),
            (_bwd_consumer, (q_smem, k_smem, v_smem, do_smem, kv_bar, q_full, do_full, q_empty, do_empty,
                             LSE2, DELTA, DK, DV, stride_lb, stride_lh, stride_dkb, stride_dkn, stride_dkh,
                             stride_dvb, stride_dvn, stride_dvh, b, hk, n0, m_start, n_mt, num_tiles,
                             seqlen_q, seqlen_k, GROUP, shift, win_left, win_right, qk_scale, sm_scale,
                             seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, HK * GROUP, ALIBI, stride_alb,
                             1, WN, BLOCK_M, HEAD_D, STAGES, HAS_LO, HAS_HI, HAS_DROPOUT, HAS_ALIBI)),
            (_bwd_loader, (q_desc, k_desc, v_desc, do_desc, q_smem, k_smem, v_smem, do_smem, kv_bar,
                           q_full, do_full, q_empty, do_empty, b, hk, n0, m_start, n_mt, num_tiles,
                           seqlen_q, seqlen_k, GROUP, BLOCK_M, HEAD_D, STAGES, 2, QD3D)),
        ], [4, 1], [CONSUMER_REGS, 24])


if HAVE_GLUON:

    @gluon.jit
    def _dq_consumer(q_smem, do_smem, qdo_bar, k_smem, v_smem, k_full, v_full, k_empty, v_empty,
                     LSE2, DELTA, DQ, stride_lb, stride_lh, stride_qb, stride_qm, stride_qh,
                     b, h, m0, n_lo, num_tiles, seqlen_q, seqlen_k, shift, win_left, win_right, qk_scale, sm_scale,
                     seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, bh, alibi_k,
                     WG: gl.constexpr, WG_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                     STAGES: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr, HAS_DROPOUT: gl.constexpr,
                     HAS_ALIBI: gl.constexpr):
        """One warpgroup: dQ of rows [m0 + WG·WG_M, + WG_M) over the key tiles they see. The product
        dQ += dS_{j-1} K_{j-1} is issued behind S_j and dP_j, so it runs under the exponentials of tile j;
        V slots are released after dP, K slots after the dQ product that reads them."""
        dtype: gl.constexpr = q_smem.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_N, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, HEAD_D, 16])
        ds_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        col_o: gl.constexpr = gl.SliceLayout(0, o_layout)
        r0 = m0 + WG * WG_M
        last_row = r0 + WG_M - 1
        offs_m = r0 + gl.arange(0, WG_M, layout=row_s)
        offs_n0 = gl.arange(0, BLOCK_N, layout=col_s)
        in_q = offs_m < seqlen_q
        l_ptrs = b.to(gl.int64) * stride_lb + h.to(gl.int64) * stride_lh + offs_m
        lse2 = gl.load(LSE2 + l_ptrs, mask=in_q, other=float("inf"))
        dlt = gl.load(DELTA + l_ptrs, mask=in_q, other=0.0)
        q_tile = q_smem.index(WG)
        do_tile = do_smem.index(WG)
        dq = gl.zeros([WG_M, HEAD_D], gl.float32, layout=o_layout)
        s_zero = gl.zeros([WG_M, BLOCK_N], gl.float32, layout=s_layout)
        mbarrier.wait(qdo_bar.index(WG), 0)
        if num_tiles > 0:
            mbarrier.wait(k_full.index(0), 0)
            s_tok = warpgroup_mma(q_tile, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            mbarrier.wait(v_full.index(0), 0)
            dp_tok = warpgroup_mma(do_tile, v_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            s = warpgroup_mma_wait(1, deps=(s_tok,))
            s = _mask_if_cut(s, offs_m, n_lo, offs_n0, r0, last_row, seqlen_k, shift, win_left, win_right,
                             BLOCK_N, HAS_LO, HAS_HI)
            if HAS_ALIBI:
                s = _alibi_bias(s, offs_m, n_lo, offs_n0, shift, alibi_k)
            p = gl.exp2(gl.fma(s, qk_scale, -gl.expand_dims(lse2, 1)))
            dp = warpgroup_mma_wait(0, deps=(dp_tok,))
            gl.thread_barrier()
            mbarrier.arrive(v_empty.index(0), count=1)
            if HAS_DROPOUT:  # dP of the kept elements, scaled by 1 / (1 - p); dropped ones give dS = -P·delta
                keep = dropout_keep_gl(seed_lo, seed_hi, rng_offset, bh, gl.expand_dims(offs_m, 1), n_lo,
                                       gl.expand_dims(offs_n0, 0), drop_thr)
                dp = gl.where(keep, dp * drop_rscale, 0.0)
            ds_op = gl.convert_layout((p * (dp - gl.expand_dims(dlt, 1))).to(dtype), ds_layout)
            for t in range(1, num_tiles):
                slot = t % STAGES
                phase = (t // STAGES) & 1
                prev = (t - 1) % STAGES
                n = n_lo + t * BLOCK_N
                mbarrier.wait(k_full.index(slot), phase)
                s_tok = warpgroup_mma(q_tile, k_smem.index(slot).permute((1, 0)), s_zero, use_acc=False,
                                      is_async=True)
                mbarrier.wait(v_full.index(slot), phase)
                dp_tok = warpgroup_mma(do_tile, v_smem.index(slot).permute((1, 0)), s_zero, use_acc=False,
                                       is_async=True)
                dq_tok = warpgroup_mma(ds_op, k_smem.index(prev), dq, is_async=True)
                s = warpgroup_mma_wait(2, deps=(s_tok,))
                s = _mask_if_cut(s, offs_m, n, offs_n0, r0, last_row, seqlen_k, shift, win_left, win_right,
                                 BLOCK_N, HAS_LO, HAS_HI)
                if HAS_ALIBI:
                    s = _alibi_bias(s, offs_m, n, offs_n0, shift, alibi_k)
                p = gl.exp2(gl.fma(s, qk_scale, -gl.expand_dims(lse2, 1)))
                # p and ds ride along as deps of the waits: the compiler then computes them before the
                # wait (while dP and the dQ product run) instead of sinking the exponentials past it
                dp, p = warpgroup_mma_wait(1, deps=(dp_tok, p))
                gl.thread_barrier()
                mbarrier.arrive(v_empty.index(slot), count=1)
                if HAS_DROPOUT:
                    keep = dropout_keep_gl(seed_lo, seed_hi, rng_offset, bh, gl.expand_dims(offs_m, 1), n,
                                           gl.expand_dims(offs_n0, 0), drop_thr)
                    dp = gl.where(keep, dp * drop_rscale, 0.0)
                ds = p * (dp - gl.expand_dims(dlt, 1))
                dq, ds = warpgroup_mma_wait(0, deps=(dq_tok, ds))
                gl.thread_barrier()
                mbarrier.arrive(k_empty.index(prev), count=1)
                ds_op = gl.convert_layout(ds.to(dtype), ds_layout)
            last = (num_tiles - 1) % STAGES
            dq_tok = warpgroup_mma(ds_op, k_smem.index(last), dq, is_async=True)
            dq = warpgroup_mma_wait(0, deps=(dq_tok,))
        dq = dq * sm_scale
        rows = r0 + gl.arange(0, WG_M, layout=row_o)
        cols = gl.arange(0, HEAD_D, layout=col_o)
        ptrs = DQ + b.to(gl.int64) * stride_qb + h.to(gl.int64) * stride_qh \
            + gl.expand_dims(rows.to(gl.int64) * stride_qm, 1) + gl.expand_dims(cols, 0)
        gl.store(ptrs, dq.to(DQ.dtype.element_ty), mask=gl.expand_dims(rows < seqlen_q, 1))

    @gluon.jit(do_not_specialize=RNG_ARGS)
    def attention_bwd_dq_sm90_kernel(
        q_desc, k_desc, v_desc, do_desc, LSE2, DELTA, DQ,
        stride_lb, stride_lh, stride_qb, stride_qm, stride_qh,
        seqlen_q, seqlen_k, H, GROUP, shift, win_left, win_right, qk_scale, sm_scale,
        seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, ALIBI, stride_alb,
        HEAD_D: gl.constexpr, STAGES: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr,
        CONSUMER_REGS: gl.constexpr, HAS_DROPOUT: gl.constexpr, num_warps: gl.constexpr,
        KV3D: gl.constexpr = False, KV_LAYOUT: gl.constexpr = None,
        RNG_PTR: gl.constexpr = False, HAS_ALIBI: gl.constexpr = False,
    ):
        """Grid (query blocks of 2·WG_M rows, batch·heads), heaviest (causal: last) blocks first. Q and dO of
        the block stay in shared memory; K and V tiles stream through the forward's loader and ring. KV3D:
        K / V through rank-3 descriptors (the forward's _ws_loader with KV3D; KV_LAYOUT the tiles' 2-D layout)."""
        WG_M: gl.constexpr = q_desc.block_type.shape[0]
        BLOCK_N: gl.constexpr = k_desc.block_type.shape[1] if KV3D else k_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype
        pid_m = gl.num_programs(0) - 1 - gl.program_id(0)
        pid_bh = gl.program_id(1) + gl.program_id(2) * gl.num_programs(1)  # host.rows_grid
        seed_lo, seed_hi, rng_offset = rng_key_gl(seed_lo, seed_hi, rng_offset, RNG_PTR)
        b = pid_bh // H
        h = pid_bh % H
        hk = h // GROUP
        m0 = pid_m * (2 * WG_M)
        n_lo, num_tiles = _key_range(m0, 2 * WG_M, seqlen_k, shift, win_left, win_right, BLOCK_N, HAS_LO, HAS_HI)
        alibi_k = 0.0
        if HAS_ALIBI:  # the slope over the scale: the scores are unscaled here
            alibi_k = gl.load(ALIBI + b.to(gl.int64) * stride_alb + h) * (1.4426950408889634 / qk_scale)

        q_smem = gl.allocate_shared_memory(dtype, [2, WG_M, HEAD_D], q_desc.layout)
        do_smem = gl.allocate_shared_memory(dtype, [2, WG_M, HEAD_D], do_desc.layout)
        kv_layout: gl.constexpr = KV_LAYOUT if KV3D else k_desc.layout  # rank-3 descriptors: their tiles' 2-D layout
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_D], kv_layout)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_D], kv_layout)
        qdo_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        k_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(2):
            mbarrier.init(qdo_bar.index(i), count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(k_full.index(i), count=1)
            mbarrier.init(v_full.index(i), count=1)
            mbarrier.init(k_empty.index(i), count=2)
            mbarrier.init(v_empty.index(i), count=2)
        fence_async_shared()
        for i in gl.static_range(2):
            mbarrier.expect(qdo_bar.index(i), q_desc.block_type.nbytes + do_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(q_desc, [b * seqlen_q + m0 + i * WG_M, h * HEAD_D], qdo_bar.index(i),
                                            q_smem.index(i))
            tma.async_copy_global_to_shared(do_desc, [b * seqlen_q + m0 + i * WG_M, h * HEAD_D], qdo_bar.index(i),
                                            do_smem.index(i))
        kv_col = hk * HEAD_D
        gl.warp_specialize([
            (_dq_consumer, (q_smem, do_smem, qdo_bar, k_smem, v_smem, k_full, v_full, k_empty, v_empty,
                            LSE2, DELTA, DQ, stride_lb, stride_lh, stride_qb, stride_qm, stride_qh,
                            b, h, m0, n_lo, num_tiles, seqlen_q, seqlen_k, shift, win_left, win_right,
                            qk_scale, sm_scale, seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh,
                            alibi_k, 0, WG_M, BLOCK_N, HEAD_D, STAGES, HAS_LO, HAS_HI, HAS_DROPOUT, HAS_ALIBI)),
            (_dq_consumer, (q_smem, do_smem, qdo_bar, k_smem, v_smem, k_full, v_full, k_empty, v_empty,
                            LSE2, DELTA, DQ, stride_lb, stride_lh, stride_qb, stride_qm, stride_qh,
                            b, h, m0, n_lo, num_tiles, seqlen_q, seqlen_k, shift, win_left, win_right,
                            qk_scale, sm_scale, seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh,
                            alibi_k, 1, WG_M, BLOCK_N, HEAD_D, STAGES, HAS_LO, HAS_HI, HAS_DROPOUT, HAS_ALIBI)),
            (_ws_loader, (k_desc, v_desc, k_smem, v_smem, k_full, v_full, k_empty, v_empty, b, n_lo, seqlen_k,
                          kv_col, num_tiles, BLOCK_N, STAGES, KV3D)),
        ], [4, 1], [CONSUMER_REGS, 24])


if HAVE_GLUON:

    @gluon.jit
    def _h256_wg0(q_smem, k_smem, do_smem, kv_bar, q_full, do_full, q_empty, do_empty,
                  pT_smem, dsT_smem, dpT_smem, p_ready, p_free, dp_ready, dp_free, ds_ready, ds_free,
                  LSE2, DELTA, DK, DV, stride_lb, stride_lh, stride_dkb, stride_dkn, stride_dkh,
                  stride_dvb, stride_dvn, stride_dvh, b, hk, n0, m_start, n_mt, num_tiles,
                  seqlen_q, seqlen_k, GROUP, shift, win_left, win_right, qk_scale, sm_scale,
                  seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, H, ALIBI, stride_alb,
                  WN: gl.constexpr, BLOCK_M: gl.constexpr, HALF: gl.constexpr, STAGES: gl.constexpr,
                  HAS_LO: gl.constexpr, HAS_HI: gl.constexpr, HAS_DROPOUT: gl.constexpr, HAS_ALIBI: gl.constexpr):
        """Warpgroup 0: S^T = K Q^T over the whole head dim, P^T (to shared memory for warpgroup 1), dS^T from
        warpgroup 1's dP^T (back to shared memory), and dK / dV for head-dim columns [0, HALF)."""
        dtype: gl.constexpr = q_smem.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_M, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, HALF, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        offs_n = n0 + gl.arange(0, WN, layout=gl.SliceLayout(1, s_layout))
        offs_m0 = gl.arange(0, BLOCK_M, layout=gl.SliceLayout(0, s_layout))
        dk = gl.zeros([WN, HALF], gl.float32, layout=o_layout)
        dv = gl.zeros([WN, HALF], gl.float32, layout=o_layout)
        s_zero = gl.zeros([WN, BLOCK_M], gl.float32, layout=s_layout)
        mbarrier.wait(kv_bar, 0)
        for t in range(num_tiles):
            g = t // n_mt
            m = m_start + (t - g * n_mt) * BLOCK_M
            h = hk * GROUP + g
            slot = t % STAGES
            phase = (t // STAGES) & 1
            offs_m = m + offs_m0
            l_ptrs = b.to(gl.int64) * stride_lb + h.to(gl.int64) * stride_lh + offs_m
            in_q = offs_m < seqlen_q
            lse2 = gl.load(LSE2 + l_ptrs, mask=in_q, other=float("inf"))
            dlt = gl.load(DELTA + l_ptrs, mask=in_q, other=0.0)
            mbarrier.wait(q_full.index(slot), phase)
            s_tok = warpgroup_mma(k_smem.index(0), q_smem.index(slot).permute((1, 0)), s_zero, use_acc=False,
                                  is_async=True)
            s = warpgroup_mma_wait(0, deps=(s_tok,))
            alibi_k = 0.0
            if HAS_ALIBI:  # this tile's query head's slope, over the scale (scores are unscaled here)
                alibi_k = gl.load(ALIBI + b.to(gl.int64) * stride_alb + h) * (1.4426950408889634 / qk_scale)
            p = _probs_t(s, lse2, offs_n, offs_m, n0, m, shift, win_left, win_right, qk_scale,
                         seed_lo, seed_hi, rng_offset, drop_thr, b, H, h, alibi_k, WN, BLOCK_M, HAS_LO, HAS_HI,
                         HAS_DROPOUT, HAS_ALIBI)
            if HAS_DROPOUT:
                p_lo = gl.maximum(p, 0.0).to(dtype)
            else:
                p_lo = p.to(dtype)
            # P^T for warpgroup 1's dV columns (its previous tile's product must have read the buffer)
            if t > 0:
                mbarrier.wait(p_free, (t - 1) & 1)
            pT_smem.store(p_lo)
            fence_async_shared()
            gl.thread_barrier()
            mbarrier.arrive(p_ready, count=1)
            mbarrier.wait(do_full.index(slot), phase)
            dv_tok = warpgroup_mma(gl.convert_layout(p_lo, p_layout), do_smem.index(slot).slice(0, HALF, dim=1),
                                   dv, is_async=True)
            mbarrier.wait(dp_ready, t & 1)
            dp = dpT_smem.load(s_layout)
            gl.thread_barrier()
            mbarrier.arrive(dp_free, count=1)
            ds_lo = _ds_t(p, dp, dlt, drop_rscale, HAS_DROPOUT).to(dtype)
            if t > 0:
                mbarrier.wait(ds_free, (t - 1) & 1)
            dsT_smem.store(ds_lo)
            fence_async_shared()
            gl.thread_barrier()
            mbarrier.arrive(ds_ready, count=1)
            dk_tok = warpgroup_mma(gl.convert_layout(ds_lo, p_layout), q_smem.index(slot).slice(0, HALF, dim=1),
                                   dk, is_async=True)
            dv, dk = warpgroup_mma_wait(0, deps=(dv_tok, dk_tok))
            gl.thread_barrier()
            mbarrier.arrive(q_empty.index(slot), count=1)
            mbarrier.arrive(do_empty.index(slot), count=1)
        if HAS_DROPOUT:
            dv = dv * drop_rscale
        _store_keys(dk * sm_scale, DK, b, hk, n0, 0, stride_dkb, stride_dkn, stride_dkh, seqlen_k, WN, HALF, o_layout)
        _store_keys(dv, DV, b, hk, n0, 0, stride_dvb, stride_dvn, stride_dvh, seqlen_k, WN, HALF, o_layout)

    @gluon.jit
    def _h256_wg1(q_smem, v_smem, do_smem, kv_bar, q_full, do_full, q_empty, do_empty,
                  pT_smem, dsT_smem, dpT_smem, p_ready, p_free, dp_ready, dp_free, ds_ready, ds_free,
                  DK, DV, stride_dkb, stride_dkn, stride_dkh, stride_dvb, stride_dvn, stride_dvh,
                  b, hk, n0, num_tiles, seqlen_k, sm_scale, drop_rscale,
                  WN: gl.constexpr, BLOCK_M: gl.constexpr, HALF: gl.constexpr, STAGES: gl.constexpr,
                  HAS_DROPOUT: gl.constexpr):
        """Warpgroup 1: dP^T = V dO^T over the whole head dim (to shared memory for warpgroup 0), then dV and
        dK for head-dim columns [HALF, 2·HALF) from warpgroup 0's P^T and dS^T in shared memory."""
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_M, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, HALF, 16])
        dk = gl.zeros([WN, HALF], gl.float32, layout=o_layout)
        dv = gl.zeros([WN, HALF], gl.float32, layout=o_layout)
        s_zero = gl.zeros([WN, BLOCK_M], gl.float32, layout=s_layout)
        mbarrier.wait(kv_bar, 0)
        for t in range(num_tiles):
            slot = t % STAGES
            phase = (t // STAGES) & 1
            mbarrier.wait(do_full.index(slot), phase)
            dp_tok = warpgroup_mma(v_smem.index(0), do_smem.index(slot).permute((1, 0)), s_zero, use_acc=False,
                                   is_async=True)
            dp = warpgroup_mma_wait(0, deps=(dp_tok,))
            if t > 0:
                mbarrier.wait(dp_free, (t - 1) & 1)
            dpT_smem.store(dp)
            gl.thread_barrier()
            mbarrier.arrive(dp_ready, count=1)
            mbarrier.wait(p_ready, t & 1)
            dv_tok = warpgroup_mma(pT_smem, do_smem.index(slot).slice(HALF, HALF, dim=1), dv, is_async=True)
            dv = warpgroup_mma_wait(0, deps=(dv_tok,))
            gl.thread_barrier()
            mbarrier.arrive(p_free, count=1)
            mbarrier.wait(ds_ready, t & 1)
            mbarrier.wait(q_full.index(slot), phase)
            dk_tok = warpgroup_mma(dsT_smem, q_smem.index(slot).slice(HALF, HALF, dim=1), dk, is_async=True)
            dk = warpgroup_mma_wait(0, deps=(dk_tok,))
            gl.thread_barrier()
            mbarrier.arrive(ds_free, count=1)
            mbarrier.arrive(q_empty.index(slot), count=1)
            mbarrier.arrive(do_empty.index(slot), count=1)
        if HAS_DROPOUT:
            dv = dv * drop_rscale
        _store_keys(dk * sm_scale, DK, b, hk, n0, HALF, stride_dkb, stride_dkn, stride_dkh, seqlen_k, WN, HALF,
                    o_layout)
        _store_keys(dv, DV, b, hk, n0, HALF, stride_dvb, stride_dvn, stride_dvh, seqlen_k, WN, HALF, o_layout)

    @gluon.jit(do_not_specialize=RNG_ARGS)
    def attention_bwd_dkdv_sm90_hd256_kernel(
        q_desc, k_desc, v_desc, do_desc, LSE2, DELTA, DK, DV,
        stride_lb, stride_lh, stride_dkb, stride_dkn, stride_dkh, stride_dvb, stride_dvn, stride_dvh,
        seqlen_q, seqlen_k, HK, GROUP, shift, win_left, win_right, qk_scale, sm_scale,
        seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, ALIBI, stride_alb,
        HEAD_D: gl.constexpr, STAGES: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr,
        CONSUMER_REGS: gl.constexpr, HAS_DROPOUT: gl.constexpr, num_warps: gl.constexpr,
        QD3D: gl.constexpr = False, QD_LAYOUT: gl.constexpr = None,
        RNG_PTR: gl.constexpr = False, HAS_ALIBI: gl.constexpr = False,
    ):
        """dK / dV at head dim 256 (FA3's split): one program per 64 keys; warpgroup 0 owns head-dim columns
        [0, 128) of dK / dV, warpgroup 1 columns [128, 256) (128 accumulator registers each). Warpgroup 0
        computes S^T and P^T, warpgroup 1 dP^T, and they trade P^T, dP^T and dS^T through shared memory with
        a ready and a free mbarrier each. QD3D / QD_LAYOUT: as the hd 64 / 128 kernel."""
        WN: gl.constexpr = k_desc.block_type.shape[0]
        BLOCK_M: gl.constexpr = q_desc.block_type.shape[1] if QD3D else q_desc.block_type.shape[0]
        HALF: gl.constexpr = HEAD_D // 2
        dtype: gl.constexpr = q_desc.dtype
        pid_n = gl.program_id(0)
        pid_bh = gl.program_id(1) + gl.program_id(2) * gl.num_programs(1)  # host.rows_grid
        seed_lo, seed_hi, rng_offset = rng_key_gl(seed_lo, seed_hi, rng_offset, RNG_PTR)
        b = pid_bh // HK
        hk = pid_bh % HK
        n0 = pid_n * WN
        m_start, n_mt = _query_range(n0, seqlen_q, seqlen_k, shift, win_left, win_right, WN, BLOCK_M, HAS_LO, HAS_HI)
        num_tiles = n_mt * GROUP

        x_layout: gl.constexpr = gl.NVMMASharedLayout(swizzle_byte_width=128, element_bitwidth=16, rank=2)
        # dP^T (fp32) is stored and loaded in the accumulator layout: a swizzle keeps those accesses off
        # the 4-8-way bank conflicts of plain 256-byte rows
        f_layout: gl.constexpr = gl.SwizzledSharedLayout(vec=2, per_phase=1, max_phase=8, order=[1, 0])
        qd_layout: gl.constexpr = QD_LAYOUT if QD3D else q_desc.layout  # rank-3 descriptors: their tiles' 2-D layout
        q_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_D], qd_layout)
        do_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_M, HEAD_D], qd_layout)
        k_smem = gl.allocate_shared_memory(dtype, [1, WN, HEAD_D], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [1, WN, HEAD_D], v_desc.layout)
        pT_smem = gl.allocate_shared_memory(dtype, [WN, BLOCK_M], x_layout)
        dsT_smem = gl.allocate_shared_memory(dtype, [WN, BLOCK_M], x_layout)
        dpT_smem = gl.allocate_shared_memory(gl.float32, [WN, BLOCK_M], f_layout)
        kv_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        q_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        do_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        q_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        do_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        xb = gl.allocate_shared_memory(gl.int64, [6, 1], mbarrier.MBarrierLayout())
        mbarrier.init(kv_bar, count=1)
        for i in gl.static_range(6):
            mbarrier.init(xb.index(i), count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(q_full.index(i), count=1)
            mbarrier.init(do_full.index(i), count=1)
            mbarrier.init(q_empty.index(i), count=2)
            mbarrier.init(do_empty.index(i), count=2)
        fence_async_shared()
        gl.warp_specialize([
            (_h256_wg0, (q_smem, k_smem, do_smem, kv_bar, q_full, do_full, q_empty, do_empty,
                         pT_smem, dsT_smem, dpT_smem, xb.index(0), xb.index(1), xb.index(2), xb.index(3),
                         xb.index(4), xb.index(5),
                         LSE2, DELTA, DK, DV, stride_lb, stride_lh, stride_dkb, stride_dkn, stride_dkh,
                         stride_dvb, stride_dvn, stride_dvh, b, hk, n0, m_start, n_mt, num_tiles,
                         seqlen_q, seqlen_k, GROUP, shift, win_left, win_right, qk_scale, sm_scale,
                         seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, HK * GROUP, ALIBI, stride_alb,
                         WN, BLOCK_M, HALF, STAGES, HAS_LO, HAS_HI, HAS_DROPOUT, HAS_ALIBI)),
            (_h256_wg1, (q_smem, v_smem, do_smem, kv_bar, q_full, do_full, q_empty, do_empty,
                         pT_smem, dsT_smem, dpT_smem, xb.index(0), xb.index(1), xb.index(2), xb.index(3),
                         xb.index(4), xb.index(5),
                         DK, DV, stride_dkb, stride_dkn, stride_dkh, stride_dvb, stride_dvn, stride_dvh,
                         b, hk, n0, num_tiles, seqlen_k, sm_scale, drop_rscale,
                         WN, BLOCK_M, HALF, STAGES, HAS_DROPOUT)),
            (_bwd_loader, (q_desc, k_desc, v_desc, do_desc, q_smem, k_smem, v_smem, do_smem, kv_bar,
                           q_full, do_full, q_empty, do_empty, b, hk, n0, m_start, n_mt, num_tiles,
                           seqlen_q, seqlen_k, GROUP, BLOCK_M, HEAD_D, STAGES, 1, QD3D)),
        ], [4, 1], [CONSUMER_REGS, 24])


CONSUMER_REGS = 240
SMEM_MAX = 232448 - 2048  # bytes of shared memory one sm_90 program may use, less the kernels' static 1 KB,
# their mbarriers and what warp specialization keeps


def _parse_cfg(var: str):
    """An optional "BLOCK,STAGES" override for sweeps (read at import), or None."""
    text = os.environ.get(var, "")
    if not text:
        return None
    try:
        block, stages = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"{var}: expected 'BLOCK,STAGES' (two integers), got {text!r}") from None
    return var, block, stages


def _smem_fits(cfg, D: int, fixed_rows: int, extra: int = 0) -> bool:
    _, block, stages = cfg
    return 2 * 2 * fixed_rows * D + stages * 2 * block * D * 2 + extra <= SMEM_MAX


def _checked(cfg, D: int, fixed_rows: int, min_stages: int, extra: int = 0):
    """The override, if it can run: BLOCK a power of two in [16, 128], STAGES >= min_stages (the dQ kernel
    releases a K slot one iteration late, so one slot would wait for itself: a hang), and shared memory
    (fixed_rows x D of the stationary side, twice, plus STAGES x 2 streamed tiles) within an sm_90 program's."""
    var, block, stages = cfg
    if block < 16 or block > 128 or block & (block - 1):
        raise ValueError(f"{var}: expected BLOCK a power of two in [16, 128], got {block}")
    if stages < min_stages:
        raise ValueError(f"{var}: expected STAGES >= {min_stages}, got {stages}")
    smem = 2 * 2 * fixed_rows * D + stages * 2 * block * D * 2 + extra
    if smem > SMEM_MAX:
        raise ValueError(f"{var}: ({block}, {stages}) needs {smem} bytes of shared memory at head dim {D}, "
                         f"more than {SMEM_MAX}")
    return block, stages


_CFG_ENV = _parse_cfg("TILEFOLD_BWD_SM90_CFG")        # dK/dV: "BLOCK_M,STAGES"
_DQ_CFG_ENV = _parse_cfg("TILEFOLD_BWD_SM90_DQ_CFG")  # dQ: "BLOCK_N,STAGES"


def _config(D: int):
    """(BLOCK_M, STAGES): query rows per tile and ring depth. Shared memory: K, V of 128 keys + STAGES x
    (Q + dO) tiles: hd128 64,2 -> 128 KB; hd64 64,3 -> 80 KB. Registers per consumer thread: dK + dV
    (D / 2 each at 64 keys), S^T and dP^T (BLOCK_M / 2 each); offline (scripts/compile_gluon_bwd.py) hd64
    at 128-row tiles spills ~180 values, at 64 none."""
    if D == 256:  # the head-dim-256 kernel: 64 keys per program, P^T / dS^T (bf16) and dP^T (fp32) exchanged;
        # its exchange buffers' 128-byte swizzle needs 64-query tiles, so an override applies there only with
        # 64-row tiles that fit (an hd 64 / 128 sweep's tiles, e.g. 64,3, never break hd256 calls)
        if _CFG_ENV and _CFG_ENV[1] == 64 and _smem_fits(_CFG_ENV, D, WG_N, extra=WG_N * 64 * 8):
            return _checked(_CFG_ENV, D, WG_N, 1, extra=WG_N * 64 * 8)
        return 64, 2
    if _CFG_ENV:
        return _checked(_CFG_ENV, D, 2 * WG_N, 1)
    return (64, 2) if D == 128 else (64, 3)


def _dq_config(D: int):
    """(BLOCK_N, STAGES) of the dQ kernel: 64-key tiles (S and dP of 64 x 64 per warpgroup beside the
    dQ accumulator). At least two slots, because a K slot is released only after the dQ product of the
    next iteration has read it; three give the loader a tile of slack. Shared memory: Q + dO of 128 rows +
    STAGES x (K + V): hd128 160 KB."""
    # an override that cannot fit head dim 256 (e.g. the hd 64 / 128 default 64,3) leaves hd256 at its own tile
    if _DQ_CFG_ENV and (D != 256 or _smem_fits(_DQ_CFG_ENV, D, 2 * DQ_M)):
        return _checked(_DQ_CFG_ENV, D, 2 * DQ_M, 2)
    # head dim 256 (HD256): 32-key tiles keep 3 slots within shared memory (offline: 229.8 KB,
    # no spills; the dQ accumulator is 128 registers per thread)
    return (32, 3) if D == 256 else (64, 3)




# dropout in the Gluon backward (the forward's Philox mask, regenerated); "0" sends dropout backwards to
# backward.py's kernels
DROPOUT = os.environ.get("TILEFOLD_BWD_SM90_DROPOUT", "1") == "1"


# ragged lengths at batch > 1: the dQ kernel reads K / V, the dK / dV kernels Q / dO, through rank-3 (batch,
# seqlen, heads·head_dim) descriptors that zero-fill past the length (dQ: the forward's _ws_loader with KV3D);
# on by default since its first GPU run passed (call 40: 1.13-1.95x backward.py's kernels at seqlen 8020, batch 2);
# "0" sends such calls to backward.py's kernels
KV3D = os.environ.get("TILEFOLD_BWD_SM90_KV3D", "1") != "0"


# head dim 256 (the dQ kernel with 32-key tiles, and attention_bwd_dkdv_sm90_hd256_kernel, FA3's head-dim split):
# on unless "0" (first GPU run, call 35: its tests passed, 1.42-1.46x FA2's backward at 8k / 16k)
HD256 = os.environ.get("TILEFOLD_BWD_SM90_HD256", "1") != "0"

# ALiBi (alibi_slopes) in the Gluon backward: "0" (default) sends ALiBi backwards to backward.py's kernels, "1" runs
# dK / dV and dQ here. Opt-in: correct (the ALiBi GPU tests pass with it), but slower on the H100 --
# call 104, bf16 hd128 8k, forward + backward 392 / 367 TFLOP/s (non-causal / causal) with both kernels here against
# 426 / 392 with backward.py's (the dK/dV kernel's spills grow with the distance terms: offline LDL/STL 16/15 -> 34/30,
# causal 63/57 -> 96/90)
ALIBI = os.environ.get("TILEFOLD_BWD_SM90_ALIBI", "0") == "1"


def _scope_ok(q, k, v, dout, *, softcap, dropout_p, varlen, shift_extra, head_dims=(64, 128)) -> bool:
    if not HAVE_GLUON or varlen or softcap > 0 or (dropout_p > 0 and not DROPOUT) or shift_extra != 0:
        return False
    if q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    if q.dim() != 4 or q.shape[-1] not in head_dims or any(t.dtype != q.dtype for t in (k, v, dout)):
        return False
    return _major(q.device.index if q.device.index is not None else torch.cuda.current_device()) == 9


def plan(q, k, v, dout, *, softcap, dropout_p, varlen, shift_extra, softmax_scale, alibi=False):
    """(dK/dV on the Gluon kernel, dQ on the Gluon kernel) for one backward: the scope and view checks run
    once for both. ``alibi``: slopes given (the kernels take them only with ALIBI)."""
    if alibi and not ALIBI:
        return False, False
    dims = (64, 128, 256) if HD256 else (64, 128)
    if not (_scope_ok(q, k, v, dout, softcap=softcap, dropout_p=dropout_p, varlen=varlen, shift_extra=shift_extra,
                      head_dims=dims) and _views_ok(q, k, v, dout)):
        return False, False
    # dQ masks scores with -inf before the exponent, so its scale must be positive
    # with ALiBi dK / dV divide the slope by the scale (its scores are unscaled): a positive scale there too
    return _dkdv_batches_ok(q, k) and (softmax_scale > 0 or not alibi), softmax_scale > 0 and _dq_batches_ok(q, k)


def supported(q, k, v, dout, *, softcap, window, dropout_p, varlen, shift_extra) -> bool:
    """Whether the Gluon kernel computes dK / dV of this backward (else backward.py's kernel)."""
    return plan(q, k, v, dout, softcap=softcap, dropout_p=dropout_p, varlen=varlen, shift_extra=shift_extra,
                softmax_scale=1.0)[0]


def dq_supported(q, k, v, dout, *, softcap, window, dropout_p, varlen, shift_extra, softmax_scale) -> bool:
    """Whether the Gluon kernel computes dQ (else backward.py's kernel)."""
    return plan(q, k, v, dout, softcap=softcap, dropout_p=dropout_p, varlen=varlen, shift_extra=shift_extra,
                softmax_scale=softmax_scale)[1]


def _views_ok(q, k, v, dout) -> bool:
    if dout.shape != q.shape:
        return False
    views = [_rows_view(t) for t in (q, k, v, dout)]
    if any(vw is None for vw in views):
        return False
    es = q.element_size()
    for t, (_, _, rs) in zip((q, k, v, dout), views):
        if t.data_ptr() % 16 or (rs * es) % 16:
            return False
    B, M, N = q.shape[0], q.shape[1], k.shape[1]
    # TMA coordinates are int32
    return min(B, M, q.shape[2], N) > 0 and B * M < 2 ** 31 and B * N < 2 ** 31


def _dkdv_batches_ok(q, k) -> bool:
    """Q / dO tiles are read through the (batch·seqlen_q) view: a ragged last query tile at batch > 1 would
    read the next batch's rows (their P is 0, but an inf / NaN there reaches dK / dV through 0·x)."""
    return q.shape[0] == 1 or q.shape[1] % _config(q.shape[-1])[0] == 0 or KV3D


def _dq_batches_ok(q, k) -> bool:
    """The dQ kernel reads K / V tiles through the (batch·seqlen_k) view: a ragged last key tile at
    batch > 1 would read the next batch's rows (masked to P = 0, but dS = P·(dP - delta) with dP from an
    inf / NaN V row, and dS·K with an inf K row, would carry it into dQ). Ragged seqlen_q is fine (a query
    row only reaches its own dQ row). KV3D (default): rank-3 K / V descriptors zero-fill past seqlen_k."""
    return q.shape[0] == 1 or k.shape[1] % _dq_config(q.shape[-1])[0] == 0 or KV3D


def _layout_ok(q, k, v, dout) -> bool:
    """The shape / stride / alignment half of ``supported`` (no device query)."""
    return _views_ok(q, k, v, dout) and _dkdv_batches_ok(q, k)


def _dq_layout_ok(q, k, v, dout) -> bool:
    """The shape / stride / alignment half of ``dq_supported`` (no device query)."""
    return _views_ok(q, k, v, dout) and _dq_batches_ok(q, k)


class _BwdPlan:
    """What a dK/dV or dQ launch needs besides the tensors, for one call shape."""
    __slots__ = ("grid", "descs", "ints", "consts", "kernel")


def _dkdv_plan(q, k, v, dout, lse2, dk, dv, softmax_scale, window, has_dropout, has_alibi=False):
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    left, right = window
    BLOCK_M, STAGES = _config(D)
    hd256 = D == 256
    q_lay = _smem_layout(BLOCK_M, D, q.dtype)
    kv_lay = _smem_layout(WG_N, D, q.dtype)
    qd3d = B > 1 and M % BLOCK_M != 0  # only reached with KV3D (_dkdv_batches_ok)
    lay3 = _smem_layout3(BLOCK_M, D, q.dtype) if qd3d else None
    plan = _BwdPlan()
    plan.descs = _plan_descs((q, k, v, dout), [_view_spec(q, BLOCK_M, q_lay, lay3), _view_spec(k, WG_N, kv_lay),
                                               _view_spec(v, WG_N, kv_lay), _view_spec(dout, BLOCK_M, q_lay, lay3)])
    plan.grid = (cdiv(N, WG_N if hd256 else BLOCK_N), *rows_grid(B, HK))
    plan.kernel = attention_bwd_dkdv_sm90_hd256_kernel if hd256 else attention_bwd_dkdv_sm90_kernel
    plan.ints = (lse2.stride(0), lse2.stride(1), dk.stride(0), dk.stride(1), dk.stride(2),
                 dv.stride(0), dv.stride(1), dv.stride(2),
                 M, N, HK, H // HK, N - M, max(left, 0), max(right, 0), softmax_scale * LOG2E, softmax_scale)
    plan.consts = dict(HEAD_D=D, STAGES=STAGES, HAS_LO=left >= 0, HAS_HI=right >= 0, CONSUMER_REGS=CONSUMER_REGS,
                       HAS_DROPOUT=has_dropout, QD3D=qd3d, QD_LAYOUT=q_lay if qd3d else None, HAS_ALIBI=has_alibi)
    return plan


def _dq_plan(q, k, v, dout, lse2, dq, softmax_scale, window, has_dropout, has_alibi=False):
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    left, right = window
    BN, STAGES = _dq_config(D)
    q_lay = _smem_layout(DQ_M, D, q.dtype)
    kv_lay = _smem_layout(BN, D, q.dtype)
    kv3d = B > 1 and N % BN != 0  # only reached with KV3D (_dq_batches_ok)
    lay3 = _smem_layout3(BN, D, q.dtype) if kv3d else None
    plan = _BwdPlan()
    plan.descs = _plan_descs((q, k, v, dout), [_view_spec(q, DQ_M, q_lay), _view_spec(k, BN, kv_lay, lay3),
                                               _view_spec(v, BN, kv_lay, lay3), _view_spec(dout, DQ_M, q_lay)])
    plan.grid = (cdiv(M, 2 * DQ_M), *rows_grid(B, H))
    plan.kernel = attention_bwd_dq_sm90_kernel
    plan.ints = (lse2.stride(0), lse2.stride(1), dq.stride(0), dq.stride(1), dq.stride(2),
                 M, N, H, H // HK, N - M, max(left, 0), max(right, 0), softmax_scale * LOG2E, softmax_scale)
    plan.consts = dict(HEAD_D=D, STAGES=STAGES, HAS_LO=left >= 0, HAS_HI=right >= 0, CONSUMER_REGS=CONSUMER_REGS,
                       HAS_DROPOUT=has_dropout, KV3D=kv3d, KV_LAYOUT=kv_lay if kv3d else None, HAS_ALIBI=has_alibi)
    return plan


_PLANS: dict = {}
_LAUNCHES: dict = {}


def _launch(kind, planner, tensors, outs, lse2, delta, *, softmax_scale, window, dropout_p, seed, offset, rng,
            alibi=None):
    """One dK/dV or dQ launch: its plan (cached per call shape, strides, dtype, options and the module switches
    it reads) and then the kernel, launched directly after its first call unless TILEFOLD_SM90_DIRECT_LAUNCH=0
    (forward_sm90.attention_fwd_sm90 does the same)."""
    q, k, v, dout = tensors
    assert lse2.stride(-1) == 1 and delta.stride(-1) == 1 and delta.stride()[:2] == lse2.stride()[:2]
    key = (kind, q.shape, k.shape, q.stride(), k.stride(), v.stride(), dout.stride(), lse2.stride(),
           tuple(o.stride() for o in outs), q.dtype, tuple(o.dtype for o in outs), lse2.dtype, delta.dtype, window,
           softmax_scale, dropout_p > 0, KV3D, _CFG_ENV,
           _DQ_CFG_ENV, CONSUMER_REGS, alibi is not None)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= PLANS_MAX:
            _PLANS.clear()
        plan = _PLANS[key] = planner(q, k, v, dout, lse2, *outs, softmax_scale, window, dropout_p > 0,
                                     alibi is not None)
    descs = tuple(plain_descriptor(TensorDescriptor, t, *d) for t, d in zip(tensors, plan.descs))
    # causal (an upper mask edge): the key words loaded where each mask is made (philox_torch.KEY_AT_USE: call 90,
    # 259 vs 240 TFLOP/s loaded at the start, whose extra registers spill in the causal dK/dV)
    drop = dropout_args(dropout_p, seed, offset, rng)
    alb = (alibi, alibi.stride(0)) if alibi is not None else (lse2, 0)
    args = descs + (lse2, delta) + tuple(outs) + plan.ints + drop + alb
    at_start = dropout_p > 0 and rng_ptr(rng, at_use=window[1] >= 0)
    consts = dict(plan.consts, RNG_PTR=True) if at_start else plan.consts
    if launch.DIRECT_GLUON:
        cache = _LAUNCHES.get(plan.kernel)
        if cache is None:
            cache = _LAUNCHES[plan.kernel] = LaunchCache(plan.kernel)
        cache.launch((key, *map(arg_class, drop[:4] + alb), at_start, lse2.data_ptr() % 16 == 0,
                      delta.data_ptr() % 16 == 0) + tuple(o.data_ptr() % 16 == 0 for o in outs), plan.grid, args,
                     consts, num_warps=4)
    else:
        plan.kernel[plan.grid](*args, **consts, num_warps=4)


def attention_dkdv_sm90(q, k, v, dout, lse2, delta, dk, dv, *, softmax_scale, window, dropout_p=0.0, seed=0,
                        offset=0, rng=None, alibi=None):
    """Write dK, dV (contiguous (B, N, HK, D)) of the backward whose preprocess gave lse2 / delta
    ((B, H, M) fp32, unit last stride). ``alibi``: the forward's (batch, heads) fp32 slopes or None."""
    _launch("dkdv", _dkdv_plan, (q, k, v, dout), (dk, dv), lse2, delta, softmax_scale=softmax_scale, window=window,
            dropout_p=dropout_p, seed=seed, offset=offset, rng=rng, alibi=alibi)


def attention_dq_sm90(q, k, v, dout, lse2, delta, dq, *, softmax_scale, window, dropout_p=0.0, seed=0, offset=0,
                      rng=None, alibi=None):
    """Write dQ (contiguous (B, M, H, D)) of the backward whose preprocess gave lse2 / delta."""
    _launch("dq", _dq_plan, (q, k, v, dout), (dq,), lse2, delta, softmax_scale=softmax_scale, window=window,
            dropout_p=dropout_p, seed=seed, offset=offset, rng=rng, alibi=alibi)
