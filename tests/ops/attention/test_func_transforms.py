"""torch.func.grad / vjp over the attention functions: the same gradients as torch.autograd (both backends; the
Triton kernels under the interpreter), with lse in the loss, GQA, ALiBi, varlen and dropout (the same mask: one
seed before each call); a second derivative raises. vmap keeps the custom op's rules (test_compile.py)."""
import pytest
import torch

import tilefold

BACKENDS = ["torch", "triton"]


def _loss(out, lse):
    return (out.float() ** 2).sum() + torch.nan_to_num(lse, neginf=0.0).sum()


def _compare(f, xs):
    """torch.func.grad of f over xs against torch.autograd.grad of the same f"""
    g = torch.func.grad(f, argnums=tuple(range(len(xs))))(*xs)
    leaves = [t.clone().requires_grad_() for t in xs]
    ref = torch.autograd.grad(f(*leaves), leaves)
    for a, b in zip(g, ref):
        assert a.shape == b.shape and a.dtype == b.dtype
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
        assert a.abs().max() > 0


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("opts", [dict(causal=True), dict(window_size=(3, 1), softcap=4.0),
                                  dict(causal=True, alibi_slopes=torch.tensor([0.5, 0.25, 1.0, 2.0]))],
                         ids=["causal", "window_softcap", "alibi"])
def test_func_grad_matches_autograd(backend, opts):
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 9, 4, 16), torch.randn(2, 11, 2, 16), torch.randn(2, 11, 2, 16)

    def f(q, k, v):
        with tilefold.use_backend(backend):
            return _loss(*tilefold.attention(q, k, v, return_lse=True, **opts))
    _compare(f, (q, k, v))


@pytest.mark.parametrize("backend", BACKENDS)
def test_func_grad_varlen_and_dropout(backend):
    torch.manual_seed(1)
    q, k, v = torch.randn(12, 2, 16), torch.randn(15, 2, 16), torch.randn(15, 2, 16)
    cu_q = torch.tensor([0, 5, 5, 12], dtype=torch.int32)
    cu_k = torch.tensor([0, 6, 9, 15], dtype=torch.int32)

    def f(q, k, v):
        with tilefold.use_backend(backend):
            return _loss(*tilefold.varlen_attention(q, k, v, cu_q, cu_k, 7, 6, causal=True, return_lse=True))
    _compare(f, (q, k, v))

    def g(q, k, v):  # dropout: the same words drawn before each evaluation, so both see one mask
        torch.manual_seed(7)
        with tilefold.use_backend(backend):
            return _loss(*tilefold.attention(q[None], k[None], v[None], dropout_p=0.3, return_lse=True))
    _compare(g, (q, k, v))


@pytest.mark.parametrize("backend", BACKENDS)
def test_func_grad_split_kv(backend):
    """the split-KV path (its own autograd.Function) under torch.func.grad, batched and varlen"""
    torch.manual_seed(3)
    q, k, v = torch.randn(2, 3, 4, 16), torch.randn(2, 40, 2, 16), torch.randn(2, 40, 2, 16)
    sl = torch.tensor([0.5, 0.25, 1.0, 2.0])

    def f(q, k, v):
        with tilefold.use_backend(backend):
            return _loss(*tilefold.attention(q, k, v, causal=True, num_splits=3, alibi_slopes=sl, return_lse=True))
    _compare(f, (q, k, v))
    cu_q = torch.tensor([0, 3, 6], dtype=torch.int32)
    cu_k = torch.tensor([0, 40, 80], dtype=torch.int32)

    def g(q, k, v):
        with tilefold.use_backend(backend):
            return _loss(*tilefold.varlen_attention(q, k, v, cu_q, cu_k, 3, 40, num_splits=2, return_lse=True))
    _compare(g, (q.reshape(6, 4, 16), k.reshape(80, 2, 16), v.reshape(80, 2, 16)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_func_vjp_and_second_order(backend):
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 8, 2, 16) for _ in range(3))
    dout = torch.randn(1, 8, 2, 16)
    with tilefold.use_backend(backend):
        out, vjp = torch.func.vjp(lambda q, k, v: tilefold.attention(q, k, v, causal=True), q, k, v)
        got = vjp(dout)
        leaves = [t.clone().requires_grad_() for t in (q, k, v)]
        ref = torch.autograd.grad(tilefold.attention(*leaves, causal=True), leaves, dout)
        for a, b in zip(got, ref):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)

        def first(q):
            return torch.func.grad(lambda q: tilefold.attention(q, k, v).square().sum())(q).sum()
        with pytest.raises(RuntimeError, match="second derivative"):
            torch.func.grad(first)(q)
