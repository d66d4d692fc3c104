"""Eager calls skip the custom-op layers (tilefold.ops.attention.function.attention_forward): same outputs
and gradients, bitwise, as the custom op with its registered autograd; no autograd node when nothing needs
a gradient; the custom op still runs under torch.compile (test_compile.py covers compiled == eager)."""
import pytest
import torch

import tilefold
from tilefold.ops.attention import function as F


def _args(q, k, v, right=-1, softcap=0.0, dropout_p=0.0):
    return (q, k, v, None, None, q.shape[1], k.shape[1], q.shape[-1] ** -0.5, -1, right, softcap, 0,
            dropout_p, 1234, 7)


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("right,softcap,dropout_p", [(-1, 0.0, 0.0), (0, 0.0, 0.0), (0, 3.0, 0.25)])
def test_eager_equals_custom_op(backend, right, softcap, dropout_p):
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, s, h, 16, generator=g) for s, h in ((9, 4), (13, 2), (13, 2)))
    do = torch.randn(2, 9, 4, 16, generator=g)
    dl = torch.randn(2, 4, 9, generator=g)
    res = []
    for fn in (F.attention_fwd_op, F.attention_forward):
        qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
        with tilefold.use_backend(backend):
            out, lse = fn(*_args(qq, kk, vv, right, softcap, dropout_p))
            grads = torch.autograd.grad((out * do).sum() + (lse * dl).sum(), (qq, kk, vv))
        res.append((out, lse) + grads)
    for a, b in zip(*res):
        assert torch.equal(a, b)


def test_eager_no_grad_has_no_node_and_skips_op(monkeypatch):
    calls = []
    orig = F.attention_fwd_op
    monkeypatch.setattr(F, "attention_fwd_op", lambda *a: calls.append(1) or orig(*a))
    q, k, v = (torch.randn(1, 5, 2, 8) for _ in range(3))
    out = tilefold.attention(q, k, v, causal=True)
    assert out.grad_fn is None and not calls
    qg = q.clone().requires_grad_()
    out = tilefold.attention(qg, k, v, causal=True)
    assert type(out.grad_fn).__name__ == "_AttentionFunctionBackward" and not calls
    with torch.no_grad():
        assert tilefold.attention(qg, k, v).grad_fn is None


def test_compiling_uses_custom_op(monkeypatch):
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not F._eager(torch.randn(2))
    monkeypatch.undo()
    assert F._eager(torch.randn(2), None)
    assert not F._eager(torch.nn.Parameter(torch.randn(2)))  # a subclass takes the custom op


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("right,softcap,dropout_p", [(-1, 0.0, 0.0), (0, 0.0, 0.0), (0, 3.0, 0.25)])
def test_eager_equals_custom_op_gpu(dtype, right, softcap, dropout_p):
    g = torch.Generator(device="cuda").manual_seed(3)
    q, k, v = (torch.randn(2, s, h, 64, device="cuda", dtype=dtype, generator=g)
               for s, h in ((300, 4), (517, 2), (517, 2)))
    do = torch.randn(2, 300, 4, 64, device="cuda", dtype=dtype, generator=g)
    dl = torch.randn(2, 4, 300, device="cuda", generator=g)
    res = []
    for fn in (F.attention_fwd_op, F.attention_forward):
        qq, kk, vv = (x.clone().requires_grad_() for x in (q, k, v))
        out, lse = fn(*_args(qq, kk, vv, right, softcap, dropout_p))
        grads = torch.autograd.grad((out.float() * do).sum() + (lse * dl).sum(), (qq, kk, vv))
        res.append((out, lse) + grads)
    for a, b in zip(*res):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------------------------------
# Eager path vs custom op / reference: gradient subsets, unused outputs, varlen, grad modes, double
# backward, torch.compile tracing (CPU tier).


def _run(fn, q, k, v, need, loss, backend="torch", cu=(None, None), maxes=None, **opts):
    """(out, lse, dq, dk, dv) through ``fn`` with only the inputs named in ``need`` requiring grad;
    ``loss`` picks which outputs the loss uses ("out", "lse", "both"); the out cotangent is
    non-contiguous (stride(-1) != 1)."""
    xs = [x.clone().requires_grad_(n in need) for n, x in zip("qkv", (q, k, v))]
    M, N = maxes if maxes is not None else (q.shape[1], k.shape[1])
    with tilefold.use_backend(backend):
        out, lse = fn(*xs, cu[0], cu[1], M, N, q.shape[-1] ** -0.5, opts.get("left", -1), opts.get("right", 0),
                      opts.get("softcap", 0.0), 0)
        g = torch.Generator().manual_seed(5)
        do = torch.randn(out.shape[::-1], generator=g, dtype=out.dtype).permute(*range(out.dim() - 1, -1, -1))
        dl = torch.randn(lse.shape, generator=g, dtype=lse.dtype)
        terms = []
        if loss in ("out", "both"):
            terms.append((out * do).sum())
        if loss in ("lse", "both"):
            terms.append((lse * dl).sum())
        wanted = [x for x in xs if x.requires_grad]
        grads = iter(torch.autograd.grad(sum(terms), wanted))
    return (out, lse) + tuple(next(grads) if x.requires_grad else None for x in xs)


@pytest.mark.parametrize("backend,need", [("torch", n) for n in ("q", "k", "v", "kv", "qkv")]
                         + [("triton", n) for n in ("k", "qkv")])  # interpreter time: two subsets
@pytest.mark.parametrize("loss", ["out", "lse", "both"])
def test_eager_grad_subsets_equal_custom_op(backend, need, loss):
    g = torch.Generator().manual_seed(11)
    q, k, v = (torch.randn(2, s, h, 16, generator=g) for s, h in ((7, 4), (10, 2), (10, 2)))
    a = _run(F.attention_fwd_op, q, k, v, need, loss, backend)
    b = _run(F.attention_forward, q, k, v, need, loss, backend)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            assert torch.equal(x, y)


def test_eager_varlen_equals_custom_op():
    g = torch.Generator().manual_seed(12)
    q, k, v = (torch.randn(t, h, 16, generator=g) for t, h in ((12, 4), (15, 2), (15, 2)))
    cu = (torch.tensor([0, 5, 5, 12], dtype=torch.int32), torch.tensor([0, 3, 8, 15], dtype=torch.int32))
    a = _run(F.attention_fwd_op, q, k, v, "qkv", "both", cu=cu, maxes=(7, 7), left=2, softcap=4.0)
    b = _run(F.attention_forward, q, k, v, "qkv", "both", cu=cu, maxes=(7, 7), left=2, softcap=4.0)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


@pytest.mark.parametrize("left,right,softcap", [(-1, -1, 0.0), (-1, 0, 0.0), (2, 1, 3.0)],
                         ids=["full", "causal", "window_softcap"])
def test_eager_gradcheck_fp64(left, right, softcap):
    """gradcheck of the eager path (torch backend), out and lse. lse is fp32 even for fp64 inputs, so the
    finite differences use eps=1e-3 and tolerances 2e-3 (a wrong gradient is off by O(0.1))."""
    g = torch.Generator().manual_seed(13)
    q, k, v = (torch.randn(1, s, h, 4, generator=g, dtype=torch.float64).requires_grad_()
               for s, h in ((3, 2), (5, 1), (5, 1)))
    nodes = set()

    def f(q, k, v):
        out, lse = F.attention_forward(q, k, v, None, None, 3, 5, 0.5, left, right, softcap, 0)
        nodes.add(type(out.grad_fn).__name__)
        return out, lse

    with tilefold.use_backend("torch"):
        assert torch.autograd.gradcheck(f, (q, k, v), eps=1e-3, atol=2e-3, rtol=2e-3)
    assert nodes == {"_AttentionFunctionBackward"}


def test_eager_lse_grad_matches_reference():
    from tilefold.ops.attention.naive import attention_ref
    g = torch.Generator().manual_seed(14)
    q, k, v = (torch.randn(1, s, h, 8, generator=g, dtype=torch.float64) for s, h in ((4, 2), (6, 1), (6, 1)))
    dl = torch.randn(1, 2, 4, generator=g, dtype=torch.float64)
    res = []
    for which in ("eager", "ref"):
        xs = [x.clone().requires_grad_() for x in (q, k, v)]
        with tilefold.use_backend("torch"):
            if which == "eager":
                _, lse = F.attention_forward(*xs, None, None, 4, 6, 0.3, 1, 0, 0.0, 0)
                assert type(lse.grad_fn).__name__ == "_AttentionFunctionBackward"
            else:
                _, lse = attention_ref(*xs, softmax_scale=0.3, window_size=(1, 0))
            res.append(torch.autograd.grad((lse.double() * dl).sum(), xs, allow_unused=True))
    for n, a, b in zip("qkv", *res):
        b = torch.zeros_like(a) if b is None else b  # lse does not depend on v
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda m: f"d{n}: {m}")


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_eager_grad_modes(mode):
    q, k, v = (torch.randn(1, 5, 2, 8, requires_grad=True) for _ in range(3))
    ref = F.attention_fwd_op(q.detach(), k.detach(), v.detach(), None, None, 5, 5, 0.3, -1, 0, 0.0, 0)
    with getattr(torch, mode)():
        out, lse = tilefold.attention(q, k, v, causal=True, softmax_scale=0.3, return_lse=True)
    assert out.grad_fn is None and not out.requires_grad and lse.grad_fn is None
    assert out.is_inference() == (mode == "inference_mode")
    assert torch.equal(out, ref[0]) and torch.equal(lse, ref[1])


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("num_splits", [1, 2])
def test_double_backward_raises_like_custom_op(backend, num_splits):
    """Double backward is unsupported: the second backward raises the custom op's error in both paths (not a
    silently dropped gradient penalty on the Triton path, nor a backend-dependent result on the torch path)."""
    g = torch.Generator().manual_seed(15)
    q, k, v = (torch.randn(1, s, h, 16, generator=g) for s, h in ((3, 2), (5, 1), (5, 1)))
    q.requires_grad_()
    with tilefold.use_backend(backend):
        out = tilefold.attention(q, k, v, causal=True, num_splits=num_splits)
        dq, = torch.autograd.grad(out.pow(2).sum(), q, create_graph=True)
        penalty = out.sum() + dq.pow(2).sum()
        with pytest.raises(RuntimeError, match="no autograd formula was registered"):
            penalty.backward()
        # create_graph=False (the usual case) still takes the eager backward and gives the custom op's grads
        out = tilefold.attention(q, k, v, causal=True, num_splits=num_splits)
        dq_eager, = torch.autograd.grad(out.pow(2).sum(), q)
        out_op = F.attention_fwd_op(q, k, v, None, None, 3, 5, 0.25, -1, 0, 0.0, 0)[0]
        dq_op, = torch.autograd.grad(out_op.pow(2).sum(), q)
    torch.testing.assert_close(dq_eager, dq_op, atol=1e-6, rtol=1e-6)


def test_compile_fullgraph_traces_custom_ops():
    """torch.compile(fullgraph=True) records tilefold::attention_fwd (dynamo graph) and attention_bwd (AOT
    backward graph), not the eager path's autograd.Function or the torch fold's ops."""
    from functorch.compile import make_boxed_func
    from torch._dynamo.backends.common import aot_autograd

    graphs = {}

    def capture(name):
        def compiler(gm, example_inputs):
            graphs[name] = str(gm.graph)
            return make_boxed_func(gm.forward)
        return compiler

    torch._dynamo.reset()
    q, k, v = (torch.randn(1, n, 2, 8, requires_grad=True) for n in (5, 7, 7))
    f = torch.compile(lambda q, k, v: tilefold.attention(q, k, v, causal=True), fullgraph=True,
                      backend=aot_autograd(fw_compiler=capture("fw"), bw_compiler=capture("bw")))
    with tilefold.use_backend("torch"):
        f(q, k, v).sum().backward()
    torch._dynamo.reset()
    assert "tilefold.attention_fwd" in graphs["fw"] and "tilefold.attention_bwd" in graphs["bw"]
    assert "logsumexp" not in graphs["fw"] and "exp" not in graphs["fw"].replace("attention_fwd", "")
