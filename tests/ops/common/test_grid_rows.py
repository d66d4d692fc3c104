"""batch x heads programs over grid axes 1 and 2 (``host.rows_grid``, ``masks.grid_row``): CUDA caps those axes at
65535 each, so past 65535 rows the kernels read their row as program_id(1) + program_id(2) · Y. On the CPU the cap is
lowered (``host.GRID_YZ_MAX``) so that the interpreter runs every kernel on a split grid at small shapes: each
program computes exactly what it computes on one axis, so outputs, lse, S and gradients must be bitwise equal to
the one-axis launch -- dropout included, whose mask is keyed by the (batch, head) row. The GPU test launches a real
batch x heads > 65535."""
import pytest
import torch

import tilefold
from tilefold.gla import chunk_gla, fused_chunk_gla, fused_recurrent_gla
from tilefold.ops.common import host
from tilefold.ops.common.dispatch import interpreter_enabled, use_backend
from tilefold.ops.decode import kernel as decode_kernel
from tilefold.ops.decode import split_kv_attention

needs_interpreter = pytest.mark.skipif(not interpreter_enabled() and not torch.cuda.is_available(),
                                       reason="the Triton kernels on CPU tensors need TRITON_INTERPRET=1")


def test_rows_grid_factorization():
    for limit in (1, 5, 12, 64):
        for per in range(1, 14):
            for batch in range(1, 40):
                g = host.rows_grid(batch, per, limit)
                rows = batch * per
                if rows <= limit:
                    assert g == (rows, 1)
                    continue
                # a split exists iff some divisor d of batch has per * d <= limit and batch / d <= limit
                exists = any(batch % d == 0 and per * d <= limit and batch // d <= limit for d in range(1, batch + 1))
                assert (g is not None) == exists, (batch, per, limit, g)
                if g is not None:
                    y, z = g
                    assert y * z == rows and y <= limit and z <= limit and y % per == 0, (batch, per, limit, g)
    assert host.rows_grid(2047, 32) == (2047 * 32, 1)
    assert host.rows_grid(4096, 32) == (32 * 1024, 4)  # d = 1024: the largest divisor of 4096 with 32 · d <= 65535
    assert host.rows_grid(65537, 1) is None  # prime above the cap
    assert host.rows_grid(1, 70000) is None
    assert host.rows_grid(0, 8) == (0, 1)


def _device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def _attention_case(dtype=torch.float32, **kw):
    g = torch.Generator().manual_seed(0)
    B, M, N, H, HK, D = 3, 19, 23, 4, 2, 16
    q, k, v = (torch.randn(B, n, h, D, generator=g, dtype=dtype).to(_device()).requires_grad_()
               for n, h in ((M, H), (N, HK), (N, HK)))
    do = torch.randn(B, M, H, D, generator=g, dtype=dtype).to(_device())
    out = tilefold.attention(q, k, v, return_lse=True, **kw)
    o, rest = out[0], out[1:]
    grads = torch.autograd.grad(o, (q, k, v), do)
    return (o.detach(),) + tuple(r.detach() for r in rest) + grads


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape and torch.equal(x, y)


def _split_grid(monkeypatch, limit=5):
    """3 sequences x 4 heads = 12 rows over (4, 3), the key heads' 6 rows over (2, 3): every kernel on two axes"""
    monkeypatch.setattr(host, "GRID_YZ_MAX", limit)
    decode_kernel.clear_plans()


def _one_axis_then_two(run, monkeypatch):
    """run() on the Triton kernels with the rows on one grid axis, then on two (the lowered cap)"""
    with use_backend("triton"):
        one = run()
        _split_grid(monkeypatch)
        return one, run()


@needs_interpreter
@pytest.mark.parametrize("kw", [dict(causal=True), dict(window_size=(5, 2), softcap=3.0),
                                dict(dropout_p=0.3, return_attn_probs=True), dict(num_splits=3, causal=True)],
                         ids=["causal", "window-softcap", "dropout", "split3"])
def test_attention_bitwise_on_split_grid(kw, monkeypatch):
    """forward.py / backward.py kernels (the preprocess, dQ and dK/dV), split-KV on axis 2 beside the rows"""
    def run():
        torch.manual_seed(7)  # the same dropout mask both times
        return _attention_case(**kw)

    _same(*_one_axis_then_two(run, monkeypatch))


@needs_interpreter
def test_varlen_bitwise_on_split_grid(monkeypatch):
    g = torch.Generator().manual_seed(1)
    cu = torch.tensor([0, 5, 5, 17, 30], dtype=torch.int32, device=_device())
    q, k, v = (torch.randn(30, h, 16, generator=g).to(_device()).requires_grad_() for h in (4, 2, 2))

    def run():
        o, lse = tilefold.varlen_attention(q, k, v, cu, cu, 13, 13, causal=True, return_lse=True)
        return (o.detach(), lse) + torch.autograd.grad(o.sum(), (q, k, v))

    _same(*_one_axis_then_two(run, monkeypatch))


@needs_interpreter
@pytest.mark.parametrize("mode", ["kernel", "fused"])
def test_decode_bitwise_on_split_grid(mode, monkeypatch):
    """the decode kernel's rows on two axes beside its S splits (z · S + split on axis 2), the fused combine's
    per-row-block counters, and the two-launch combine's rows"""
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", mode)
    g = torch.Generator().manual_seed(2)
    q = torch.randn(3, 9, 4, 32, generator=g).to(_device())  # 9 x 2 packed rows: two row blocks of 16
    k, v = (torch.randn(3, 77, 2, 32, generator=g).to(_device()) for _ in range(2))

    def run():
        return split_kv_attention(q, k, v, num_splits=3, softmax_scale=32 ** -0.5, window=(-1, -1), softcap=0.0)

    with use_backend("triton"):
        decode_kernel.clear_plans()
        one = run()
        _split_grid(monkeypatch)
        two = run()
        three = run()  # the fused combine's counters were left at zero
    _same(one, two)
    _same(one, three)


@needs_interpreter
def test_partial_attention_bitwise_on_split_grid(monkeypatch):
    g = torch.Generator().manual_seed(3)
    q = torch.randn(3, 8, 4, 16, generator=g).to(_device())
    k, v = (torch.randn(3, 12, 2, 16, generator=g).to(_device()) for _ in range(2))

    def run():
        return tilefold.partial_attention(q, k, v, q_start=20, k_start=16, seqlen_q_total=40, seqlen_k_total=40,
                                          causal=True)

    _same(*_one_axis_then_two(run, monkeypatch))


@needs_interpreter
@pytest.mark.parametrize("fn", [fused_recurrent_gla, chunk_gla, fused_chunk_gla],
                         ids=["fused_recurrent", "chunk", "fused_chunk"])
def test_gla_bitwise_on_split_grid(fn, monkeypatch):
    """the GLA kernels with (sequence, head) rows on axis 1 (state passes, dg) on two axes; varlen sequences"""
    g = torch.Generator().manual_seed(4)
    T, H, K, V = 40, 4, 16, 16
    q, k = (torch.randn(1, T, H, K, generator=g).to(_device()).requires_grad_() for _ in range(2))
    v = torch.randn(1, T, H, V, generator=g).to(_device()).requires_grad_()
    gate = (-torch.rand(1, T, H, K, generator=g) * 0.5).to(_device()).requires_grad_()
    h0 = torch.randn(3, H, K, V, generator=g).to(_device()).requires_grad_()
    cu = torch.tensor([0, 7, 7, 40], dtype=torch.int32, device=_device())

    def run():
        o, ht = fn(q, k, v, gate, initial_state=h0, output_final_state=True, cu_seqlens=cu)
        return (o.detach(), ht.detach()) + torch.autograd.grad((o.sum() + ht.sum()), (q, k, v, gate, h0))

    _same(*_one_axis_then_two(run, monkeypatch))


@pytest.mark.gpu
def test_more_than_65535_rows_gpu(monkeypatch):
    """batch x heads > 65535 programs per block on the GPU: attention forward / backward (bf16: the Gluon kernels on
    sm_90; fp32: the Triton kernels), decode with both combines and the GLA modes, the first and last sequences
    against the same call on a slice of the batch (a row mapped to the wrong program would be off by O(1))"""
    torch.manual_seed(0)
    B, H, D = 4100, 17, 64
    for dtype, M, tol in ((torch.bfloat16, 64, 2e-2), (torch.float32, 5, 1e-5)):
        q, k, v = (torch.randn(B, M, H, D, device="cuda", dtype=dtype, requires_grad=True) for _ in range(3))
        o, lse = tilefold.attention(q, k, v, causal=True, return_lse=True)
        grads = torch.autograd.grad(o.float().square().sum(), (q, k, v))
        for s in (slice(0, 7), slice(B - 7, B)):
            qs, ks, vs = (x.detach()[s].requires_grad_() for x in (q, k, v))
            os_, ls = tilefold.attention(qs, ks, vs, causal=True, return_lse=True)
            gs = torch.autograd.grad(os_.float().square().sum(), (qs, ks, vs))
            for a, b in zip((o[s], lse[s]) + tuple(g[s] for g in grads), (os_, ls) + gs):
                torch.testing.assert_close(a.detach(), b.detach(), rtol=tol, atol=tol)
    # 9 x 2 packed query rows: two row blocks, so the fused combine's counters of both blocks are live at once
    q = torch.randn(B, 9, 2 * H, 128, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(B, 300, H, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for mode in ("kernel", "fused"):
        monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", mode)
        o, lse = split_kv_attention(q, k, v, num_splits=2, softmax_scale=128 ** -0.5, window=(-1, -1), softcap=0.0)
        for s in (slice(0, 3), slice(B - 3, B)):
            os_, ls = split_kv_attention(q[s], k[s], v[s], num_splits=2, softmax_scale=128 ** -0.5, window=(-1, -1),
                                         softcap=0.0)
            _same((o[s], lse[s]), (os_, ls))
    T = B * 3
    cu = torch.arange(0, T + 1, 3, device="cuda", dtype=torch.int32)
    qg, kg, vg = (torch.randn(1, T, H, 16, device="cuda") for _ in range(3))
    gg = -torch.rand(1, T, H, 16, device="cuda")
    for fn in (fused_recurrent_gla, chunk_gla, fused_chunk_gla):
        o, ht = fn(qg, kg, vg, gg, output_final_state=True, cu_seqlens=cu)
        o2, ht2 = fn(qg[:, -9:], kg[:, -9:], vg[:, -9:], gg[:, -9:], output_final_state=True, cu_seqlens=cu[:4])
        torch.testing.assert_close(o[:, -9:], o2, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ht[-3:], ht2, rtol=1e-5, atol=1e-5)
