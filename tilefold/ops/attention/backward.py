"""Backward kernels of exact attention. Nothing N×N is stored: P is recomputed tile by tile from the
saved lse.

- ``attention_bwd_preprocess_kernel``: delta = rowsum(dO ∘ O) and lse in log2 units with empty rows
  mapped to +inf (so their recomputed P is 0, never NaN).
- ``attention_bwd_dkdv_kernel``: one program per (key block, key head): folds the query tiles of every
  query head of its GQA group that see the block, so dK/dV are summed over the group in registers
  (no atomics: deterministic). ``SPLIT_D = 2``: two programs per block, each owning half of the head
  dim's dK/dV columns (S and dP still over the full head dim): half the accumulators, for head dim 256.
- ``attention_bwd_dq_kernel``: one program per (query block, head): folds the key tiles the mask lets
  it see (the forward's tile walk) into dQ. Deterministic too.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import backward_sm90 as _sm90
from . import config as _cfg
from ..common.fold import LOG2E, score_transform
from ..common.masks import alibi_distance, block_order, grid_row, key_tiles, query_tiles, sequence_bounds, visible
from ..common import launch as _launch
from ..common.host import cdiv, rows_grid
from ..common.philox import RNG_ARGS, dropout_args, dropout_keep, rng_key, rng_ptr
from ..common.tma import ensure_allocator, load_kv_tile, rows_descriptor, tma_ok


@triton.jit
def attention_bwd_preprocess_kernel(
    O, DO, LSE, DLSE, DELTA, LSE2,
    stride_ob, stride_om, stride_oh,
    stride_dob, stride_dom, stride_doh,
    stride_lb, stride_lh, stride_lm,
    cu_seqlens_q, seqlen_q_fixed, H, D,
    dlse_plane,
    BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, IS_VARLEN: tl.constexpr, HAS_DLSE: tl.constexpr,
    EXACT_DELTA: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_bh, _ = grid_row(1)
    b = pid_bh // H
    h = pid_bh % H
    q_start, seqlen_q, _, _ = sequence_bounds(cu_seqlens_q, cu_seqlens_q, b, seqlen_q_fixed, seqlen_q_fixed,
                                              IS_VARLEN)
    m0 = pid_m * BLOCK_M
    if m0 >= seqlen_q:
        return
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < seqlen_q) & (offs_d[None, :] < D)
    o = tl.load(O + b.to(tl.int64) * stride_ob + q_start.to(tl.int64) * stride_om + h * stride_oh
                + offs_m[:, None] * stride_om + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    do = tl.load(DO + b.to(tl.int64) * stride_dob + q_start.to(tl.int64) * stride_dom + h * stride_doh
                 + offs_m[:, None] * stride_dom + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    if EXACT_DELTA:
        # fp32: delta_i = sum_d dO[i,d] O[i,d] by the same sequential FMA chain as the backward kernels'
        # dP = dO V^T (the diagonal of an ieee dot), so a row that sees a single key (O = V bit for bit)
        # gets dP - delta = 0 exactly, as torch's softmax backward does; a tree sum here left ~1e-6
        # per row, which summed over ~1000 rows into dK (seqlen_k = 1) broke the 2x rule
        dd = tl.dot(do, tl.trans(o), input_precision="ieee")
        delta = tl.sum(tl.where(offs_m[:, None] == offs_m[None, :], dd, 0.0), 1)
    else:
        delta = tl.sum(o * do, 1)
    l_off = b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + (q_start + offs_m).to(tl.int64) * stride_lm
    lse = tl.load(LSE + l_off, mask=offs_m < seqlen_q, other=0.0)
    lse2 = tl.where(lse == float("-inf"), float("inf"), lse * LOG2E)
    if HAS_DLSE:
        # a gradient flowing into lse adds P * dlse to dS: fold it into delta (fp32: kept apart in a
        # second plane of DELTA and added after dP - delta, so the exact cancellation above survives)
        dlse = tl.load(DLSE + l_off, mask=offs_m < seqlen_q, other=0.0)
        if EXACT_DELTA:
            tl.store(DELTA + dlse_plane + l_off, dlse, mask=offs_m < seqlen_q)
        else:
            delta -= dlse
    tl.store(DELTA + l_off, delta, mask=offs_m < seqlen_q)
    tl.store(LSE2 + l_off, lse2, mask=offs_m < seqlen_q)


@triton.jit
def _kahan_add(total, comp, x):
    """total + x with the rounding error carried in comp (Kahan). fp32 inputs: dK/dV/dQ sum one product
    per query (key) row, thousands in a chain (seqlen_q 1023 x 4 heads of a GQA group), and a plain
    chain's rounding broke the 2x rule against cuBLAS's blocked sums; a tile's own dot starts from zero
    and its sum is added compensated. (``x - comp`` first, so Triton cannot fold the add into the dot's
    accumulator.)"""
    y = x - comp
    t = total + y
    comp = (t - total) - y
    return t, comp


@triton.jit
def _probs_t(k, qT, k_o, qT_o, lse2, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP: tl.constexpr,
             DOT_PREC: tl.constexpr, SPLIT_D: tl.constexpr, alibi_slope, offs_n, offs_m, shift,
             HAS_ALIBI: tl.constexpr):
    """Recompute P^T [BN, BM] (and the softcap's tanh, for its derivative) from K and Q^T (SPLIT_D = 2:
    the program's own head-dim half k, qT plus the other half k_o, qT_o); HAS_ALIBI: with the forward's bias."""
    qkT = tl.dot(k, qT, input_precision=DOT_PREC)
    if SPLIT_D > 1:
        qkT = tl.dot(k_o, qT_o, qkT, input_precision=DOT_PREC)
    sT, t = score_transform(qkT, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP)
    if HAS_ALIBI:
        sT = sT - alibi_slope * alibi_distance(offs_n, offs_m, -shift)  # key-major: |j - shift - i| = |i + shift - j|
    pT = tl.math.exp2(sT - lse2[None, :])
    return pT, t


@triton.jit
def _load_q_do(q_ptrs, do_ptrs, q_desc, do_desc, start_m, col, offs_m, offs_d, seqlen_q, D,
               MASKED: tl.constexpr, EVEN_D: tl.constexpr, USE_TMA: tl.constexpr):
    """Q^T [BD', BM] and dO [BM, BD'] of one query tile at head-dim columns offs_d (= col + arange)."""
    if USE_TMA:
        # the descriptors zero-fill rows >= seqlen_q and columns >= D
        qT = tl.trans(q_desc.load([start_m, col]))
        do = do_desc.load([start_m, col])
    elif MASKED:
        row_ok = offs_m < seqlen_q
        if EVEN_D:
            qd_mask = row_ok[None, :]
            do_mask = row_ok[:, None]
        else:
            qd_mask = row_ok[None, :] & (offs_d[:, None] < D)
            do_mask = row_ok[:, None] & (offs_d[None, :] < D)
        qT = tl.load(q_ptrs, mask=qd_mask, other=0.0)
        do = tl.load(do_ptrs, mask=do_mask, other=0.0)
    elif EVEN_D:
        qT = tl.load(q_ptrs)
        do = tl.load(do_ptrs)
    else:
        qT = tl.load(q_ptrs, mask=offs_d[:, None] < D, other=0.0)
        do = tl.load(do_ptrs, mask=offs_d[None, :] < D, other=0.0)
    return qT, do


@triton.jit
def _dkdv_tiles(dk, dv, dkc, dvc, k, v, k_o, v_o, q_ptrs, do_ptrs, q_ptrs_o, do_ptrs_o, q_desc, do_desc,
                lse2_ptrs, delta_ptrs, stride_qm, stride_dom, stride_lm,
                offs_n, offs_m0, offs_d, offs_do, c_own, c_oth, m_lo, m_hi, seqlen_q, seqlen_k, shift,
                win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
                BLOCK_M: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr,
                HAS_LO: tl.constexpr, HAS_HI: tl.constexpr, HAS_SOFTCAP: tl.constexpr, DOT_PREC: tl.constexpr,
                seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, bh, n0,
                BLOCK_N: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_TMA: tl.constexpr,
                COMPENSATED: tl.constexpr, dlse_plane, SEP_DLSE: tl.constexpr, SPLIT_D: tl.constexpr,
                full_lo=0, full_hi=0, RUNTIME_MASK: tl.constexpr = False, EVEN_M: tl.constexpr = False,
                alibi_slope=0.0, HAS_ALIBI: tl.constexpr = False):
    """Fold query tiles [m_lo, m_hi) into dK, dV (columns offs_d). RUNTIME_MASK (with MASKED): tiles
    starting in [full_lo, full_hi) are fully visible and skip the mask (one loop instead of three).
    SPLIT_D = 2: S and dP also take the other head-dim half (k_o, v_o and the *_o pointers / column c_oth); dK, dV only the own half.
    EVEN_M: every query tile lies inside seqlen_q (fixed length, a multiple of BLOCK_M), so even a masked
    tile loads its rows without bounds; only the visibility mask remains."""
    q_ptrs += m_lo.to(tl.int64) * stride_qm
    do_ptrs += m_lo.to(tl.int64) * stride_dom
    q_ptrs_o += m_lo.to(tl.int64) * stride_qm
    do_ptrs_o += m_lo.to(tl.int64) * stride_dom
    lse2_ptrs += m_lo.to(tl.int64) * stride_lm
    delta_ptrs += m_lo.to(tl.int64) * stride_lm
    for start_m in range(m_lo, m_hi, BLOCK_M):
        offs_m = start_m + offs_m0
        qT, do = _load_q_do(q_ptrs, do_ptrs, q_desc, do_desc, start_m, c_own, offs_m, offs_d, seqlen_q, D,
                            MASKED and not EVEN_M, EVEN_D, USE_TMA)
        if SPLIT_D > 1:
            qT_o, do_o = _load_q_do(q_ptrs_o, do_ptrs_o, q_desc, do_desc, start_m, c_oth, offs_m, offs_do,
                                    seqlen_q, D, MASKED and not EVEN_M, EVEN_D, USE_TMA)
        else:
            qT_o = qT
            do_o = do
        if MASKED and not EVEN_M:
            row_ok = offs_m < seqlen_q
            lse2 = tl.load(lse2_ptrs, mask=row_ok, other=float("inf"))
            delta = tl.load(delta_ptrs, mask=row_ok, other=0.0)
        else:
            lse2 = tl.load(lse2_ptrs)
            delta = tl.load(delta_ptrs)
        if SEP_DLSE:
            if MASKED and not EVEN_M:
                dl = tl.load(delta_ptrs + dlse_plane, mask=offs_m < seqlen_q, other=0.0)
            else:
                dl = tl.load(delta_ptrs + dlse_plane)
        pT, t = _probs_t(k, qT, k_o, qT_o, lse2, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP, DOT_PREC,
                         SPLIT_D, alibi_slope, offs_n, offs_m, shift, HAS_ALIBI)
        if RUNTIME_MASK:
            if (start_m < full_lo) | (start_m >= full_hi):
                okT = tl.trans(visible(offs_m, offs_n, seqlen_k, shift, win_left, win_right, HAS_LO, HAS_HI))
                pT = tl.where(okT, pT, 0.0)
        elif MASKED:
            okT = tl.trans(visible(offs_m, offs_n, seqlen_k, shift, win_left, win_right, HAS_LO, HAS_HI))
            pT = tl.where(okT, pT, 0.0)
        dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        if SPLIT_D > 1:
            dpT = tl.dot(v_o, tl.trans(do_o), dpT, input_precision=DOT_PREC)
        if HAS_DROPOUT:
            # the regenerated mask rides in the sign bit of one tile: its positive part feeds dV,
            # its magnitude dS = P * (dP_kept - delta)
            # generated directly key-major (rows = keys, columns = queries): no transpose
            keepT = dropout_keep(seed_lo, seed_hi, rng_offset, bh, start_m, offs_m0[None, :], n0,
                                 tl.arange(0, BLOCK_N)[:, None], drop_thr)
            pT = tl.where(keepT, pT, -pT)
            pvT = tl.maximum(pT, 0.0) * drop_rscale
            dsT = tl.abs(pT) * (tl.where(pT > 0.0, dpT * drop_rscale, 0.0) - delta[None, :])
        else:
            pvT = pT
            dsT = pT * (dpT - delta[None, :])
        if SEP_DLSE:
            dsT = dsT + tl.abs(pT) * dl[None, :]
        if HAS_SOFTCAP:
            dsT = dsT * (1.0 - t * t)
        if COMPENSATED:
            dv, dvc = _kahan_add(dv, dvc, tl.dot(pvT.to(do.dtype), do, input_precision=DOT_PREC))
            dk, dkc = _kahan_add(dk, dkc, tl.dot(dsT.to(qT.dtype), tl.trans(qT), input_precision=DOT_PREC))
        else:
            dv = tl.dot(pvT.to(do.dtype), do, dv, input_precision=DOT_PREC)
            dk = tl.dot(dsT.to(qT.dtype), tl.trans(qT), dk, input_precision=DOT_PREC)
        q_ptrs += BLOCK_M * stride_qm
        do_ptrs += BLOCK_M * stride_dom
        q_ptrs_o += BLOCK_M * stride_qm
        do_ptrs_o += BLOCK_M * stride_dom
        lse2_ptrs += BLOCK_M * stride_lm
        delta_ptrs += BLOCK_M * stride_lm
    return dk, dv, dkc, dvc


@triton.jit(do_not_specialize=RNG_ARGS)
def attention_bwd_dkdv_kernel(
    Q, K, V, DO, LSE2, DELTA, DK, DV,
    stride_qb, stride_qm, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_dob, stride_dom, stride_doh,
    stride_lb, stride_lh, stride_lm,
    stride_dkb, stride_dkn, stride_dkh,
    stride_dvb, stride_dvn, stride_dvh,
    cu_seqlens_q, cu_seqlens_k,
    seqlen_q_fixed, seqlen_k_fixed, shift_extra, win_left, win_right,
    sm_scale, qk_scale, softcap_pre, softcap_post,
    seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale,
    HK, GROUP, D, dlse_plane, ALIBI, stride_alb,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    IS_VARLEN: tl.constexpr, HAS_LO: tl.constexpr, HAS_HI: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, EVEN_D: tl.constexpr, DOT_PREC: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    USE_TMA: tl.constexpr, COMPENSATED: tl.constexpr, SEP_DLSE: tl.constexpr, LPT: tl.constexpr,
    SPLIT_D: tl.constexpr, ONE_LOOP: tl.constexpr = False, EVEN_M: tl.constexpr = False,
    RNG_PTR: tl.constexpr = False, HAS_ALIBI: tl.constexpr = False,
):
    # the first key blocks see the most queries under a causal mask: they go first
    # SPLIT_D = 2: axis 0 is (key block, head-dim half), the two halves of a block adjacent (they read
    # the same K, V, Q, dO tiles, from L2); each computes S and dP over the full head dim but accumulates
    # and stores only its half of dK and dV (half the accumulator registers, 1.5x the matmuls)
    pid_x, pid_bh, _ = block_order(LPT, False, 1)
    seed_lo, seed_hi, rng_offset = rng_key(seed_lo, seed_hi, rng_offset, RNG_PTR)
    pid_n = pid_x // SPLIT_D
    half = pid_x % SPLIT_D
    b = pid_bh // HK
    hk = pid_bh % HK
    q_start, seqlen_q, k_start, seqlen_k = sequence_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q_fixed,
                                                           seqlen_k_fixed, IS_VARLEN)
    n0 = pid_n * BLOCK_N
    if n0 >= seqlen_k:
        return
    shift = seqlen_k - seqlen_q + shift_extra
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_m0 = tl.arange(0, BLOCK_M)
    c_own = half * (BLOCK_D // SPLIT_D)
    c_oth = (1 - half) * (BLOCK_D // SPLIT_D)
    offs_d = c_own + tl.arange(0, BLOCK_D // SPLIT_D)
    offs_do = c_oth + tl.arange(0, BLOCK_D // SPLIT_D)
    k_rows = K + b.to(tl.int64) * stride_kb + (k_start + offs_n[:, None]).to(tl.int64) * stride_kn + hk * stride_kh
    v_rows = V + b.to(tl.int64) * stride_vb + (k_start + offs_n[:, None]).to(tl.int64) * stride_vn + hk * stride_vh
    kv_mask = offs_n[:, None] < seqlen_k
    if not EVEN_D:
        kv_mask = kv_mask & (offs_d[None, :] < D)
    k = tl.load(k_rows + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(v_rows + offs_d[None, :], mask=kv_mask, other=0.0)
    if SPLIT_D > 1:
        kv_mask_o = offs_n[:, None] < seqlen_k
        if not EVEN_D:
            kv_mask_o = kv_mask_o & (offs_do[None, :] < D)
        k_o = tl.load(k_rows + offs_do[None, :], mask=kv_mask_o, other=0.0)
        v_o = tl.load(v_rows + offs_do[None, :], mask=kv_mask_o, other=0.0)
    else:
        k_o = k
        v_o = v
    dk = tl.zeros([BLOCK_N, BLOCK_D // SPLIT_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D // SPLIT_D], dtype=tl.float32)
    if COMPENSATED:
        dkc = tl.zeros([BLOCK_N, BLOCK_D // SPLIT_D], dtype=tl.float32)
        dvc = tl.zeros([BLOCK_N, BLOCK_D // SPLIT_D], dtype=tl.float32)
    else:
        dkc = 0.0
        dvc = 0.0
    m_start, f_lo, f_hi, m_end = query_tiles(n0, seqlen_q, seqlen_k, shift, win_left, win_right,
                                             BLOCK_M, BLOCK_N, HAS_LO, HAS_HI)
    for g in range(0, GROUP):
        h = hk * GROUP + g
        alibi_slope = 0.0
        if HAS_ALIBI:
            alibi_slope = tl.load(ALIBI + b.to(tl.int64) * stride_alb + h) * LOG2E
        q_ptrs = Q + b.to(tl.int64) * stride_qb + q_start.to(tl.int64) * stride_qm + h.to(tl.int64) * stride_qh \
            + offs_m0[None, :] * stride_qm + offs_d[:, None]
        do_ptrs = DO + b.to(tl.int64) * stride_dob + q_start.to(tl.int64) * stride_dom + h.to(tl.int64) * stride_doh \
            + offs_m0[:, None] * stride_dom + offs_d[None, :]
        q_ptrs_o = q_ptrs + (c_oth - c_own)
        do_ptrs_o = do_ptrs + (c_oth - c_own)
        l_off = b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + q_start.to(tl.int64) * stride_lm \
            + offs_m0 * stride_lm
        lse2_ptrs = LSE2 + l_off
        delta_ptrs = DELTA + l_off
        if USE_TMA:
            q_desc = rows_descriptor(
                Q + b.to(tl.int64) * stride_qb + q_start.to(tl.int64) * stride_qm + h.to(tl.int64) * stride_qh,
                seqlen_q, D, stride_qm, BLOCK_M, BLOCK_D // SPLIT_D)
            do_desc = rows_descriptor(
                DO + b.to(tl.int64) * stride_dob + q_start.to(tl.int64) * stride_dom + h.to(tl.int64) * stride_doh,
                seqlen_q, D, stride_dom, BLOCK_M, BLOCK_D // SPLIT_D)
        else:
            q_desc = Q
            do_desc = DO
        # ONE_LOOP: the first fold covers every query tile, masking at run time those outside [f_lo, f_hi)
        m_hi1 = m_end if ONE_LOOP else f_lo
        dk, dv, dkc, dvc = _dkdv_tiles(dk, dv, dkc, dvc, k, v, k_o, v_o, q_ptrs, do_ptrs, q_ptrs_o, do_ptrs_o, q_desc, do_desc,
                                       lse2_ptrs, delta_ptrs, stride_qm, stride_dom,
                                       stride_lm, offs_n, offs_m0, offs_d, offs_do, c_own, c_oth, m_start, m_hi1, seqlen_q, seqlen_k, shift,
                                       win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
                                       BLOCK_M, True, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC,
                                       seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, b * HK * GROUP + h, n0,
                                       BLOCK_N, HAS_DROPOUT, USE_TMA, COMPENSATED, dlse_plane, SEP_DLSE, SPLIT_D,
                                       f_lo, f_hi, ONE_LOOP, EVEN_M, alibi_slope, HAS_ALIBI)
        if not ONE_LOOP:
            dk, dv, dkc, dvc = _dkdv_tiles(dk, dv, dkc, dvc, k, v, k_o, v_o, q_ptrs, do_ptrs, q_ptrs_o, do_ptrs_o, q_desc, do_desc,
                                           lse2_ptrs, delta_ptrs, stride_qm, stride_dom,
                                           stride_lm, offs_n, offs_m0, offs_d, offs_do, c_own, c_oth, f_lo, f_hi, seqlen_q, seqlen_k, shift,
                                           win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
                                           BLOCK_M, False, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC,
                                           seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, b * HK * GROUP + h, n0,
                                           BLOCK_N, HAS_DROPOUT, USE_TMA, COMPENSATED, dlse_plane, SEP_DLSE, SPLIT_D,
                                           0, 0, False, False, alibi_slope, HAS_ALIBI)
            dk, dv, dkc, dvc = _dkdv_tiles(dk, dv, dkc, dvc, k, v, k_o, v_o, q_ptrs, do_ptrs, q_ptrs_o, do_ptrs_o, q_desc, do_desc,
                                           lse2_ptrs, delta_ptrs, stride_qm, stride_dom,
                                           stride_lm, offs_n, offs_m0, offs_d, offs_do, c_own, c_oth, f_hi, m_end, seqlen_q, seqlen_k, shift,
                                           win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
                                           BLOCK_M, True, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC,
                                           seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, b * HK * GROUP + h, n0,
                                           BLOCK_N, HAS_DROPOUT, USE_TMA, COMPENSATED, dlse_plane, SEP_DLSE, SPLIT_D,
                                           0, 0, False, EVEN_M, alibi_slope, HAS_ALIBI)
    dk = dk * sm_scale
    dk_ptrs = DK + b.to(tl.int64) * stride_dkb + (k_start + offs_n[:, None]).to(tl.int64) * stride_dkn \
        + hk * stride_dkh + offs_d[None, :]
    dv_ptrs = DV + b.to(tl.int64) * stride_dvb + (k_start + offs_n[:, None]).to(tl.int64) * stride_dvn \
        + hk * stride_dvh + offs_d[None, :]
    tl.store(dk_ptrs, dk.to(DK.dtype.element_ty), mask=kv_mask)
    tl.store(dv_ptrs, dv.to(DV.dtype.element_ty), mask=kv_mask)


@triton.jit
def _dq_tiles(dq, dqc, q, do, lse2, delta, dl, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, offs_m, offs_n0, offs_d,
              n_lo, n_hi, seqlen_k, shift, win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
              BLOCK_N: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr,
              HAS_LO: tl.constexpr, HAS_HI: tl.constexpr, HAS_SOFTCAP: tl.constexpr, DOT_PREC: tl.constexpr,
              seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, bh,
              BLOCK_M: tl.constexpr, HAS_DROPOUT: tl.constexpr, USE_TMA: tl.constexpr,
              COMPENSATED: tl.constexpr, SEP_DLSE: tl.constexpr, alibi_slope, HAS_ALIBI: tl.constexpr):
    k_ptrs += n_lo.to(tl.int64) * stride_kn
    v_ptrs += n_lo.to(tl.int64) * stride_vn
    for start_n in range(n_lo, n_hi, BLOCK_N):
        offs_n = start_n + offs_n0
        k, v = load_kv_tile(k_ptrs, v_ptrs, k_desc, v_desc, start_n, offs_n, offs_d, seqlen_k, D,
                            MASKED, EVEN_D, USE_TMA)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        s, t = score_transform(qk, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP)
        if HAS_ALIBI:
            s = s - alibi_slope * alibi_distance(offs_m, offs_n, shift)
        p = tl.math.exp2(s - lse2[:, None])
        if MASKED:
            ok = visible(offs_m, offs_n, seqlen_k, shift, win_left, win_right, HAS_LO, HAS_HI)
            p = tl.where(ok, p, 0.0)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
        if HAS_DROPOUT:
            keep = dropout_keep(seed_lo, seed_hi, rng_offset, bh, 0, offs_m[:, None], start_n, offs_n0[None, :], drop_thr)
            dp = tl.where(keep, dp * drop_rscale, 0.0)
        ds = p * (dp - delta[:, None])
        if SEP_DLSE:
            ds = ds + p * dl[:, None]
        if HAS_SOFTCAP:
            ds = ds * (1.0 - t * t)
        if COMPENSATED:
            dq, dqc = _kahan_add(dq, dqc, tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC))
        else:
            dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PREC)
        k_ptrs += BLOCK_N * stride_kn
        v_ptrs += BLOCK_N * stride_vn
    return dq, dqc


@triton.jit(do_not_specialize=RNG_ARGS)
def attention_bwd_dq_kernel(
    Q, K, V, DO, LSE2, DELTA, DQ,
    stride_qb, stride_qm, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_dob, stride_dom, stride_doh,
    stride_lb, stride_lh, stride_lm,
    stride_dqb, stride_dqm, stride_dqh,
    cu_seqlens_q, cu_seqlens_k,
    seqlen_q_fixed, seqlen_k_fixed, shift_extra, win_left, win_right,
    sm_scale, qk_scale, softcap_pre, softcap_post,
    seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale,
    H, GROUP, D, dlse_plane, ALIBI, stride_alb,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    IS_VARLEN: tl.constexpr, HAS_LO: tl.constexpr, HAS_HI: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, EVEN_D: tl.constexpr, DOT_PREC: tl.constexpr, HAS_DROPOUT: tl.constexpr,
    USE_TMA: tl.constexpr, COMPENSATED: tl.constexpr, SEP_DLSE: tl.constexpr, LPT: tl.constexpr,
    RNG_PTR: tl.constexpr = False, HAS_ALIBI: tl.constexpr = False,
):
    # heavy query blocks (most visible keys under a causal mask) first: a shorter tail
    pid_m, pid_bh, _ = block_order(LPT, True, 1)
    seed_lo, seed_hi, rng_offset = rng_key(seed_lo, seed_hi, rng_offset, RNG_PTR)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    q_start, seqlen_q, k_start, seqlen_k = sequence_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q_fixed,
                                                           seqlen_k_fixed, IS_VARLEN)
    m0 = pid_m * BLOCK_M
    if m0 >= seqlen_q:
        return
    shift = seqlen_k - seqlen_q + shift_extra
    alibi_slope = 0.0
    if HAS_ALIBI:
        alibi_slope = tl.load(ALIBI + b.to(tl.int64) * stride_alb + h) * LOG2E
    offs_m = m0 + tl.arange(0, BLOCK_M)
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < seqlen_q
    qd_mask = row_ok[:, None]
    if not EVEN_D:
        qd_mask = qd_mask & (offs_d[None, :] < D)
    q = tl.load(Q + b.to(tl.int64) * stride_qb + (q_start + offs_m[:, None]).to(tl.int64) * stride_qm
                + h * stride_qh + offs_d[None, :], mask=qd_mask, other=0.0)
    do = tl.load(DO + b.to(tl.int64) * stride_dob + (q_start + offs_m[:, None]).to(tl.int64) * stride_dom
                 + h * stride_doh + offs_d[None, :], mask=qd_mask, other=0.0)
    l_off = b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh + (q_start + offs_m).to(tl.int64) * stride_lm
    lse2 = tl.load(LSE2 + l_off, mask=row_ok, other=float("inf"))
    delta = tl.load(DELTA + l_off, mask=row_ok, other=0.0)
    if SEP_DLSE:
        dl = tl.load(DELTA + dlse_plane + l_off, mask=row_ok, other=0.0)
    else:
        dl = 0.0
    k_base = K + b.to(tl.int64) * stride_kb + k_start.to(tl.int64) * stride_kn + hk.to(tl.int64) * stride_kh
    v_base = V + b.to(tl.int64) * stride_vb + k_start.to(tl.int64) * stride_vn + hk.to(tl.int64) * stride_vh
    k_ptrs = k_base + offs_n0[:, None] * stride_kn + offs_d[None, :]
    v_ptrs = v_base + offs_n0[:, None] * stride_vn + offs_d[None, :]
    if USE_TMA:
        k_desc = rows_descriptor(k_base, seqlen_k, D, stride_kn, BLOCK_N, BLOCK_D)
        v_desc = rows_descriptor(v_base, seqlen_k, D, stride_vn, BLOCK_N, BLOCK_D)
    else:
        k_desc = k_base
        v_desc = v_base
    n_start, f_lo, f_hi, n_end = key_tiles(m0, seqlen_q, seqlen_k, shift, win_left, win_right,
                                           0, seqlen_k, BLOCK_M, BLOCK_N, HAS_LO, HAS_HI)
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    if COMPENSATED:
        dqc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    else:
        dqc = 0.0
    dq, dqc = _dq_tiles(dq, dqc, q, do, lse2, delta, dl, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, offs_m, offs_n0, offs_d,
                   n_start, f_lo, seqlen_k, shift, win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
                   BLOCK_N, True, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC,
                   seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh, BLOCK_M, HAS_DROPOUT, USE_TMA,
                        COMPENSATED, SEP_DLSE, alibi_slope, HAS_ALIBI)
    dq, dqc = _dq_tiles(dq, dqc, q, do, lse2, delta, dl, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, offs_m, offs_n0, offs_d,
                   f_lo, f_hi, seqlen_k, shift, win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
                   BLOCK_N, False, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC,
                   seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh, BLOCK_M, HAS_DROPOUT, USE_TMA,
                        COMPENSATED, SEP_DLSE, alibi_slope, HAS_ALIBI)
    dq, dqc = _dq_tiles(dq, dqc, q, do, lse2, delta, dl, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, offs_m, offs_n0, offs_d,
                   f_hi, n_end, seqlen_k, shift, win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
                   BLOCK_N, True, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC,
                   seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale, pid_bh, BLOCK_M, HAS_DROPOUT, USE_TMA,
                        COMPENSATED, SEP_DLSE, alibi_slope, HAS_ALIBI)
    dq = dq * sm_scale
    tl.store(DQ + b.to(tl.int64) * stride_dqb + (q_start + offs_m[:, None]).to(tl.int64) * stride_dqm
             + h * stride_dqh + offs_d[None, :], dq.to(DQ.dtype.element_ty), mask=qd_mask)


# ----------------------------------------------------------------------------------------------------
# launcher


def _strides(t):
    st = t.stride()
    if len(st) == 4:
        return st[0], st[1], st[2]
    return 0, st[0], st[1]


def attention_bwd(dout, q, k, v, out, lse, *, dlse=None, softmax_scale, window, softcap, cu_seqlens_q=None,
                  cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None, shift_extra=0,
                  dropout_p=0.0, seed=0, offset=0, rng=None, alibi=None):
    """Launch the backward: returns dq, dk, dv (dtypes and shapes of q, k, v, contiguous). ``alibi``: the forward's
    (batch, heads) fp32 ALiBi slopes or None (the Triton and the Hopper Gluon kernels).
    ``dlse`` (optional, like lse) is the gradient flowing into the returned lse. The dropout mask is the forward's:
    (seed, offset), or the words in ``rng`` when given (attention_fwd)."""
    varlen = cu_seqlens_q is not None
    if varlen:
        T, H, D = q.shape
        B = cu_seqlens_q.numel() - 1
        M, N = max_seqlen_q, max_seqlen_k
    else:
        B, M, H, D = q.shape
        N = k.shape[1]
    HK = k.shape[-2]
    left, right = window
    dq = torch.empty_like(q, memory_format=torch.contiguous_format)
    dk = torch.empty_like(k, memory_format=torch.contiguous_format)
    dv = torch.empty_like(v, memory_format=torch.contiguous_format)
    if q.numel() == 0 or k.numel() == 0 or B == 0:
        dq.zero_()
        dk.zero_()
        dv.zero_()
        return dq, dk, dv
    gluon_dkdv, gluon_dq = _sm90.plan(
        q, k, v, dout, softcap=softcap, dropout_p=dropout_p, varlen=varlen, shift_extra=shift_extra,
        softmax_scale=softmax_scale, alibi=alibi is not None) if _cfg.BWD_SM90 != "0" and not _cfg.interpreter_enabled() \
        else (False, False)
    triton_kernels = not (gluon_dkdv and gluon_dq)  # their tile configuration is worked out only if one runs
    if triton_kernels:
        cfg = _cfg.bwd_config(D, left >= 0 or right >= 0, q.dtype, q.device)
        descriptors_ok = tma_ok(k, v) and tma_ok(q, dout)
        qcfg = cfg.dq_config()  # dQ kernel's tile in its own terms: BLOCK_M query rows, BLOCK_N keys
        if cfg.use_tma and not descriptors_ok:
            cfg = cfg.for_pointers()
        if qcfg.use_tma and not descriptors_ok:
            qcfg = qcfg.for_pointers()
    BD = _cfg.block_d(D)
    exact = q.dtype == torch.float32  # fp32: compensated sums, exact delta, dlse kept apart
    sep_dlse = exact and dlse is not None
    lse = lse.contiguous()
    if sep_dlse:
        delta = torch.empty((2,) + tuple(lse.shape), device=lse.device, dtype=torch.float32)[0]
    else:
        delta = torch.empty_like(lse)
    dlse_plane = lse.numel()
    lse2 = torch.empty_like(lse)
    if varlen:
        slb, slh, slm = 0, lse.stride(0), lse.stride(1)
    else:
        slb, slh, slm = lse.stride(0), lse.stride(1), lse.stride(2)
    dummy = cu_seqlens_q if varlen else q
    cuq = cu_seqlens_q if varlen else dummy
    cuk = cu_seqlens_k if varlen else dummy
    PRE_M = 16 if exact or (triton_kernels and cfg.BLOCK_M == 16) else 64
    _preprocess(out, dout, lse, dlse, delta, lse2, (*_strides(out), *_strides(dout), slb, slh, slm), cuq,
                (M, H, D, dlse_plane), dict(BLOCK_M=PRE_M, BLOCK_D=BD, IS_VARLEN=varlen, HAS_DLSE=dlse is not None,
                                            EXACT_DELTA=exact), (cdiv(M, PRE_M), *rows_grid(B, H)))
    if triton_kernels:
        LOG2E = 1.4426950408889634
        if softcap > 0:
            sc_pre, sc_post = softmax_scale / softcap, softcap * LOG2E
        else:
            sc_pre, sc_post = 0.0, 0.0
        common = dict(IS_VARLEN=varlen, HAS_LO=left >= 0, HAS_HI=right >= 0, HAS_SOFTCAP=softcap > 0,
                      EVEN_D=BD == D, DOT_PREC=_cfg.dot_precision(q.dtype), BLOCK_D=BD,
                      COMPENSATED=exact, SEP_DLSE=sep_dlse, LPT=_cfg.lpt_order(left, right, varlen))
        scal = (cuq, cuk, M, N, shift_extra, max(left, 0), max(right, 0),
                softmax_scale, softmax_scale * LOG2E, sc_pre, sc_post, *dropout_args(dropout_p, seed, offset, rng))
        common["HAS_DROPOUT"] = dropout_p > 0
        common["RNG_PTR"] = dropout_p > 0 and rng_ptr(rng)
        common["HAS_ALIBI"] = alibi is not None
        al = (alibi, alibi.stride(0)) if alibi is not None else (dummy, 0)
        # dK, dV: key blocks of BLOCK_N (the long side), query tiles of BLOCK_M; split over halves of the
        # head dim when the config asks (not for fp32: its exact delta needs dP as one dot, see the
        # preprocess kernel; and not below 16 columns per half, the smallest dot)
        split = cfg.dkdv_split_d if not exact and BD // max(cfg.dkdv_split_d, 1) >= 16 else 1
    if not triton_kernels or cfg.use_tma or qcfg.use_tma:
        # Triton's scratch allocator for descriptor kernels (the Gluon kernels' host descriptors need none today;
        # a contextvar write)
        ensure_allocator()
    if gluon_dkdv:
        # Hopper: dK / dV from the warp-specialized Gluon kernel (backward_sm90.py)
        _sm90.attention_dkdv_sm90(q, k, v, dout, lse2, delta, dk, dv, softmax_scale=softmax_scale, window=window,
                                  dropout_p=dropout_p, seed=seed, offset=offset, rng=rng, alibi=alibi)
    else:
        _dkdv_launch(q, k, v, dout, lse2, delta, dk, dv, slb, slh, slm, scal, HK, H, D, dlse_plane, cfg, split,
                     descriptors_ok, BD, left, right, exact, varlen, M, N, B, common, al)
    if gluon_dq:
        _sm90.attention_dq_sm90(q, k, v, dout, lse2, delta, dq, softmax_scale=softmax_scale, window=window,
                                dropout_p=dropout_p, seed=seed, offset=offset, rng=rng, alibi=alibi)
    else:
        # dQ: query blocks of qcfg.BLOCK_M rows, key tiles of qcfg.BLOCK_N
        attention_bwd_dq_kernel[(cdiv(M, qcfg.BLOCK_M), *rows_grid(B, H))](
            q, k, v, dout, lse2, delta, dq,
            *_strides(q), *_strides(k), *_strides(v), *_strides(dout), slb, slh, slm,
            *_strides(dq), *scal, H, H // HK, D, dlse_plane, *al,
            BLOCK_M=qcfg.BLOCK_M, BLOCK_N=qcfg.BLOCK_N, USE_TMA=qcfg.use_tma and descriptors_ok,
            num_warps=qcfg.num_warps, num_stages=qcfg.num_stages, **common)
    return dq, dk, dv


_PRE_LAUNCH = _launch.LaunchCache(attention_bwd_preprocess_kernel)


def _preprocess(out, dout, lse, dlse, delta, lse2, strides, cuq, ints, consts, grid):
    """The preprocess launch; with TILEFOLD_SM90_DIRECT_LAUNCH (default) through a LaunchCache keyed by everything
    Triton specializes the kernel on: the integer arguments' values, the constexprs, and every pointer's dtype and
    16-byte alignment (the kernel's whole specialization, so its compiled form is fixed by the key)."""
    ptrs = (out, dout, lse, dlse if dlse is not None else lse, delta, lse2)
    args = ptrs + strides + (cuq,) + ints
    if not _launch.DIRECT_GLUON:
        attention_bwd_preprocess_kernel[grid](*args, **consts)
        return
    key = (strides, ints, tuple(consts.values()), tuple((t.dtype, t.data_ptr() % 16 == 0) for t in ptrs + (cuq,)))
    _PRE_LAUNCH.launch(key, grid, args, consts)


def _dkdv_launch(q, k, v, dout, lse2, delta, dk, dv, slb, slh, slm, scal, HK, H, D, dlse_plane, cfg, split,
                 descriptors_ok, BD, left, right, exact, varlen, M, N, B, common, al):
    attention_bwd_dkdv_kernel[(cdiv(N, cfg.BLOCK_N) * split, *rows_grid(B, HK))](
        q, k, v, dout, lse2, delta, dk, dv,
        *_strides(q), *_strides(k), *_strides(v), *_strides(dout), slb, slh, slm,
        *_strides(dk), *_strides(dv), *scal, HK, H // HK, D, dlse_plane, *al,
        BLOCK_M=cfg.BLOCK_M, BLOCK_N=cfg.BLOCK_N, USE_TMA=cfg.use_tma and descriptors_ok, SPLIT_D=split,
        ONE_LOOP=_cfg.dkdv_one_loop(BD, left >= 0 or right >= 0, exact), EVEN_M=not varlen and M % cfg.BLOCK_M == 0,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, **common)
