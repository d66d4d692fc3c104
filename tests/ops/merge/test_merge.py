"""merge_state / merge_states: the ⊕ of DESIGN.md §1 on the public layouts, both backends.

Equivalence: attention over a random partition of the keys (partial_attention, global-position
masks), merged in a random order and tree shape, equals full attention (2x rule vs the fp64 reference).
"""
import math
import random

import pytest
import torch
from hypothesis import given, settings, strategies as st

from merge_helpers import assert_2x, max_err, random_partition, tree_merge
from tilefold.ops.attention.naive import attention_ref
from tilefold.ops.common.dispatch import use_backend
from tilefold.ops.decode import partial_attention
from tilefold.ops.merge import merge_state, merge_states

BACKENDS = ["torch", "triton"]
INF = float("-inf")


def _ref_merge64(outs, lses):
    """fp64 closed form on the batched layout (N, B, M, H, D) / (N, B, H, M), differentiable."""
    lc = lses.double().transpose(-1, -2)
    lse = torch.logsumexp(lc, 0)
    safe = torch.where(torch.isneginf(lse), torch.zeros_like(lse), lse)
    w = torch.exp(lc - safe)
    out = (w.unsqueeze(-1) * outs.double()).sum(0)
    return out, lse.transpose(-1, -2)


def _states(N, B, M, H, D, dtype=torch.float32, scale=3.0):
    outs = torch.randn(N, B, M, H, D).to(dtype)
    lses = torch.randn(N, B, H, M) * scale
    return outs, lses


# ---------------------------------------------------------------------------------------------------
# split + merge == full


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=12, deadline=None, derandomize=True)  # the same examples every run
@given(seed=st.integers(0, 2**31 - 1), M=st.sampled_from([1, 3, 17]), N=st.sampled_from([1, 20, 45]),
       heads=st.sampled_from([(2, 2), (4, 2), (2, 1)]), causal=st.booleans(),
       window=st.sampled_from([(-1, -1), (5, -1), (3, 2)]), softcap=st.sampled_from([0.0, 5.0]))
def test_partition_merge_equals_full(backend, seed, M, N, heads, causal, window, softcap):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    H, HK = heads
    B, D = 1, 16
    q, k, v = torch.randn(B, M, H, D), torch.randn(B, N, HK, D), torch.randn(B, N, HK, D)
    opts = dict(causal=causal, window_size=window, softcap=softcap)
    ref_o, ref_l = attention_ref(q, k, v, **opts)
    base_o, base_l = attention_ref(q, k, v, compute_dtype=torch.float32, **opts)
    cuts = random_partition(rng, N, 4)
    # a random query range too: rows [qa, qb) of the M rows
    qa = rng.randint(0, M - 1)
    qb = rng.randint(qa + 1, M)
    with use_backend(backend):
        states = [partial_attention(q[:, qa:qb], k[:, a:b], v[:, a:b], q_start=qa, k_start=a,
                                    seqlen_q_total=M, seqlen_k_total=N, **opts)
                  for a, b in zip(cuts[:-1], cuts[1:])]
        o_tree, l_tree = tree_merge(rng, states, lambda x, y: merge_state(*x, *y))
        o_all, l_all = merge_states(torch.stack([s[0] for s in states]), torch.stack([s[1] for s in states]))
    for name, o, l in (("tree", o_tree, l_tree), ("stacked", o_all, l_all)):
        assert_2x(f"{name} out", o, ref_o[:, qa:qb], base_o[:, qa:qb])
        assert_2x(f"{name} lse", l, ref_l[:, :, qa:qb], base_l[:, :, qa:qb])
        assert o.dtype == q.dtype and l.dtype == torch.float32


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("varlen", [False, True], ids=["batched", "varlen"])
def test_merge_states_matches_closed_form(backend, dtype, varlen):
    N, B, M, H, D = 5, 2, 19, 3, 40  # odd M and D exercise the row / head-dim edges
    outs, lses = _states(N, B, M, H, D, dtype)
    lses[:, 0, 0, :4] = INF  # some rows empty in every state
    lses[1, 1] = INF  # one state empty for a whole batch entry
    ref_o, ref_l = _ref_merge64(outs, lses)
    base_o, base_l = _ref_merge64(outs.to(dtype), lses.float())
    base_o = base_o.to(dtype)
    with use_backend(backend):
        if varlen:  # (N, T, H, D) / (N, H, T) with T = B * M
            o, l = merge_states(outs.reshape(N, B * M, H, D), lses.transpose(1, 2).reshape(N, H, B * M))
            o = o.reshape(B, M, H, D)
            l = l.reshape(H, B, M).transpose(0, 1)
        else:
            o, l = merge_states(outs, lses)
    assert o.dtype == dtype and l.dtype == torch.float32
    assert (o[0, :4, 0] == 0).all()
    assert torch.isneginf(l[0, 0, :4]).all()
    assert_2x("out", o, ref_o, base_o)
    assert max_err(l, ref_l) <= 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_merge_state_varlen_equals_batched(backend):
    outs, lses = _states(2, 1, 13, 2, 32)
    with use_backend(backend):
        ob, lb = merge_state(outs[0], lses[0], outs[1], lses[1])
        ov, lv = merge_state(outs[0, 0], lses[0, 0], outs[1, 0], lses[1, 0])
    assert torch.equal(ob[0], ov) and torch.equal(lb[0], lv)


# ---------------------------------------------------------------------------------------------------
# identity, empty, extremes


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty_and_identity_exact(backend):
    B, M, H, D = 2, 5, 2, 16
    zero = torch.zeros(B, M, H, D)
    empty = torch.full((B, H, M), INF)
    o = torch.randn(B, M, H, D)
    l = torch.randn(B, H, M)
    with use_backend(backend):
        e_o, e_l = merge_state(zero, empty, zero, empty)
        assert torch.equal(e_o, zero) and torch.isneginf(e_l).all()
        for args in ((o, l, zero, empty), (zero, empty, o, l)):
            r_o, r_l = merge_state(*args)
            assert torch.equal(r_o, o) and torch.equal(r_l, l)
        n_o, n_l = merge_states(torch.zeros(0, B, M, H, D), torch.zeros(0, B, H, M))
        assert torch.equal(n_o, zero) and torch.isneginf(n_l).all()
        s_o, s_l = merge_states(o[None], l[None])
        assert torch.equal(s_o, o) and torch.equal(s_l, l)
        s_o, s_l = merge_states(torch.zeros(4, B, M, H, D), torch.full((4, B, H, M), INF))
        assert torch.equal(s_o, zero) and torch.isneginf(s_l).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scale", [1e4, 1e30, 1e-30], ids=["1e4", "1e30", "1e-30"])
def test_huge_and_tiny_lse(backend, scale):
    N, B, M, H, D = 3, 1, 7, 2, 16
    outs, _ = _states(N, B, M, H, D)
    lses = torch.randn(N, B, H, M).double() * scale
    lses[0, 0, 0, 0] = INF
    lses[:, 0, 1, 1] = INF
    ref_o, ref_l = _ref_merge64(outs, lses)
    with use_backend(backend):
        o, l = merge_states(outs, lses.float())
        o2, l2 = merge_state(outs[0], lses[0].float(), outs[1], lses[1].float())
    r2_o, r2_l = _ref_merge64(outs[:2], lses[:2])
    for a, b in ((o, ref_o), (o2, r2_o)):
        assert torch.isfinite(a).all()
        assert max_err(a, b) <= 1e-5
    for a, b in ((l, ref_l), (l2, r2_l)):
        assert not torch.isnan(a).any()
        assert max_err(a, b) <= 1e-6 * max(1.0, float(b[torch.isfinite(b)].abs().max()))


# ---------------------------------------------------------------------------------------------------
# gradients


@pytest.mark.parametrize("backend", BACKENDS)
def test_merge_gradients_closed_form(backend):
    N, B, M, H, D = 3, 2, 9, 2, 24
    outs, lses = _states(N, B, M, H, D)
    lses[0, 0, 0, :3] = INF
    lses[:, 1, 1, 2] = INF  # a row empty in every state: zero gradients, no NaN
    dout, dlse = torch.randn(B, M, H, D), torch.randn(B, H, M)
    o64, l64 = outs.double().requires_grad_(), lses.double().requires_grad_()
    ro, rl = _ref_merge64(o64, l64)
    rl_fin = torch.where(torch.isneginf(rl), torch.zeros_like(rl), rl)
    g_ref = torch.autograd.grad((ro * dout.double()).sum() + (rl_fin * dlse.double()).sum(), (o64, l64))
    g_ref = [torch.nan_to_num(g, nan=0.0) for g in g_ref]
    with use_backend(backend):
        o32, l32 = outs.clone().requires_grad_(), lses.clone().requires_grad_()
        o, l = merge_states(o32, l32)
        g = torch.autograd.grad((o * dout).sum() + (torch.nan_to_num(l, neginf=0.0) * dlse).sum(), (o32, l32))
        a, la, b, lb = (t.clone().requires_grad_() for t in (outs[0], lses[0], outs[1], lses[1]))
        o2, l2 = merge_state(a, la, b, lb)
        g2 = torch.autograd.grad((o2 * dout).sum() + (torch.nan_to_num(l2, neginf=0.0) * dlse).sum(), (a, la, b, lb))
    for x in (*g, *g2):
        assert not torch.isnan(x).any()
    assert max_err(g[0], g_ref[0]) <= 1e-5 and max_err(g[1], g_ref[1]) <= 1e-4
    o64b, l64b = outs[:2].double().requires_grad_(), lses[:2].double().requires_grad_()
    ro, rl = _ref_merge64(o64b, l64b)
    rl = torch.where(torch.isneginf(rl), torch.zeros_like(rl), rl)
    gb = torch.autograd.grad((ro * dout.double()).sum() + (rl * dlse.double()).sum(), (o64b, l64b))
    gb = [torch.nan_to_num(t, nan=0.0) for t in gb]
    assert max_err(g2[0], gb[0][0]) <= 1e-5 and max_err(g2[2], gb[0][1]) <= 1e-5
    assert max_err(g2[1], gb[1][0]) <= 1e-4 and max_err(g2[3], gb[1][1]) <= 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_gradients_through_split_and_merge_match_reference(backend, causal):
    torch.manual_seed(1)
    B, M, N, H, HK, D = 1, 5, 37, 4, 2, 16
    q, k, v = torch.randn(B, M, H, D), torch.randn(B, N, HK, D), torch.randn(B, N, HK, D)
    dout, dlse = torch.randn(B, M, H, D), torch.randn(B, H, M)

    def grads(fn, dtype):
        xs = [t.to(dtype).requires_grad_() for t in (q, k, v)]
        o, l = fn(*xs)
        return [o, l] + list(torch.autograd.grad((o * dout.to(o.dtype)).sum() + (l * dlse.to(l.dtype)).sum(), xs))

    ref = grads(lambda a, b, c: attention_ref(a, b, c, causal=causal), torch.float64)
    base = grads(lambda a, b, c: attention_ref(a, b, c, causal=causal, compute_dtype=torch.float32), torch.float32)

    def split(a, b, c):
        cut = 16
        s1 = partial_attention(a, b[:, :cut], c[:, :cut], q_start=0, k_start=0, seqlen_q_total=M,
                               seqlen_k_total=N, causal=causal)
        s2 = partial_attention(a, b[:, cut:], c[:, cut:], q_start=0, k_start=cut, seqlen_q_total=M,
                               seqlen_k_total=N, causal=causal)
        return merge_state(*s1, *s2)

    with use_backend(backend):
        got = grads(split, torch.float32)
    for name, g, r, bs in zip(("out", "lse", "dq", "dk", "dv"), got, ref, base):
        assert_2x(name, g, r, bs)


# ---------------------------------------------------------------------------------------------------
# validation


def test_validation_errors():
    o, l = torch.randn(1, 4, 2, 8), torch.randn(1, 2, 4)
    with pytest.raises(ValueError, match="lse_a: expected shape"):
        merge_state(o, l.transpose(1, 2), o, l)
    with pytest.raises(ValueError, match="out_b: expected shape"):
        merge_state(o, l, o[:, :3], l[:, :, :3])
    with pytest.raises(ValueError, match="out_b: expected dtype"):
        merge_state(o, l, o.half(), l)
    with pytest.raises(ValueError, match="out_a: expected shape"):
        merge_state(o[0, 0], l[0], o[0, 0], l[0])
    with pytest.raises(ValueError, match="outs: expected shape"):
        merge_states(o[0, 0], l[0])
    with pytest.raises(ValueError, match="lses: expected shape"):
        merge_states(o[None], l[None, :, :, :3])
    with pytest.raises(ValueError, match="lses: expected dtype"):
        merge_states(o[None], l[None].long())


# ---------------------------------------------------------------------------------------------------
# GPU tier


@pytest.mark.gpu
def test_merge_states_more_rows_than_grid_y_gpu():
    """batch x heads = 4096 x 32 > 65535 (CUDA's limit on grid axes 1 and 2): the merge kernel's grid is one flat
    axis."""
    torch.manual_seed(0)
    N, B, M, H, D = 3, 4096, 1, 32, 16
    outs, lses = _states(N, B, M, H, D)
    ref_o, ref_l = _ref_merge64(outs, lses)
    o, l = merge_states(outs.cuda(), lses.cuda())
    assert max_err(o.cpu(), ref_o) <= 1e-5 and max_err(l.cpu(), ref_l) <= 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
def test_merge_states_gpu(dtype):
    N, B, M, H, D = 7, 3, 1000, 8, 128
    outs, lses = _states(N, B, M, H, D)
    lses[2, 1] = INF
    outs, lses = outs.to(dtype), lses
    ref_o, ref_l = _ref_merge64(outs, lses)
    base_o, _ = _ref_merge64(outs, lses)
    o, l = merge_states(outs.cuda(), lses.cuda())
    assert o.dtype == dtype
    assert_2x("out", o.cpu(), ref_o, base_o.to(dtype))
    assert max_err(l.cpu(), ref_l) <= 1e-5
    e_o, e_l = merge_state(torch.zeros(2, 3, 4, 64, device="cuda", dtype=dtype),
                           torch.full((2, 4, 3), INF, device="cuda"),
                           torch.zeros(2, 3, 4, 64, device="cuda", dtype=dtype),
                           torch.full((2, 4, 3), INF, device="cuda"))
    assert (e_o == 0).all() and torch.isneginf(e_l).all()


def test_merge_many_of_no_states_is_the_identity():
    """the torch ⊕ over zero stacked states (state.merge_many, used by the CPU split path and merge_states): (0, -inf)
    of the remaining shape, as merge_states with N = 0 (it raised IndexError on the empty max)"""
    from tilefold.state import merge_many
    o, lse = merge_many(torch.zeros(0, 2, 3, 4, dtype=torch.float16), torch.zeros(0, 2, 3))
    assert o.shape == (2, 3, 4) and (o == 0).all() and o.dtype == torch.float32
    assert lse.shape == (2, 3) and torch.isneginf(lse).all()
