"""The attention state and its merge, written once in torch.

For one query row the attention over a key set I is summarized by ``(o, lse)``::

    lse = log sum_{j in I} exp(x_j)        o = sum_{j in I} softmax(x)_j v_j

Two states over disjoint key sets merge with ``merge``; the operation is associative and
commutative and ``(0, -inf)`` is its identity. Merging two empty states gives ``(0, -inf)``: the
running maximum is guarded so that ``-inf - -inf`` never appears.

Layout here is the canonical one: ``lse`` has the shape of ``o`` without its last dimension
(``o[..., d]`` belongs to ``lse[...]``). The public functions transpose to and from it. The CPU
attention path, the decode combine, the parallel schedules and the tests use these functions; nothing
else re-derives the merge.
"""
from __future__ import annotations

import torch

NEG_INF = float("-inf")


def identity(shape_o, *, device=None, dtype=torch.float32):
    """The empty state: ``o = 0``, ``lse = -inf``."""
    o = torch.zeros(shape_o, device=device, dtype=dtype)
    lse = torch.full(tuple(shape_o)[:-1], NEG_INF, device=device, dtype=torch.float32)
    return o, lse


def merge(o_a: torch.Tensor, lse_a: torch.Tensor, o_b: torch.Tensor, lse_b: torch.Tensor):
    """``(o_a, lse_a) ⊕ (o_b, lse_b)``, computed in fp32; returns ``(o, lse)`` in fp32."""
    lse_a = lse_a.float()
    lse_b = lse_b.float()
    m = torch.maximum(lse_a, lse_b)
    m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    ea = torch.exp(lse_a - m)
    eb = torch.exp(lse_b - m)
    s = ea + eb
    lse = m + torch.log(s)  # s == 0 -> -inf
    s_safe = torch.where(s == 0, torch.ones_like(s), s)
    wa = (ea / s_safe).unsqueeze(-1)
    wb = (eb / s_safe).unsqueeze(-1)
    o = wa * o_a.float() + wb * o_b.float()
    return o, lse


def merge_many(os: torch.Tensor, lses: torch.Tensor):
    """⊕ over dim 0 of stacked states in one step (equal to folding ``merge`` in any order); no states: the
    identity (0, -inf)."""
    lses = lses.float()
    if os.shape[0] == 0:
        return os.new_zeros(os.shape[1:], dtype=torch.float32), torch.full_like(lses[0:1].sum(0), float("-inf"))
    m = lses.max(dim=0).values
    m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)
    e = torch.exp(lses - m.unsqueeze(0))
    s = e.sum(dim=0)
    lse = m + torch.log(s)
    s_safe = torch.where(s == 0, torch.ones_like(s), s)
    w = (e / s_safe.unsqueeze(0)).unsqueeze(-1)
    o = (w * os.float()).sum(dim=0)
    return o, lse


def tile_state(scores: torch.Tensor, v: torch.Tensor, keep: torch.Tensor | None = None, *, consume: bool = False):
    """The state of one tile of (already masked, natural-log) scores ``(..., M, n)`` over values
    ``(..., n, D)``: ``(softmax(scores) @ v, logsumexp(scores))``; fully masked rows give (0, -inf).
    ``keep`` (dropout) zeroes probabilities in the output sum but not in lse (scale applied by the caller).
    ``consume=True`` lets it overwrite ``scores`` (one buffer for the tile instead of three: the CPU path's
    elementwise passes over the tile are its cost). The sum is normalized once, on the (M, D) side."""
    m = scores.amax(dim=-1, keepdim=True)
    m = torch.where(torch.isneginf(m), torch.zeros_like(m), m)  # fully masked rows: exp(-inf - 0) = 0
    p = scores.sub_(m) if consume else scores - m
    p.exp_()
    l = p.sum(dim=-1)
    lse = m.squeeze(-1) + torch.log(l)  # l == 0 -> -inf
    if keep is not None:
        p = p.mul_(keep) if consume else p * keep  # in place only on the caller's own buffer (autograd-safe)
    o = torch.matmul(p.to(v.dtype), v)
    o = o / torch.where(l == 0, torch.ones_like(l), l).unsqueeze(-1).to(o.dtype)
    return o, lse
