"""The dK/dV kernel's one-loop variant (config.DKDV_ONE_LOOP, TILEFOLD_DKDV_ONE_LOOP=0/1/auto: the mask applied at
run time to the tiles that need it instead of three loops) gives bitwise the default's gradients -- same tiles,
same order, a full tile's mask is all true -- through the Triton kernels under the interpreter; and it passes
the accuracy rule on its own."""
import pytest
import torch

import attention_helpers as h

import tilefold
from tilefold.ops.attention import config as C

Case = h.Case

# (B, M, N, H, HK, D, mask): causal with M != N both ways, window + softcap, GQA / MQA, padded head dim,
# lengths that leave partial query and key tiles
BITWISE = [
    ((2, 45, 70, 4, 2, 32), dict(causal=True)),
    ((1, 70, 45, 4, 1, 40), dict(window_size=(8, 3), softcap=5.0)),
    ((1, 33, 33, 2, 2, 16), dict()),
    ((1, 50, 20, 2, 1, 24), dict(causal=True, window_size=(5, -1))),
]


@pytest.mark.parametrize("shape,opts", BITWISE, ids=[str(s) for s, _ in BITWISE])
def test_one_loop_bitwise_equal(shape, opts, monkeypatch):
    B, M, N, H, HK, D = shape
    g = torch.Generator().manual_seed(11)
    q = torch.randn(B, M, H, D, generator=g, requires_grad=True)
    k = torch.randn(B, N, HK, D, generator=g, requires_grad=True)
    v = torch.randn(B, N, HK, D, generator=g, requires_grad=True)
    do = torch.randn(B, M, H, D, generator=g)
    res = {}
    with h.backend_ctx("triton"):
        for one in (False, True):
            monkeypatch.setattr(C, "DKDV_ONE_LOOP", one)
            o = tilefold.attention(q, k, v, **opts)
            res[one] = torch.autograd.grad(o, (q, k, v), do)
    assert res[True][1].abs().sum() > 0
    for a, b in zip(res[False], res[True]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("case", [Case(2, 45, 70, 4, 2, 32, causal=True),
                                  Case(1, 70, 45, 4, 1, 40, window=(8, 3), softcap=5.0)], ids=h.case_id)
def test_one_loop_accuracy(case, monkeypatch):
    monkeypatch.setattr(C, "DKDV_ONE_LOOP", True)
    h.check_case(case, torch.float32, backend="triton", device="cpu", grad=True)


@pytest.mark.gpu
@pytest.mark.parametrize("D", [64, 128, 256])
@pytest.mark.parametrize("causal", [False, True])
def test_one_loop_bitwise_equal_gpu(D, causal, monkeypatch):
    monkeypatch.setattr(C, "BWD_SM90", "0")  # this file tests backward.py's dK/dV kernel, not the Gluon one
    g = torch.Generator(device="cuda").manual_seed(5)
    q, k, v = (torch.randn(2, n, h, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
               for n, h in ((1000, 8), (1100, 2), (1100, 2)))
    do = torch.randn(2, 1000, 8, D, device="cuda", dtype=torch.bfloat16, generator=g)
    res = {}
    for one in (False, True):
        monkeypatch.setattr(C, "DKDV_ONE_LOOP", one)
        o = tilefold.attention(q, k, v, causal=causal)
        res[one] = torch.autograd.grad(o, (q, k, v), do)
    for a, b in zip(res[False], res[True]):
        assert torch.equal(a, b)


def test_one_loop_bitwise_equal_varlen_dropout(monkeypatch):
    """Packed sequences with empty and length-1 members (causal, so some key blocks see no query), and
    dropout (the regenerated mask keys on the tile's row start, which the one loop must pass unchanged)."""
    g = torch.Generator().manual_seed(2)
    lq, lk = [0, 1, 37, 20, 5], [3, 1, 50, 0, 17]
    cu_q = torch.tensor([0] + list(torch.tensor(lq).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(lk).cumsum(0)), dtype=torch.int32)
    q = torch.randn(sum(lq), 4, 32, generator=g, requires_grad=True)
    k = torch.randn(sum(lk), 2, 32, generator=g, requires_grad=True)
    v = torch.randn(sum(lk), 2, 32, generator=g, requires_grad=True)
    do = torch.randn(sum(lq), 4, 32, generator=g)
    res = {}
    with h.backend_ctx("triton"):
        for one in (False, True):
            monkeypatch.setattr(C, "DKDV_ONE_LOOP", one)
            for opts in (dict(causal=True), dict(dropout_p=0.3, window_size=(6, 2))):
                torch.manual_seed(9)
                o = tilefold.varlen_attention(q, k, v, cu_q, cu_k, max(lq), max(lk), **opts)
                res[(one, str(opts))] = torch.autograd.grad(o, (q, k, v), do)
    for key in [k_ for k_ in res if k_[0]]:
        assert res[key][1].abs().sum() > 0
        for a, b in zip(res[(False, key[1])], res[key]):
            assert torch.equal(a, b)


# the paths the cases above leave out: fp16 (no compensated sums), a left-only window (HAS_LO without HAS_HI:
# masked tail tiles only) and lengths off the interpreter's 16-row tile, the head dim split over two programs
# (SPLIT_D = 2, fp16 only) with a padded head dim and softcap, the lse gradient (fp32: SEP_DLSE) and a
# partial last key block under causal
SPLIT = C.KernelConfig(16, 16, 4, 1, dkdv_split_d=2)
MORE = [
    ("fp16-causal-partial-kblock", (1, 37, 53, 2, 1, 24), torch.float16, dict(causal=True), None),
    ("fp16-left-window", (1, 41, 29, 2, 2, 16), torch.float16, dict(window_size=(7, -1)), None),
    ("fp16-split-d-causal-softcap", (1, 30, 45, 4, 2, 40), torch.float16, dict(causal=True, softcap=5.0), SPLIT),
    ("fp16-split-d-window-dropout", (1, 45, 30, 2, 1, 32), torch.float16,
     dict(window_size=(9, 4), dropout_p=0.2), SPLIT),
    ("fp32-lse-grad-window", (1, 43, 51, 2, 1, 16), torch.float32, dict(window_size=(12, 0)), None),
]


@pytest.mark.parametrize("name,shape,dtype,opts,cfg", MORE, ids=[m[0] for m in MORE])
def test_one_loop_bitwise_equal_more(name, shape, dtype, opts, cfg, monkeypatch):
    B, M, N, H, HK, D = shape
    g = torch.Generator().manual_seed(3)
    q = torch.randn(B, M, H, D, generator=g).to(dtype).requires_grad_()
    k = torch.randn(B, N, HK, D, generator=g).to(dtype).requires_grad_()
    v = torch.randn(B, N, HK, D, generator=g).to(dtype).requires_grad_()
    do = torch.randn(B, M, H, D, generator=g).to(dtype)
    dlse = torch.randn(B, H, M, generator=g)
    if cfg is not None:
        monkeypatch.setattr(C, "bwd_config", lambda *a, **kw: cfg)
    res = {}
    with h.backend_ctx("triton"):
        for one in (False, True):
            monkeypatch.setattr(C, "DKDV_ONE_LOOP", one)
            torch.manual_seed(4)
            o, lse = tilefold.attention(q, k, v, return_lse=True, **opts)
            res[one] = torch.autograd.grad((o, lse), (q, k, v), (do, dlse))
    assert res[True][1].abs().sum() > 0 and res[True][2].abs().sum() > 0
    for a, b in zip(res[False], res[True]):
        assert torch.equal(a, b)


def test_one_loop_policy(monkeypatch):
    """auto: one loop only where it measured faster (masked, 16-bit, 128-wide head block); 0/1 force it;
    anything else is refused rather than silently taken as off."""
    monkeypatch.setattr(C, "DKDV_ONE_LOOP", "auto")
    assert C.dkdv_one_loop(128, True, False)
    assert not C.dkdv_one_loop(128, False, False)
    assert not C.dkdv_one_loop(128, True, True)
    assert not C.dkdv_one_loop(64, True, False)
    assert not C.dkdv_one_loop(256, True, False)
    for mode, want in (("1", True), (True, True), ("0", False), (False, False)):
        monkeypatch.setattr(C, "DKDV_ONE_LOOP", mode)
        assert C.dkdv_one_loop(64, False, True) is want
        assert C.dkdv_one_loop(128, True, False) is want
    monkeypatch.setattr(C, "DKDV_ONE_LOOP", "yes")
    with pytest.raises(ValueError, match="TILEFOLD_DKDV_ONE_LOOP"):
        C.dkdv_one_loop(128, True, False)


class _ForceEvenM:
    """Stands in for the dK/dV kernel: records the EVEN_M the launcher chose and launches with `force`."""

    def __init__(self, kernel, force):
        self.kernel, self.force, self.seen = kernel, force, []

    def __getitem__(self, grid):
        def launch(*args, **kw):
            self.seen.append(kw["EVEN_M"])
            if self.force is not None:
                kw["EVEN_M"] = self.force
            return self.kernel[grid](*args, **kw)
        return launch


@pytest.mark.parametrize("shape,opts", [
    ((1, 48, 80, 2, 1, 32), dict(causal=True)),
    ((2, 64, 48, 4, 2, 16), dict(window_size=(10, 4), softcap=5.0)),
    ((1, 32, 32, 2, 2, 24), dict(causal=True, dropout_p=0.2)),
    ((1, 48, 40, 2, 1, 16), dict(window_size=(7, -1))),
], ids=["causal", "window-softcap", "causal-dropout-padded-d", "left-window"])
@pytest.mark.parametrize("one", [False, True])
def test_even_m_rows_unmasked_bitwise_equal(shape, opts, one, monkeypatch):
    """Query lengths a multiple of the dK/dV query tile: the launcher sets EVEN_M and the masked tiles load
    their rows without bounds; the gradients must be bitwise those of the bounded loads."""
    from tilefold.ops.attention import backward as bwd
    B, M, N, H, HK, D = shape
    assert M % C.INTERPRETER.BLOCK_M == 0
    g = torch.Generator().manual_seed(4)
    # q and dO views into buffers whose rows past M are NaN: a load beyond the query length would show
    qbuf = torch.full((B, M + 16, H, D), float("nan"))
    qbuf[:, :M] = torch.randn(B, M, H, D, generator=g)
    q = qbuf[:, :M].requires_grad_()
    k = torch.randn(B, N, HK, D, generator=g, requires_grad=True)
    v = torch.randn(B, N, HK, D, generator=g, requires_grad=True)
    dobuf = torch.full((B, M + 16, H, D), float("nan"))
    dobuf[:, :M] = torch.randn(B, M, H, D, generator=g)
    do = dobuf[:, :M]  # (last stride 1: the backward keeps the view)
    monkeypatch.setattr(C, "DKDV_ONE_LOOP", one)
    real = bwd.attention_bwd_dkdv_kernel
    res = {}
    with h.backend_ctx("triton"):
        for force in (None, False):
            spy = _ForceEvenM(real, force)
            monkeypatch.setattr(bwd, "attention_bwd_dkdv_kernel", spy)
            torch.manual_seed(3)
            o = tilefold.attention(q, k, v, **opts)
            res[force] = torch.autograd.grad(o, (q, k, v), do)
            assert spy.seen == [True]
    assert res[None][1].abs().sum() > 0
    for a, b in zip(res[False], res[None]):
        assert torch.isfinite(b).all()
        assert torch.equal(a, b)


def test_even_m_off_for_ragged_and_varlen(monkeypatch):
    """EVEN_M only when every query tile is whole: not for a ragged length, never for varlen."""
    from tilefold.ops.attention import backward as bwd
    spy = _ForceEvenM(bwd.attention_bwd_dkdv_kernel, None)
    monkeypatch.setattr(bwd, "attention_bwd_dkdv_kernel", spy)
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 40, 2, 16, generator=g, requires_grad=True) for _ in range(3))
    cu = torch.tensor([0, 16, 32], dtype=torch.int32)
    qv, kv, vv = (torch.randn(32, 2, 16, generator=g, requires_grad=True) for _ in range(3))
    with h.backend_ctx("triton"):
        tilefold.attention(q, k, v, causal=True).sum().backward()
        tilefold.varlen_attention(qv, kv, vv, cu, cu, 16, 16, causal=True).sum().backward()
    assert spy.seen == [False, False]


@pytest.mark.gpu
@pytest.mark.parametrize("D", [64, 128, 256])
@pytest.mark.parametrize("opts", [dict(causal=True), dict(window_size=(100, 30), softcap=20.0)],
                         ids=["causal", "window-softcap"])
def test_even_m_bitwise_equal_gpu(D, opts, monkeypatch):
    """The shipped configs on a GPU at query lengths a multiple of every query tile (1024; keys 1280, so
    causal is bottom-right shifted): EVEN_M taken and bitwise equal to the bounded loads, and the gradient
    is not trivially zero."""
    from tilefold.ops.attention import backward as bwd
    monkeypatch.setattr(C, "BWD_SM90", "0")  # backward.py's dK/dV kernel (hd 64 / 128 would take the Gluon one)
    g = torch.Generator(device="cuda").manual_seed(8)
    q, k, v = (torch.randn(2, n, h, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
               for n, h in ((1024, 8), (1280, 2), (1280, 2)))
    do = torch.randn(2, 1024, 8, D, device="cuda", dtype=torch.bfloat16, generator=g)
    real = bwd.attention_bwd_dkdv_kernel
    res = {}
    for force in (None, False):
        spy = _ForceEvenM(real, force)
        monkeypatch.setattr(bwd, "attention_bwd_dkdv_kernel", spy)
        o = tilefold.attention(q, k, v, **opts)
        res[force] = torch.autograd.grad(o, (q, k, v), do)
        assert spy.seen == [True]
    assert res[None][1].abs().sum() > 0
    for a, b in zip(res[False], res[None]):
        assert torch.equal(a, b)
