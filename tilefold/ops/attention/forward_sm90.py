"""Hopper (sm_90) forward in Gluon: the same fold as forward.py, with the tensor-core schedule written
out by hand.

Why a second forward: Triton 3.6's wgmma pipeliner waits for every Q·K^T right after issuing it (its
result feeds non-dot ops), so the softmax of a tile never overlaps a tensor-core instruction, and its
warp specialization does not compile the attention loop (benchmarks/NOTES.md, "Forward"). Gluon exposes
the asynchronous warpgroup MMA, its wait with a count of groups left in flight, TMA copies and mbarriers,
so the overlap FlashAttention-3 describes (intra-warpgroup: the P·V of tile j - 1 runs while the softmax
of tile j is computed) can be stated directly:

    S_j   = Q·K_j^T          (async)
    O    += P_{j-1}·V_{j-1}   (async, issued behind S_j)
    wait until only the P·V is in flight -> softmax of S_j (m, l, P_j) while the tensor cores do P·V
    wait for the P·V -> O *= exp2(m_old - m_new)

(That is the source order. In the warp-specialized kernel's SASS (Triton 3.6, sm_90) ptxas moves the P·V wait up to
right after the score mask — the next P operand reuses the in-flight operand's registers — so within a warpgroup the
softmax runs after both products; the overlap that remains is across the two warpgroups (ping-pong), benchmarks/NOTES.md
"Where the Philox rounds run".)

One program owns BLOCK_M = 128 query rows of one (batch, head). Default ("ws", warp-specialized): two
consumer warpgroups of 64 rows each (the default partition and a 4-warp worker, 248 / 232 registers) and
a 1-warp TMA loader (24 registers). K and V tiles stream through a ring of STAGES shared-memory slots, one
"full" mbarrier per slot and operand (so Q·K_j^T starts as soon as K_j has landed) and one "empty"
mbarrier of count 2 that each warpgroup arrives on once it no longer reads the slot: no CTA-wide barrier
in the loop, so the warpgroups drift apart and one's softmax runs under the other's products. At head
dim 128 they also take turns issuing their products (ping-pong, two mbarriers). The softmax scale sits in
the exponent: row maxima of the unscaled scores and exp2(fma(s, scale, -m)). Dropout draws the Philox mask
of forward.py's kernel (philox.dropout_keep_gl) in the consumers; opt-in (MASK_WS), a fourth 4-warp partition
computes it into a shared-memory ring of byte masks instead (bitwise the same, slower on the H200: see MASK_WS).
The first version ("sync": one 8-warp partition, a CTA barrier per tile before a slot is refilled) stays for
comparison; it was 13-20% slower at head dim 128.
Tiles that the mask cuts (causal diagonal, window edges, the end of the keys) are masked at run time by
one uniform branch; every other tile runs without mask arithmetic.

Head dim 256 (warp-specialized variant only; TILEFOLD_FWD_SM90_HD256=0 keeps it on forward.py's kernel): 64-key
tiles and two slots (Q 64 KiB + 2 x (K + V) 128 KiB = 192 KiB of shared memory; offline no spills at 232 registers,
the O accumulator being 128 of them).

Scope (the launcher falls back to forward.py's kernel otherwise): CUDA capability 9.x, fp16 / bf16,
head dim 64, 128 or 256, a positive scale, fixed lengths (no cu_seqlens), no softcap, no split-KV, dropout and
ALiBi (``_alibi_tile``; TILEFOLD_FWD_SM90_ALIBI=0 opts out) only in the warp-specialized variant (returned probabilities come from a separate call of forward.py's
kernel whose out / lse are discarded); Q, K and V rows of consecutive batches evenly spaced (so a
(batch·seqlen, heads·head_dim) view exists, e.g. contiguous or packed-QKV layouts) with TMA-compatible
alignment. Rows past the end of a batch read the next batch's rows: for Q the row mask never stores
them; for K / V only when seqlen_k is a multiple of the key tile or the batch is 1 (else a V row of the
next batch, masked to probability 0, could still carry inf / NaN into 0·V), otherwise the call takes
forward.py's kernel — or, by default (KV3D; TILEFOLD_FWD_SM90_KV3D=0 opts out), the warp-specialized kernel
with K / V through rank-3 (batch, seqlen_k, heads_k·head_dim) descriptors, whose TMA copies zero-fill past
seqlen_k (call 40: 1.11–1.26x forward.py's kernel at seqlen 8020, batch 2). No interpreter runs Gluon: the CPU
tier tests the dispatch, the GPU tier the kernel (tests/ops/attention/test_forward_sm90.py).
"""
from __future__ import annotations

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

import functools
import os

from ..common import launch
from ..common.host import cdiv, rows_grid
from ..common.launch import LaunchCache, PLANS_MAX, arg_class, int_class, plain_descriptor
from ..common.philox import RNG_ARGS, dropout_args, rng_ptr
if HAVE_GLUON:
    from ..common.philox import dropout_keep_gl, rng_key_gl

LOG2E = 1.4426950408889634
BLOCK_M = 128
NUM_WARPS = 8


if HAVE_GLUON:

    @gluon.jit
    def _tile_mask(s, offs_m, n, offs_n0, seqlen_k, shift, win_left, win_right,
                   HAS_LO: gl.constexpr, HAS_HI: gl.constexpr):
        offs_n = n + offs_n0
        ok = gl.expand_dims(offs_n < seqlen_k, 0)
        if HAS_HI:
            ok = ok & (gl.expand_dims(offs_n, 0) <= gl.expand_dims(offs_m + (shift + win_right), 1))
        if HAS_LO:
            ok = ok & (gl.expand_dims(offs_n, 0) >= gl.expand_dims(offs_m + (shift - win_left), 1))
        return gl.where(ok, s, float("-inf"))

    @gluon.jit
    def _key_range(m0, rows, seqlen_k, shift, win_left, win_right,
                   BLOCK_N: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr):
        """First key (a tile multiple) and number of key tiles the query rows [m0, m0 + rows) can see."""
        n_lo = 0
        n_hi = seqlen_k
        if HAS_HI:
            n_hi = gl.minimum(n_hi, m0 + rows + shift + win_right)
        if HAS_LO:
            n_lo = gl.maximum(n_lo, m0 + shift - win_left)
            n_lo = (n_lo // BLOCK_N) * BLOCK_N
        n_hi = gl.maximum(n_hi, n_lo)
        return n_lo, (n_hi - n_lo + BLOCK_N - 1) // BLOCK_N

    @gluon.jit
    def _mask_if_cut(s, offs_m, n, offs_n0, first_row, last_row, seqlen_k, shift, win_left, win_right,
                     BLOCK_N: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr):
        """Scores of the key tile at n for rows [first_row, last_row], masked only if the tile reaches past
        the keys or crosses a mask edge of these rows (one uniform branch)."""
        need = n + BLOCK_N > seqlen_k
        if HAS_HI:
            need = need | (n + BLOCK_N - 1 > first_row + shift + win_right)
        if HAS_LO:
            need = need | (n < last_row + shift - win_left)
        if need:
            s = _tile_mask(s, offs_m, n, offs_n0, seqlen_k, shift, win_left, win_right, HAS_LO, HAS_HI)
        return s

    @gluon.jit
    def _alibi_bias(s, offs_m, n, offs_n0, shift, alibi_k):
        """ALiBi on unscaled scores: ``s - alibi_k · |i + shift - j|`` with alibi_k = slope / softmax_scale, so that
        after the softmax's scale the bias is ``-slope · |i + shift - j|`` (flash_attn's). The distance from the row
        and column index vectors converted to fp32 before the broadcast (as masks.alibi_distance)."""
        dist = gl.abs(gl.expand_dims((offs_m + shift).to(gl.float32), 1)
                      - gl.expand_dims((n + offs_n0).to(gl.float32), 0))
        return s - alibi_k * dist

    @gluon.jit
    def _alibi_tile(s, offs_m, n, offs_n0, k_cols, first_row, last_row, shift, alibi_k, BLOCK_N: gl.constexpr,
                    LINEAR: gl.constexpr):
        """ALiBi of the key tile at n as (s', row): the biased scores are ``s' - row`` (row per query row), so the
        softmax subtracts ``row`` once per row (``_softmax_first`` / ``_softmax_next`` with HAS_ROW) instead of a bias per element. With
        R = i + shift - n and C = j - n (``k_cols`` = C as fp32, loop-invariant): a tile wholly at or left of every
        row's diagonal has |R - C| = R - C, so s' = s + alibi_k · C and row = alibi_k · R (one fma per element); wholly
        at or right of it, the same with -alibi_k; a tile crossing a diagonal takes the distance per element
        (``_alibi_bias``) and row = 0. Not LINEAR: every tile takes the distance per element (row unused). Both terms stay small (C < BLOCK_N), so nothing large cancels in s'."""
        if LINEAR:
            left_of = n + BLOCK_N - 1 <= first_row + shift
            if left_of | (n >= last_row + shift):
                sk = gl.where(left_of, alibi_k, -alibi_k)
                s = gl.fma(gl.expand_dims(k_cols, 0), sk, s)
                row = (offs_m + (shift - n)).to(gl.float32) * sk
            else:
                s = _alibi_bias(s, offs_m, n, offs_n0, shift, alibi_k)
                row = offs_m.to(gl.float32) * 0.0
        else:
            s = _alibi_bias(s, offs_m, n, offs_n0, shift, alibi_k)
            row = 0.0
        return s, row

    @gluon.jit
    def _softmax_first(s, qk_scale, row, HAS_ROW: gl.constexpr):
        """The first tile's (m, l, p): m in log2 units, from the unscaled scores (scale > 0). HAS_ROW: of the scores
        ``s - row`` (row: a per-row offset, unscaled; ALiBi's ``_alibi_tile``), subtracted once per row."""
        if HAS_ROW:
            rq = row * qk_scale
            m_i = gl.max(s, axis=1) * qk_scale - rq
            m_use = gl.where(m_i == float("-inf"), 0.0, m_i)
            p = gl.exp2(gl.fma(s, qk_scale, -gl.expand_dims(m_use + rq, 1)))
        else:
            m_i = gl.max(s, axis=1) * qk_scale
            m_use = gl.where(m_i == float("-inf"), 0.0, m_i)
            p = gl.exp2(gl.fma(s, qk_scale, -gl.expand_dims(m_use, 1)))
        return m_i, gl.sum(p, axis=1), p

    @gluon.jit
    def _softmax_next(s, m_i, l_i, qk_scale, row, HAS_ROW: gl.constexpr):
        """(m, l) ⊕ tile: the new (m, l), the tile's p relative to the new m, and the accumulator's rescale.
        HAS_ROW: of the scores ``s - row`` (as _softmax_first)."""
        if HAS_ROW:
            rq = row * qk_scale
            m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale - rq)
            m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = gl.exp2(m_i - m_use)
            p = gl.exp2(gl.fma(s, qk_scale, -gl.expand_dims(m_use + rq, 1)))
        else:
            m_new = gl.maximum(m_i, gl.max(s, axis=1) * qk_scale)
            m_use = gl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = gl.exp2(m_i - m_use)
            p = gl.exp2(gl.fma(s, qk_scale, -gl.expand_dims(m_use, 1)))
        l_i = l_i * alpha + gl.sum(p, axis=1)
        return m_new, l_i, p, alpha

    @gluon.jit
    def _store_rows(acc, l_i, m_i, O, LSE, b, h, r0, offs_m, seqlen_q, stride_ob, stride_om, stride_oh,
                    stride_lb, stride_lh, out_scale, ROWS: gl.constexpr, HEAD_D: gl.constexpr,
                    ROW_O: gl.constexpr, COL_O: gl.constexpr, SCALE_OUT: gl.constexpr):
        """finalize and store rows [r0, r0 + ROWS): o = acc / l (0 for empty rows; times out_scale with
        SCALE_OUT), lse natural log (-inf for empty rows)."""
        empty = l_i == 0.0
        l_safe = gl.where(empty, 1.0, l_i)
        lse = gl.where(empty, float("-inf"), (m_i + gl.log2(l_safe)) * 0.6931471805599453)
        o = acc / gl.expand_dims(gl.convert_layout(l_safe, ROW_O), 1)
        if SCALE_OUT:
            o = o * out_scale
        rows_o = r0 + gl.arange(0, ROWS, layout=ROW_O)
        cols_o = gl.arange(0, HEAD_D, layout=COL_O)
        o_ptrs = O + b.to(gl.int64) * stride_ob + h.to(gl.int64) * stride_oh \
            + gl.expand_dims(rows_o.to(gl.int64) * stride_om, 1) + gl.expand_dims(cols_o, 0)
        gl.store(o_ptrs, o.to(O.dtype.element_ty), mask=gl.expand_dims(rows_o < seqlen_q, 1))
        l_ptrs = LSE + b.to(gl.int64) * stride_lb + h.to(gl.int64) * stride_lh + offs_m
        gl.store(l_ptrs, lse, mask=offs_m < seqlen_q)

    @gluon.jit
    def attention_fwd_sm90_kernel(
        q_desc, k_desc, v_desc, O, LSE,
        stride_ob, stride_om, stride_oh, stride_lb, stride_lh,
        seqlen_q, seqlen_k, H, GROUP, shift, win_left, win_right, qk_scale,
        BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr, STAGES: gl.constexpr,
        HAS_LO: gl.constexpr, HAS_HI: gl.constexpr, num_warps: gl.constexpr,
    ):
        BM: gl.constexpr = q_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype
        # heaviest query blocks first (causal: the last block sees the most keys)
        pid_m = gl.num_programs(0) - 1 - gl.program_id(0)
        pid_bh = gl.program_id(1) + gl.program_id(2) * gl.num_programs(1)  # host.rows_grid
        b = pid_bh // H
        h = pid_bh % H
        hk = h // GROUP
        m0 = pid_m * BM

        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                           instr_shape=[16, BLOCK_N, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[num_warps, 1],
                                                           instr_shape=[16, HEAD_D, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        col_o: gl.constexpr = gl.SliceLayout(0, o_layout)

        n_lo, num_tiles = _key_range(m0, BM, seqlen_k, shift, win_left, win_right, BLOCK_N, HAS_LO, HAS_HI)

        q_smem = gl.allocate_shared_memory(dtype, [BM, HEAD_D], q_desc.layout)
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_D], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_D], v_desc.layout)
        q_bar = gl.allocate_shared_memory(gl.int64, [1], mbarrier.MBarrierLayout())
        k_bar = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_bar = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        mbarrier.init(q_bar, count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(k_bar.index(i), count=1)
            mbarrier.init(v_bar.index(i), count=1)
        fence_async_shared()

        kv_row0 = b * seqlen_k + n_lo
        kv_col = hk * HEAD_D
        mbarrier.expect(q_bar, q_desc.block_type.nbytes)
        tma.async_copy_global_to_shared(q_desc, [b * seqlen_q + m0, h * HEAD_D], q_bar, q_smem)
        for i in gl.static_range(STAGES):
            pred = i < num_tiles
            mbarrier.expect(k_bar.index(i), k_desc.block_type.nbytes, pred=pred)
            tma.async_copy_global_to_shared(k_desc, [kv_row0 + i * BLOCK_N, kv_col], k_bar.index(i),
                                            k_smem.index(i), pred=pred)
            mbarrier.expect(v_bar.index(i), v_desc.block_type.nbytes, pred=pred)
            tma.async_copy_global_to_shared(v_desc, [kv_row0 + i * BLOCK_N, kv_col], v_bar.index(i),
                                            v_smem.index(i), pred=pred)

        offs_m = m0 + gl.arange(0, BM, layout=row_s)
        offs_n0 = gl.arange(0, BLOCK_N, layout=col_s)
        m_i = gl.full([BM], float("-inf"), gl.float32, layout=row_s)
        l_i = gl.zeros([BM], gl.float32, layout=row_s)
        acc = gl.zeros([BM, HEAD_D], gl.float32, layout=o_layout)
        s_zero = gl.zeros([BM, BLOCK_N], gl.float32, layout=s_layout)
        # a tile needs the mask if it reaches past the keys or crosses a mask edge of this block
        last_row = m0 + BM - 1
        mbarrier.wait(q_bar, 0)

        if num_tiles > 0:
            # tile 0: scores, softmax
            mbarrier.wait(k_bar.index(0), 0)
            s = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False)
            s = _mask_if_cut(s, offs_m, n_lo, offs_n0, m0, last_row, seqlen_k, shift, win_left, win_right,
                             BLOCK_N, HAS_LO, HAS_HI)
            m_i, l_i, p = _softmax_first(s, qk_scale, 0.0, False)
            p_op = gl.convert_layout(p.to(dtype), p_layout)

            for t in range(1, num_tiles):
                slot = t % STAGES
                prev = (t - 1) % STAGES
                n = n_lo + t * BLOCK_N
                mbarrier.wait(k_bar.index(slot), (t // STAGES) & 1)
                s_tok = warpgroup_mma(q_smem, k_smem.index(slot).permute((1, 0)), s_zero, use_acc=False,
                                      is_async=True)
                mbarrier.wait(v_bar.index(prev), ((t - 1) // STAGES) & 1)
                o_tok = warpgroup_mma(p_op, v_smem.index(prev), acc, is_async=True)
                # the scores are the older group: wait for them, leave the P·V in flight
                s = warpgroup_mma_wait(1, deps=(s_tok,))
                s = _mask_if_cut(s, offs_m, n, offs_n0, m0, last_row, seqlen_k, shift, win_left, win_right,
                                 BLOCK_N, HAS_LO, HAS_HI)
                m_i, l_i, p, alpha = _softmax_next(s, m_i, l_i, qk_scale, 0.0, False)
                acc = warpgroup_mma_wait(0, deps=(o_tok,))
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, row_o), 1)
                p_op = gl.convert_layout(p.to(dtype), p_layout)
                # slot `prev` (K_{t-1}, V_{t-1}) is free once both warpgroups are past this point
                gl.thread_barrier()
                nt = t - 1 + STAGES
                pred = nt < num_tiles
                mbarrier.expect(k_bar.index(prev), k_desc.block_type.nbytes, pred=pred)
                tma.async_copy_global_to_shared(k_desc, [kv_row0 + nt * BLOCK_N, kv_col], k_bar.index(prev),
                                                k_smem.index(prev), pred=pred)
                mbarrier.expect(v_bar.index(prev), v_desc.block_type.nbytes, pred=pred)
                tma.async_copy_global_to_shared(v_desc, [kv_row0 + nt * BLOCK_N, kv_col], v_bar.index(prev),
                                                v_smem.index(prev), pred=pred)

            last = num_tiles - 1
            mbarrier.wait(v_bar.index(last % STAGES), (last // STAGES) & 1)
            o_tok = warpgroup_mma(p_op, v_smem.index(last % STAGES), acc, is_async=True)
            acc = warpgroup_mma_wait(0, deps=(o_tok,))

        mbarrier.invalidate(q_bar)
        for i in gl.static_range(STAGES):
            mbarrier.invalidate(k_bar.index(i))
            mbarrier.invalidate(v_bar.index(i))

        _store_rows(acc, l_i, m_i, O, LSE, b, h, m0, offs_m, seqlen_q, stride_ob, stride_om, stride_oh,
                    stride_lb, stride_lh, 1.0, BM, HEAD_D, row_o, col_o, False)


if HAVE_GLUON:

    @gluon.jit
    def _tma_rows(desc, bar, dst, b, row, flat_row, col, RANK3: gl.constexpr):
        """Copy one tile of rows into the shared tile dst (completion on bar): RANK3, row ``row`` of batch b through
        a rank-3 (batch, seqlen, heads·head_dim) descriptor, whose copy zero-fills past the batch's end (dst taken as
        a (1, rows, head_dim) tile of the same bytes); else row ``flat_row`` (b·seqlen + row) of the flat
        (batch·seqlen, heads·head_dim) view."""
        if RANK3:
            tma.async_copy_global_to_shared(desc, [b, row, col], bar,
                                            dst._reinterpret(dst.dtype, [1, dst.shape[0], dst.shape[1]], desc.layout))
        else:
            tma.async_copy_global_to_shared(desc, [flat_row, col], bar, dst)

    @gluon.jit
    def _ws_loader(k_desc, v_desc, k_smem, v_smem, k_full, v_full, k_empty, v_empty, b, n_lo, seqlen_k, kv_col,
                   num_tiles, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, KV3D: gl.constexpr):
        """One warp: streams K and V tiles into the ring; a slot is refilled once both consumer warpgroups
        have released it (k_empty / v_empty count two arrivals). KV3D: through (batch, seqlen_k,
        heads_k·head_dim) descriptors, so a tile past seqlen_k is zero-filled by the TMA unit instead of
        reading the next batch's rows (ragged seqlen_k at batch > 1)."""
        kv_row0 = b * seqlen_k + n_lo
        for t in range(num_tiles):
            slot = t % STAGES
            if t >= STAGES:
                mbarrier.wait(k_empty.index(slot), ((t // STAGES) - 1) & 1)
            mbarrier.expect(k_full.index(slot), k_desc.block_type.nbytes)
            _tma_rows(k_desc, k_full.index(slot), k_smem.index(slot), b, n_lo + t * BLOCK_N, kv_row0 + t * BLOCK_N,
                      kv_col, KV3D)
            if t >= STAGES:
                mbarrier.wait(v_empty.index(slot), ((t // STAGES) - 1) & 1)
            mbarrier.expect(v_full.index(slot), v_desc.block_type.nbytes)
            _tma_rows(v_desc, v_full.index(slot), v_smem.index(slot), b, n_lo + t * BLOCK_N, kv_row0 + t * BLOCK_N,
                      kv_col, KV3D)

    @gluon.jit
    def _mask_tile(mask_smem, mask_full, mask_empty, t, WG: gl.constexpr, s_layout: gl.constexpr,
                   MASK_STAGES: gl.constexpr):
        """Warpgroup WG's keep mask of key tile t from the producer's ring (MASK_WS); releases the slot."""
        slot = t % MASK_STAGES
        mbarrier.wait(mask_full.index(slot), (t // MASK_STAGES) & 1)
        keep = mask_smem.index(slot * 2 + WG).load(s_layout) != 0
        gl.thread_barrier()
        mbarrier.arrive(mask_empty.index(slot), count=1)
        return keep

    @gluon.jit
    def _ws_mask(mask_smem, mask_full, mask_empty, seed_lo, seed_hi, rng_offset, drop_thr, bh, m0, n_lo, num_tiles,
                 WG_M: gl.constexpr, BLOCK_N: gl.constexpr, MASK_STAGES: gl.constexpr):
        """Dropout's mask producer (MASK_WS, 4 warps): the Philox keep mask of each key tile for both warpgroups' rows,
        computed in the consumers' score layout and written as bytes to a ring of MASK_STAGES shared slots (one
        "full" mbarrier per slot, one "empty" of count two); the consumers load it instead of running the rounds on
        their critical section."""
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_N, 16])
        offs_n0 = gl.expand_dims(gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout)), 0)
        rows0 = gl.arange(0, WG_M, layout=gl.SliceLayout(1, s_layout))
        for t in range(num_tiles):
            slot = t % MASK_STAGES
            if t >= MASK_STAGES:
                mbarrier.wait(mask_empty.index(slot), ((t // MASK_STAGES) - 1) & 1)
            for wg in gl.static_range(2):
                offs_m = gl.expand_dims(m0 + wg * WG_M + rows0, 1)
                keep = dropout_keep_gl(seed_lo, seed_hi, rng_offset, bh, offs_m, n_lo + t * BLOCK_N, offs_n0, drop_thr)
                mask_smem.index(slot * 2 + wg).store(keep.to(gl.int8))
            gl.thread_barrier()
            mbarrier.arrive(mask_full.index(slot), count=1)

    @gluon.jit
    def _ws_consumer(q_smem, q_bar, k_smem, v_smem, k_full, v_full, k_empty, v_empty, pp_bar, mask_smem, mask_full,
                     mask_empty, O, LSE,
                     stride_ob, stride_om, stride_oh, stride_lb, stride_lh, b, h, m0, n_lo, num_tiles,
                     seqlen_q, seqlen_k, shift, win_left, win_right, qk_scale,
                     seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, bh, alibi_k,
                     WG: gl.constexpr, WG_M: gl.constexpr, BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr,
                     STAGES: gl.constexpr, HAS_LO: gl.constexpr, HAS_HI: gl.constexpr, PINGPONG: gl.constexpr,
                     HAS_DROPOUT: gl.constexpr, MASK_WS: gl.constexpr, MASK_STAGES: gl.constexpr,
                     HAS_ALIBI: gl.constexpr):
        """One warpgroup: rows [m0 + WG·WG_M, + WG_M) of the block; the loop of the non-specialized kernel,
        releasing each K slot after its scores and each V slot after its P·V. HAS_ALIBI: the scores get
        ``-alibi_k · |i + shift - j|`` before the softmax (``_alibi_tile``)."""
        dtype: gl.constexpr = q_smem.dtype
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, BLOCK_N, 16])
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1],
                                                           instr_shape=[16, HEAD_D, 16])
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        col_o: gl.constexpr = gl.SliceLayout(0, o_layout)
        r0 = m0 + WG * WG_M
        q_tile = q_smem.index(WG)
        offs_m = r0 + gl.arange(0, WG_M, layout=row_s)
        offs_n0 = gl.arange(0, BLOCK_N, layout=col_s)
        m_i = gl.full([WG_M], float("-inf"), gl.float32, layout=row_s)
        l_i = gl.zeros([WG_M], gl.float32, layout=row_s)
        acc = gl.zeros([WG_M, HEAD_D], gl.float32, layout=o_layout)
        s_zero = gl.zeros([WG_M, BLOCK_N], gl.float32, layout=s_layout)
        last_row = r0 + WG_M - 1
        k_cols = offs_n0.to(gl.float32)  # ALiBi's column index C (_alibi_tile); unused without it
        # the per-row form of ALiBi where it fits the registers: at head dim 256 (the O accumulator is twice as large)
        # it spilled offline (28 LDL / STL), the per-element distance did not
        ALIBI_LINEAR: gl.constexpr = HEAD_D <= 128
        mbarrier.wait(q_bar.index(WG), 0)
        if num_tiles > 0:
            mbarrier.wait(k_full.index(0), 0)
            s = warpgroup_mma(q_tile, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False)
            gl.thread_barrier()
            mbarrier.arrive(k_empty.index(0), count=1)
            s = _mask_if_cut(s, offs_m, n_lo, offs_n0, r0, last_row, seqlen_k, shift, win_left, win_right,
                             BLOCK_N, HAS_LO, HAS_HI)
            a_row = 0.0
            if HAS_ALIBI:
                s, a_row = _alibi_tile(s, offs_m, n_lo, offs_n0, k_cols, r0, last_row, shift, alibi_k, BLOCK_N,
                                       ALIBI_LINEAR)
            m_i, l_i, p = _softmax_first(s, qk_scale, a_row, HAS_ALIBI and ALIBI_LINEAR)
            if HAS_DROPOUT:  # l counts every probability; only the kept ones reach the accumulator
                if MASK_WS:
                    keep = _mask_tile(mask_smem, mask_full, mask_empty, 0, WG, s_layout, MASK_STAGES)
                else:
                    keep = dropout_keep_gl(seed_lo, seed_hi, rng_offset, bh, gl.expand_dims(offs_m, 1), n_lo,
                                           gl.expand_dims(offs_n0, 0), drop_thr)
                p = gl.where(keep, p, qk_scale * 0.0)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            for t in range(1, num_tiles):
                slot = t % STAGES
                prev = (t - 1) % STAGES
                n = n_lo + t * BLOCK_N
                mbarrier.wait(k_full.index(slot), (t // STAGES) & 1)
                mbarrier.wait(v_full.index(prev), ((t - 1) // STAGES) & 1)
                if PINGPONG:  # take turns issuing: this warpgroup's products, then the other's
                    mbarrier.wait(pp_bar.index(WG), (t - 1) & 1)
                s_tok = warpgroup_mma(q_tile, k_smem.index(slot).permute((1, 0)), s_zero, use_acc=False,
                                      is_async=True)
                o_tok = warpgroup_mma(p_op, v_smem.index(prev), acc, is_async=True)
                if PINGPONG:
                    mbarrier.arrive(pp_bar.index(1 - WG), count=1)
                s = warpgroup_mma_wait(1, deps=(s_tok,))
                gl.thread_barrier()
                mbarrier.arrive(k_empty.index(slot), count=1)
                s = _mask_if_cut(s, offs_m, n, offs_n0, r0, last_row, seqlen_k, shift, win_left, win_right,
                                 BLOCK_N, HAS_LO, HAS_HI)
                if HAS_ALIBI:
                    s, a_row = _alibi_tile(s, offs_m, n, offs_n0, k_cols, r0, last_row, shift, alibi_k, BLOCK_N,
                                           ALIBI_LINEAR)
                m_i, l_i, p, alpha = _softmax_next(s, m_i, l_i, qk_scale, a_row, HAS_ALIBI and ALIBI_LINEAR)
                acc = warpgroup_mma_wait(0, deps=(o_tok,))
                gl.thread_barrier()
                mbarrier.arrive(v_empty.index(prev), count=1)
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, row_o), 1)
                if HAS_DROPOUT:
                    if MASK_WS:
                        keep = _mask_tile(mask_smem, mask_full, mask_empty, t, WG, s_layout, MASK_STAGES)
                    else:
                        keep = dropout_keep_gl(seed_lo, seed_hi, rng_offset, bh, gl.expand_dims(offs_m, 1), n,
                                               gl.expand_dims(offs_n0, 0), drop_thr)
                    p = gl.where(keep, p, qk_scale * 0.0)
                p_op = gl.convert_layout(p.to(dtype), p_layout)
            last = num_tiles - 1
            mbarrier.wait(v_full.index(last % STAGES), (last // STAGES) & 1)
            o_tok = warpgroup_mma(p_op, v_smem.index(last % STAGES), acc, is_async=True)
            acc = warpgroup_mma_wait(0, deps=(o_tok,))
        _store_rows(acc, l_i, m_i, O, LSE, b, h, r0, offs_m, seqlen_q, stride_ob, stride_om, stride_oh,
                    stride_lb, stride_lh, drop_rscale, WG_M, HEAD_D, row_o, col_o, HAS_DROPOUT)

    @gluon.jit(do_not_specialize=RNG_ARGS)
    def attention_fwd_sm90_ws_kernel(
        q_desc, k_desc, v_desc, O, LSE,
        stride_ob, stride_om, stride_oh, stride_lb, stride_lh,
        seqlen_q, seqlen_k, H, GROUP, shift, win_left, win_right, qk_scale,
        seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, ALIBI, stride_alb,
        BLOCK_N: gl.constexpr, HEAD_D: gl.constexpr, STAGES: gl.constexpr,
        HAS_LO: gl.constexpr, HAS_HI: gl.constexpr, CONSUMER_REGS: gl.constexpr, PINGPONG: gl.constexpr,
        HAS_DROPOUT: gl.constexpr, num_warps: gl.constexpr, KV3D: gl.constexpr = False,
        KV_LAYOUT: gl.constexpr = None, MASK_WS: gl.constexpr = False, MASK_STAGES: gl.constexpr = 2,
        MASK_REGS: gl.constexpr = 56,
        RNG_PTR: gl.constexpr = False, HAS_ALIBI: gl.constexpr = False,
    ):
        """Warp-specialized variant: two consumer warpgroups (the default partition and a 4-warp worker)
        of WG_M = 64 rows each, and a 1-warp TMA loader; no CTA-wide barrier in the loop, so the two
        warpgroups drift apart and one's softmax can run under the other's matrix products. KV3D: K / V come
        through rank-3 (batch, seqlen_k, heads_k·head_dim) descriptors (KV_LAYOUT: the 2-D shared layout of
        their tiles), so a ragged last key tile is zero-filled instead of reaching into the next batch. HAS_ALIBI:
        ALIBI (batch, heads) fp32 slopes (row stride stride_alb, 0 for one row shared by the batch): query head h's
        scores get ``-ALIBI[b, h] · |i + shift - j|`` (flash_attn's alibi_slopes; the unscaled scores get it divided by
        the softmax scale, qk_scale / log2(e))."""
        WG_M: gl.constexpr = q_desc.block_type.shape[0]
        dtype: gl.constexpr = q_desc.dtype
        pid_m = gl.num_programs(0) - 1 - gl.program_id(0)
        pid_bh = gl.program_id(1) + gl.program_id(2) * gl.num_programs(1)  # host.rows_grid
        seed_lo, seed_hi, rng_offset = rng_key_gl(seed_lo, seed_hi, rng_offset, RNG_PTR)
        b = pid_bh // H
        h = pid_bh % H
        hk = h // GROUP
        m0 = pid_m * (2 * WG_M)
        alibi_k = 0.0
        if HAS_ALIBI:
            alibi_k = gl.load(ALIBI + b.to(gl.int64) * stride_alb + h) * (1.4426950408889634 / qk_scale)
        n_lo, num_tiles = _key_range(m0, 2 * WG_M, seqlen_k, shift, win_left, win_right, BLOCK_N, HAS_LO, HAS_HI)

        q_smem = gl.allocate_shared_memory(dtype, [2, WG_M, HEAD_D], q_desc.layout)
        kv_layout: gl.constexpr = KV_LAYOUT if KV3D else k_desc.layout  # rank-3 descriptors: their tiles' 2-D layout
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_D], kv_layout)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, HEAD_D], kv_layout)
        q_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        k_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_full = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        pp_bar = gl.allocate_shared_memory(gl.int64, [2, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(2):
            mbarrier.init(q_bar.index(i), count=1)
            mbarrier.init(pp_bar.index(i), count=1)
        for i in gl.static_range(STAGES):
            mbarrier.init(k_full.index(i), count=1)
            mbarrier.init(v_full.index(i), count=1)
            mbarrier.init(k_empty.index(i), count=2)
            mbarrier.init(v_empty.index(i), count=2)
        fence_async_shared()
        if PINGPONG:
            mbarrier.arrive(pp_bar.index(0), count=1)  # warpgroup 0 issues first
        for i in gl.static_range(2):
            mbarrier.expect(q_bar.index(i), q_desc.block_type.nbytes)
            tma.async_copy_global_to_shared(q_desc, [b * seqlen_q + m0 + i * WG_M, h * HEAD_D], q_bar.index(i),
                                            q_smem.index(i))
        kv_col = hk * HEAD_D
        gl.static_assert(HAS_DROPOUT or not MASK_WS, "MASK_WS without dropout: the producer would wait forever")
        if MASK_WS:  # dropout's mask producer: a 4-warp partition filling a ring of byte masks
            mask_smem = gl.allocate_shared_memory(gl.int8, [2 * MASK_STAGES, WG_M, BLOCK_N],
                                                  gl.SwizzledSharedLayout(8, 1, 8, order=[1, 0]))
            mask_full = gl.allocate_shared_memory(gl.int64, [MASK_STAGES, 1], mbarrier.MBarrierLayout())
            mask_empty = gl.allocate_shared_memory(gl.int64, [MASK_STAGES, 1], mbarrier.MBarrierLayout())
            for i in gl.static_range(MASK_STAGES):
                mbarrier.init(mask_full.index(i), count=1)
                mbarrier.init(mask_empty.index(i), count=2)
            fence_async_shared()
        else:
            mask_smem = q_smem
            mask_full = q_bar
            mask_empty = q_bar
        # the partitions' argument tuples are spelled out in both branches: the Gluon frontend (Triton 3.6) refuses
        # them built by tuple concatenation, and a tuple bound to a variable turns its constexpr members (WG_M, ...)
        # into runtime values, which the consumer's layouts cannot take (both tried)
        if MASK_WS:
            gl.warp_specialize([
                (_ws_consumer, (q_smem, q_bar, k_smem, v_smem, k_full, v_full, k_empty, v_empty, pp_bar, mask_smem,
                                mask_full, mask_empty, O, LSE, stride_ob, stride_om, stride_oh, stride_lb, stride_lh, b,
                                h, m0, n_lo, num_tiles, seqlen_q, seqlen_k, shift, win_left, win_right, qk_scale,
                                seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh, alibi_k, 0, WG_M,
                                BLOCK_N, HEAD_D, STAGES, HAS_LO, HAS_HI, PINGPONG, HAS_DROPOUT, MASK_WS, MASK_STAGES,
                                HAS_ALIBI)),
                (_ws_consumer, (q_smem, q_bar, k_smem, v_smem, k_full, v_full, k_empty, v_empty, pp_bar, mask_smem,
                                mask_full, mask_empty, O, LSE, stride_ob, stride_om, stride_oh, stride_lb, stride_lh, b,
                                h, m0, n_lo, num_tiles, seqlen_q, seqlen_k, shift, win_left, win_right, qk_scale,
                                seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh, alibi_k, 1, WG_M,
                                BLOCK_N, HEAD_D, STAGES, HAS_LO, HAS_HI, PINGPONG, HAS_DROPOUT, MASK_WS, MASK_STAGES,
                                HAS_ALIBI)),
                (_ws_mask, (mask_smem, mask_full, mask_empty, seed_lo, seed_hi, rng_offset, drop_thr, pid_bh, m0, n_lo,
                            num_tiles, WG_M, BLOCK_N, MASK_STAGES)),
                (_ws_loader, (k_desc, v_desc, k_smem, v_smem, k_full, v_full, k_empty, v_empty, b, n_lo, seqlen_k,
                              kv_col, num_tiles, BLOCK_N, STAGES, KV3D)),
            ], [4, 4, 1], [CONSUMER_REGS, MASK_REGS, 24])
        else:
            gl.warp_specialize([
                (_ws_consumer, (q_smem, q_bar, k_smem, v_smem, k_full, v_full, k_empty, v_empty, pp_bar, mask_smem,
                                mask_full, mask_empty, O, LSE, stride_ob, stride_om, stride_oh, stride_lb, stride_lh, b,
                                h, m0, n_lo, num_tiles, seqlen_q, seqlen_k, shift, win_left, win_right, qk_scale,
                                seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh, alibi_k, 0, WG_M,
                                BLOCK_N, HEAD_D, STAGES, HAS_LO, HAS_HI, PINGPONG, HAS_DROPOUT, MASK_WS, MASK_STAGES,
                                HAS_ALIBI)),
                (_ws_consumer, (q_smem, q_bar, k_smem, v_smem, k_full, v_full, k_empty, v_empty, pp_bar, mask_smem,
                                mask_full, mask_empty, O, LSE, stride_ob, stride_om, stride_oh, stride_lb, stride_lh, b,
                                h, m0, n_lo, num_tiles, seqlen_q, seqlen_k, shift, win_left, win_right, qk_scale,
                                seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh, alibi_k, 1, WG_M,
                                BLOCK_N, HEAD_D, STAGES, HAS_LO, HAS_HI, PINGPONG, HAS_DROPOUT, MASK_WS, MASK_STAGES,
                                HAS_ALIBI)),
                (_ws_loader, (k_desc, v_desc, k_smem, v_smem, k_full, v_full, k_empty, v_empty, b, n_lo, seqlen_k,
                              kv_col, num_tiles, BLOCK_N, STAGES, KV3D)),
            ], [4, 1], [CONSUMER_REGS, 24])


def _rows_view(t):
    """(rows, cols, row_stride) of the 2-D view (batch·seqlen, heads·head_dim) of a (B, S, H, D) tensor,
    or None if its strides do not allow one."""
    B, S, H, D = t.shape
    sb, ss, sh, sd = t.stride()
    if sd != 1 or (H > 1 and sh != D) or (B > 1 and sb != S * ss) or ss < H * D:
        return None
    return B * S, H * D, ss


def supported(q, k, v, *, softcap, window, dropout_p, num_splits, varlen, shift_extra, softmax_scale=1.0,
              alibi=False) -> bool:
    """Whether the Gluon forward computes out / lse of this call (else forward.py's kernel). The kernel
    takes row maxima of the unscaled scores, so the scale must be positive. ``alibi``: slopes given (the
    warp-specialized kernel takes them unless TILEFOLD_FWD_SM90_ALIBI=0)."""
    if not HAVE_GLUON or varlen or softcap > 0 or num_splits > 1 or not softmax_scale > 0:
        return False
    if alibi and not (ALIBI and VARIANT == "ws"):
        return False
    if dropout_p > 0 and not (DROPOUT and VARIANT == "ws"):
        return False
    if shift_extra != 0 or q.device.type != "cuda" or q.dtype not in (torch.float16, torch.bfloat16):
        return False
    dims = (64, 128, 256) if HD256 and VARIANT == "ws" else (64, 128)
    if q.dim() != 4 or q.shape[-1] not in dims or k.dtype != q.dtype or v.dtype != q.dtype:
        return False
    if _major(q.device.index if q.device.index is not None else torch.cuda.current_device()) != 9:
        return False
    return _layout_ok(q, k, v)


def _layout_ok(q, k, v) -> bool:
    """The shape / stride / alignment half of ``supported`` (no device query)."""
    views = [_rows_view(t) for t in (q, k, v)]
    if any(vw is None for vw in views):
        return False
    es = q.element_size()
    for t, (_, _, rs) in zip((q, k, v), views):
        if t.data_ptr() % 16 or (rs * es) % 16:
            return False
    B, M, N = q.shape[0], q.shape[1], k.shape[1]
    if min(B, M, q.shape[2], N) == 0 or B * M >= 2 ** 31 or B * N >= 2 ** 31:  # TMA coordinates are int32
        return False
    # K / V tiles are read through the (batch·seqlen_k) view: with seqlen_k not a multiple of the key tile, the
    # last tile of batch b reaches into batch b + 1's rows; their scores are masked, but an inf / NaN in
    # their V rows would still reach batch b's output through 0·V. Such calls take forward.py's kernel
    # (whose per-(batch, head) descriptors zero-fill past seqlen_k), unless KV3D: then K / V come through
    # (batch, seqlen_k, heads_k·head_dim) descriptors, which zero-fill past seqlen_k too.
    return B == 1 or N % _config(q.shape[-1])[0] == 0 or (KV3D and VARIANT == "ws")


@functools.lru_cache(maxsize=None)
def _smem_layout(rows: int, D: int, dtype: torch.dtype):
    """The TMA / wgmma shared-memory layout of a (rows, D) tile (~8 us per call to build: cached)."""
    return gl.NVMMASharedLayout.get_default_for([rows, D], gl.bfloat16 if dtype == torch.bfloat16 else gl.float16)


@functools.lru_cache(maxsize=None)
def _smem_layout3(rows: int, D: int, dtype: torch.dtype):
    """The rank-3 layout of a (1, rows, D) tile: the same bytes and swizzle as _smem_layout(rows, D)."""
    return gl.NVMMASharedLayout.get_default_for([1, rows, D], gl.bfloat16 if dtype == torch.bfloat16 else gl.float16)


@functools.lru_cache(maxsize=None)
def _major(index: int) -> int:
    return torch.cuda.get_device_capability(index)[0]


_CFG_ENV = os.environ.get("TILEFOLD_FWD_SM90_CFG", "")  # "BLOCK_N,STAGES" for sweeps


def _config(D: int):
    # (BLOCK_N, STAGES): shared memory 2 x Q (64 rows) + STAGES x (K + V). Call 27 (H200, bf16, 8k/16k):
    # 128,2 beat 128,3 for both head dims (hd128 582 vs 570 TFLOP/s non-causal 8k). Head dim 256: 64,2 is
    # what fits (196,608 B; 64,3 needs 262,144, 128,2 327,680; 128,1 fits but spills)
    if _CFG_ENV:
        bn, st = _override(_CFG_ENV)
        if _smem(bn, st, D) <= SMEM_MAX:
            return bn, st
        if D != 256:
            raise ValueError(f"TILEFOLD_FWD_SM90_CFG: ({bn}, {st}) needs {_smem(bn, st, D)} bytes of shared memory "
                             f"at head dim {D}, more than {SMEM_MAX}")
        # head dim 256: an hd 64 / 128 sweep's tile that cannot fit here leaves hd256 at its own tile
    return (64, 2) if D == 256 else (128, 2)


def _smem(bn: int, st: int, D: int) -> int:
    return 2 * 64 * D * 2 + st * 2 * bn * D * 2


SMEM_MAX = 232448 - 2048  # an sm_90 program's shared memory, less what the barriers and alignment take


@functools.lru_cache(maxsize=None)
def _override(text: str):
    """TILEFOLD_FWD_SM90_CFG = "BLOCK_N,STAGES" (for sweeps), parsed and range-checked; _config checks that it
    fits the head dim's shared memory (a tile that does not fit would fail to compile)."""
    try:
        bn, st = (int(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"TILEFOLD_FWD_SM90_CFG: expected two integers BLOCK_N,STAGES, got {text!r}") from None
    if bn < 16 or bn > 128 or bn & (bn - 1) or st < 1:
        raise ValueError(f"TILEFOLD_FWD_SM90_CFG: expected BLOCK_N a power of two in [16, 128] and STAGES >= 1, "
                         f"got {text!r}")
    return bn, st


# head dim 256 in the warp-specialized kernel; "0" keeps it on forward.py's kernel
HD256 = os.environ.get("TILEFOLD_FWD_SM90_HD256", "1") != "0"

# ragged seqlen_k at batch > 1 in the warp-specialized kernel, K / V through rank-3 descriptors (zero-filled past
# seqlen_k); on by default since its first GPU run passed (call 40, 2026-12-04); "0" sends such calls to
# forward.py's kernel
KV3D = os.environ.get("TILEFOLD_FWD_SM90_KV3D", "1") != "0"


# "ws": warp-specialized (two consumer warpgroups + a TMA warp); "sync": one 8-warp partition with a CTA
# barrier per tile (v1)
VARIANT = os.environ.get("TILEFOLD_FWD_SM90_VARIANT", "ws")
CONSUMER_REGS = 232
# dropout in the warp-specialized kernel (the same Philox mask as forward.py's kernel); "0" sends dropout
# calls to forward.py's kernel
DROPOUT = os.environ.get("TILEFOLD_FWD_SM90_DROPOUT", "1") == "1"
# ping-pong of the two warpgroups' products: +1-4% at hd128, -2 to -5% at hd64 (call 27), at hd256 within
# -2.3% / +0.8% (call 37: 8k 638 / 583 with it, 640 / 596 without; 16k 633 / 628, 634 / 623); "1"/"0" force it
_PP_ENV = os.environ.get("TILEFOLD_FWD_SM90_PINGPONG", "auto")
PINGPONG = None if _PP_ENV == "auto" else _PP_ENV == "1"
PINGPONG_DIMS = (128,)  # head dims that ping-pong under "auto"
# dropout's keep mask from a fourth partition (_ws_mask, 4 warps, MASK_REGS registers) through a ring of byte
# masks in shared memory, instead of the Philox rounds on the consumers' critical section; head dims <= 128 (at
# 256 the O accumulator leaves no registers for it). Opt-in ("1"): correct (bitwise the same output), but slower
# on the H200 (call 53, hd128 8k: 348 / 307 TFLOP/s non-causal / causal against 436 / 404 with the rounds in the
# consumers; one producer warp per SM sub-partition does not keep up; benchmarks/NOTES.md)
MASK_WS = os.environ.get("TILEFOLD_FWD_SM90_MASK_WS", "0") == "1"
# ALiBi (alibi_slopes) in the warp-specialized kernel; "0" sends ALiBi calls to forward.py's kernel
ALIBI = os.environ.get("TILEFOLD_FWD_SM90_ALIBI", "1") != "0"
MASK_STAGES = 2
# registers with the producer (setmaxnreg in the PTX; the 1-warp loader is padded to a warpgroup): worker consumer 224,
# producer 56, loader 24, and the default-partition consumer gets the rest, 208 (128 x (208 + 224 + 56 + 24) = 65536);
# offline no spills anywhere (at 232 / 40 the producer spilled ~30 values per tile). Measured as such in call 53.
MASK_REGS = 56
MASK_CONSUMER_REGS = 224


class _FwdPlan:
    """What a forward launch needs besides the tensors, for one call shape (see attention_fwd_sm90)."""
    __slots__ = ("grid", "descs", "ints", "consts", "out_shape", "lse_shape")


def _view_spec(t, blk, lay, lay3=None):
    """(shape, strides, block, layout) of a descriptor over t's (batch·seqlen, heads·head_dim) view with blk-row
    boxes, or, given the rank-3 layout lay3, over its (batch, seqlen, heads·head_dim) view with (1, blk, head_dim)
    boxes, whose copies zero-fill past each batch's seqlen (KV3D)."""
    rows, cols, rs = _rows_view(t)
    D = t.shape[-1]
    if lay3 is None:
        return [rows, cols], [rs, 1], [blk, D], lay
    B, S = t.shape[0], t.shape[1]
    return [B, S, cols], [S * rs, rs, 1], [1, blk, D], lay3


def _plan_descs(tensors, specs):
    """Descriptor specs (shape, strides, block, layout), checked once by Gluon's TensorDescriptor (rank, alignment,
    block shape, layout type) on the plan's first tensors; per call only the base tensor changes
    (launch.plain_descriptor)."""
    for t, (shape, strides, blk, lay) in zip(tensors, specs):
        TensorDescriptor(t, shape, strides, blk, lay)
    return tuple(specs)


def _fwd_plan(q, k, v, softmax_scale, window, has_dropout, has_alibi=False):
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    left, right = window
    BLOCK_N, STAGES = _config(D)
    ws = VARIANT == "ws"
    q_rows = BLOCK_M // 2 if ws else BLOCK_M
    q_lay = _smem_layout(q_rows, D, q.dtype)
    kv_lay = _smem_layout(BLOCK_N, D, q.dtype)
    plan = _FwdPlan()
    kv3d = ws and B > 1 and N % BLOCK_N != 0  # only reached with KV3D (_layout_ok)
    lay3 = _smem_layout3(BLOCK_N, D, q.dtype) if kv3d else None
    plan.descs = _plan_descs((q, k, v), [_view_spec(q, q_rows, q_lay), _view_spec(k, BLOCK_N, kv_lay, lay3),
                                         _view_spec(v, BLOCK_N, kv_lay, lay3)])
    plan.out_shape, plan.lse_shape = (B, M, H, D), (B, H, M)
    # out is contiguous (B, M, H, D), lse (B, H, M)
    plan.ints = (M * H * D, H * D, D, H * M, M,
                 M, N, H, H // HK, N - M, max(left, 0), max(right, 0), softmax_scale * LOG2E)
    plan.grid = (cdiv(M, BLOCK_M), *rows_grid(B, H))
    mask_ws = (has_dropout and MASK_WS and D <= 128
               and _smem(BLOCK_N, STAGES, D) + 2 * MASK_STAGES * (BLOCK_M // 2) * BLOCK_N <= SMEM_MAX)
    if ws:
        plan.consts = dict(HAS_DROPOUT=has_dropout, BLOCK_N=BLOCK_N, HEAD_D=D, STAGES=STAGES, HAS_LO=left >= 0,
                           HAS_HI=right >= 0, CONSUMER_REGS=MASK_CONSUMER_REGS if mask_ws else CONSUMER_REGS,
                           PINGPONG=(D in PINGPONG_DIMS) if PINGPONG is None else PINGPONG,
                           KV3D=kv3d, KV_LAYOUT=kv_lay if kv3d else None, MASK_WS=mask_ws,
                           MASK_STAGES=MASK_STAGES, MASK_REGS=MASK_REGS, HAS_ALIBI=has_alibi)
    else:
        plan.consts = dict(BLOCK_N=BLOCK_N, HEAD_D=D, STAGES=STAGES, HAS_LO=left >= 0, HAS_HI=right >= 0)
    return plan


_FWD_PLANS: dict = {}
if HAVE_GLUON:
    _FWD_LAUNCH = LaunchCache(attention_fwd_sm90_ws_kernel)


def attention_fwd_sm90(q, k, v, *, softmax_scale, window, dropout_p=0.0, seed=0, offset=0, rng=None, alibi=None):
    """out (contiguous, like q) and lse (B, H, M) fp32: the kernel writes both with unit last-dim stride.

    Host path: everything that is a function of the call's shapes, strides, dtype and options (grid, integer
    arguments, descriptor shapes and layouts, constexprs) is a plan cached per such key; per call only the
    descriptors' base tensors, out / lse and the dropout seed change. The warp-specialized kernel is then launched
    directly (LaunchCache, keyed by the plan and the dropout integers' specialization classes) unless
    TILEFOLD_SM90_DIRECT_LAUNCH=0. ``alibi``: fp32 (batch, heads) slopes with unit column stride, or None (the
    warp-specialized kernel only)."""
    ws = VARIANT == "ws"
    # every module switch the plan reads is in the key (tests and sweeps change them between calls)
    key = (q.shape, k.shape, v.shape, q.stride(), k.stride(), v.stride(), q.dtype, window, softmax_scale,
           dropout_p > 0, VARIANT, KV3D, PINGPONG, _CFG_ENV, CONSUMER_REGS, MASK_WS, MASK_REGS, MASK_CONSUMER_REGS,
           MASK_STAGES, alibi is not None, ALIBI)
    plan = _FWD_PLANS.get(key)
    if plan is None:
        if len(_FWD_PLANS) >= PLANS_MAX:
            _FWD_PLANS.clear()
        plan = _FWD_PLANS[key] = _fwd_plan(q, k, v, softmax_scale, window, dropout_p > 0, alibi is not None)
    descs = [plain_descriptor(TensorDescriptor, t, *d) for t, d in zip((q, k, v), plan.descs)]
    out = torch.empty(plan.out_shape, device=q.device, dtype=q.dtype)
    lse = torch.empty(plan.lse_shape, device=q.device, dtype=torch.float32)
    args = (descs[0], descs[1], descs[2], out, lse) + plan.ints
    if ws:
        drop = dropout_args(dropout_p, seed, offset, rng)
        drop = drop + ((alibi, alibi.stride(0)) if alibi is not None else (lse, 0))
        consts = dict(plan.consts, RNG_PTR=True) if dropout_p > 0 and rng_ptr(rng) else plan.consts
        if launch.DIRECT_GLUON:  # the classes of the key words' pointer (or ints) and of the slopes' pointer / stride
            _FWD_LAUNCH.launch((key, *map(arg_class, drop[:4] + drop[5:]), consts is not plan.consts), plan.grid, args + drop,
                               consts,
                               num_warps=4)
        else:
            attention_fwd_sm90_ws_kernel[plan.grid](*args, *drop, **consts, num_warps=4)
    else:
        attention_fwd_sm90_kernel[plan.grid](*args, **plan.consts, num_warps=NUM_WARPS)
    return out, lse
