"""The CPU fold (tilefold/ops/attention/cpu.py) at its tile boundaries: the query-row range of a key tile and
whether the mask cuts it (checked exhaustively against the mask itself), and whole calls whose masks cross
several key tiles at small KEY_TILE (every gradient under the 2x rule against fp64, dropout against the
decoded mask)."""
import itertools

import pytest
import torch

import attention_helpers as h

import tilefold
from tilefold.ops.attention import cpu
from tilefold.ops.attention.naive import attention_ref

Case = h.Case


def _brute(M, n0, n1, N, shift, window):
    ok = cpu._tile_visible(M, n0, n1, N, shift, window, "cpu").expand(M, n1 - n0)
    rows = ok.any(1).nonzero().flatten().tolist()
    return rows, ok


@pytest.mark.parametrize("window", [(-1, -1), (-1, 0), (-1, 3), (0, -1), (5, -1), (0, 0), (2, 7), (9, 1)])
def test_tile_rows_exact(window):
    """[r0, r1) is exactly the set of rows that see a key of the tile, and `cut` is exactly 'some pair in
    rows [r0, r1) x the tile is masked' — for every tile of a grid of shapes and shifts."""
    for M, N, extra, tile in itertools.product((1, 7, 16, 23), (1, 5, 16, 29), (0, -3, 4), (4, 8)):
        shift = N - M + extra
        for n0 in range(0, N, tile):
            n1 = min(N, n0 + tile)
            r0, r1, cut = cpu._tile_rows(M, n0, n1, shift, window)
            rows, ok = _brute(M, n0, n1, N, shift, window)
            assert list(range(r0, r1)) == rows, (M, N, extra, n0, n1, window, (r0, r1), rows)
            if rows:
                assert cut == (not bool(ok[r0:r1].all())), (M, N, extra, n0, n1, window, cut)


CASES = [Case(1, 70, 70, 2, 2, 16, causal=True), Case(2, 45, 90, 4, 2, 8, causal=True),
         Case(1, 90, 45, 2, 1, 8, causal=True), Case(1, 64, 80, 2, 2, 16, window=(9, 3)),
         Case(1, 80, 64, 4, 2, 8, window=(0, 0)), Case(2, 33, 77, 2, 2, 8, window=(-1, 5)),
         Case(1, 77, 33, 2, 2, 8, window=(12, -1)), Case(1, 50, 50, 2, 2, 8, causal=True, softcap=3.0),
         Case(1, 40, 100, 2, 1, 8)]


@pytest.mark.parametrize("case", CASES, ids=h.case_id)
def test_small_tiles_match_reference(case, monkeypatch):
    """KEY_TILE 8: dozens of tiles per call, most of them cut by the mask or skipped rows; out, lse, dq, dk, dv
    under the 2x rule (fp32)."""
    monkeypatch.setattr(cpu, "KEY_TILE", 8)
    h.check_case(case, torch.float32, device="cpu", grad=True)


@pytest.mark.parametrize("case", [Case(1, 60, 75, 2, 2, 8, causal=True), Case(2, 70, 40, 4, 2, 8, window=(6, 2))],
                         ids=h.case_id)
def test_small_tiles_dropout(case, monkeypatch):
    """Dropout with the row-restricted tiles: out and every gradient equal the reference run on the decoded mask."""
    monkeypatch.setattr(cpu, "KEY_TILE", 8)
    q, k, v = (t.detach().double().float().requires_grad_() for t in h.make_qkv(case, torch.float32, "cpu"))
    torch.manual_seed(7)
    out, lse, S = tilefold.attention(q, k, v, dropout_p=0.3, return_attn_probs=True, **case.opts)
    keep = ~torch.signbit(S)
    dout = torch.randn_like(out)
    g = torch.autograd.grad(out, (q, k, v), dout)
    q2, k2, v2 = (t.detach().double().requires_grad_() for t in (q, k, v))
    ref, _ = attention_ref(q2, k2, v2, dropout_p=0.3, keep=keep, **case.opts)
    gr = torch.autograd.grad(ref, (q2, k2, v2), dout.double())
    assert (out.double() - ref).abs().max().item() < 1e-5
    for a, b in zip(g, gr):
        assert (a.double() - b).abs().max().item() < 1e-4 * max(1.0, b.abs().max().item())


def test_tile_state_consume_only_when_asked():
    from tilefold.state import tile_state
    s = torch.randn(2, 5, 9, dtype=torch.float64)
    s[0, 1] = float("-inf")                      # a fully masked row: (0, -inf)
    v = torch.randn(2, 9, 4, dtype=torch.float64)
    before = s.clone()
    o, lse = tile_state(s, v)
    assert torch.equal(s, before)                # not consumed by default (public function)
    o2, lse2 = tile_state(s.clone(), v, consume=True)
    assert torch.equal(o, o2) and torch.equal(lse, lse2)
    ref_p = torch.softmax(before, -1).nan_to_num(0.0)
    assert torch.allclose(o, ref_p @ v) and torch.equal(o[0, 1], torch.zeros(4, dtype=torch.float64))
    assert torch.isneginf(lse[0, 1]) and torch.allclose(lse[1], torch.logsumexp(before[1], -1))


def test_tile_state_keep_under_autograd():
    """The public tile_state with a dropout keep mask stays differentiable (no in-place op on an autograd tensor)."""
    from tilefold.state import tile_state
    s = torch.randn(3, 8, dtype=torch.float64, requires_grad=True)
    v = torch.randn(8, 2, dtype=torch.float64, requires_grad=True)
    keep = torch.rand(3, 8) > 0.3
    o, lse = tile_state(s, v, keep)
    (o.sum() + lse.sum()).backward()
    p = torch.softmax(s.detach(), -1)
    assert torch.allclose(o, (p * keep) @ v.detach())
    assert s.grad is not None and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("kw", [dict(causal=True), dict(dropout_p=0.2)], ids=["causal", "dropout"])
def test_no_quadratic_memory_cpu(kw, monkeypatch):
    """The CPU fold's O(seqlen_q · KEY_TILE) promise (the GPU tier checks peak memory): with KEY_TILE = 16, no tensor
    that forward + backward create holds a quarter of the (batch, heads, M, N) score matrix (one full score or
    probability tile would hold all of it); the largest are (heads, M, KEY_TILE) tiles -- with dropout their four
    Philox words -- and the inputs' own gradients."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Largest(TorchDispatchMode):
        numel = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor):
                    Largest.numel = max(Largest.numel, t.numel())
            return out

    monkeypatch.setattr(cpu, "KEY_TILE", 16)
    B, H, M, D = 1, 2, 512, 16
    for N in (512, 1024):
        q, k, v = (torch.randn(B, n, H, D, requires_grad=True) for n in (M, N, N))
        Largest.numel = 0
        with tilefold.use_backend("torch"), Largest():
            out = tilefold.attention(q, k, v, **kw)
            torch.autograd.grad(out.sum(), (q, k, v))
        assert 0 < Largest.numel < B * H * M * N // 4, (N, Largest.numel)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("H,HK", [(4, 1), (2, 2)], ids=["mqa", "mha"])
def test_single_key_gradients_are_exactly_zero(backend, H, HK):
    """seqlen_k = 1: P = 1, so dS = P (dP - delta) = 0 and dq = dk = 0 exactly, as torch's softmax backward gives
    (it takes delta = sum_j P dP). The torch path computed delta = dO . O apart from dP's matmul and left ~1e-5 in
    dk over 1023 rows (the 2x rule against torch's 0); the kernels' EXACT_DELTA orders their sum like dP's dot on
    the GPU."""
    torch.manual_seed(0)
    q = torch.randn(1, 257, H, 32, requires_grad=True)
    k, v = (torch.randn(1, 1, HK, 32, requires_grad=True) for _ in range(2))
    with tilefold.use_backend(backend):
        out = tilefold.attention(q, k, v)
        dq, dk, dv = torch.autograd.grad(out, (q, k, v), torch.randn_like(out))
    assert torch.equal(out, v.expand(1, 257, H, 32))
    if backend == "torch":
        assert (dq == 0).all() and (dk == 0).all()
    else:  # under the interpreter tl.dot is numpy's matmul, whose order EXACT_DELTA cannot match: the 2x rule's atol
        assert dq.abs().max() <= 1e-5 and dk.abs().max() <= 1e-5
