"""Forward kernel of exact attention: the fold of (m, l, acc) over K/V tiles in registers.

One program owns BLOCK_M query rows of one (batch, head) and folds the key tiles its mask lets it
see: first the tiles that need the mask, then the fully visible ones (no mask arithmetic), then the
masked tail. Optional split of the key range (split-KV) writes fp32 partial states instead of the
final output; the combine merges them with ⊕.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import config as _cfg
from . import forward_sm90 as _sm90
from ..common.fold import LOG2E, finalize, fold_step, score_transform
from ..common.masks import (alibi_distance, block_order, cache_row, key_tiles, left_pad, paged_rows, sequence_bounds,
                            split_share, used_keys, visible)
from ..common.host import cdiv, rows_grid
from ..common.philox import RNG_ARGS, dropout_args, dropout_keep, rng_key, rng_ptr
from ..common.tma import ensure_allocator, load_kv_tile, paged_tma_ok, rows_descriptor, tma_ok


@triton.jit
def _scores(q, k, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP: tl.constexpr, DOT_PREC: tl.constexpr):
    """Scores of one tile in log2 units (fp32), softcap applied."""
    qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
    s, _ = score_transform(qk, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP)
    return s


@triton.jit
def _fwd_tiles(acc, l_i, m_i, q, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, offs_m, offs_n0, offs_d,
               n_lo, n_hi, seqlen_k, shift, win_left, win_right,
               qk_scale, softcap_pre, softcap_post, D,
               BLOCK_N: tl.constexpr, MASKED: tl.constexpr, EVEN_D: tl.constexpr,
               HAS_LO: tl.constexpr, HAS_HI: tl.constexpr, HAS_SOFTCAP: tl.constexpr, DOT_PREC: tl.constexpr,
               USE_TMA: tl.constexpr, WARP_SPEC: tl.constexpr,
               seed_lo, seed_hi, rng_offset, drop_thr, bh, BLOCK_M: tl.constexpr, HAS_DROPOUT: tl.constexpr,
               bt_row, page_size, n_pages, stride_kp, stride_vp, PAGED: tl.constexpr,
               alibi_slope=0.0, HAS_ALIBI: tl.constexpr = False):
    """Fold key tiles [n_lo, n_hi) into (acc, l, m). HAS_ALIBI: scores get ``-alibi_slope · |i + shift - j|`` (the
    slope in log2 units, as the scores). PAGED: each tile's rows are looked up in the block table row
    ``bt_row`` (pages of ``page_size`` keys): with USE_TMA k_desc / v_desc are descriptors over the pool's rows and a
    tile is one box of one page; else they are the key head's base pointers and each row finds its page (page strides
    stride_kp / stride_vp; ``masks.paged_rows``)."""
    if not USE_TMA:
        k_ptrs += n_lo.to(tl.int64) * stride_kn
        v_ptrs += n_lo.to(tl.int64) * stride_vn
    pg_next = 0
    if PAGED and USE_TMA:  # the first tile's table entry; each iteration loads the next one's (see below)
        pg_next = tl.load(bt_row + n_lo // page_size, mask=n_lo < n_hi, other=0)
    for start_n in tl.range(n_lo, n_hi, BLOCK_N, warp_specialize=WARP_SPEC):
        offs_n = start_n + offs_n0
        if PAGED and USE_TMA:
            # the tile lies in one page (page_size % BLOCK_N == 0): one table entry, then one box of the pool's rows
            # (k_desc / v_desc: (n_pages · page_size, D) descriptors); rows past seqlen_k in the last page are the
            # pool's own contents, not zero-filled: their scores are masked below and their V rows zeroed here.
            # The entry comes from the previous iteration (loop-carried): loaded in the same iteration as the boxes,
            # Triton's pipeliner made it an async copy one stage ahead of them and left K / V two buffers deep
            # (164864 B of shared memory against the contiguous call's three, 230400 B; offline sm_90 compile).
            row = (tl.minimum(tl.maximum(pg_next, 0), n_pages - 1) * page_size + start_n % page_size).to(tl.int32)
            k = k_desc.load([row, 0])
            v = v_desc.load([row, 0])
            pg_next = tl.load(bt_row + (start_n + BLOCK_N) // page_size, mask=start_n + BLOCK_N < n_hi, other=0)
            if MASKED:
                v = tl.where((offs_n < seqlen_k)[:, None], v, 0.0)
        else:
            if PAGED:
                pg, r = paged_rows(bt_row, offs_n, seqlen_k, page_size, n_pages)
                k_ptrs = k_desc + (pg * stride_kp + r * stride_kn)[:, None] + offs_d[None, :]
                v_ptrs = v_desc + (pg * stride_vp + r * stride_vn)[:, None] + offs_d[None, :]
            k, v = load_kv_tile(k_ptrs, v_ptrs, k_desc, v_desc, start_n, offs_n, offs_d, seqlen_k, D,
                                MASKED, EVEN_D, USE_TMA)
        s = _scores(q, k, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP, DOT_PREC)
        if HAS_ALIBI:
            s = s - alibi_slope * alibi_distance(offs_m, offs_n, shift)
        if MASKED:
            ok = visible(offs_m, offs_n, seqlen_k, shift, win_left, win_right, HAS_LO, HAS_HI)
            s = tl.where(ok, s, float("-inf"))
        acc, l_i, m_i, p = fold_step(acc, l_i, m_i, s, v, MASKED)
        if HAS_DROPOUT:
            # l already counts every probability; only kept ones reach the accumulator
            keep = dropout_keep(seed_lo, seed_hi, rng_offset, bh, 0, offs_m[:, None], start_n, offs_n0[None, :], drop_thr)
            p = tl.where(keep, p, qk_scale * 0.0)
        acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
        if not USE_TMA:
            k_ptrs += BLOCK_N * stride_kn
            v_ptrs += BLOCK_N * stride_vn
    return acc, l_i, m_i


@triton.jit(do_not_specialize=RNG_ARGS)
def attention_fwd_kernel(
    Q, K, V, O, LSE,
    stride_qb, stride_qm, stride_qh,
    stride_kb, stride_kn, stride_kh,
    stride_vb, stride_vn, stride_vh,
    stride_ob, stride_om, stride_oh, stride_os,
    stride_lb, stride_lh, stride_lm, stride_ls,
    cu_seqlens_q, cu_seqlens_k, seqused_k, cache_batch_idx, cache_leftpad, n_cache,
    seqlen_q_fixed, seqlen_k_fixed, shift_extra, win_left, win_right,
    qk_scale, softcap_pre, softcap_post,
    H, GROUP, D, n_splits,
    seed_lo, seed_hi, rng_offset, drop_thr, drop_rscale,
    P, stride_pb, stride_ph, stride_pm,
    BLOCK_TABLE, stride_btb, page_size, ALIBI, stride_alb,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    IS_VARLEN: tl.constexpr, HAS_LO: tl.constexpr, HAS_HI: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr, EVEN_D: tl.constexpr, IS_SPLIT: tl.constexpr,
    DOT_PREC: tl.constexpr, USE_TMA: tl.constexpr, WARP_SPEC: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, RETURN_P: tl.constexpr, LPT: tl.constexpr, RNG_PTR: tl.constexpr = False,
    HAS_SEQUSED: tl.constexpr = False, HAS_CACHE_IDX: tl.constexpr = False, HAS_LEFTPAD: tl.constexpr = False,
    PAGED: tl.constexpr = False, HAS_ALIBI: tl.constexpr = False,
):
    """PAGED: K / V are (n_pages = n_cache, page_size, HK, D) and key n of sequence b lives in page
    BLOCK_TABLE[b, n // page_size] (row stride stride_btb), row n % page_size; at most seqlen_k_fixed (the table's
    capacity) keys per sequence; no dropout / RETURN_P / left padding. PAGED with USE_TMA: each pool's pages are
    consecutive rows (page stride = page_size · row stride) and page_size % BLOCK_N == 0 (the launcher checks).
    HAS_ALIBI: ALIBI (batch, heads) fp32 slopes (row stride stride_alb, 0 for one row shared by the batch); query head
    h's scores get ``-ALIBI[b, h] · |i + shift - j|`` after the scale and softcap (flash_attn's alibi_slopes)."""
    tl.static_assert(not PAGED or not (HAS_DROPOUT or RETURN_P or HAS_LEFTPAD),
                     "a paged cache is read without dropout, probabilities or left padding")
    # heavy query blocks (most visible keys under a causal mask) first: a shorter tail
    pid_m, pid_bh, pid_s = block_order(LPT, True, n_splits)
    seed_lo, seed_hi, rng_offset = rng_key(seed_lo, seed_hi, rng_offset, RNG_PTR)
    b = pid_bh // H
    h = pid_bh % H
    hk = h // GROUP
    q_start, seqlen_q, k_start, seqlen_k = sequence_bounds(cu_seqlens_q, cu_seqlens_k, b, seqlen_q_fixed,
                                                           seqlen_k_fixed, IS_VARLEN)
    seqlen_k = used_keys(seqlen_k, seqused_k, b, HAS_SEQUSED)
    if PAGED:  # no further than the block table's capacity (a packed call's lengths come from cu_seqlens_k)
        seqlen_k = tl.minimum(seqlen_k, seqlen_k_fixed)
    k_start, seqlen_k = left_pad(k_start, seqlen_k, cache_leftpad, b, HAS_LEFTPAD)
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

    q_base = Q + b.to(tl.int64) * stride_qb + q_start.to(tl.int64) * stride_qm + h.to(tl.int64) * stride_qh
    kb = cache_row(b, cache_batch_idx, n_cache, HAS_CACHE_IDX).to(tl.int64)
    k_base = K + kb * stride_kb + k_start.to(tl.int64) * stride_kn + hk.to(tl.int64) * stride_kh
    v_base = V + kb * stride_vb + k_start.to(tl.int64) * stride_vn + hk.to(tl.int64) * stride_vh
    q_ptrs = q_base + offs_m[:, None] * stride_qm + offs_d[None, :]
    if EVEN_D:
        q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
    else:
        q = tl.load(q_ptrs, mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0)
    k_ptrs = k_base + offs_n0[:, None] * stride_kn + offs_d[None, :]
    v_ptrs = v_base + offs_n0[:, None] * stride_vn + offs_d[None, :]
    bt_row = BLOCK_TABLE
    if PAGED:  # each tile finds its page(s) (_fwd_tiles): descriptors over the key head's pool rows, or its base
        bt_row = BLOCK_TABLE + b.to(tl.int64) * stride_btb
        if USE_TMA:
            k_desc = rows_descriptor(K + hk.to(tl.int64) * stride_kh, n_cache * page_size, D, stride_kn, BLOCK_N,
                                     BLOCK_D)
            v_desc = rows_descriptor(V + hk.to(tl.int64) * stride_vh, n_cache * page_size, D, stride_vn, BLOCK_N,
                                     BLOCK_D)
        else:
            k_desc = K + hk.to(tl.int64) * stride_kh
            v_desc = V + hk.to(tl.int64) * stride_vh
    elif USE_TMA:
        k_desc = rows_descriptor(k_base, seqlen_k, D, stride_kn, BLOCK_N, BLOCK_D)
        v_desc = rows_descriptor(v_base, seqlen_k, D, stride_vn, BLOCK_N, BLOCK_D)
    else:
        k_desc = k_base
        v_desc = v_base

    if IS_SPLIT:  # the splits share out the keys this query block can see (window / causal first, per sequence)
        split_lo, split_hi = split_share(m0, seqlen_q, seqlen_k, shift, win_left, win_right, pid_s,
                                         n_splits, BLOCK_M, BLOCK_N, HAS_LO, HAS_HI)
    else:
        split_lo = 0
        split_hi = seqlen_k
    n_start, f_lo, f_hi, n_end = key_tiles(m0, seqlen_q, seqlen_k, shift, win_left, win_right,
                                           split_lo, split_hi, BLOCK_M, BLOCK_N, HAS_LO, HAS_HI)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # masked head (window left edge), fully visible middle, masked tail (diagonal / seqlen_k edge)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, offs_m, offs_n0,
                               offs_d, n_start, f_lo, seqlen_k, shift, win_left, win_right,
                               qk_scale, softcap_pre, softcap_post, D,
                               BLOCK_N, True, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC, USE_TMA, False,
                               seed_lo, seed_hi, rng_offset, drop_thr, pid_bh, BLOCK_M, HAS_DROPOUT,
                               bt_row, page_size, n_cache, stride_kb, stride_vb, PAGED, alibi_slope, HAS_ALIBI)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, offs_m, offs_n0,
                               offs_d, f_lo, f_hi, seqlen_k, shift, win_left, win_right,
                               qk_scale, softcap_pre, softcap_post, D,
                               BLOCK_N, False, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC, USE_TMA, WARP_SPEC,
                               seed_lo, seed_hi, rng_offset, drop_thr, pid_bh, BLOCK_M, HAS_DROPOUT,
                               bt_row, page_size, n_cache, stride_kb, stride_vb, PAGED, alibi_slope, HAS_ALIBI)
    acc, l_i, m_i = _fwd_tiles(acc, l_i, m_i, q, k_ptrs, v_ptrs, k_desc, v_desc, stride_kn, stride_vn, offs_m, offs_n0,
                               offs_d, f_hi, n_end, seqlen_k, shift, win_left, win_right,
                               qk_scale, softcap_pre, softcap_post, D,
                               BLOCK_N, True, EVEN_D, HAS_LO, HAS_HI, HAS_SOFTCAP, DOT_PREC, USE_TMA, False,
                               seed_lo, seed_hi, rng_offset, drop_thr, pid_bh, BLOCK_M, HAS_DROPOUT,
                               bt_row, page_size, n_cache, stride_kb, stride_vb, PAGED, alibi_slope, HAS_ALIBI)
    o, lse = finalize(acc, l_i, m_i)
    if HAS_DROPOUT:
        o = o * drop_rscale
    if RETURN_P:
        # the normalized probabilities, dropped ones with the sign bit set; masked / padding +0.0
        lse2 = tl.where(lse == float("-inf"), float("inf"), lse * LOG2E)
        p_base = P + b.to(tl.int64) * stride_pb + h.to(tl.int64) * stride_ph
        for start_n in range(0, seqlen_k, BLOCK_N):
            offs_n = start_n + offs_n0
            kmask = offs_n[:, None] < seqlen_k
            if not EVEN_D:
                kmask = kmask & (offs_d[None, :] < D)
            k = tl.load(k_base + offs_n[:, None] * stride_kn + offs_d[None, :], mask=kmask, other=0.0)
            s = _scores(q, k, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP, DOT_PREC)
            if HAS_ALIBI:
                s = s - alibi_slope * alibi_distance(offs_m, offs_n, shift)
            ok = visible(offs_m, offs_n, seqlen_k, shift, win_left, win_right, HAS_LO, HAS_HI)
            p = tl.where(ok, tl.math.exp2(s - lse2[:, None]), 0.0)
            if HAS_DROPOUT:
                keep = dropout_keep(seed_lo, seed_hi, rng_offset, pid_bh, m0, tl.arange(0, BLOCK_M)[:, None], start_n, offs_n0[None, :],
                                    drop_thr)
                # set the sign bit explicitly so a dropped 0 becomes -0.0
                signed = (p.to(tl.uint32, bitcast=True) | 0x80000000).to(tl.float32, bitcast=True)
                p = tl.where(ok & (keep == 0), signed, p)
            tl.store(p_base + offs_m[:, None].to(tl.int64) * stride_pm + offs_n[None, :], p,
                     mask=row_ok[:, None] & (offs_n[None, :] < seqlen_k))

    o_base = O + b.to(tl.int64) * stride_ob + q_start.to(tl.int64) * stride_om + h.to(tl.int64) * stride_oh \
        + pid_s.to(tl.int64) * stride_os
    o_ptrs = o_base + offs_m[:, None] * stride_om + offs_d[None, :]
    if EVEN_D:
        tl.store(o_ptrs, o.to(O.dtype.element_ty), mask=row_ok[:, None])
    else:
        tl.store(o_ptrs, o.to(O.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < D))
    l_ptrs = LSE + b.to(tl.int64) * stride_lb + h.to(tl.int64) * stride_lh \
        + (q_start + offs_m).to(tl.int64) * stride_lm + pid_s.to(tl.int64) * stride_ls
    tl.store(l_ptrs, lse, mask=row_ok)


# ----------------------------------------------------------------------------------------------------
# launcher


def _qkv_strides(t):
    """(stride_b, stride_seq, stride_head) of a (B, S, H, D) or packed (T, H, D) tensor."""
    st = t.stride()
    if len(st) == 4:
        return st[0], st[1], st[2]
    return 0, st[0], st[1]


def paged_reads_descriptors(q, k, v, window) -> bool:
    """Whether attention_fwd reads the paged pool k / v (n_pages, page_size, HK, D) through descriptors (one box per
    key tile) rather than through pointer loads (per-row page lookups)."""
    cfg = _cfg.fwd_config(k.shape[-1], window[0] >= 0 or window[1] >= 0, q.dtype, q.device)
    return cfg.use_tma and tma_ok(k, v) and paged_tma_ok(k, v, cfg.BLOCK_N)


def attention_fwd(q, k, v, *, softmax_scale, window, softcap, cu_seqlens_q=None, cu_seqlens_k=None,
                  max_seqlen_q=None, max_seqlen_k=None, shift_extra=0, num_splits=1,
                  dropout_p=0.0, seed=0, offset=0, rng=None, probs=None, seqused_k=None, cache_batch_idx=None,
                  cache_leftpad=None, block_table=None, alibi=None):
    """Launch the forward. ``window = (left, right)`` with -1 unbounded (causal already folded into
    right = 0). Returns (out, lse): out like q, lse (B, H, M) or (H, Tq) fp32 natural log.
    With num_splits > 1 returns fp32 partial states (num_splits, *out.shape) and (num_splits, *lse.shape).
    dropout_p > 0 applies the Philox mask of (seed, offset), or of the words in ``rng`` when given
    (tilefold.ops.common.philox). ``probs``: a
    zero-filled fp32 (B, H, M, N) tensor (varlen: padded (B, H, max_seqlen_q, max_seqlen_k)) that
    receives the normalized probabilities with dropped elements' sign bit set. ``seqused_k``: int32 (batch,), sequence
    b attends to its first seqused_k[b] keys (clamped to its length; a padded KV cache's filled part), the masks
    aligned to that length. ``cache_batch_idx``: int32 (batch,), sequence b reads K / V row cache_batch_idx[b] (clamped
    into k's batch). ``cache_leftpad``: int32 (batch,), sequence b's keys start cache_leftpad[b] rows in (clamped into
    its length). ``block_table``: int32 (batch, max_blocks) with unit column stride, k / v (n_pages, page_size, HK, D): a
    paged cache of max_blocks · page_size keys per sequence (no dropout, probs or left padding). ``alibi``: fp32 (batch,
    heads) ALiBi slopes, or None (flash_attn's alibi_slopes; the warp-specialized Gluon kernel takes them too)."""
    varlen = cu_seqlens_q is not None
    # (returned probabilities are computed by a separate call whose out / lse are discarded: this kernel)
    # attention_with_kvcache: the Triton kernel
    cache_call = (seqused_k is not None or cache_batch_idx is not None or cache_leftpad is not None
                  or block_table is not None)
    if probs is None and not cache_call and _cfg.FWD_SM90 != "0" and not _cfg.interpreter_enabled() \
            and _sm90.supported(
            q, k, v, softcap=softcap, window=window, dropout_p=dropout_p, num_splits=num_splits,
            varlen=varlen, shift_extra=shift_extra, softmax_scale=softmax_scale, alibi=alibi is not None):
        return _sm90.attention_fwd_sm90(q, k, v, softmax_scale=softmax_scale, window=window, dropout_p=dropout_p,
                                        seed=seed, offset=offset, rng=rng, alibi=alibi)
    if varlen:
        T, H, D = q.shape
        B = cu_seqlens_q.numel() - 1
        M, N = max_seqlen_q, max_seqlen_k
        lse_shape = (H, T)
    else:
        B, M, H, D = q.shape
        N = k.shape[1]
        lse_shape = (B, H, M)
    paged = block_table is not None
    if paged:  # the kernel clamps each sequence's keys to the table's capacity (not to max_seqlen_k, as unpaged varlen)
        N = block_table.shape[1] * k.shape[1]
    HK = k.shape[-2]
    left, right = window
    cfg = _cfg.fwd_config(D, left >= 0 or right >= 0, q.dtype, q.device, dropout_p > 0 or probs is not None)
    if cfg.use_tma and (not tma_ok(k, v) or paged and not paged_tma_ok(k, v, cfg.BLOCK_N)):
        cfg = cfg.for_pointers()
    BD = _cfg.block_d(D)
    split = num_splits > 1
    if split:
        out = torch.empty((num_splits,) + tuple(q.shape), device=q.device, dtype=torch.float32)
        lse = torch.empty((num_splits,) + lse_shape, device=q.device, dtype=torch.float32)
        so = out.stride(0)
        sl = lse.stride(0)
        o_view, l_view = out[0], lse[0]
    else:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
        lse = torch.empty(lse_shape, device=q.device, dtype=torch.float32)
        so = sl = 0
        o_view, l_view = out, lse
    if B == 0 or M == 0 or H == 0 or q.numel() == 0:
        if split:
            out.zero_()
            lse.fill_(float("-inf"))
        return out, lse
    if varlen:
        slb, slh, slm = 0, l_view.stride(0), l_view.stride(1)
    else:
        slb, slh, slm = l_view.stride(0), l_view.stride(1), l_view.stride(2)
    sqb, sqm, sqh = _qkv_strides(q)
    skb, skn, skh = _qkv_strides(k)
    svb, svn, svh = _qkv_strides(v)
    sob, som, soh = _qkv_strides(o_view)
    LOG2E = 1.4426950408889634
    if softcap > 0:
        sc_pre, sc_post = softmax_scale / softcap, softcap * LOG2E
    else:
        sc_pre, sc_post = 0.0, 0.0
    dummy = cu_seqlens_q if varlen else q
    use_tma = cfg.use_tma and tma_ok(k, v) and (not paged or paged_tma_ok(k, v, cfg.BLOCK_N))
    if use_tma:
        ensure_allocator()
    n_splits = num_splits if split else 1
    gy, gz = rows_grid(B, H)
    grid = (cdiv(M, cfg.BLOCK_M), gy, gz * n_splits)
    has_drop = dropout_p > 0
    P = probs if probs is not None else lse
    sp = probs.stride() if probs is not None else (0, 0, 0, 0)
    drop = dropout_args(dropout_p, seed, offset, rng)
    attention_fwd_kernel[grid](
        q, k, v, out, lse,
        sqb, sqm, sqh, skb, skn, skh, svb, svn, svh,
        sob, som, soh, so, slb, slh, slm, sl,
        cu_seqlens_q if varlen else dummy, cu_seqlens_k if varlen else dummy,
        seqused_k if seqused_k is not None else dummy,
        cache_batch_idx if cache_batch_idx is not None else dummy,
        cache_leftpad if cache_leftpad is not None else dummy, k.shape[0] if not varlen or paged else 1,
        M, N, shift_extra, max(left, 0), max(right, 0),
        softmax_scale * LOG2E, sc_pre, sc_post,
        H, H // HK, D, n_splits,
        *drop, P, sp[0], sp[1], sp[2],
        block_table if paged else dummy, block_table.stride(0) if paged else 0, k.shape[1] if paged else 0,
        alibi if alibi is not None else dummy, alibi.stride(0) if alibi is not None else 0,
        BLOCK_M=cfg.BLOCK_M, BLOCK_N=cfg.BLOCK_N, BLOCK_D=BD,
        IS_VARLEN=varlen, HAS_LO=left >= 0, HAS_HI=right >= 0,
        HAS_SOFTCAP=softcap > 0, EVEN_D=BD == D, IS_SPLIT=split,
        DOT_PREC=_cfg.dot_precision(q.dtype), USE_TMA=use_tma, WARP_SPEC=use_tma and cfg.warp_spec,
        HAS_DROPOUT=has_drop, RETURN_P=probs is not None, LPT=_cfg.lpt_order(left, right, varlen),
        RNG_PTR=has_drop and rng_ptr(rng), HAS_SEQUSED=seqused_k is not None,
        HAS_CACHE_IDX=cache_batch_idx is not None, HAS_LEFTPAD=cache_leftpad is not None, PAGED=paged,
        HAS_ALIBI=alibi is not None,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages,
    )
    return out, lse
