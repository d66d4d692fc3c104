"""Decode kernels: split-KV attention with the query rows of one key head packed into one tile, and the
combine of the per-split states.

Packing (GQA): the ``seqlen_q · G`` query rows that share key head ``hk`` (``G = heads / heads_k``) form
one row axis, row ``r`` = (position ``r // G``, query head ``hk · G + r % G``). One program owns BLOCK_M
packed rows of one (batch, key head) and one key range, so every K/V tile is read once per group, not G
times. Masks (causal / window, bottom-right aligned) use the row's *position*; the mask geometry is the
shared ``key_tiles`` / ``visible`` with positions in place of rows.

Level 1 of the reduction (DESIGN.md §1) is the register fold over the BLOCK_N-key tiles of the range
(``fold_step``; with KPAR, ``_decode_kpar``: one fold per warp over its own chunk of the range, merged at the
end); each program writes its finalized state (o, lse), fp32, in the public layout of the output (partial out
(S, B, M, H, D) / (S, T, H, D), lse (S, B, H, M) / (S, H, T)), or the final output directly when there is one split. The combine is the same fold one level up: a row's S states are a
"tile" whose scores are their lse and whose values are their o, folded with ``fold_step`` in
BLOCK_S chunks (one memory round trip for S <= BLOCK_S instead of S dependent loads), launched as a programmatic
dependent of the split kernel on sm_90+ (``DECODE_PDL``: its programs start while the split kernel's last ones run and
wait for its results in ``griddepcontrol.wait``); or, with one launch (``fused_combine``), by the last of a row block's
split programs to finish, over the block's live rows (``fold_rows``), ``combine_unroll`` states per round trip.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..common.dispatch import interpreter_enabled
from ..common.fold import LOG2E, finalize, fold_step, score_transform
from ..common.host import cdiv, env_get, next_pow2, rows_grid, visible_keys  # noqa: F401 (visible_keys: splitkv's)
from ..common.launch import LaunchCache, stream_scratches
from ..common.masks import (alibi_distance, cache_row, grid_row, key_tiles, left_pad, paged_rows, sequence_bounds, split_share, used_keys,
                            visible)
from ..common.tma import _major, ensure_allocator, load_kv_tile, rows_descriptor, tma_ok
try:  # programmatic dependent launch (Triton >= 3.4)
    from triton.language.extra.cuda import gdc_launch_dependents, gdc_wait
    HAVE_GDC = True
except ImportError:  # pragma: no cover - older Triton: the combine kernel is launched plainly
    HAVE_GDC = False
    gdc_launch_dependents = gdc_wait = None


@triton.jit
def _decode_tiles(acc, l_i, m_i, q, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, pos, offs_n0, offs_d,
                  n_lo, n_hi, seqlen_k, shift, win_left, win_right, qk_scale, softcap_pre, softcap_post, D,
                  bt_row, page_size, n_pages, stride_kp, stride_vp, slope,
                  BLOCK_N: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr, HAS_LO: tl.constexpr,
                  HAS_HI: tl.constexpr, HAS_SOFTCAP: tl.constexpr, DOT_PREC: tl.constexpr, USE_TMA: tl.constexpr,
                  PAGED: tl.constexpr, HAS_ALIBI: tl.constexpr):
    """Fold key tiles [n_lo, n_hi) into (acc, l, m); ``pos`` are the rows' positions (mask rows). PAGED: k_desc /
    v_desc are the key head's base pointers and each tile's rows are looked up in the block table row ``bt_row``
    (pages of ``page_size`` keys, page strides stride_kp / stride_vp). HAS_ALIBI: ``slope`` [BLOCK_M] holds each
    packed row's ALiBi slope in log2 units; scores get ``-slope · |pos + shift - n|``."""
    k_ptrs += n_lo.to(tl.int64) * stride_kn
    v_ptrs += n_lo.to(tl.int64) * stride_vn
    for start_n in range(n_lo, n_hi, BLOCK_N):
        offs_n = start_n + offs_n0
        if PAGED:
            pg, r = paged_rows(bt_row, offs_n, seqlen_k, page_size, n_pages)
            k_ptrs = k_desc + (pg * stride_kp + r * stride_kn)[:, None] + offs_d[None, :]
            v_ptrs = v_desc + (pg * stride_vp + r * stride_vn)[:, None] + offs_d[None, :]
        k, v = load_kv_tile(k_ptrs, v_ptrs, k_desc, v_desc, start_n, offs_n, offs_d, seqlen_k, D,
                            MASKED, EVEN_D, USE_TMA)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        s, _ = score_transform(qk, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP)
        if HAS_ALIBI:
            s = s - slope[:, None] * alibi_distance(pos, offs_n, shift)
        if MASKED:
            ok = visible(pos, offs_n, seqlen_k, shift, win_left, win_right, HAS_LO, HAS_HI)
            s = tl.where(ok, s, float("-inf"))
        acc, l_i, m_i, p = fold_step(acc, l_i, m_i, s, v, MASKED)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
        k_ptrs += BLOCK_N * stride_kn
        v_ptrs += BLOCK_N * stride_vn
    return acc, l_i, m_i


@triton.jit
def _decode_kpar(q, k_base, v_base, stride_kn, stride_vn, pos, offs_d, n_lo, n_hi, shift, win_left, win_right,
                 qk_scale, softcap_pre, softcap_post, D, slope, W: tl.constexpr, BLOCK_M: tl.constexpr,
                 BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr, HAS_LO: tl.constexpr,
                 HAS_HI: tl.constexpr, HAS_SOFTCAP: tl.constexpr, DOT_PREC: tl.constexpr, HAS_ALIBI: tl.constexpr):
    """Keys [n_lo, n_hi) (n_hi <= seqlen_k) in W contiguous chunks of whole BLOCK_N tiles, folded side by side: one
    batched (3-D) dot per step takes a BLOCK_N tile of every chunk, and with num_warps == W each warp owns one chunk's
    scores, probabilities and state, so no tile crosses warps (the 2-D path's P·V takes P in another warp layout: a
    shared-memory round trip per tile). The W states are merged once at the end (⊕ over the chunk axis: level 1 of
    DESIGN.md §1 inside the program). Every step is masked (chunk ends, causal / window by row position): decode
    streams bytes, the compares are free. Returns the range's (acc, l, m)."""
    offs_w = tl.arange(0, W)
    offs_n = tl.arange(0, BLOCK_N)
    chunk = tl.cdiv(tl.cdiv(tl.maximum(n_hi - n_lo, 0), W), BLOCK_N) * BLOCK_N
    start = n_lo + offs_w * chunk
    stop = tl.minimum(start + chunk, n_hi)
    rows = start[:, None] + offs_n[None, :]  # [W, BLOCK_N] key rows of the current step
    k_ptrs = k_base + rows.to(tl.int64)[:, :, None] * stride_kn + offs_d[None, None, :]
    v_ptrs = v_base + rows.to(tl.int64)[:, :, None] * stride_vn + offs_d[None, None, :]
    q3 = tl.broadcast_to(q[None, :, :], (W, BLOCK_M, BLOCK_D))
    pos3 = pos[None, :, None]
    m_i = tl.full([W, BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([W, BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([W, BLOCK_M, BLOCK_D], dtype=tl.float32)
    for j in range(0, chunk, BLOCK_N):
        n = rows + j
        ok_n = n < stop[:, None]
        if EVEN_D:
            ld = ok_n[:, :, None]
        else:
            ld = ok_n[:, :, None] & (offs_d[None, None, :] < D)
        k = tl.load(k_ptrs, mask=ld, other=0.0)
        v = tl.load(v_ptrs, mask=ld, other=0.0)
        qk = tl.dot(q3, tl.permute(k, (0, 2, 1)), input_precision=DOT_PREC)
        s, _ = score_transform(qk, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP)
        if HAS_ALIBI:  # -slope · |pos + shift - n| (masks.alibi_distance over the chunk axis)
            s = s - slope[None, :, None] * tl.abs((pos + shift).to(tl.float32)[None, :, None]
                                                  - n.to(tl.float32)[:, None, :])
        ok = ok_n[:, None, :]
        if HAS_HI:
            ok = ok & (n[:, None, :] - pos3 <= shift + win_right)
        if HAS_LO:
            ok = ok & (n[:, None, :] - pos3 >= shift - win_left)
        s = tl.where(ok, s, float("-inf"))
        acc, l_i, m_i, p = fold_step(acc, l_i, m_i, s, v, True)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
        k_ptrs += BLOCK_N * stride_kn
        v_ptrs += BLOCK_N * stride_vn
    m = tl.max(m_i, 0)
    sc = tl.math.exp2(m_i - tl.where(m == float("-inf"), 0.0, m)[None, :])
    return tl.sum(acc * sc[:, :, None], 0), tl.sum(l_i * sc, 0), m


@triton.jit
def decode_fwd_kernel(
    Q, K, V, O, LSE,
    stride_qb, stride_qm, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_ob, stride_om, stride_oh, stride_os,
    stride_lb, stride_lh, stride_lm, stride_ls,
    cu_seqlens_q, cu_seqlens_k, seqused_k, cache_batch_idx, cache_leftpad, n_cache,
    seqlen_q_fixed, seqlen_k_fixed, win_left, win_right,
    qk_scale, softcap_pre, softcap_post, HK, D, n_splits,
    OUT, LSE_OUT, CNT, stride_fb, stride_fm, stride_fh, stride_flb, stride_flh, stride_flm,
    BLOCK_TABLE, stride_btb, page_size, ALIBI, stride_alb,
    GROUP: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    IS_VARLEN: tl.constexpr, HAS_LO: tl.constexpr, HAS_HI: tl.constexpr, HAS_SOFTCAP: tl.constexpr,
    EVEN_D: tl.constexpr, DOT_PREC: tl.constexpr, FUSED_COMBINE: tl.constexpr = False,
    COMBINE_UNROLL: tl.constexpr = 1, USE_TMA: tl.constexpr = False, FOLD_ROWS: tl.constexpr = 0,
    PDL: tl.constexpr = False, KPAR: tl.constexpr = 1, HAS_SEQUSED: tl.constexpr = False,
    HAS_CACHE_IDX: tl.constexpr = False, PAGED: tl.constexpr = False, HAS_LEFTPAD: tl.constexpr = False,
    HAS_ALIBI: tl.constexpr = False,
):
    """Grid (packed row blocks, B · HK, splits S). Writes the state of packed rows [r0, r0 + BLOCK_M) of
    (batch b, key head hk) over the pid_s-th of S equal BLOCK_N-aligned shares of the keys those rows can see
    (masks applied, the sequence's own seqlen_k, or its first seqused_k[b] keys with HAS_SEQUSED); an empty share writes
    the identity (0, -inf).
    FUSED_COMBINE: the last of a row block's splits to finish (a counter per (row block, b, hk) in CNT,
    zero on entry) folds the block's S states into OUT / LSE_OUT itself and sets its counter back to zero:
    one launch. The counters are per-stream scratch reused by the next call on the stream (zero-filled
    once when allocated; fresh during CUDA graph capture).
    KPAR > 1: the key range is folded as KPAR chunks side by side, one per warp (``_decode_kpar``; pointer loads).
    PAGED: K / V are (n_pages, page_size, HK, D) and key n of sequence b lives in page BLOCK_TABLE[b, n // page_size]
    (row stride stride_btb), row n % page_size (``masks.paged_rows``; pointer loads, KPAR = 1).
    HAS_LEFTPAD: sequence b's keys start cache_leftpad[b] rows into its cache (``masks.left_pad``; not with PAGED).
    HAS_ALIBI: ALIBI (batch, heads) fp32 slopes (row stride stride_alb, 0 for one row shared by the batch); packed row
    r (query head h, position i) gets ``-ALIBI[b, h] · |i + shift - n|`` on its score of key n, after the scale and
    softcap (flash_attn's alibi_slopes; positions and keys counted within the sequence's keys, after a left pad)."""
    tl.static_assert(KPAR == 1 or not USE_TMA, "the KPAR path loads K / V through pointers")
    tl.static_assert(not PAGED or (KPAR == 1 and not USE_TMA), "a paged cache is read through pointers, KPAR = 1")
    tl.static_assert(not (PAGED and HAS_LEFTPAD), "a paged cache has no left padding")
    if PDL:  # the combine kernel (a programmatic dependent launch) may start once every program got here
        gdc_launch_dependents()
    pid_m = tl.program_id(0)
    pid_bh, pid_s = grid_row(n_splits)
    b = pid_bh // HK
    hk = pid_bh % HK
    q_start, seqlen_q, k_start, seqlen_k = sequence_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q_fixed,
                                                           seqlen_k_fixed, IS_VARLEN)
    seqlen_k = used_keys(seqlen_k, seqused_k, b, HAS_SEQUSED)  # a padded KV cache's filled part
    if PAGED:  # no further than the block table's capacity (seqlen_k_fixed; a packed call's lengths come from cu_seqlens_k)
        seqlen_k = tl.minimum(seqlen_k, seqlen_k_fixed)
    k_start, seqlen_k = left_pad(k_start, seqlen_k, cache_leftpad, b, HAS_LEFTPAD)
    n_rows = seqlen_q * GROUP
    r0 = pid_m * BLOCK_M
    if r0 >= n_rows:
        return
    shift = seqlen_k - seqlen_q
    offs_r = r0 + tl.arange(0, BLOCK_M)
    pos = offs_r // GROUP
    head = hk * GROUP + offs_r % GROUP
    row_ok = offs_r < n_rows
    offs_n0 = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    if EVEN_D:
        rd_ok = row_ok[:, None]
    else:
        rd_ok = row_ok[:, None] & (offs_d[None, :] < D)

    b64 = b.to(tl.int64)
    slope = 0.0
    if HAS_ALIBI:  # each packed row's own head's slope, in log2 units as the scores
        slope = tl.load(ALIBI + b64 * stride_alb + head, mask=row_ok, other=0.0) * LOG2E
    rows_q = (q_start + pos).to(tl.int64) * stride_qm + head.to(tl.int64) * stride_qh
    q = tl.load(Q + b64 * stride_qb + rows_q[:, None] + offs_d[None, :], mask=rd_ok, other=0.0)
    kb64 = cache_row(b, cache_batch_idx, n_cache, HAS_CACHE_IDX).to(tl.int64)  # a cache slot, or b
    k_base = K + kb64 * stride_kb + k_start.to(tl.int64) * stride_kn + hk.to(tl.int64) * stride_kh
    v_base = V + kb64 * stride_vb + k_start.to(tl.int64) * stride_vn + hk.to(tl.int64) * stride_vh
    k_ptrs = k_base + offs_n0[:, None] * stride_kn + offs_d[None, :]
    v_ptrs = v_base + offs_n0[:, None] * stride_vn + offs_d[None, :]
    bt_row = BLOCK_TABLE
    if PAGED:  # the key head's base; each tile finds its pages (_decode_tiles)
        bt_row = BLOCK_TABLE + b64 * stride_btb
        k_desc = K + hk.to(tl.int64) * stride_kh
        v_desc = V + hk.to(tl.int64) * stride_vh
    elif USE_TMA:  # zero-filled past seqlen_k (and past D)
        k_desc = rows_descriptor(k_base, seqlen_k, D, stride_kn, BLOCK_N, BLOCK_D)
        v_desc = rows_descriptor(v_base, seqlen_k, D, stride_vn, BLOCK_N, BLOCK_D)
    else:
        k_desc = k_base
        v_desc = v_base

    # positions of the block's first and last live rows: key_tiles with (m0, seqlen_q) = (first, last + 1)
    p_first = r0 // GROUP
    p_last = (tl.minimum(r0 + BLOCK_M, n_rows) - 1) // GROUP
    # the splits share out the keys the block can see (window / causal first, then the split, per sequence), so a
    # 4k-key window at the end of a 32k cache is split S ways rather than leaving most splits empty
    split_lo, split_hi = split_share(p_first, p_last + 1, seqlen_k, shift, win_left, win_right, pid_s,
                                     n_splits, BLOCK_M, BLOCK_N, HAS_LO, HAS_HI)
    n_start, f_lo, f_hi, n_end = key_tiles(p_first, p_last + 1, seqlen_k, shift, win_left, win_right,
                                           split_lo, split_hi, BLOCK_M, BLOCK_N, HAS_LO, HAS_HI)

    if KPAR > 1:
        acc, l_i, m_i = _decode_kpar(q, k_base, v_base, stride_kn, stride_vn, pos, offs_d, n_start, n_end, shift,
                                     win_left, win_right, qk_scale, softcap_pre, softcap_post, D, slope, KPAR,
                                     BLOCK_M, BLOCK_N, BLOCK_D, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC,
                                     HAS_ALIBI)
    else:
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        acc, l_i, m_i = _decode_tiles(acc, l_i, m_i, q, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, pos,
                                      offs_n0, offs_d, n_start, f_lo, seqlen_k, shift, win_left, win_right, qk_scale,
                                      softcap_pre, softcap_post, D, bt_row, page_size, n_cache, stride_kb, stride_vb,
                                      slope, BLOCK_N, True, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC, USE_TMA, PAGED,
                                      HAS_ALIBI)
        acc, l_i, m_i = _decode_tiles(acc, l_i, m_i, q, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, pos,
                                      offs_n0, offs_d, f_lo, f_hi, seqlen_k, shift, win_left, win_right, qk_scale,
                                      softcap_pre, softcap_post, D, bt_row, page_size, n_cache, stride_kb, stride_vb,
                                      slope, BLOCK_N, False, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC, USE_TMA, PAGED,
                                      HAS_ALIBI)
        acc, l_i, m_i = _decode_tiles(acc, l_i, m_i, q, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, pos,
                                      offs_n0, offs_d, f_hi, n_end, seqlen_k, shift, win_left, win_right, qk_scale,
                                      softcap_pre, softcap_post, D, bt_row, page_size, n_cache, stride_kb, stride_vb,
                                      slope, BLOCK_N, True, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC, USE_TMA, PAGED,
                                      HAS_ALIBI)
    o, lse = finalize(acc, l_i, m_i)

    s64 = pid_s.to(tl.int64)
    rows_o = (q_start + pos).to(tl.int64) * stride_om + head.to(tl.int64) * stride_oh
    tl.store(O + b64 * stride_ob + s64 * stride_os + rows_o[:, None] + offs_d[None, :],
             o.to(O.dtype.element_ty), mask=rd_ok)
    rows_l = head.to(tl.int64) * stride_lh + (q_start + pos).to(tl.int64) * stride_lm
    tl.store(LSE + b64 * stride_lb + s64 * stride_ls + rows_l, lse, mask=row_ok)
    if FUSED_COMBINE:
        # every thread's partial stores issued before one release-acquire increment at GPU scope; the
        # program that brings the count to S has seen the other S - 1 programs' states
        tl.debug_barrier()
        grp = pid_m * (tl.num_programs(1) * (tl.num_programs(2) // n_splits)) + pid_bh
        done = tl.atomic_add(CNT + grp, 1, sem="acq_rel", scope="gpu")
        if done == n_splits - 1:
            # the block's rows FOLD_ROWS at a time (0: all BLOCK_M at once): a sub-block as small as the live rows
            # (seqlen_q · G, e.g. 4 of 16 at decode) lets COMBINE_UNROLL states share one round trip
            FR: tl.constexpr = BLOCK_M if FOLD_ROWS == 0 else FOLD_ROWS
            for i in tl.static_range(BLOCK_M // FR):
                if r0 + i * FR < n_rows:
                    f_r = r0 + i * FR + tl.arange(0, FR)
                    f_pos = (q_start + f_r // GROUP).to(tl.int64)
                    f_head = (hk * GROUP + f_r % GROUP).to(tl.int64)
                    f_ok = f_r < n_rows
                    if EVEN_D:
                        f_rd = f_ok[:, None]
                    else:
                        f_rd = f_ok[:, None] & (offs_d[None, :] < D)
                    _combine_rows(O + b64 * stride_ob + (f_pos * stride_om + f_head * stride_oh)[:, None]
                                  + offs_d[None, :],
                                  LSE + b64 * stride_lb + f_head * stride_lh + f_pos * stride_lm, stride_os, stride_ls,
                                  n_splits, f_rd, f_ok,
                                  OUT + b64 * stride_fb + (f_pos * stride_fm + f_head * stride_fh)[:, None]
                                  + offs_d[None, :],
                                  LSE_OUT + b64 * stride_flb + f_head * stride_flh + f_pos * stride_flm,
                                  FR, BLOCK_D, COMBINE_UNROLL)
            tl.atomic_xchg(CNT + grp, 0)  # the counters are per-stream scratch: leave them zero for the next call


@triton.jit
def _combine_rows(o_ptrs, l_ptrs, stride_os, stride_ls, n_split, rd_ok, row_ok, out_ptrs, lse_ptrs,
                  BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, UNROLL: tl.constexpr):
    """out, lse of a row block = ⊕ of its n_split states (o [BLOCK_M, BLOCK_D], lse [BLOCK_M] at split
    strides stride_os / stride_ls), folded in split order with ``fold_step`` (a one-column tile per
    state), UNROLL states per round trip: their loads are issued together, so the fold waits one L2
    latency per UNROLL states instead of one per state. Loads bypass L1 (.cg): the states were written by
    other programs."""
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    for s0 in range(0, n_split, UNROLL):
        for j in tl.static_range(UNROLL):
            if UNROLL == 1:  # the loop bound is exact
                live = row_ok
            else:  # a row vector, not a scalar: the interpreter of newer Triton refuses a scalar-broadcast mask
                live = row_ok & (tl.full([BLOCK_M], s0 + j, tl.int32) < n_split)
            x = tl.load(l_ptrs + j * stride_ls, mask=live, other=float("-inf"), cache_modifier=".cg") * LOG2E
            o = tl.load(o_ptrs + j * stride_os, mask=rd_ok & live[:, None], other=0.0, cache_modifier=".cg")
            # the shared fold over a one-column tile: its score is the state's lse, its value the state's o
            acc, l_i, m_i, w = fold_step(acc, l_i, m_i, x[:, None], o, True)
            acc += w * o
        l_ptrs += UNROLL * stride_ls
        o_ptrs += UNROLL * stride_os
    out, lse = finalize(acc, l_i, m_i)
    tl.store(out_ptrs, out.to(out_ptrs.dtype.element_ty), mask=rd_ok)
    tl.store(lse_ptrs, lse, mask=row_ok)


@triton.jit
def decode_combine_kernel(
    OP, LP, O, LSE,
    stride_pb, stride_pm, stride_ph, stride_ps,
    stride_qb, stride_qh, stride_qm, stride_qs,
    stride_ob, stride_om, stride_oh,
    stride_lb, stride_lh, stride_lm,
    H, S, D,
    BLOCK_S: tl.constexpr, BLOCK_D: tl.constexpr, EVEN_D: tl.constexpr, PDL: tl.constexpr = False,
):
    """Grid (rows, Y, Z) with Y · Z = B · H (host.rows_grid): out[b, m, h] = ⊕ over the S partial states of that row, folded as a tile
    whose scores are the states' lse (log2 units) and whose values are their o."""
    m = tl.program_id(0).to(tl.int64)
    pid_bh, _ = grid_row(1)
    b = (pid_bh // H).to(tl.int64)
    h = (pid_bh % H).to(tl.int64)
    offs_s = tl.arange(0, BLOCK_S)
    offs_d = tl.arange(0, BLOCK_D)
    o_base = OP + b * stride_pb + m * stride_pm + h * stride_ph
    l_base = LP + b * stride_qb + h * stride_qh + m * stride_qm
    acc = tl.zeros([1, BLOCK_D], dtype=tl.float32)
    l_i = tl.zeros([1], dtype=tl.float32)
    m_i = tl.full([1], float("-inf"), dtype=tl.float32)
    if PDL:  # launched as a programmatic dependent: the split kernel's states are complete and visible after this
        gdc_wait()
    for s0 in range(0, S, BLOCK_S):
        ss = s0 + offs_s
        s_ok = ss < S
        lse = tl.load(l_base + ss.to(tl.int64) * stride_qs, mask=s_ok, other=float("-inf"))
        if EVEN_D:
            o_mask = s_ok[:, None]
        else:
            o_mask = s_ok[:, None] & (offs_d[None, :] < D)
        o = tl.load(o_base + ss.to(tl.int64)[:, None] * stride_ps + offs_d[None, :], mask=o_mask, other=0.0)
        acc, l_i, m_i, p = fold_step(acc, l_i, m_i, (lse * LOG2E)[None, :], o, True)
        acc += tl.sum(tl.trans(p) * o, 0)[None, :]
    out, lse_out = finalize(acc, l_i, m_i)
    out_ptrs = O + b * stride_ob + m * stride_om + h * stride_oh + offs_d[None, :]
    if EVEN_D:
        tl.store(out_ptrs, out.to(O.dtype.element_ty))
    else:
        tl.store(out_ptrs, out.to(O.dtype.element_ty), mask=offs_d[None, :] < D)
    tl.store(LSE + b * stride_lb + h * stride_lh + m * stride_lm + tl.zeros([1], dtype=tl.int64), lse_out)


# ----------------------------------------------------------------------------------------------------
# config and launcher


@dataclass(frozen=True)
class DecodeConfig:
    BLOCK_M: int
    BLOCK_N: int
    num_warps: int
    num_stages: int
    ctas_per_sm: int  # programs resident per SM (shared memory bound), for the split heuristic
    use_tma: bool = False  # K/V tiles through tensor descriptors (falls back to pointers, see tma_ok)
    kpar: int = 1  # > 1: the key range folded as this many chunks side by side, one per warp (_decode_kpar)


DECODE_MAX_ROWS = 256  # packed rows (seqlen_q · G) up to which split-KV uses the decode kernel


def block_d(D: int) -> int:
    return max(16, next_pow2(D))


# Tiles for one 16-row packed block (seqlen_q · G <= 16), 16-bit hd128 -- the measured case. Sweeps on an H200
# (benchmarks/NOTES.md, "Decode v3"; bf16, 32 query / 8 key heads) of tile x split count: with about two
# programs per SM or more ("wide"), a split of >= STREAM_KEYS keys streams best with 32-key tiles, 4 stages, K/V
# through tensor descriptors (B=8 128k 4467 GB/s, B=32 32k 4488, B=1 1M 4454 vs cuDNN 4413-4436), and from
# MID_KEYS keys with 128-key tiles, 2 stages, descriptors (B=32 8k 4222, B=8 32k 4152, B=1 128k 3823). With
# about one program per SM (B=1 up to 64k: 16 splits) the pointer 64-key tile had less GPU time at every size
# (8k 18.6 vs 19.8 us, 16k 28.8 vs 32.6, 32k 44.2 vs 50.1, 64k 74.7 vs 85.0), as it does below MID_KEYS.
STREAM_KEYS = 16384
MID_KEYS = 2048


@functools.lru_cache(maxsize=None)
def num_sms(device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def streaming_tiles(rows: int, D: int, dtype: torch.dtype) -> bool:
    """Whether ``decode_config`` picks the tile by keys per split (the swept case) for these calls."""
    return rows <= 16 and block_d(D) == 128 and dtype in (torch.bfloat16, torch.float16)


# One 64-row wgmma block (17-64 packed rows: seqlen_q 16 or 8 with G = 4), 16-bit hd128, swept on an H200
# (benchmarks/NOTES.md, "Decode: seqlen_q 16 tiles", calls 70 / 76 / 77; bf16, 32 / 8 heads): with fewer programs than
# SMs, one program per SM (``one_per_sm`` splits) of the 64-key pointer tile with 4 stages (147 KB of shared memory: one
# per SM) beat the v2 tile (3 stages, two per SM) at the split count the bandwidth model chose, in GB/s and in GPU time.
# seqlen_q 16: B=1 128k 3783 vs 3573 GB/s (S = 16 vs 27), B=4 32k 3702 vs 3456 (4 vs 7), B=8 32k 4089 vs 3847 (2 vs 4),
# B=16 32k 4419 vs 4140 (1 vs 2), B=1 32k 2144 vs 1788, B=1 256k 256.3 vs 260.5 us by graph replay. seqlen_q 8 (where
# the v2 tile is 32 rows): B=2 32k 76.2 vs 84.7 us, B=8 8k 72.6 vs 76.0, B=16 8k 125.7 vs 136.5, B=1 128k 130.7 vs
# 137.5, but B=16 32k 511 vs 490 (median of three) and B=12 32k 463 vs 389 (96 programs at one per SM leave 36 SMs
# idle). So the split choice takes ``one_per_sm`` where its launch fills 0.9-1 x the SMs (``fills_one_wave``), and the
# plan this tile wherever the launch does; other launches keep the v2 tile (two per SM) and the bandwidth model.
BLOCK64_CONFIG = DecodeConfig(64, 64, 4, 4, 1)
BLOCK64_WAVE_LO = 0.9


def block64_tiles(rows: int, D: int, dtype: torch.dtype) -> bool:
    """Whether these calls are the swept 64-row case (``BLOCK64_CONFIG`` where the launch fills one wave)."""
    return 16 < rows <= 64 and block_d(D) == 128 and dtype in (torch.bfloat16, torch.float16)


def fills_one_wave(programs: int, sms: int, lo: float = BLOCK64_WAVE_LO) -> bool:
    """Whether a launch of ``programs`` programs of one per SM fills lo-1 x the SMs (one wave)."""
    return lo * sms <= programs <= sms


def one_per_sm(programs: int, seqlen_k: int, sms: int) -> int:
    """Splits that give at most one program per SM (``programs`` unsplit programs, fewer than ``sms``; rounding down:
    a partial second wave of the one-per-SM tile would cost a whole program's time), none of fewer than 512 keys,
    at most 128."""
    return max(1, min(sms // max(programs, 1), seqlen_k // 512, 128))


@functools.lru_cache(maxsize=256)
def decode_config(rows: int, D: int, dtype: torch.dtype, device: torch.device, keys_per_split: int = 0,
                  wide: bool = False, allow_kpar: bool = True, one_wave: bool = False,
                  fill: bool = False) -> DecodeConfig:
    """Tiles for ``rows`` packed query rows (seqlen_q · G) per (batch, key head), ``keys_per_split`` keys per
    program, ``wide``: at least ~1.5 programs per SM in the launch (both used where ``streaming_tiles``; see
    STREAM_KEYS / MID_KEYS above); ``fill``: the launch makes one wave of one program per SM (``fills_one_wave``).
    Decode is bandwidth bound: BLOCK_M is the fewest rows the MMA takes (16: mma.sync; 64: wgmma), not
    the prefill 128 (with 4 live rows of 128 the prefill tile did 32x the MMA work per byte). Otherwise
    K/V tiles of 64 keys, 3 stages: 2 tiles (64 KB at hd128 bf16) in flight per program. Offline sm_90 compile
    (Triton 3.6, pointer args and strides divisible by 16 as at launch; no local memory): hd128
    BLOCK_M=16 71.7 KB of shared memory (3 programs per SM by shared memory; 204 registers make it 2),
    32: 77.8 KB (2), 64 (wgmma): 114.7 KB (2); hd256 with 32-key tiles: 74.8 KB (16 rows), 84.0 KB (32 rows);
    descriptors at 16 rows: 32-key 4-stage tile 54 KB, 72-184 registers; 128-key 2-stage 74 KB, 143-168.
    ``one_wave``: unsplit programs that make one wave of one per SM; with ``allow_kpar`` the swept case takes the
    KPAR tile there (KPAR_CONFIG). One 64-row block (``block64_tiles``) with ``fill``: BLOCK64_CONFIG."""
    bm = max(16, min(64, next_pow2(max(rows, 1))))
    if device.type != "cuda" or interpreter_enabled():
        return DecodeConfig(16, 16, 4, 1, 1)
    bd = block_d(D)
    if dtype == torch.float32:
        return DecodeConfig(min(bm, 32), 32, 4, 2, 2)
    if allow_kpar and one_wave and streaming_tiles(rows, D, dtype):
        return KPAR_CONFIG
    if block64_tiles(rows, D, dtype) and fill:
        return BLOCK64_CONFIG
    if streaming_tiles(rows, D, dtype) and wide:
        if keys_per_split >= STREAM_KEYS:
            return DecodeConfig(16, 32, 4, 4, 4, use_tma=True)
        if keys_per_split >= MID_KEYS:
            return DecodeConfig(16, 128, 4, 2, 3, use_tma=True)
    if bd <= 128:
        return DecodeConfig(bm, 64, 4, 3, 3 if bm == 16 else 2)
    bm = min(bm, 32)
    return DecodeConfig(bm, 32, 4, 3, 3 if bm == 16 else 2)


# The combine of S > 1 splits: "kernel" = a second launch (decode_combine_kernel), "fused" = the last
# program of each row block to finish folds the states in the decode kernel (one launch, a zeroed counter
# per row block), "auto" (default) = fused while K + V are at most FUSED_MAX_KV_BYTES. Measured on an H200
# (benchmarks/NOTES.md, "Decode: one launch"): fused is 19% faster at B=1, 32k keys (134 MB, host-bound:
# one Triton launch fewer) and no slower at 8k, but 1-6% slower from 537 MB up (its fold of the S states
# runs in one program per row block, after the tail). TILEFOLD_DECODE_COMBINE, read per call.
FUSED_MAX_KV_BYTES = 256 << 20
DECODE_COMBINE = "auto"


def fused_combine(kv_bytes: int = 0) -> bool:
    mode = env_get("TILEFOLD_DECODE_COMBINE", DECODE_COMBINE)
    if mode not in ("kernel", "fused", "auto"):
        raise ValueError(f"TILEFOLD_DECODE_COMBINE must be 'kernel', 'fused' or 'auto', got {mode!r}")
    if mode == "auto":
        return kv_bytes <= FUSED_MAX_KV_BYTES
    return mode == "fused"


def combine_unroll(block_m: int, block_d: int, cap: int = 16) -> int:
    """States per round trip in the fused combine's fold: as many [block_m, block_d] fp32 tiles as stay in
    registers (offline sm_90, bf16, 4 warps: 4 at 16 x 128 and 2 at 16 x 256 or 32 x 128 compile without
    local memory; 8 at 16 x 128, 4 at 32 x 128 and 2 at 64 x 128 spill): 8192 fp32 of states, up to 16 of them
    (16 at 4 x 128, the live rows of a seqlen_q = 1, G = 4 decode)."""
    return max(1, min(cap, (16 * 128 * 4) // (block_m * block_d)))


# The combine kernel as a programmatic dependent launch of the split kernel (NVIDIA sm_90+, see _pdl_ok): its launch and
# program start overlap the split kernel's tail. TILEFOLD_DECODE_PDL=0 (read at import) launches it plainly.
DECODE_PDL = os.environ.get("TILEFOLD_DECODE_PDL", "1") != "0"


def _pdl_ok(device: torch.device) -> bool:
    """The combine as a programmatic dependent launch: DECODE_PDL, NVIDIA sm_90+ (griddepcontrol is an sm_90 PTX
    instruction: ptxas refuses it for sm_80-89; ROCm has no such launch), a Triton with the gdc helpers, no
    interpreter."""
    if not (DECODE_PDL and HAVE_GDC and device.type == "cuda" and torch.version.hip is None):
        return False
    if interpreter_enabled():
        return False
    return _major(device.index if device.index is not None else torch.cuda.current_device()) >= 9


# The fused fold folds the live rows of a row block, a power of two >= seqlen_q · G at a time ("live", the default), or
# the whole BLOCK_M-row block at once ("block", the measured 2026-12-03 version). Module switch for sweeps (part of the
# plan key).
FOLD_MODE = "live"


def fold_rows(n_rows: int, block_m: int, varlen: bool) -> int:
    """FOLD_ROWS for packed rows n_rows = seqlen_q · G (0: the whole block; varlen: rows per batch vary)."""
    if FOLD_MODE == "block" or varlen:
        return 0
    return min(block_m, max(2, next_pow2(max(n_rows, 1))))


# Keys in parallel (KPAR, ``_decode_kpar``): one chunk of the program's key range per warp, no tile crossing warps --
# the layout of cuDNN's decode kernel (call 55's ncu: 4 warps along the keys, one program per (batch, key head)).
# Only for one 16-row block of 16-bit tiles up to hd128 (the W per-warp [16, D] fp32 states live in registers).
# TILEFOLD_DECODE_KPAR (read per call, part of the plan key): "auto" (the measured policy in decode_config), "0"
# (never), "1" (wherever kpar_ok allows: the forced GPU test tier).
# Measured (benchmarks/NOTES.md, "Decode: keys in parallel", calls 57-60; bf16 hd128, 8 key heads): as one unsplit
# program per (batch, key head) where those make one wave of one per SM (B=16: 128 programs on 132 SMs), the bench
# (call 60, policy off / on, two rounds each, GB/s / cuDNN) moved 8k from 0.962 to 0.972-0.976 and 32k from 0.985 to
# 0.993-0.994, but 128k / 256k from 1.000-1.006 to 0.998-1.005 (the 2-split descriptor tiles stream as well there); in
# call 57's sweep it tied or lost elsewhere (B=32 -2%, B=4 -1%, B=1 128k -0.6%). So "auto" uses it only for one wave of
# at most KPAR_MAX_KEYS keys per program (``one_wave``), on NVIDIA GPUs, in the swept case (``streaming_tiles``: 16-bit,
# head dims 65-128, <= 16 packed rows). Measured only unmasked, bf16, G = 4, 128 programs on an H200; other shapes in
# that band (MHA, masks, fp16, 119-132 programs) take it by extension.
KPAR_W = 4
KPAR_CONFIG = DecodeConfig(16, 16, KPAR_W, 4, 2, kpar=KPAR_W)  # 98 KB shared, 246 registers (offline sm_90, bf16 hd128)
KPAR_WAVE_LO = 0.9  # one_wave: KPAR_WAVE_LO * SMs <= unsplit programs <= SMs ...
KPAR_MAX_KEYS = 32768  # ... of at most this many keys each


def kpar_one_wave(programs: int, seqlen_k: int, sms: int) -> bool:
    """Whether ``programs`` unsplit decode programs of ``seqlen_k`` keys take the KPAR tile under "auto"."""
    return fills_one_wave(programs, sms, KPAR_WAVE_LO) and seqlen_k <= KPAR_MAX_KEYS


def kpar_ok(rows: int, D: int, dtype: torch.dtype) -> bool:
    return rows <= 16 and block_d(D) <= 128 and dtype in (torch.bfloat16, torch.float16)


def kpar_mode() -> str:
    mode = env_get("TILEFOLD_DECODE_KPAR", "auto")
    if mode not in ("auto", "0", "1"):
        raise ValueError(f"TILEFOLD_DECODE_KPAR must be 0, 1 or auto, got {mode!r}")
    return mode


def select_config(rows: int, D: int, dtype: torch.dtype, device: torch.device, N: int, S: int, programs: int,
                  sms: int, kmode: str) -> DecodeConfig:
    """The decode plan's tiles: ``decode_config`` for ``rows`` packed rows, ``N`` keys in ``S`` splits, ``programs``
    programs per split on ``sms`` SMs (of 16 rows, or 64 where ``block64_tiles``), then TILEFOLD_DECODE_KPAR
    (``kmode``) applied: "0" takes KPAR away, "1" forces it wherever ``kpar_ok``."""
    wide = programs * max(S, 1) * 2 >= 3 * sms
    fill = fills_one_wave(programs * max(S, 1), sms)
    one_wave = S <= 1 and kpar_one_wave(programs, N, sms) and _kpar_auto_ok()
    cfg = decode_config(rows, D, dtype, device, cdiv(max(N, 1), max(S, 1)), wide, True, one_wave, fill)
    kfit = kpar_ok(rows, D, dtype)
    if cfg.kpar > 1 and (kmode == "0" or not kfit):
        return decode_config(rows, D, dtype, device, cdiv(max(N, 1), max(S, 1)), wide, False, False, fill)
    if cfg.kpar == 1 and kmode == "1" and kfit:
        return KPAR_CONFIG
    return cfg


def _kpar_auto_ok() -> bool:
    """Whether the "auto" mode may take KPAR: on NVIDIA GPUs only (measured on an H200; its one-warp-per-chunk layout
    is unmeasured on ROCm). On CPU / the interpreter the choice does not matter (decode_config's interpreter tiles)."""
    return torch.version.hip is None


def decode_tma(cfg: DecodeConfig) -> bool:
    """Whether K/V tiles go through tensor descriptors: the config's choice, or TILEFOLD_DECODE_TMA=0 / 1
    (read per call) to force pointer loads / descriptors (where tma_ok allows)."""
    mode = env_get("TILEFOLD_DECODE_TMA", "auto")
    if mode not in ("auto", "0", "1"):
        raise ValueError(f"TILEFOLD_DECODE_TMA must be 0, 1 or auto, got {mode!r}")
    return cfg.use_tma if mode == "auto" else mode == "1"


def _strides(t):
    """(stride_b, stride_seq, stride_head) of a (B, S, H, D) or packed (T, H, D) tensor."""
    st = t.stride()
    if t.dim() == 4:
        return st[0], st[1], st[2]
    return 0, st[0], st[1]


LOG2E_F = 1.4426950408889634


def _contiguous_strides(shape) -> tuple:
    st, acc = [], 1
    for n in reversed(shape):
        st.append(acc)
        acc *= n
    return tuple(reversed(st))


@dataclass(frozen=True)
class _Plan:
    """Everything about a decode call that is not a tensor: shapes, strides, grid, split, constexprs."""
    out_shape: tuple
    lse_shape: tuple
    empty: bool
    S: int
    o_numel: int
    l_numel: int
    fused: bool
    n_cnt: int
    use_tma: bool
    grid: tuple
    a1: tuple  # decode kernel int/float arguments between the partial-state pointers and cu_seqlens
    a2: tuple  # ... between cu_seqlens and OUT
    a3: tuple  # ... after CNT
    cons: dict
    options: dict
    cgrid: tuple | None  # the combine kernel's launch (None: no second launch)
    ca: tuple
    ccons: dict
    copts: dict  # the combine kernel's launch options (launch_pdl)


PAGED_EXTRA_STAGES = 2


def paged_config(cfg: DecodeConfig) -> DecodeConfig:
    """The tile of a paged cache's plan (pointer loads): the 32-key descriptor tile of long splits (STREAM_KEYS) becomes
    the 64-key pointer tile. Call 92's sweep (scripts/decode_paged_sweep.py, 256-key pages, GB/s against the contiguous
    call): 32-key pointer tile at 6 stages / 64-key at 5 -- B=1 1M 3257 / 4378 (4362), B=8 128k 3162 / 4282 (4382),
    B=32 32k 3208 / 4046 (4393). The 128-key descriptor tile (MID_KEYS) stays, as a pointer tile (B=32 8k: 3880, the best
    of the sweep)."""
    if cfg.use_tma and cfg.BLOCK_N == 32:
        return DecodeConfig(cfg.BLOCK_M, 64, cfg.num_warps, 3, cfg.ctas_per_sm)
    return cfg
_PLANS: dict = {}
_DECODE = LaunchCache(decode_fwd_kernel)
_COMBINE = LaunchCache(decode_combine_kernel)


def clear_plans():
    """Forget cached plans and compiled-kernel handles (after changing decode_config / combine_unroll)."""
    _PLANS.clear()
    _DECODE.clear()
    _COMBINE.clear()
    getattr(decode_config, "cache_clear", lambda: None)()  # sweeps may have replaced it by a plain function


def _make_plan(q, k, v, S, scale, window, softcap, cu_q, cu_k, max_q, max_k, seqused=False, cache_idx=False,
               paged_keys=0, leftpad=False, alibi=False) -> _Plan:
    """``paged_keys``: a paged cache's capacity per sequence (block table columns x page size), 0 when not paged."""
    varlen = cu_q is not None
    if varlen:
        T, H, D = q.shape
        B = cu_q.shape[0] - 1
        M, N = int(max_q), int(max_k)
        if paged_keys:  # plan for at most the table's capacity (the kernel clamps each length to it)
            N = min(N, paged_keys)
        lse_shape = (H, T)
    else:
        B, M, H, D = q.shape
        N = paged_keys or k.shape[1]
        lse_shape = (B, H, M)
    out_shape = tuple(q.shape)
    HK = k.shape[-2]
    G = H // HK
    left, right = window
    n_vis = visible_keys(M, N, left)
    # programs in the launch, for the tile choice (rows packed 16 to a block where streaming_tiles applies, 64 where
    # block64_tiles does)
    rows_per_block = 64 if block64_tiles(M * G, D, q.dtype) else 16
    cfg = select_config(M * G, D, q.dtype, q.device, n_vis, S, B * HK * cdiv(max(M * G, 1), rows_per_block),
                        num_sms(q.device), "0" if paged_keys else kpar_mode())  # pages: pointer tiles, no KPAR
    if paged_keys:
        cfg = paged_config(cfg)
    BD = block_d(D)
    if S > 1:  # no more splits than the visible keys fill: the kernel shares out S ways the block's keys from the
        # BLOCK_N-aligned start of its window (exact for one row block of a fixed-length batch; for varlen an estimate
        # from the max lengths: a shorter sequence's aligned window may fill one split more. S only affects speed)
        n_al = N - (0 if left < 0 else max(0, N - M - left) // cfg.BLOCK_N * cfg.BLOCK_N)
        S = max(1, cdiv(n_al, cdiv(cdiv(max(n_al, 1), S), cfg.BLOCK_N) * cfg.BLOCK_N))
    ost, lst = _contiguous_strides(out_shape), _contiguous_strides(lse_shape)
    if S > 1:  # partial states (S, *out_shape) / (S, *lse_shape), contiguous
        o_st, l_st = _contiguous_strides((S,) + out_shape), _contiguous_strides((S,) + lse_shape)
        sos, sls, o_st, l_st = o_st[0], l_st[0], o_st[1:], l_st[1:]
    else:
        o_st, l_st, sos, sls = ost, lst, 0, 0
    so3 = (o_st[0], o_st[1], o_st[2]) if not varlen else (0, o_st[0], o_st[1])
    slb, slh, slm = (0, l_st[0], l_st[1]) if varlen else l_st
    if softcap > 0:
        sc_pre, sc_post = scale / softcap, softcap * LOG2E_F
    else:
        sc_pre, sc_post = 0.0, 0.0
    gy, gz = rows_grid(B, HK)
    grid = (cdiv(M * G, cfg.BLOCK_M), gy, gz * S)
    fused = S > 1 and fused_combine(k.numel() * k.element_size() + v.numel() * v.element_size())
    if fused:
        fst = (0, ost[0], ost[1]) if varlen else (ost[0], ost[1], ost[2])
        flst = (0, lst[0], lst[1]) if varlen else lst
    else:
        fst, flst = (0, 0, 0), (0, 0, 0)
    use_tma = cfg.kpar == 1 and not paged_keys and decode_tma(cfg) and tma_ok(k, v)
    cons = dict(GROUP=G, BLOCK_M=cfg.BLOCK_M, BLOCK_N=cfg.BLOCK_N, BLOCK_D=BD, IS_VARLEN=varlen, HAS_LO=left >= 0,
                HAS_HI=right >= 0, HAS_SOFTCAP=softcap > 0, EVEN_D=BD == D,
                DOT_PREC="ieee" if q.dtype == torch.float32 else "tf32", FUSED_COMBINE=fused,
                COMBINE_UNROLL=1, USE_TMA=use_tma, FOLD_ROWS=0, KPAR=cfg.kpar, HAS_SEQUSED=seqused,
                HAS_CACHE_IDX=cache_idx, PAGED=bool(paged_keys), HAS_LEFTPAD=leftpad, HAS_ALIBI=alibi)
    if fused:
        fr = fold_rows(M * G, cfg.BLOCK_M, varlen)
        # the whole-block fold ("block") keeps its measured unroll cap of 4
        cons.update(FOLD_ROWS=fr, COMBINE_UNROLL=combine_unroll(fr, BD) if fr else combine_unroll(cfg.BLOCK_M, BD, 4))
    a1 = (*_strides(q), *_strides(k), *_strides(v), *so3, sos, slb, slh, slm, sls)
    a2 = (k.shape[0] if not varlen or paged_keys else 1,  # n_cache: the K / V batch rows (pages) a slot may name
          M, paged_keys or N, max(left, 0), max(right, 0), scale * LOG2E_F, sc_pre, sc_post, HK, D, S)
    a3 = (*fst, *flst)
    cgrid, ca, ccons, copts = None, (), {}, {}
    if S > 1 and not fused:
        if varlen:  # (S, T, H, D) / (S, H, T): batch stride 0, rows = T
            sp, sq = (0, o_st[0], o_st[1], sos), (0, l_st[0], l_st[1], sls)
            so, sl = (0, ost[0], ost[1]), (0, lst[0], lst[1])
        else:
            sp, sq = (o_st[0], o_st[1], o_st[2], sos), (l_st[0], l_st[1], l_st[2], sls)
            so, sl = (ost[0], ost[1], ost[2]), lst
        cgrid = ((T if varlen else M), *rows_grid(1 if varlen else B, H))
        ca = (*sp, *sq, *so, *sl, H, S, D)
        pdl = _pdl_ok(q.device)
        ccons = dict(BLOCK_S=min(32, next_pow2(max(S, 1))), BLOCK_D=BD, EVEN_D=BD == D, PDL=pdl)
        if pdl:
            cons["PDL"] = True
            copts["launch_pdl"] = True
    n_o = S * math.prod(out_shape) if S > 1 else 0
    n_l = S * math.prod(lse_shape) if S > 1 else 0
    # a paged cache: each tile's addresses come from a load of the block table, and Triton's pipeliner gives the K / V
    # loads fewer buffers for that (offline sm_90, bf16 hd128, 16x64 tile: one buffer at 3-4 stages, two at 5 -- as
    # the unpaged tile at 3; 64x64: two at 4, three at 5-6), so two stages more (unmeasured on a GPU)
    stages = cfg.num_stages + (PAGED_EXTRA_STAGES if paged_keys else 0)
    return _Plan(out_shape, lse_shape, q.numel() == 0, S, n_o, n_l, fused, grid[0] * B * HK, use_tma, grid,
                 a1, a2, a3, cons, dict(num_warps=cfg.num_warps, num_stages=stages), cgrid, ca, ccons, copts)


def decode_fwd(q, k, v, S, scale, window, softcap, cu_q=None, cu_k=None, max_q=None, max_k=None, seqused_k=None,
               cache_batch_idx=None, block_table=None, cache_leftpad=None, alibi=None):
    """Split-KV decode forward: returns (out like q, lse (B, H, M) / (H, T) fp32). ``S`` key ranges of
    BLOCK_N-aligned keys (S = 1: no split, the kernel writes the output directly); for S > 1 either two
    launches (the split kernel and the combine) or one (the last split of each row block combines; see
    fused_combine), no copies. ``seqused_k``: int32 (batch,), sequence b attends to its first seqused_k[b] keys
    (clamped to its length), the masks aligned to that length; ``cache_batch_idx``: int32 (batch,), sequence b reads
    K / V row cache_batch_idx[b] (clamped into k's batch); ``block_table``: int32 (batch, max_blocks) with unit column
    stride, k / v (n_pages, page_size, HK, D): a paged cache of max_blocks · page_size keys per sequence, key n of
    sequence b in page block_table[b, n // page_size] (clamped into [0, n_pages)); ``cache_leftpad``: int32 (batch,),
    sequence b's keys start cache_leftpad[b] rows into its cache (clamped into its length; not with block_table);
    ``alibi``: fp32 (batch, heads) ALiBi slopes with unit column stride (row stride 0: one row for the batch), or None.

    Host path (decode at small batch is host-latency bound): everything that is not a tensor is a
    ``_Plan`` cached under a key of shapes, strides, dtypes, options, the modes read from the environment
    and every input pointer's 16-byte alignment; the kernels are launched through ``LaunchCache`` (no
    per-call re-specialization) and the partial states and counters live in per-stream scratch."""
    varlen = cu_q is not None
    dev = q.device
    if dev.type == "cuda" and dev.index is not None and dev.index != torch.cuda.current_device():
        # launches and per-stream scratch follow the current device: make it q's
        with torch.cuda.device(dev):
            return decode_fwd(q, k, v, S, scale, window, softcap, cu_q, cu_k, max_q, max_k, seqused_k,
                              cache_batch_idx, block_table, cache_leftpad, alibi)
    window = tuple(window)
    key = (q.shape, q.stride(), k.shape, k.stride(), v.shape, v.stride(), q.dtype, k.dtype, v.dtype, dev,
           S, scale, window, softcap, varlen, env_get("TILEFOLD_DECODE_COMBINE", DECODE_COMBINE),
           env_get("TILEFOLD_DECODE_TMA", "auto"), env_get("TILEFOLD_DECODE_KPAR", "auto"), FOLD_MODE,
           DECODE_PDL, FUSED_MAX_KV_BYTES,
           q.data_ptr() % 16, k.data_ptr() % 16, v.data_ptr() % 16)
    if varlen:
        key += (cu_q.shape, cu_k.shape, cu_q.dtype, cu_k.dtype, cu_q.data_ptr() % 16, cu_k.data_ptr() % 16, int(max_q), int(max_k))
    if seqused_k is not None:
        key += ("seqused", seqused_k.data_ptr() % 16)
    if cache_batch_idx is not None:
        key += ("cache_idx", cache_batch_idx.data_ptr() % 16)
    if cache_leftpad is not None:
        key += ("leftpad", cache_leftpad.data_ptr() % 16)
    alb_args = (q, 0)
    if alibi is not None:
        alb_args = (alibi, alibi.stride(0))
        key += ("alibi", alibi.stride(0), alibi.data_ptr() % 16)
    paged_keys, bt_args = 0, (0, 0)
    if block_table is not None:
        paged_keys = block_table.shape[1] * k.shape[1]
        bt_args = (block_table.stride(0), k.shape[1])
        key += ("paged", block_table.shape, bt_args, block_table.data_ptr() % 16)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _make_plan(q, k, v, S, scale, window, softcap, cu_q, cu_k, max_q, max_k, seqused_k is not None,
                          cache_batch_idx is not None, paged_keys, cache_leftpad is not None, alibi is not None)
        if len(_PLANS) >= 1024:
            _PLANS.clear()
        _PLANS[key] = plan
    out = torch.empty(plan.out_shape, device=dev, dtype=q.dtype)
    lse = torch.empty(plan.lse_shape, device=dev, dtype=torch.float32)
    if plan.empty:
        return out, lse
    o_dst, l_dst, cnt = out, lse, q
    if plan.S > 1:
        # the counters are zero on entry; the program that combines a row block zeroes its counter again
        specs = [("decode_o", plan.o_numel, torch.float32, False), ("decode_lse", plan.l_numel, torch.float32, False)]
        if plan.fused:
            specs.append(("decode_cnt", plan.n_cnt, torch.int32, True))
        if dev.type == "cuda":
            bufs = stream_scratches(dev, *specs)
        else:
            bufs = [(torch.zeros if z else torch.empty)(n, device=dev, dtype=dt) for _, n, dt, z in specs]
        o_dst, l_dst = bufs[0], bufs[1]
        if plan.fused:
            cnt = bufs[2]
    if plan.use_tma:
        ensure_allocator()
    cu0, cu1 = (cu_q, cu_k) if varlen else (q, q)
    used = seqused_k if seqused_k is not None else q
    slot = cache_batch_idx if cache_batch_idx is not None else q
    pad = cache_leftpad if cache_leftpad is not None else q
    bt = block_table if block_table is not None else q
    _DECODE.launch(key, plan.grid, (q, k, v, o_dst, l_dst, *plan.a1, cu0, cu1, used, slot, pad, *plan.a2, out, lse, cnt,
                                    *plan.a3, bt, *bt_args, *alb_args),
                   plan.cons, **plan.options)
    if plan.cgrid is not None:
        _COMBINE.launch(key, plan.cgrid, (o_dst, l_dst, out, lse, *plan.ca), plan.ccons, num_warps=4, **plan.copts)
    return out, lse
