"""ALiBi (flash_attn's ``alibi_slopes``): scores get ``-slope[h] · |i + seqlen_k - seqlen_q - j|`` after the scale and
softcap. Out, lse and every gradient against the fp64 reference with the bias under the 2x rule (both CPU backends,
the Triton kernels on the GPU), varlen per sequence, the probabilities of return_attn_probs, the compat functions, and
bad slopes. The split-KV / decode / paged / KV-cache paths: tests/ops/decode/test_alibi_decode.py."""
import pytest
import torch

import attention_helpers as h

import tilefold
from tilefold.compat import flash_attn_interface as fa
from tilefold.ops.attention.naive import attention_ref

BACKENDS = ["torch", "triton"]


_slopes = h.alibi_slopes


CPU_CASES = [
    h.Case(2, 37, 53, 4, 2, 32),
    h.Case(2, 37, 53, 4, 2, 32, causal=True),
    h.Case(1, 53, 20, 4, 1, 40, causal=True),  # seqlen_q > seqlen_k: rows with no key
    h.Case(2, 29, 29, 2, 2, 16, window=(6, 3), softcap=5.0),
]


@pytest.mark.parametrize("per_batch", [False, True], ids=["heads", "batch_heads"])
@pytest.mark.parametrize("dtype", h.CPU_DTYPES, ids=h.dtype_id)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c", CPU_CASES, ids=h.case_id)
def test_alibi_cpu(c, backend, dtype, per_batch):
    slopes = _slopes(c.B, c.H, per_batch, "cpu")
    kept = slopes.clone()
    h.check_case(c, dtype, backend=backend, grad=True, device="cpu", opts=dict(alibi_slopes=slopes))
    assert torch.equal(slopes, kept)


@pytest.mark.parametrize("backend", BACKENDS)
def test_alibi_varlen_cpu(backend):
    """per sequence: the distance aligned to each sequence's own bottom-right corner, its own slopes"""
    from test_varlen import check_varlen
    lens_q, lens_k = [5, 0, 1, 20], [9, 4, 1, 24]
    check_varlen(lens_q, lens_k, 4, 2, 32, torch.float32,
                 dict(causal=True, alibi_slopes=_slopes(4, 4, True, "cpu")), backend, "cpu")
    check_varlen(lens_q, lens_k, 4, 2, 32, torch.float16, dict(alibi_slopes=_slopes(4, 4, False, "cpu")), backend,
                 "cpu")


@pytest.mark.parametrize("backend", BACKENDS)
def test_alibi_changes_the_result_cpu(backend):
    """the bias is applied (a test that passes with the bias ignored would be empty): out differs from the call
    without it by far more than the 2x bound"""
    q, k, v = (torch.randn(1, 24, 2, 16) for _ in range(3))
    with tilefold.use_backend(backend):
        a = tilefold.attention(q, k, v, causal=True)
        b = tilefold.attention(q, k, v, causal=True, alibi_slopes=torch.tensor([1.0, 0.25]))
    assert (a - b).abs().max() > 0.1


@pytest.mark.parametrize("backend", BACKENDS)
def test_alibi_attn_probs_cpu(backend):
    q, k, v = (torch.randn(2, 13, 4, 16) for _ in range(3))
    slopes = _slopes(2, 4, True, "cpu")
    with tilefold.use_backend(backend):
        out, lse, S = tilefold.attention(q, k, v, causal=True, alibi_slopes=slopes, return_attn_probs=True)
    ref, _ = attention_ref(q, k, v, causal=True, alibi_slopes=slopes)
    s = torch.matmul(q.double().transpose(1, 2), k.double().transpose(1, 2).transpose(-1, -2)) * 16 ** -0.5
    s = s - slopes.double()[:, :, None, None] * (torch.arange(13.0)[:, None] - torch.arange(13.0)[None, :]).abs()
    s = s.masked_fill(torch.ones(13, 13, dtype=torch.bool).triu(1), float("-inf"))
    torch.testing.assert_close(S.double(), torch.softmax(s, -1), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.double(), ref, atol=1e-5, rtol=1e-4)


def test_alibi_compat_cpu():
    """flash_attn_func / flash_attn_varlen_func pass alibi_slopes through (same result as tilefold's functions)"""
    q, k, v = (torch.randn(2, 11, 4, 16) for _ in range(3))
    sl = _slopes(2, 4, False, "cpu")
    assert torch.equal(fa.flash_attn_func(q, k, v, causal=True, alibi_slopes=sl),
                       tilefold.attention(q, k, v, causal=True, alibi_slopes=sl))
    cu = torch.tensor([0, 4, 11], dtype=torch.int32)
    qp, kp, vp = q[0], k[0], v[0]
    assert torch.equal(fa.flash_attn_varlen_func(qp, kp, vp, cu, cu, 7, 7, alibi_slopes=sl),
                       tilefold.varlen_attention(qp, kp, vp, cu, cu, 7, 7, alibi_slopes=sl))


def test_alibi_bad_slopes_cpu():
    q = torch.randn(2, 5, 4, 16)
    for bad, what in ((torch.ones(4, dtype=torch.float64), "float64"), (torch.ones(3), "shape"),
                      (torch.ones(2, 4, 1), "shape"), ([1.0] * 4, "list"), (torch.ones(1, 4), "shape")):
        with pytest.raises(ValueError, match="alibi_slopes"):
            tilefold.attention(q, q, q, alibi_slopes=bad)
    # the split-KV, paged and KV-cache paths take the slopes (tests/ops/decode/test_alibi_decode.py) and check them
    pool = torch.randn(3, 4, 4, 16)
    cu = torch.tensor([0, 5], dtype=torch.int32)
    for bad in (torch.ones(4, dtype=torch.float64), torch.ones(3)):
        with pytest.raises(ValueError, match="alibi_slopes"):
            tilefold.attention(q, q, q, alibi_slopes=bad, num_splits=2)
        with pytest.raises(ValueError, match="alibi_slopes"):
            tilefold.varlen_attention(q[0], pool, pool, cu, cu, 5, 5,
                                      block_table=torch.zeros(1, 2, dtype=torch.int32), alibi_slopes=bad)
        with pytest.raises(ValueError, match="alibi_slopes"):
            fa.flash_attn_with_kvcache(q, q, q, alibi_slopes=bad)


@pytest.mark.gpu
@pytest.mark.parametrize("per_batch", [False, True], ids=["heads", "batch_heads"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=h.dtype_id)
@pytest.mark.parametrize("c", [h.Case(2, 256, 384, 8, 2, 128), h.Case(2, 256, 384, 8, 2, 128, causal=True),
                               h.Case(1, 1023, 113, 4, 4, 64, causal=True),
                               h.Case(2, 113, 1023, 4, 1, 96, window=(64, 16), softcap=30.0)], ids=h.case_id)
def test_alibi_gpu(c, dtype, per_batch):
    """the kernels the dispatch picks (on sm_90 the Gluon forward for the first three cases)"""
    h.check_case(c, dtype, grad=True, device="cuda", opts=dict(alibi_slopes=_slopes(c.B, c.H, per_batch, "cuda")))


@pytest.mark.gpu
def test_alibi_varlen_gpu():
    from test_varlen import check_varlen
    check_varlen([300, 0, 1, 200], [250, 40, 1, 513], 8, 2, 128, torch.bfloat16,
                 dict(causal=True, alibi_slopes=_slopes(4, 8, True, "cuda")), None, "cuda")


def test_alibi_gluon_backward_dispatch_cpu(monkeypatch):
    """the Gluon backward's plan with slopes (its scope and view checks stubbed: no sm_90 here): off unless the opt-in
    switch is on, and then dK / dV only with a positive scale (they divide the slope by it), dQ as without ALiBi"""
    from tilefold.ops.attention import backward_sm90 as bsm90
    monkeypatch.setattr(bsm90, "_scope_ok", lambda *a, **kw: True)
    monkeypatch.setattr(bsm90, "_views_ok", lambda *a, **kw: True)
    q = torch.randn(1, 128, 2, 64)
    args = (q, q, q, q)
    kw = dict(softcap=0.0, dropout_p=0.0, varlen=False, shift_extra=0)
    monkeypatch.setattr(bsm90, "ALIBI", False)
    assert bsm90.plan(*args, softmax_scale=0.5, alibi=True, **kw) == (False, False)
    assert bsm90.plan(*args, softmax_scale=0.5, alibi=False, **kw) == (True, True)
    monkeypatch.setattr(bsm90, "ALIBI", True)
    assert bsm90.plan(*args, softmax_scale=0.5, alibi=True, **kw) == (True, True)
    assert bsm90.plan(*args, softmax_scale=0.0, alibi=True, **kw) == (False, False)
    assert bsm90.plan(*args, softmax_scale=0.0, alibi=False, **kw) == (True, False)


def test_alibi_custom_ops_cpu():
    """the forward / backward / probabilities ops with a slopes tensor under opcheck (schema, fake tensors, autograd
    registration), and a fullgraph compile (aot_eager) of a step with ALiBi: compiled == eager, out and gradients"""
    from tilefold.ops.attention import function  # noqa: F401  (registers torch.ops.tilefold.*)
    q, k, v = (torch.randn(2, 9, 4, 16, requires_grad=True) for _ in range(3))
    sl = _slopes(2, 4, True, "cpu")
    with tilefold.use_backend("torch"):
        fwd = (q, k, v, None, None, 9, 9, 0.25, -1, 0, 0.0, 0, 0.0, 0, 0, None, sl)
        torch.library.opcheck(torch.ops.tilefold.attention_fwd.default, fwd)
        out, lse = torch.ops.tilefold.attention_fwd(*fwd)
        bwd = (torch.randn_like(out), q.detach(), k.detach(), v.detach(), out.detach(), lse.detach(), None, None,
               None, 9, 9, 0.25, -1, 0, 0.0, 0, 0.0, 0, 0, None, sl)
        torch.library.opcheck(torch.ops.tilefold.attention_bwd.default, bwd)
        torch.library.opcheck(torch.ops.tilefold.attention_probs.default,
                              (q.detach(), k.detach(), v.detach(), None, None, 9, 9, lse.detach(), 0.25, -1, 0, 0.0,
                               0.0, None, sl))

        def step(q, k, v):
            return tilefold.attention(q, k, v, causal=True, alibi_slopes=sl)

        torch._dynamo.reset()
        do = torch.randn(2, 9, 4, 16)
        eager = step(q, k, v)
        comp = torch.compile(step, fullgraph=True, backend="aot_eager")(q, k, v)
        torch.testing.assert_close(comp, eager, atol=1e-6, rtol=1e-5)
        for a, b in zip(torch.autograd.grad(comp, (q, k, v), do), torch.autograd.grad(eager, (q, k, v), do)):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_alibi_with_dropout_cpu(backend):
    """ALiBi with dropout: out, lse and the gradients follow the mask S carries (fp64 reference with the decoded mask
    and the bias), and |S| is the softmax with the bias"""
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 21, 4, 16, requires_grad=True) for _ in range(3))
    sl = _slopes(2, 4, True, "cpu")
    do = torch.randn(2, 21, 4, 16)
    with tilefold.use_backend(backend):
        out, lse, S = tilefold.attention(q, k, v, dropout_p=0.3, return_attn_probs=True, alibi_slopes=sl, causal=True)
        g = torch.autograd.grad(out, (q, k, v), do)
    xs = [t.detach().double().requires_grad_() for t in (q, k, v)]
    ref, ref_lse = attention_ref(*xs, dropout_p=0.3, keep=~torch.signbit(S), causal=True, alibi_slopes=sl)
    rg = torch.autograd.grad(ref, xs, do.double())
    for a, b in zip((out, lse) + g, (ref, ref_lse) + rg):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=1e-4)
    _, p_lse = attention_ref(*xs, causal=True, alibi_slopes=sl)
    torch.testing.assert_close(lse.double(), p_lse, atol=1e-5, rtol=1e-5)


GLUON_CASES = [h.Case(2, 256, 384, 8, 2, 128), h.Case(2, 256, 384, 8, 2, 128, causal=True),
               h.Case(2, 1000, 1500, 4, 2, 128, causal=True),  # ragged key tiles at batch 2 (rank-3 descriptors)
               h.Case(1, 1023, 300, 4, 4, 64, causal=True),  # rows that see no key
               h.Case(2, 700, 2048, 4, 1, 64, window=(300, -1)), h.Case(1, 1000, 1000, 4, 2, 256, causal=True)]


@pytest.mark.gpu
@pytest.mark.parametrize("bwd", [False, True], ids=["bwd_triton", "bwd_gluon"])
@pytest.mark.parametrize("per_batch", [False, True], ids=["heads", "batch_heads"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=h.dtype_id)
@pytest.mark.parametrize("c", GLUON_CASES, ids=h.case_id)
def test_alibi_gluon_gpu(c, dtype, per_batch, bwd, monkeypatch):
    """the Hopper warp-specialized kernels with ALiBi (slope / scale on the unscaled scores): the forward takes the
    call with the slopes (on sm_90), and so do the dK / dV and dQ kernels with TILEFOLD_BWD_SM90_ALIBI=1 (``bwd``;
    default: backward.py's kernels); out / lse / gradients under the 2x rule"""
    from tilefold.ops.attention import backward as bw
    from tilefold.ops.attention import backward_sm90 as bsm90
    from tilefold.ops.attention import config as cfg
    from tilefold.ops.attention import forward_sm90 as sm90
    if torch.cuda.get_device_capability()[0] != 9:
        pytest.skip("the Gluon kernels are sm_90 only")
    calls = {"fwd": [], "dkdv": [], "dq": []}

    def counting(name, real):
        def counted(*a, **kw):
            calls[name].append(kw.get("alibi") is not None)
            return real(*a, **kw)
        return counted
    monkeypatch.setattr(sm90, "attention_fwd_sm90", counting("fwd", sm90.attention_fwd_sm90))
    monkeypatch.setattr(bw._sm90, "attention_dkdv_sm90", counting("dkdv", bsm90.attention_dkdv_sm90))
    monkeypatch.setattr(bw._sm90, "attention_dq_sm90", counting("dq", bsm90.attention_dq_sm90))
    monkeypatch.setattr(cfg, "FWD_SM90", "1")
    monkeypatch.setattr(cfg, "BWD_SM90", "1")
    monkeypatch.setattr(sm90, "HD256", True)
    monkeypatch.setattr(bsm90, "HD256", True)
    monkeypatch.setattr(bsm90, "ALIBI", bwd)
    h.check_case(c, dtype, grad=True, device="cuda", opts=dict(alibi_slopes=_slopes(c.B, c.H, per_batch, "cuda")))
    taken = {"fwd": True, "dkdv": bwd, "dq": bwd}
    assert all((bool(v) and all(v)) == taken[n] for n, v in calls.items()), (bwd, calls)


@pytest.mark.gpu
def test_alibi_with_dropout_gpu():
    """bf16 hd128 GQA with dropout and ALiBi (the Gluon forward on sm_90, the Triton backward): out and gradients follow the mask S carries, 2x rule
    against the fp64 and bf16 references with the decoded mask and the bias"""
    torch.manual_seed(0)
    q = torch.randn(2, 256, 8, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k, v = (torch.randn(2, 384, 2, 128, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(2))
    sl = _slopes(2, 8, True, "cuda")
    do = torch.randn(2, 256, 8, 128, device="cuda", dtype=torch.bfloat16)
    out, lse, S = tilefold.attention(q, k, v, dropout_p=0.2, return_attn_probs=True, alibi_slopes=sl, causal=True)
    g = torch.autograd.grad(out, (q, k, v), do)
    keep = ~torch.signbit(S)
    res, refs = dict(out=out, dq=g[0], dk=g[1], dv=g[2]), []
    for dt in (torch.float64, torch.bfloat16):
        xs = [t.detach().to(dt).requires_grad_() for t in (q, k, v)]
        o, _ = attention_ref(*xs, dropout_p=0.2, keep=keep, causal=True, alibi_slopes=sl, compute_dtype=dt)
        gr = torch.autograd.grad(o, xs, do.to(dt))
        refs.append(dict(out=o, dq=gr[0], dk=gr[1], dv=gr[2]))
    h.check_all(res, refs[0], refs[1], label="alibi + dropout")


# ---------------------------------------------------------------------------------------------------
# gaps a review found (mutations of these paths that the tests above let through)


def _probs_ref(q, k, slopes, mask_opts):
    """(B, H, M, N) fp64 softmax with the bias, the mask of ``mask_opts`` (bottom-right aligned)"""
    from tilefold.ops.attention.naive import visible_mask
    B, M, H, D = q.shape
    N = k.shape[1]
    s = torch.matmul(q.double().transpose(1, 2),
                     k.double().repeat_interleave(H // k.shape[2], 2).transpose(1, 2).transpose(-1, -2)) * D ** -0.5
    dist = (torch.arange(M, dtype=torch.float64)[:, None] + (N - M) - torch.arange(N, dtype=torch.float64)).abs()
    s = s - slopes.double().expand(B, H)[:, :, None, None] * dist
    ok = visible_mask(M, N, mask_opts.get("causal", False), mask_opts.get("window_size", (-1, -1)))
    return torch.softmax(s.masked_fill(~ok, float("-inf")), -1).nan_to_num(0.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mask_opts", [dict(), dict(causal=True), dict(window_size=(3, 5))],
                         ids=["full", "causal", "win3_5"])
@pytest.mark.parametrize("shape", [(11, 19), (19, 11)], ids=["q11_k19", "q19_k11"])
def test_alibi_probs_uneven_cpu(shape, mask_opts, backend):
    """return_attn_probs with seqlen_q != seqlen_k: the distance aligned to the bottom-right corner in S too"""
    M, N = shape
    q, k, v = torch.randn(2, M, 4, 16), torch.randn(2, N, 2, 16), torch.randn(2, N, 2, 16)
    sl = _slopes(2, 4, True, "cpu")
    with tilefold.use_backend(backend):
        _, _, S = tilefold.attention(q, k, v, alibi_slopes=sl, return_attn_probs=True, **mask_opts)
    torch.testing.assert_close(S.double(), _probs_ref(q, k, sl, mask_opts), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_alibi_varlen_probs_cpu(backend):
    """varlen return_attn_probs: sequence b's corner of S[b] is its own softmax with its own slopes"""
    lens_q, lens_k = [7, 0, 12, 5], [13, 3, 9, 5]
    cu_q, cu_k = h.make_cu(lens_q, "cpu"), h.make_cu(lens_k, "cpu")
    q, k, v = torch.randn(sum(lens_q), 4, 16), torch.randn(sum(lens_k), 2, 16), torch.randn(sum(lens_k), 2, 16)
    sl = _slopes(4, 4, True, "cpu")
    with tilefold.use_backend(backend):
        _, _, S = tilefold.varlen_attention(q, k, v, cu_q, cu_k, 12, 13, causal=True, alibi_slopes=sl,
                                            return_attn_probs=True)
    for b, (m, n) in enumerate(zip(lens_q, lens_k)):
        if m == 0:
            continue
        qs, ks = int(cu_q[b]), int(cu_k[b])
        ref = _probs_ref(q[None, qs:qs + m], k[None, ks:ks + n], sl[b], dict(causal=True))[0]
        torch.testing.assert_close(S[b, :, :m, :n].double(), ref, atol=1e-5, rtol=1e-4)
        assert (S[b, :, m:] == 0).all() and (S[b, :, :, n:] == 0).all()


def test_alibi_dkdv_one_loop_cpu():
    """hd128 fp16 causal takes the dK/dV kernel's one-loop variant (ONE_LOOP) under the interpreter"""
    h.check_case(h.Case(1, 20, 37, 4, 2, 128, causal=True), torch.float16, backend="triton", grad=True,
                 device="cpu", opts=dict(alibi_slopes=_slopes(1, 4, False, "cpu")))


def test_alibi_dkdv_split_d_cpu(monkeypatch):
    """the dK/dV kernel with its head dim split over two programs (SPLIT_D = 2) recomputes P with the bias"""
    from tilefold.ops.attention import config as C
    monkeypatch.setattr(C, "bwd_config", lambda *a, **kw: C.KernelConfig(16, 16, 4, 1, dkdv_split_d=2))
    h.check_case(h.Case(1, 33, 50, 8, 2, 32, causal=True), torch.float16, backend="triton", grad=True, device="cpu",
                 opts=dict(alibi_slopes=_slopes(1, 8, False, "cpu")))


@pytest.mark.parametrize("backend", BACKENDS)
def test_alibi_strided_slopes_cpu(backend):
    """a non-contiguous (batch, heads) slopes tensor (a transposed view) gives the contiguous tensor's result"""
    q, k, v = (torch.randn(3, 9, 4, 16) for _ in range(3))
    sl = _slopes(3, 4, True, "cpu")
    view = sl.t().contiguous().t()
    assert not view.is_contiguous()
    with tilefold.use_backend(backend):
        assert torch.equal(tilefold.attention(q, k, v, alibi_slopes=view), tilefold.attention(q, k, v, alibi_slopes=sl))


def test_alibi_packed_compat_cpu():
    """the packed compat variants pass alibi_slopes on (same result as flash_attn_func / flash_attn_varlen_func)"""
    q, k, v = (torch.randn(2, 10, 4, 16) for _ in range(3))
    sl = _slopes(2, 4, False, "cpu")
    want = fa.flash_attn_func(q, k, v, causal=True, alibi_slopes=sl)
    assert torch.equal(fa.flash_attn_qkvpacked_func(torch.stack((q, k, v), 2), causal=True, alibi_slopes=sl), want)
    assert torch.equal(fa.flash_attn_kvpacked_func(q, torch.stack((k, v), 2), causal=True, alibi_slopes=sl), want)
    cu = torch.tensor([0, 10, 20], dtype=torch.int32)
    qp, kp, vp = q.reshape(20, 4, 16), k.reshape(20, 4, 16), v.reshape(20, 4, 16)
    want = fa.flash_attn_varlen_func(qp, kp, vp, cu, cu, 10, 10, causal=True, alibi_slopes=sl)
    assert torch.equal(fa.flash_attn_varlen_qkvpacked_func(torch.stack((qp, kp, vp), 1), cu, 10, causal=True,
                                                           alibi_slopes=sl), want)
    assert torch.equal(fa.flash_attn_varlen_kvpacked_func(qp, torch.stack((kp, vp), 1), cu, cu, 10, 10, causal=True,
                                                          alibi_slopes=sl), want)
