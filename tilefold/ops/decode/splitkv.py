"""Split-KV attention: the key loop is split across programs and their states are merged.

The three-level hierarchical reduction
--------------------------------------
Attention of one query row is the fold ⊕ (DESIGN.md §1) of its key tiles. When there are few query
rows (decode: seqlen_q = 1..a few hundred) and many keys, one program per (query block, batch, head)
leaves most SMs idle, so the fold is cut into a tree:

1. **Registers** (level 1): each program folds the BLOCK_N-key tiles of its key range with the online
   softmax (running (m, l, acc) in fp32, exp2 units) — ``fold.fold_step`` inside the forward kernel.
   Nothing leaves the SM until the range is done.
2. **Across the programs of one (batch, head)** (level 2): the key axis is cut into ``num_splits``
   BLOCK_N-aligned ranges, one program each (grid axis 2 of the forward kernel, ``IS_SPLIT``). Each
   writes its finalized partial state (o, lse) in fp32: (num_splits, *out.shape) and
   (num_splits, *lse.shape).
3. **Global merge** (level 3): one combine kernel (``ops/merge/kernel.py``, ``fold.merge_state``) folds
   the num_splits partial states of every row in registers and writes the output in the input dtype and
   lse in fp32. The same ⊕ merges states across devices (ring / 2.5D) or cache tiers.

Each row is renormalized once per tile inside a program (as any flash forward) and once per split in
the combine: O(levels) global renormalizations, not O(tiles). Empty ranges (causal, windows, varlen
sequences shorter than the split) give the identity (0, -inf) and merge exactly.

Memory of the partial states: ``num_splits · B · M · H · (D + 1) · 4`` bytes, e.g. decode with
B = 32, M = 1, H = 32, D = 128, 16 splits: 8.5 MB, against 2 · B · N · HK · D · 2 = 4.3 GB of bf16 K/V
at N = 128k, HK = 8 — the extra traffic of level 3 is < 0.5% of the K/V bytes. It grows with seqlen_q;
the occupancy heuristic keeps num_splits small when there are already enough (query block, head)
programs.

``num_splits = 0`` chooses by occupancy (FA2's efficiency rule); 1 disables splitting. On CPU tensors
the torch fold runs the same algebra (partial states per key range in global positions, then
``state.merge_many``). The backward is the ordinary attention backward on the merged (out, lse).
"""
from __future__ import annotations

import math

import torch
import triton

from ... import state
from ..attention import cpu
from ..attention.config import fwd_config
from ..attention.forward import attention_fwd
from ..attention.function import attention_bwd_op
from ..common.dispatch import backend_for, interpreter_enabled

MAX_SPLITS = 128
CPU_SPLITS = 3


def _num_sms(device) -> int:
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def choose_num_splits(batch: int, heads: int, seqlen_q: int, seqlen_k: int, headdim: int,
                      dtype: torch.dtype, device, masked: bool = False) -> int:
    """num_splits for ``num_splits=0``: FA2's rule. With P = batch · heads · query blocks programs on
    ``sms`` SMs, split only when P fills less than ~0.8 of a wave; then among splits with enough keys per
    split (>= 2 key tiles), take the smallest whose wave efficiency (waves / ceil(waves)) is >= 0.85 of
    the best and which gives at least 2 waves where that is possible (latency of the tail wave hides
    behind the others). On CPU / the interpreter: a small fixed number (the fold is the same)."""
    cfg = fwd_config(headdim, masked, dtype, device if isinstance(device, torch.device) else torch.device(device))
    n_blocks = triton.cdiv(max(seqlen_k, 1), cfg.BLOCK_N)
    if not (torch.device(device).type == "cuda" and not interpreter_enabled()):
        return max(1, min(CPU_SPLITS, n_blocks))
    sms = _num_sms(torch.device(device))
    programs = batch * heads * triton.cdiv(max(seqlen_q, 1), cfg.BLOCK_M)
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


# ----------------------------------------------------------------------------------------------------
# forward implementations


def can_pack_gqa(q, k, window, cu_q) -> bool:
    """Decode with GQA (batched, seqlen_q = 1, no left window): the G query heads of one key head are
    packed as G query rows of that head, so each K/V tile is read once for the whole group."""
    return cu_q is None and q.shape[1] == 1 and window[0] < 0 and q.shape[2] > k.shape[2]


def _fwd_triton(q, k, v, S, scale, window, softcap, cu_q, cu_k, max_q, max_k):
    from ..merge.kernel import merge_fwd

    if can_pack_gqa(q, k, window, cu_q):
        # q (B, 1, H, D) -> (B, G, HK, D) (a view): row g of key head hk is query head hk * G + g. All
        # rows sit at position N - 1: with right-only masks, shift_extra = G - 1 gives row 0 the keys
        # j <= N - 1 + right, and rows g > 0 see more only past the end (j < N clips them).
        B, _, H, D = q.shape
        HK = k.shape[2]
        G = H // HK
        qp = q.view(B, HK, G, D).transpose(1, 2)
        kw = dict(softmax_scale=scale, window=window, softcap=softcap, shift_extra=G - 1)
        if S <= 1:
            o, lse = attention_fwd(qp, k, v, **kw)
        else:
            o_parts, l_parts = attention_fwd(qp, k, v, num_splits=S, **kw)
            o, lse = merge_fwd(o_parts, l_parts, out_dtype=q.dtype)
        return o.transpose(1, 2).reshape(B, 1, H, D), lse.reshape(B, H, 1)
    kw = dict(softmax_scale=scale, window=window, softcap=softcap, cu_seqlens_q=cu_q, cu_seqlens_k=cu_k,
              max_seqlen_q=max_q, max_seqlen_k=max_k)
    if S <= 1:
        return attention_fwd(q, k, v, **kw)
    o_parts, l_parts = attention_fwd(q, k, v, num_splits=S, **kw)
    if cu_q is not None:  # (S, T, H, D), (S, H, T) -> batch of 1
        out, lse = merge_fwd(o_parts.unsqueeze(1), l_parts.unsqueeze(1), out_dtype=q.dtype)
        return out[0], lse[0]
    return merge_fwd(o_parts, l_parts, out_dtype=q.dtype)


def _split_ranges(N: int, S: int, block: int):
    size = max(block, triton.cdiv(triton.cdiv(max(N, 1), S), block) * block)
    return [(lo, min(N, lo + size)) for lo in range(0, N, size)]


def _fwd_torch_one(q, k, v, S, scale, window, softcap):
    """Batched layout on CPU: partial states of key ranges (global-position masks), merged by ⊕."""
    B, M, H, D = q.shape
    N = k.shape[1]
    ranges = _split_ranges(N, S, 1)
    if S <= 1 or len(ranges) <= 1:
        return cpu.attention_fwd_cpu(q, k, v, softmax_scale=scale, window=window, softcap=softcap)
    adt = torch.float64 if q.dtype == torch.float64 else torch.float32
    outs, lses = [], []
    for lo, hi in ranges:
        n = hi - lo
        shift_extra = (N - M) - lo - (n - M)  # local shift n - M + extra == global shift N - M - lo
        o, l = cpu.attention_fwd_cpu(q.to(adt), k[:, lo:hi].to(adt), v[:, lo:hi].to(adt), softmax_scale=scale,
                                     window=window, softcap=softcap, shift_extra=shift_extra)
        outs.append(o)
        lses.append(l)
    o, lse = state.merge_many(torch.stack(outs), torch.stack(lses).transpose(-1, -2))
    return o.to(q.dtype), lse.transpose(-1, -2).contiguous()


def _fwd_torch(q, k, v, S, scale, window, softcap, cu_q, cu_k):
    if cu_q is None:
        return _fwd_torch_one(q, k, v, S, scale, window, softcap)
    T, H, D = q.shape
    out = torch.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
    lse = torch.empty(H, T, dtype=torch.float32)
    cq, ck = cu_q.tolist(), cu_k.tolist()
    for b in range(len(cq) - 1):
        o, l = _fwd_torch_one(q[None, cq[b]:cq[b + 1]], k[None, ck[b]:ck[b + 1]], v[None, ck[b]:ck[b + 1]],
                              S, scale, window, softcap)
        out[cq[b]:cq[b + 1]] = o[0]
        lse[:, cq[b]:cq[b + 1]] = l[0]
    return out, lse


class SplitKVFunction(torch.autograd.Function):
    """Forward: split-KV + combine; backward: the attention backward on the merged (out, lse)."""

    @staticmethod
    def forward(ctx, q, k, v, cu_q, cu_k, S, scale, left, right, softcap, max_q, max_k):
        window = (left, right)
        if backend_for(q) == "triton":
            out, lse = _fwd_triton(q, k, v, S, scale, window, softcap, cu_q, cu_k, max_q, max_k)
        else:
            out, lse = _fwd_torch(q, k, v, S, scale, window, softcap, cu_q, cu_k)
        ctx.save_for_backward(q, k, v, out, lse, cu_q, cu_k)
        ctx.args = (max_q, max_k, scale, left, right, softcap, 0)
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse, cu_q, cu_k = ctx.saved_tensors
        if dout is None:
            dout = torch.zeros_like(out)
        dout = dout.contiguous()
        if dlse is not None:
            dlse = dlse.contiguous()
        dq, dk, dv = attention_bwd_op(dout, q, k, v, out, lse, dlse, cu_q, cu_k, *ctx.args)
        return dq, dk, dv, None, None, None, None, None, None, None, None, None


def split_kv_attention(q, k, v, *, num_splits, softmax_scale, window, softcap, cu_seqlens_q=None,
                       cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None):
    """Attention with the key loop split over ``num_splits`` programs per (query block, batch, head)
    and a combine kernel (see the module docstring). Inputs are assumed validated by the public
    function (``window = (left, right)`` with causal folded into right = 0, scale a float).

    q (B, M, H, D) / k, v (B, N, HK, D), or varlen q (Tq, H, D) / k, v (Tk, HK, D) with cu_seqlens and
    max_seqlen. ``num_splits``: 0 chooses by occupancy, 1 runs the unsplit kernel, S > 1 uses S ranges
    of BLOCK_N-aligned keys (ranges past the end give the identity). Returns (out in q.dtype, lse fp32
    (B, H, M) or (H, Tq)); differentiable in q, k, v."""
    if isinstance(num_splits, bool) or not isinstance(num_splits, int) or num_splits < 0:
        raise ValueError(f"num_splits: expected an int >= 0 (0 = choose by occupancy), got {num_splits!r}")
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
    if S == 0:
        if can_pack_gqa(q, k, window, cu_seqlens_q):
            S = choose_num_splits(B, k.shape[2], H // k.shape[2], N, D, q.dtype, q.device, masked=right >= 0)
        else:
            S = choose_num_splits(B, H, M, N, D, q.dtype, q.device, masked=left >= 0 or right >= 0)
    return SplitKVFunction.apply(q, k, v, cu_seqlens_q, cu_seqlens_k, S, float(softmax_scale), int(left),
                                 int(right), float(softcap), int(max_seqlen_q), int(max_seqlen_k))
