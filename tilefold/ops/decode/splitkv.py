"""Split-KV attention: the key loop is split across programs and their states are merged.

The three-level hierarchical reduction
--------------------------------------
Attention of one query row is the fold ⊕ (DESIGN.md §1) of its key tiles. When there are few query
rows (decode: seqlen_q = 1..a few hundred) and many keys, one program per (query block, batch, head)
leaves most SMs idle, so the fold is cut into a tree:

1. **Registers** (level 1): each program folds the BLOCK_N-key tiles of its key range with the online
   softmax (running (m, l, acc) in fp32, exp2 units) — ``fold.fold_step``. Nothing leaves the SM until
   the range is done.
2. **Across the programs of one (batch, head)** (level 2): the key axis is cut into ``num_splits``
   BLOCK_N-aligned ranges, one program each. Each writes its finalized partial state (o, lse) in fp32:
   (num_splits, *out.shape) and (num_splits, *lse.shape). The ranges share out the keys the program's rows
   can see, per sequence (a left window first, then the split: a 4k-key window at the end of a 128k cache is
   split, not the 128k; a short sequence of a varlen batch is split as finely as the longest), and
   ``num_splits = 0`` counts those visible keys (``kernel.visible_keys``).
3. **Global merge** (level 3): one combine kernel folds the num_splits partial states of every row and
   writes the output in the input dtype and lse in fp32.

Decode shapes (seqlen_q · G <= ``DECODE_MAX_ROWS`` packed rows, G = heads / heads_k) run the decode
kernel (``kernel.py``): the seqlen_q · G query rows of one key head are packed into one small tile
(row → (position, head); masks by position), so K/V are read once per group, with the decode combine.
Larger seqlen_q uses the attention forward's ``IS_SPLIT`` path and ``ops/merge/kernel.py``.

Each row is renormalized once per tile inside a program (as any flash forward) and once per split in
the combine: O(levels) global renormalizations, not O(tiles). Empty ranges (more splits than a row
block's visible key tiles, rows that see no key) give the identity (0, -inf) and merge exactly.

Memory of the partial states: ``num_splits · B · M · H · (D + 1) · 4`` bytes, e.g. decode with
B = 32, M = 1, H = 32, D = 128, 16 splits: 8.5 MB, against 2 · B · N · HK · D · 2 = 4.3 GB of bf16 K/V
at N = 128k, HK = 8 — the extra traffic of level 3 is < 0.5% of the K/V bytes. It grows with seqlen_q;
the occupancy heuristic keeps num_splits small when there are already enough (query block, head)
programs.

``num_splits = 0`` chooses the count (``choose_num_splits``: a bandwidth model for decode shapes, FA2's
wave-efficiency rule otherwise); 1 disables splitting. On CPU tensors
the torch fold runs the same algebra (partial states per key range in global positions, then
``state.merge_many``; its ranges cut [0, seqlen_k), not the visible keys: the result is the same). The backward is the ordinary attention backward on the merged (out, lse).
"""
from __future__ import annotations

import functools
import math
import os

import torch

from ... import state
from ..attention import cpu
from ..attention.function import attention_backward
from ..common.dispatch import HAVE_TRITON, backend_for, interpreter_enabled
from ..common.host import cdiv, env_get, visible_keys
from ..common.validate import MAX_SPLITS as _CAP, _validate_int, _validate_num_splits, _validate_window

if HAVE_TRITON:
    from ..attention.config import fwd_config
    from ..attention.forward import attention_fwd
    from .kernel import (DECODE_MAX_ROWS, _kpar_auto_ok, block64_tiles, decode_config, decode_fwd, fills_one_wave,
                         kpar_one_wave, num_sms, one_per_sm, streaming_tiles)
else:  # the torch path only (backend_for sends nothing to the kernels); the split choice returns CPU_SPLITS first
    num_sms = None

MAX_SPLITS = _CAP  # the public cap (validate.MAX_SPLITS), also the most the heuristics choose
ONE_WAVE_KEYS = 8192  # even_splits: one program per SM below this many keys per split, two per SM above
MIN_SPLIT_KEYS = 512
CPU_SPLITS = 3

# Cost model of the split choice for the decode kernel (H200-like; only ratios matter): HBM bandwidth,
# the most one program streams with 2 K/V tiles in flight (~64 KB over ~3 us of latency near saturation:
# conservative, so the model fills every slot rather than trust one program per SM to saturate), the
# fixed cost of a program (Q load, pipeline fill, epilogue) and of the combine launch.
HBM_BYTES_PER_US = 4.3e6
PROGRAM_BYTES_PER_US = 20e3
PROGRAM_US = 2.0
COMBINE_US = 3.0


_num_sms = num_sms


def decode_splits(programs: int, seqlen_k: int, block_n: int, key_bytes: int, state_bytes: int, sms: int,
                  ctas_per_sm: int, max_splits: int = MAX_SPLITS) -> int:
    """Split count minimizing a bandwidth model of the decode kernel: ``programs`` per split
    ((batch, key head, packed row block) triples), ``key_bytes`` of K+V per key per program, ``state_bytes``
    of one split's partial states (written and read once more by the combine). With P = programs · S
    on ``sms · ctas_per_sm`` slots: time = Σ over waves (PROGRAM_US + keys_per_split · key_bytes / bw) +
    combine, bw = min(HBM / the wave's programs, one program's streaming rate). No split when the
    unsplit programs already fill two waves. Only split counts that
    leave no empty range are considered; ties (within 2%) go to fewer splits."""
    slots = max(1, sms * ctas_per_sm)
    if programs >= 2 * slots:  # >= 2 full waves already: the tail wave is short and gets more bandwidth
        return 1
    n_tiles = cdiv(max(seqlen_k, 1), block_n)
    best = None
    seen = set()
    for s in range(1, max(1, min(max_splits, n_tiles)) + 1):
        size = cdiv(n_tiles, s) * block_n
        s_eff = cdiv(max(seqlen_k, 1), size)
        if s_eff in seen:
            continue
        seen.add(s_eff)
        p = programs * s_eff
        t = 0.0
        for p_w in [slots] * (p // slots) + ([p % slots] if p % slots else []):
            t += PROGRAM_US + size * key_bytes / min(HBM_BYTES_PER_US / p_w, PROGRAM_BYTES_PER_US)
        if s_eff > 1:
            t += COMBINE_US + 2 * s_eff * state_bytes / HBM_BYTES_PER_US
        if best is None or t < 0.98 * best[0]:
            best = (t, s_eff)
    return best[1]


def even_splits(programs: int, seqlen_k: int, sms: int, kpar: bool = False) -> int:
    """Split count for the swept decode case (``kernel.streaming_tiles``), measured on an H200
    (benchmarks/NOTES.md, "Decode v3"): one program per SM (programs · S ≈ sms) while that leaves splits of
    fewer than ONE_WAVE_KEYS keys -- there the fixed cost of a program and of the combine dominates, and at B=1
    8k..64k 16 splits (of 512..4096 keys) had the least GPU time of 2..33 -- otherwise two per SM (programs · S
    ≈ 2 · sms: the best or within 1% of the best count swept at B=1 128k / 1M, B=8 32k / 128k, B=32 8k / 32k;
    counts leaving a partial second wave lost 10-15%). Never splits of fewer than MIN_SPLIT_KEYS keys.
    ``kpar`` (keys in parallel allowed): no split where the unsplit programs make one wave of one per SM of at
    most KPAR_MAX_KEYS keys (``kernel.kpar_one_wave``; decode_config gives them the KPAR tile: calls 57-60, B=16 8k /
    32k)."""
    if kpar and kpar_one_wave(programs, seqlen_k, sms):
        return 1
    one = max(1, round(sms / max(programs, 1)))
    if cdiv(max(seqlen_k, 1), one) < ONE_WAVE_KEYS:
        s = max(1, min(one, seqlen_k // MIN_SPLIT_KEYS))
    else:
        s = max(1, round(2 * sms / max(programs, 1)))
    return min(s, MAX_SPLITS)


def _kpar_allowed() -> bool:
    """Whether the split choice may count on KPAR's one-wave tile (TILEFOLD_DECODE_KPAR not "0", read per call; an
    invalid value is reported by the decode plan, not here, so calls that never reach the decode kernel don't fail)."""
    return HAVE_TRITON and env_get("TILEFOLD_DECODE_KPAR", "auto") != "0" and _kpar_auto_ok()


@functools.lru_cache(maxsize=1024)
def _choose_cached(batch, heads, heads_k, seqlen_q, seqlen_k, headdim, dtype, device, masked, kpar=True) -> int:
    dev = torch.device(device)
    if batch * heads * seqlen_q == 0:  # nothing to split (and the efficiency rule below would divide by zero)
        return 1
    if not (dev.type == "cuda" and not interpreter_enabled()):
        return max(1, min(CPU_SPLITS, seqlen_k))
    sms = _num_sms(dev)
    G = heads // heads_k
    rows = seqlen_q * G
    if rows <= DECODE_MAX_ROWS and streaming_tiles(rows, headdim, dtype):
        return even_splits(batch * heads_k * cdiv(max(rows, 1), 16), seqlen_k, sms, kpar)
    if block64_tiles(rows, headdim, dtype) and batch * heads_k < sms:
        s = one_per_sm(batch * heads_k, seqlen_k, sms)
        if fills_one_wave(batch * heads_k * s, sms):
            return s
    if rows <= DECODE_MAX_ROWS:
        cfg = decode_config(rows, headdim, dtype, dev)  # the v2 tiles (the plan's BLOCK64_CONFIG needs a filled wave)
        programs = batch * heads_k * cdiv(max(rows, 1), cfg.BLOCK_M)
        es = torch.empty((), dtype=dtype).element_size()
        state_bytes = batch * seqlen_q * heads * (headdim + 1) * 4
        return decode_splits(programs, seqlen_k, cfg.BLOCK_N, 2 * headdim * es, state_bytes, sms, cfg.ctas_per_sm)
    # prefill-sized query blocks (the attention forward's IS_SPLIT path): FA2's efficiency rule
    cfg = fwd_config(headdim, masked, dtype, dev)
    n_blocks = cdiv(max(seqlen_k, 1), cfg.BLOCK_N)
    programs = batch * heads * cdiv(max(seqlen_q, 1), cfg.BLOCK_M)
    if programs >= 0.8 * sms:
        return 1
    max_splits = max(1, min(MAX_SPLITS, n_blocks // 2))
    eff = {}
    for s in range(1, max_splits + 1):
        waves = programs * s / sms
        eff[s] = waves / math.ceil(waves)
    best = max(eff.values())
    good = [s for s in eff if eff[s] >= 0.85 * best]
    several = [s for s in good if programs * s >= 2 * sms]
    return several[0] if several else good[-1]


def choose_num_splits(batch: int, heads: int, seqlen_q: int, seqlen_k: int, headdim: int,
                      dtype: torch.dtype, device, masked: bool = False, heads_k: int | None = None,
                      window: tuple = (-1, -1)) -> int:
    """The num_splits that ``num_splits=0`` uses for these shapes: with ``window = (left, right)`` as
    ``split_kv_attention`` takes it (causal: right = 0), the count is of the keys the rows can see
    (``kernel.visible_keys``) and the call counts as masked. Decode shapes (seqlen_q · G <= DECODE_MAX_ROWS packed
    rows, G = heads / heads_k): for one 16-row block of 16-bit hd128 (``kernel.streaming_tiles``, the swept case)
    ``even_splits`` (132 SMs, 8 key heads: B = 1: 16 up to 64k, 33 from 128k; B = 8: 2 at 8k, 4 from 32k;
    B = 16: 1 up to 32k (the KPAR tile; 2 with TILEFOLD_DECODE_KPAR=0), 2 above; B = 32: 1); for one 64-row block
    (17-64 packed rows, ``kernel.block64_tiles``) ``one_per_sm`` where that launch fills 0.9-1 x the SMs
    (``kernel.fills_one_wave``; B = 1: 16, B = 2: 8, B = 3: 5, B = 4: 4, B = 8: 2, B = 16: 1, not B = 6, 7, 9-14);
    otherwise the count minimizing the bandwidth model of ``decode_splits``. Larger seqlen_q: FA2's wave-efficiency
    rule over (batch, head, query block) programs.
    On CPU / the interpreter: a small fixed number (the fold is the same). Cached per shape."""
    left, right = _validate_window(window)
    hk = heads if heads_k is None else heads_k
    for name, x, lo in (("batch", batch, 0), ("heads", heads, 1), ("heads_k", hk, 1), ("seqlen_q", seqlen_q, 0),
                        ("seqlen_k", seqlen_k, 0), ("headdim", headdim, 1)):
        _validate_int(name, x, lo)
    if heads % hk:
        raise ValueError(f"heads_k: expected a divisor of heads={heads}, got {hk}")
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"dtype: expected a torch.dtype, got {dtype!r}")
    dev = device if isinstance(device, torch.device) else torch.device(device)
    return _choose_cached(int(batch), int(heads), int(heads_k or heads), int(seqlen_q),
                          visible_keys(int(seqlen_q), int(seqlen_k), left), int(headdim), dtype, dev,
                          bool(masked) or left >= 0 or right >= 0, _kpar_allowed())


# ----------------------------------------------------------------------------------------------------
# forward implementations


def _fwd_triton(q, k, v, S, scale, window, softcap, cu_q, cu_k, max_q, max_k, seqused_k=None, cache_batch_idx=None,
                block_table=None, cache_leftpad=None, alibi=None):
    """``block_table``: a paged cache, read in place by the decode kernel (packed rows <= DECODE_MAX_ROWS) or the
    forward kernel. ``alibi``: fp32 (batch, heads) slopes or None."""
    H, HK = q.shape[-2], k.shape[-2]
    M = max_q if cu_q is not None else q.shape[1]
    if M * (H // HK) <= DECODE_MAX_ROWS:
        return decode_fwd(q, k, v, S, scale, window, softcap, cu_q, cu_k, max_q, max_k, seqused_k, cache_batch_idx,
                          block_table, cache_leftpad, alibi)
    from ..merge.kernel import merge_fwd

    kw = dict(softmax_scale=scale, window=window, softcap=softcap, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
              max_seqlen_q=max_q, max_seqlen_k=max_k, seqused_k=seqused_k, cache_batch_idx=cache_batch_idx,
              cache_leftpad=cache_leftpad, block_table=block_table, alibi=alibi)
    if S <= 1:
        return attention_fwd(q, k, v, **kw)
    o_parts, l_parts = attention_fwd(q, k, v, num_splits=S, **kw)
    if cu_q is not None:  # (S, T, H, D), (S, H, T) -> batch of 1
        out, lse = merge_fwd(o_parts.unsqueeze(1), l_parts.unsqueeze(1), out_dtype=q.dtype)
        return out[0], lse[0]
    return merge_fwd(o_parts, l_parts, out_dtype=q.dtype)


def _split_ranges(N: int, S: int, block: int):
    size = max(block, cdiv(cdiv(max(N, 1), S), block) * block)
    return [(lo, min(N, lo + size)) for lo in range(0, N, size)]


def _fwd_torch_one(q, k, v, S, scale, window, softcap, alibi=None):
    """Batched layout on CPU: partial states of key ranges (global-position masks and ALiBi distances), merged by
    ⊕."""
    B, M, H, D = q.shape
    N = k.shape[1]
    ranges = _split_ranges(N, S, 1)
    if S <= 1 or len(ranges) <= 1:
        return cpu.attention_fwd_cpu(q, k, v, softmax_scale=scale, window=window, softcap=softcap, alibi=alibi)
    adt = torch.float64 if q.dtype == torch.float64 else torch.float32
    outs, lses = [], []
    for lo, hi in ranges:
        n = hi - lo
        shift_extra = (N - M) - lo - (n - M)  # local shift n - M + extra == global shift N - M - lo
        o, l = cpu.attention_fwd_cpu(q.to(adt), k[:, lo:hi].to(adt), v[:, lo:hi].to(adt), softmax_scale=scale,
                                     window=window, softcap=softcap, shift_extra=shift_extra, alibi=alibi)
        outs.append(o)
        lses.append(l)
    o, lse = state.merge_many(torch.stack(outs), torch.stack(lses).transpose(-1, -2))
    return o.to(q.dtype), lse.transpose(-1, -2).contiguous()


def _fwd_torch(q, k, v, S, scale, window, softcap, cu_q, cu_k, alibi=None):
    if cu_q is None:
        return _fwd_torch_one(q, k, v, S, scale, window, softcap, alibi)
    T, H, D = q.shape
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    lse = torch.empty(H, T, dtype=torch.float32)
    cq, ck = cu_q.tolist(), cu_k.tolist()
    for b in range(len(cq) - 1):
        o, l = _fwd_torch_one(q[None, cq[b]:cq[b + 1]], k[None, ck[b]:ck[b + 1]], v[None, ck[b]:ck[b + 1]],
                              S, scale, window, softcap, None if alibi is None else alibi[b:b + 1])
        out[cq[b]:cq[b + 1]] = o[0]
        lse[:, cq[b]:cq[b + 1]] = l[0]
    return out, lse


class SplitKVFunction(torch.autograd.Function):
    """Forward: split-KV + combine; backward: the attention backward on the merged (out, lse)."""

    @staticmethod
    def forward(q, k, v, cu_q, cu_k, S, scale, left, right, softcap, max_q, max_k, alibi):
        window = (left, right)
        if backend_for(q) == "triton":
            return _fwd_triton(q, k, v, S, scale, window, softcap, cu_q, cu_k, max_q, max_k, alibi=alibi)
        return _fwd_torch(q, k, v, S, scale, window, softcap, cu_q, cu_k, alibi)

    @staticmethod
    def setup_context(ctx, inputs, output):  # a separate setup_context: usable under torch.func.grad / vjp too
        q, k, v, cu_q, cu_k, S, scale, left, right, softcap, max_q, max_k, alibi = inputs
        out, lse = output
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k, alibi)
        ctx.args = (max_q, max_k, scale, left, right, softcap, 0)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse, cu_q, cu_k, alibi = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(out)
        dout = dout.contiguous()
        if dlse is not None:
            dlse = dlse.contiguous()
        dq, dk, dv = attention_backward(dout, q, k, v, out, lse, dlse, cu_q, cu_k, *ctx.args, 0.0, 0, 0, None, alibi)
        return dq, dk, dv, None, None, None, None, None, None, None, None, None, None


def split_kv_attention(q, k, v, *, num_splits, softmax_scale, window, softcap, cu_seqlens_q=None,
                       cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None, alibi=None):
    """Attention with the key loop split over ``num_splits`` programs per (query block, batch, head)
    and a combine kernel (see the module docstring). Inputs are assumed validated by the public
    function (``window = (left, right)`` with causal folded into right = 0, scale a float).

    q (B, M, H, D) / k, v (B, N, HK, D), or varlen q (Tq, H, D) / k, v (Tk, HK, D) with cu_seqlens and
    max_seqlen. ``num_splits``: 0 chooses by occupancy, 1 runs the unsplit kernel, S > 1 uses S ranges
    of BLOCK_N-aligned keys (ranges past the end give the identity). ``alibi``: fp32 (batch, heads) ALiBi slopes (unit
    column stride) or None; no gradient flows to them. Returns (out in q.dtype, lse fp32
    (B, H, M) or (H, Tq)); differentiable in q, k, v."""
    num_splits = _validate_num_splits(num_splits)
    varlen = cu_seqlens_q is not None
    if varlen:
        T, H, D = q.shape
        B, M, N = cu_seqlens_q.numel() - 1, int(max_seqlen_q), int(max_seqlen_k)
    else:
        B, M, H, D = q.shape
        N = k.shape[1]
        max_seqlen_q, max_seqlen_k = M, N
    left, right = window
    S = num_splits
    if S == 0:  # by the keys the rows can see (the kernels share out a window's span, not [0, seqlen_k))
        S = _choose_cached(B, H, k.shape[-2], M, visible_keys(M, N, left), D, q.dtype, q.device,
                           left >= 0 or right >= 0, _kpar_allowed())
    scale, softcap = float(softmax_scale), float(softcap)
    if not (torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)):
        # inference: no autograd node (decode is host-latency bound at small batch; DESIGN.md §6 notes)
        if backend_for(q) == "triton":
            return _fwd_triton(q, k, v, S, scale, window, softcap, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                               max_seqlen_k, alibi=alibi)
        return _fwd_torch(q, k, v, S, scale, window, softcap, cu_seqlens_q, cu_seqlens_k, alibi)
    return SplitKVFunction.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, S, scale, int(left), int(right), softcap,
                                 int(max_seqlen_q), int(max_seqlen_k), alibi)
