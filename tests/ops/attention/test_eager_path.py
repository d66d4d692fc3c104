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
