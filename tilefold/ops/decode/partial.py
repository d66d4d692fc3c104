"""Partial attention: a range of query rows against a range of keys of a longer sequence, with the
masks in **global** positions.

Queries ``q_start .. q_start + Mq`` of a sequence of ``seqlen_q_total`` rows attend to keys
``k_start .. k_start + Nk`` of ``seqlen_k_total`` keys; causal/window are aligned bottom-right on the
*total* lengths (query i sees key j iff ``i + S - left <= j <= i + S + right``, ``S = seqlen_k_total -
seqlen_q_total``). The result is the state ``(out, lse)`` of that key range, so for any partition of the
keys into ranges, ``merge_states`` of the partial states equals the full attention — the building
block of split-KV, ring and 2.5D schedules. A row that sees no key of the range gets (0, -inf).

It is the ordinary forward with the diagonal shifted: locally ``shift = Nk - Mq + shift_extra`` must equal
``S + q_start - k_start``. Differentiable (the attention custom op carries the shift into the backward).
"""
from __future__ import annotations

import torch

from ..attention.function import attention_forward
from ..common.validate import (MAX_HEADDIM, WINDOW_MAX, _alibi, _validate_bool, _validate_grid_rows, _validate_int,
                               _validate_qkv, _validate_scale, _validate_softcap, _validate_window)


def global_shift_extra(q_start: int, k_start: int, seqlen_q: int, seqlen_k: int,
                       seqlen_q_total: int, seqlen_k_total: int) -> int:
    """``shift_extra`` of the attention op that places a (seqlen_q × seqlen_k) block at
    (q_start, k_start) of a (seqlen_q_total × seqlen_k_total) bottom-right aligned mask."""
    return (seqlen_k_total - seqlen_q_total) + q_start - k_start - (seqlen_k - seqlen_q)


def partial_attention(q, k, v, *, q_start, k_start, seqlen_q_total, seqlen_k_total, causal=False,
                      window_size=(-1, -1), softcap=0.0, softmax_scale=None, alibi_slopes=None):
    """Attention state of query rows ``[q_start, q_start + seqlen_q)`` against keys
    ``[k_start, k_start + seqlen_k)`` of a (seqlen_q_total × seqlen_k_total) attention.

    Args:
        q: (batch, seqlen_q, heads, headdim); k, v: (batch, seqlen_k, heads_k, headdim) — the slices.
        q_start, k_start: global position of the first query row / key of the slices.
        seqlen_q_total, seqlen_k_total: lengths of the whole sequences (they set the mask's diagonal).
        causal, window_size, softcap, softmax_scale: as :func:`tilefold.attention`, in global positions.
        alibi_slopes: ALiBi as :func:`tilefold.attention` (float32 (heads,) or (batch, heads)), its distance in global
            positions too (``|i + seqlen_k_total - seqlen_q_total - j|``), so the merged partial states equal the
            whole attention with ALiBi. No gradient flows to the slopes.
    Returns:
        (out (batch, seqlen_q, heads, headdim) in q.dtype, lse (batch, heads, seqlen_q) fp32).
    """
    _validate_qkv(q, k, v, 4)
    B, M, H, D = q.shape
    N, HK = k.shape[1], k.shape[2]
    if k.shape[0] != B:
        raise ValueError(f"k: expected batch {B} (as q), got {k.shape[0]}")
    if not 1 <= D <= MAX_HEADDIM:
        raise ValueError(f"q: expected head dim in [1, {MAX_HEADDIM}], got {D}")
    _validate_grid_rows("q", B, H, q.device)
    q_start, k_start, seqlen_q_total, seqlen_k_total = (
        _validate_int(name, x) for name, x in (("q_start", q_start), ("k_start", k_start),
                                               ("seqlen_q_total", seqlen_q_total), ("seqlen_k_total", seqlen_k_total)))
    for name, x in (("seqlen_q_total", seqlen_q_total), ("seqlen_k_total", seqlen_k_total)):
        if x > WINDOW_MAX:  # the kernels' positions and mask edges are int32, windows clamp to WINDOW_MAX
            raise ValueError(f"{name}: expected at most {WINDOW_MAX} (global positions are int32), got {x}")
    if q_start + M > seqlen_q_total:
        raise ValueError(f"q_start: expected q_start + seqlen_q <= seqlen_q_total={seqlen_q_total}, "
                         f"got {q_start} + {M}")
    if k_start + N > seqlen_k_total:
        raise ValueError(f"k_start: expected k_start + seqlen_k <= seqlen_k_total={seqlen_k_total}, "
                         f"got {k_start} + {N}")
    scale = _validate_scale(softmax_scale, D)
    left, right = _validate_window(window_size)
    if _validate_bool("causal", causal):
        right = 0 if right < 0 else min(right, 0)
    softcap = _validate_softcap(softcap)
    alibi = _alibi(alibi_slopes, B, H, q.device)
    shift_extra = global_shift_extra(q_start, k_start, M, N, seqlen_q_total, seqlen_k_total)
    # the kernels' ALiBi distance |i + shift - j| uses the same shifted diagonal as the masks: global distances
    return attention_forward(q, k, v, None, None, M, N, scale, left, right, softcap, shift_extra, 0.0, 0, 0, None,
                             alibi)
