"""Public exact-attention functions: validate at the boundary, then dispatch to the custom ops."""
from __future__ import annotations

import torch

from ..common.validate import (MAX_HEADDIM, _alibi, _is_real, _validate_bool, _validate_cu_seqlens, _validate_grid_rows,
                               _validate_last_contiguous, _validate_num_splits, _validate_qkv, _validate_same,
                               _validate_scale, _validate_softcap, _validate_tensor, _validate_window)
from ..decode import kvcache
from ..decode.splitkv import split_kv_attention
from ..common.dispatch import backend_for
from ..common.philox_torch import draw_rng_words
from .function import attention_forward, attention_probs_forward

_MASK_DOC = """
    Masks are aligned to the bottom-right corner: with ``shift = seqlen_k - seqlen_q``, query ``i`` may
    see key ``j`` iff ``i + shift - left <= j <= i + shift + right`` (``window_size = (left, right)``,
    -1 = unbounded; ``causal=True`` sets ``right = 0``). Causal with seqlen_q=2, seqlen_k=5 and with
    seqlen_q=5, seqlen_k=2 (1 = visible)::

        (2, 5)        (5, 2)
        1 1 1 1 0     0 0
        1 1 1 1 1     0 0
                      0 0
                      1 0
                      1 1

    A row that sees no key (the first three rows on the right) gets output 0 and lse -inf.
"""


def _options(q, D, softmax_scale, causal, window_size, softcap, dropout_p, return_attn_probs, return_lse,
             deterministic):
    if D > MAX_HEADDIM or D < 1:
        raise ValueError(f"q: expected head dim in [1, {MAX_HEADDIM}], got {D}")
    scale = _validate_scale(softmax_scale, D)
    left, right = _validate_window(window_size)
    if _validate_bool("causal", causal):
        right = 0 if right < 0 else min(right, 0)
    softcap = _validate_softcap(softcap)
    if not _is_real(dropout_p) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p: expected a number in [0, 1), got {dropout_p!r}")
    for name, flag in (("return_attn_probs", return_attn_probs), ("return_lse", return_lse),
                       ("deterministic", deterministic)):
        _validate_bool(name, flag)
    return scale, left, right, softcap, float(dropout_p)


def _dropout_key(device, dropout_p):
    """The Philox key of one dropout call (None without dropout): three int32 words (seed low, seed high, offset)
    drawn on ``device`` from torch's default generator of that device (``philox_torch.draw_rng_words``), which the
    kernels load (``philox_torch.dropout_args``: the words' pointer in the seed slot). ``torch.manual_seed`` reproduces
    the words and each call draws new ones. Drawn by a kernel rather than read from the generator on the host, so a
    dropout call works under CUDA graph capture (each replay draws new words; the host integers would be baked into
    the graph, one mask for every replay, and torch refuses to read the generator during capture) and under
    torch.compile / export (traced, no graph break). One mode for eager, captured and compiled calls: a graph's warm-up compiles
    the kernel its capture launches (a Triton kernel cannot be loaded during capture)."""
    return draw_rng_words(device) if dropout_p > 0 else None


def attention(q, k, v, *, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
              return_lse=False, deterministic=False, dropout_p=0.0, return_attn_probs=False, num_splits=1,
              alibi_slopes=None):
    """Exact attention ``softmax(scale · q kᵀ) v``, fused: the seqlen_q × seqlen_k matrix is never stored.

    Args:
        q: (batch, seqlen_q, heads, headdim); k, v: (batch, seqlen_k, heads_k, headdim). fp16, bf16
            (GPU) or fp32; last dim contiguous, other strides arbitrary. headdim <= 256. ``heads`` must
            be a multiple of ``heads_k`` (GQA/MQA: query head h uses key head h // (heads / heads_k)).
        softmax_scale: defaults to headdim ** -0.5.
        causal, window_size: the mask (below).
        softcap: if > 0, scores become ``softcap · tanh(scores / softcap)`` before the softmax.
        return_lse: also return lse (batch, heads, seqlen_q), fp32, natural log.
        dropout_p: attention dropout, fused. The mask is a pure function of (key, batch, head, row,
            column) — Philox, keyed by three 32-bit words drawn from torch's default generator of q's device
            by a kernel (``torch.manual_seed`` reproduces it; each call draws a new key). It is never stored:
            the backward regenerates it. Works under CUDA graph capture (each replay draws a new mask) and
            torch.compile(fullgraph=True). The drop probability is p = dropout_p rounded to a multiple of 1/65536
            (at most 65535/65536), and kept probabilities are scaled by 1 / (1 - p) with that p, so the
            output's expectation is the output without dropout (for p near 1 the rounding matters: 0.9999 is
            65529/65536).
        return_attn_probs: return ``(out, lse, S)`` with S (batch, heads, seqlen_q, seqlen_k) fp32 the
            normalized probabilities before dropout, with the **sign bit set where the element was
            dropped** (a dropped probability that underflowed is -0.0); masked positions are +0.0.
            Decode: ``keep = ~torch.signbit(S)``, ``P = S.abs()``. The one O(seqlen_q·seqlen_k) output,
            for testing and analysis; it carries no gradient.
        deterministic: accepted for flash_attn compatibility; the backward is always deterministic
            (dK/dV of a GQA group are summed in registers and dQ has its own pass: no atomics).
        num_splits: split each row's key loop over this many programs and merge their (out, lse)
            states with ⊕ (split-KV; for decoding and long keys with few queries). 0 picks the number by
            occupancy, 1 (default) does not split.
        alibi_slopes: ALiBi, as flash_attn's: float32 (heads,) or (batch, heads); query head h's score of
            query i and key j gets ``-alibi_slopes[h] · |i + seqlen_k - seqlen_q - j|`` added after the scale and
            softcap (the distance aligned to the bottom-right corner, as the masks). No gradient flows to the
            slopes; their values are not checked (a host read per call): an infinite slope gives NaN at
            distance 0, as in flash_attn. The forward runs on the Hopper warp-specialized Gluon kernel where it
            applies, the backward on the Triton kernels (TILEFOLD_BWD_SM90_ALIBI=1: the Gluon ones); split-KV and the
            decode kernel take the slopes too.
    """
    _validate_qkv(q, k, v, 4)
    B, M, H, D = q.shape
    if k.shape[0] != B:
        raise ValueError(f"k: expected batch {B} (as q), got {k.shape[0]}")
    _validate_grid_rows("q", B, H, q.device)
    scale, left, right, softcap, dropout_p = _options(q, D, softmax_scale, causal, window_size, softcap,
                                                      dropout_p, return_attn_probs, return_lse, deterministic)
    num_splits = _validate_num_splits(num_splits)
    if num_splits != 1 and dropout_p > 0:
        raise NotImplementedError("num_splits != 1 with dropout_p > 0: split-KV is an inference path")
    alibi = _alibi(alibi_slopes, B, H, q.device)
    rng = _dropout_key(q.device, dropout_p)  # after the checks: a refused call leaves the generator alone
    if num_splits != 1:
        out, lse = split_kv_attention(q, k, v, num_splits=num_splits, softmax_scale=scale,
                                      window=(left, right), softcap=softcap, alibi=alibi)
    else:
        out, lse = attention_forward(q, k, v, None, None, M, k.shape[1], scale, left, right, softcap, 0,
                                    float(dropout_p), 0, 0, rng, alibi)
    if return_attn_probs:
        S = attention_probs_forward(q, k, v, None, None, M, k.shape[1], lse, scale, left, right, softcap,
                                    dropout_p, rng, alibi)
        return out, lse, S
    return (out, lse) if return_lse else out


def varlen_attention(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, *,
                     softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                     return_lse=False, deterministic=False, dropout_p=0.0, return_attn_probs=False,
                     num_splits=1, block_table=None, alibi_slopes=None):
    """Attention over packed sequences: q (total_q, heads, headdim), k/v (total_k, heads_k, headdim);
    sequence b is rows ``cu_seqlens_q[b]:cu_seqlens_q[b+1]`` of q and ``cu_seqlens_k[b]:cu_seqlens_k[b+1]``
    of k/v (int32, batch + 1 values, starting at 0). max_seqlen_q/k bound the lengths. Empty sequences
    are allowed. Same options as :func:`attention`; lse is (heads, total_q). Masks are per sequence.
    The cu_seqlens values are checked on the host (one sync per call), except while torch.compile traces or a CUDA
    graph captures the call (capturable, as flash_attn's): there they are not read and must be valid -- the kernels
    trust them as flash_attn's do (a last value past total_q / total_k reads and writes out of bounds).
    With return_attn_probs, S is padded: (batch, heads, max_seqlen_q, max_seqlen_k), sequence b in the
    top-left corner of S[b], padding 0.

    ``block_table``: optional int32 (batch, max_blocks), a paged KV cache (flash_attn's ``flash_attn_varlen_func``
    with a block table, e.g. chunked prefill against vLLM-style pages). k / v are then pools of pages (n_pages,
    page_size, heads_k, headdim), any page_size >= 1, and sequence b's keys are the first ``cu_seqlens_k[b + 1] -
    cu_seqlens_k[b]`` keys of its pages: key n in page ``block_table[b, n // page_size]``, row ``n % page_size``
    (cu_seqlens_k gives lengths only; each length <= max_blocks · page_size). Entries are checked against n_pages
    when the table is on the CPU, clamped into the pool on the GPU. An inference path: no dropout, no
    return_attn_probs, and no gradient (NotImplementedError when an input requires grad). The decode kernel (for
    max_seqlen_q · heads / heads_k <= 256) reads the pages in place. The forward kernel does where it can read the
    pool through TMA descriptors (sm_90+, fp16 / bf16, a power-of-two head dim, 16-byte aligned base and strides, a
    pool's pages consecutive rows, pages holding whole key tiles: page_size a multiple of 128 at head dims <= 128, of
    64 above); otherwise it gathers the pages max_seqlen_k reaches into a contiguous copy first while that copy (K and
    V) stays within ``tilefold.ops.decode.kvcache.PAGED_GATHER_MAX_BYTES`` (1 GiB: faster than its per-row page
    lookups) and reads in place beyond it. ``alibi_slopes``: as :func:`attention` (per sequence, the distance
    aligned to each sequence's bottom-right corner), with block_table too."""
    if block_table is not None:
        return _varlen_paged(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, block_table,
                             softmax_scale, causal, window_size, softcap, return_lse, deterministic, dropout_p,
                             return_attn_probs, num_splits, alibi_slopes)
    _validate_qkv(q, k, v, 3)
    T, H, D = q.shape
    _validate_cu_seqlens("cu_seqlens_q", cu_seqlens_q, T, max_seqlen_q, "max_seqlen_q", q.device)
    _validate_cu_seqlens("cu_seqlens_k", cu_seqlens_k, k.shape[0], max_seqlen_k, "max_seqlen_k", q.device)
    if cu_seqlens_q.numel() != cu_seqlens_k.numel():
        raise ValueError(f"cu_seqlens_k: expected {cu_seqlens_q.numel()} values (as cu_seqlens_q), "
                         f"got {cu_seqlens_k.numel()}")
    max_seqlen_q, max_seqlen_k = int(max_seqlen_q), int(max_seqlen_k)
    _validate_grid_rows("cu_seqlens_q", cu_seqlens_q.numel() - 1, H, q.device)
    scale, left, right, softcap, dropout_p = _options(q, D, softmax_scale, causal, window_size, softcap,
                                                      dropout_p, return_attn_probs, return_lse, deterministic)
    num_splits = _validate_num_splits(num_splits)
    if num_splits != 1 and dropout_p > 0:
        raise NotImplementedError("num_splits != 1 with dropout_p > 0: split-KV is an inference path")
    alibi = _alibi(alibi_slopes, cu_seqlens_q.numel() - 1, H, q.device)
    rng = _dropout_key(q.device, dropout_p)  # after the checks: a refused call leaves the generator alone
    if num_splits != 1:
        out, lse = split_kv_attention(q, k, v, num_splits=num_splits, softmax_scale=scale,
                                      window=(left, right), softcap=softcap, cu_seqlens_q=cu_seqlens_q,
                                      cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
                                      max_seqlen_k=max_seqlen_k, alibi=alibi)
    else:
        out, lse = attention_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                    scale, left, right, softcap, 0, float(dropout_p), 0, 0, rng, alibi)
    if return_attn_probs:
        S = attention_probs_forward(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, lse, scale,
                                    left, right, softcap, dropout_p, rng, alibi)
        return out, lse, S
    return (out, lse) if return_lse else out


def _varlen_paged(q, k, v, cu_q, cu_k, max_q, max_k, block_table, softmax_scale, causal, window_size, softcap,
                  return_lse, deterministic, dropout_p, return_attn_probs, num_splits, alibi_slopes=None):
    """varlen_attention with a block table: the checks, then ``kvcache.paged_varlen``."""
    _validate_tensor("q", q, 3)
    _validate_last_contiguous("q", q)
    for n, t in (("k", k), ("v", v)):
        _validate_tensor(n, t, 4)
        _validate_last_contiguous(n, t)
    _validate_same(("q", "k", "v"), (q, k, v), "dtype")
    _validate_same(("q", "k", "v"), (q, k, v), "device")
    if k.shape != v.shape:
        raise ValueError(f"v: expected shape {tuple(k.shape)} (as k), got {tuple(v.shape)}")
    T, H, D = q.shape
    n_pages, page, HK = k.shape[:3]
    if k.shape[-1] != D:
        raise ValueError(f"k: expected head dim {D} (as q), got {k.shape[-1]}")
    if HK < 1 or H % HK:
        raise ValueError(f"k: expected heads_k dividing heads={H}, got heads_k={HK}")
    if page < 1:
        raise ValueError("k: expected pages of at least one key with block_table, got page size 0")
    _validate_cu_seqlens("cu_seqlens_q", cu_q, T, max_q, "max_seqlen_q", q.device)
    longest = _validate_cu_seqlens("cu_seqlens_k", cu_k, None, max_k, "max_seqlen_k", q.device)
    if cu_q.numel() != cu_k.numel():
        raise ValueError(f"cu_seqlens_k: expected {cu_q.numel()} values (as cu_seqlens_q), got {cu_k.numel()}")
    B = cu_q.numel() - 1
    table = kvcache._block_table(block_table, B, n_pages, q.device)
    L = table.shape[1] * page
    if longest is not None and longest > L:
        raise ValueError(f"cu_seqlens_k: expected lengths <= block_table's capacity max_blocks x page_size = {L}, "
                         f"got a sequence of {longest} keys")
    _validate_grid_rows("cu_seqlens_q", B, H, q.device)
    scale, left, right, softcap, dropout_p = _options(q, D, softmax_scale, causal, window_size, softcap,
                                                      dropout_p, return_attn_probs, return_lse, deterministic)
    num_splits = _validate_num_splits(num_splits)
    if dropout_p > 0 or return_attn_probs:
        raise NotImplementedError("block_table: a paged cache is an inference path (no dropout_p, no "
                                  "return_attn_probs)")
    alibi = _alibi(alibi_slopes, B, H, q.device)
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        raise NotImplementedError("block_table: a paged cache is an inference path with no backward; call under "
                                  "torch.no_grad() or pass tensors that do not require grad")
    out, lse = kvcache.paged_varlen(q, k, v, cu_q, cu_k, max_q, max_k, table, scale, (left, right), softcap,
                                    num_splits, alibi)
    return (out, lse) if return_lse else out


attention.__doc__ += _MASK_DOC
varlen_attention.__doc__ += _MASK_DOC
