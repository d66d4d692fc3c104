"""The custom ops under torch.library.opcheck (CPU, torch path) and torch.compile(fullgraph=True) of modules
calling tilefold.attention / varlen_attention: compiled == eager, forward and backward (aot_eager on CPU,
inductor on the GPU)."""
import pytest
import torch

import tilefold
from tilefold.ops.attention import function  # noqa: F401  (registers torch.ops.tilefold.*)


def _qkv(B, M, N, H, HK, D, dtype, device, grad=False):
    q = torch.randn(B, M, H, D, device=device, dtype=dtype, requires_grad=grad)
    k = torch.randn(B, N, HK, D, device=device, dtype=dtype, requires_grad=grad)
    v = torch.randn(B, N, HK, D, device=device, dtype=dtype, requires_grad=grad)
    return q, k, v


def _fwd_args(q, k, v, cu_q=None, cu_k=None, M=None, N=None, scale=0.25, left=-1, right=-1, softcap=0.0):
    M = q.shape[1] if M is None else M
    N = k.shape[1] if N is None else N
    return (q, k, v, cu_q, cu_k, M, N, scale, left, right, softcap, 0)


OPCHECK_CASES = {
    "full": dict(),
    "causal": dict(right=0),
    "window_softcap": dict(left=4, right=2, softcap=5.0),
}


@pytest.mark.parametrize("opts", list(OPCHECK_CASES.values()), ids=list(OPCHECK_CASES))
def test_opcheck_attention_fwd_cpu(opts):
    q, k, v = _qkv(2, 9, 13, 4, 2, 16, torch.float32, "cpu", grad=True)
    with tilefold.use_backend("torch"):
        torch.library.opcheck(torch.ops.tilefold.attention_fwd.default, _fwd_args(q, k, v, **opts))


def test_opcheck_attention_fwd_varlen_cpu():
    q = torch.randn(12, 4, 16, requires_grad=True)
    k = torch.randn(15, 2, 16, requires_grad=True)
    v = torch.randn(15, 2, 16, requires_grad=True)
    cu_q = torch.tensor([0, 5, 5, 12], dtype=torch.int32)
    cu_k = torch.tensor([0, 3, 8, 15], dtype=torch.int32)
    with tilefold.use_backend("torch"):
        torch.library.opcheck(torch.ops.tilefold.attention_fwd.default,
                              _fwd_args(q, k, v, cu_q, cu_k, 7, 7, right=0))


def test_opcheck_attention_bwd_cpu():
    q, k, v = _qkv(1, 9, 13, 4, 2, 16, torch.float32, "cpu")
    with tilefold.use_backend("torch"):
        out, lse = tilefold.attention(q, k, v, causal=True, return_lse=True)
        dout, dlse = torch.randn_like(out), torch.randn_like(lse)
        args = (dout, q, k, v, out, lse, dlse, None, None, 9, 13, 0.25, -1, 0, 0.0, 0)
        torch.library.opcheck(torch.ops.tilefold.attention_bwd.default, args)


class Attn(torch.nn.Module):
    def __init__(self, **opts):
        super().__init__()
        self.opts = opts

    def forward(self, q, k, v):
        out, lse = tilefold.attention(q, k, v, return_lse=True, **self.opts)
        return out * 2 + 1, lse


class VarlenAttn(torch.nn.Module):
    def __init__(self, cu_q, cu_k, max_q, max_k, **opts):
        super().__init__()
        self.meta = (cu_q, cu_k, max_q, max_k)
        self.opts = opts

    def forward(self, q, k, v):
        out, lse = tilefold.varlen_attention(q, k, v, *self.meta, return_lse=True, **self.opts)
        return out.float().sin(), lse


def _compare_compiled(module, inputs, backend, atol, rtol):
    xs_e = [t.detach().clone().requires_grad_() for t in inputs]
    xs_c = [t.detach().clone().requires_grad_() for t in inputs]
    out_e, lse_e = module(*xs_e)
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    out_c, lse_c = compiled(*xs_c)
    torch.testing.assert_close(out_c, out_e, atol=atol, rtol=rtol)
    torch.testing.assert_close(lse_c, lse_e, atol=atol, rtol=rtol)
    dout = torch.randn_like(out_e)
    dlse = torch.randn_like(lse_e)
    g_e = torch.autograd.grad([out_e, lse_e], xs_e, [dout, dlse])
    g_c = torch.autograd.grad([out_c, lse_c], xs_c, [dout, dlse])
    for n, a, b in zip("qkv", g_c, g_e):
        torch.testing.assert_close(a, b, atol=atol, rtol=rtol, msg=lambda m: f"d{n}: {m}")


def test_compile_fullgraph_cpu_aot_eager():
    torch._dynamo.reset()
    with tilefold.use_backend("torch"):
        _compare_compiled(Attn(causal=True, window_size=(8, -1)), _qkv(2, 17, 23, 4, 2, 32, torch.float32, "cpu"),
                          "aot_eager", 1e-5, 1e-5)


def test_compile_fullgraph_varlen_cpu_aot_eager():
    torch._dynamo.reset()
    cu_q = torch.tensor([0, 5, 5, 12], dtype=torch.int32)
    cu_k = torch.tensor([0, 3, 8, 15], dtype=torch.int32)
    q, k, v = torch.randn(12, 4, 32), torch.randn(15, 1, 32), torch.randn(15, 1, 32)
    with tilefold.use_backend("torch"):
        _compare_compiled(VarlenAttn(cu_q, cu_k, 7, 7, causal=True, softcap=5.0), (q, k, v), "aot_eager", 1e-5, 1e-5)


# ---------------------------------------------------------------------------------------------------
# GPU tier: inductor


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("opts", [dict(), dict(causal=True), dict(window_size=(32, 0), softcap=30.0)],
                         ids=["full", "causal", "win32_0_cap"])
def test_compile_fullgraph_gpu(opts, dtype):
    torch._dynamo.reset()
    _compare_compiled(Attn(**opts), _qkv(2, 113, 257, 8, 2, 64, dtype, "cuda"), "inductor", 1e-2, 1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("opts", [dict(), dict(causal=True)], ids=["full", "causal"])
def test_compile_fullgraph_hopper_shapes_gpu(opts):
    """Shapes the Gluon kernels take on sm_90 (forward, dK/dV and dQ: 16-bit, head dim 128, lengths a
    multiple of their tiles) behind the custom ops under torch.compile(fullgraph=True)."""
    torch._dynamo.reset()
    _compare_compiled(Attn(**opts), _qkv(2, 256, 256, 8, 2, 128, torch.bfloat16, "cuda"), "inductor", 1e-2, 1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
def test_compile_fullgraph_varlen_gpu(dtype):
    torch._dynamo.reset()
    cu_q = torch.tensor([0, 1, 1, 120, 300], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, 40, 45, 45, 300], dtype=torch.int32, device="cuda")
    q = torch.randn(300, 8, 128, device="cuda", dtype=dtype)
    k = torch.randn(300, 2, 128, device="cuda", dtype=dtype)
    v = torch.randn(300, 2, 128, device="cuda", dtype=dtype)
    _compare_compiled(VarlenAttn(cu_q, cu_k, 180, 255, causal=True), (q, k, v), "inductor", 1e-2, 1e-2)


# ---------------------------------------------------------------------------------------------------
# varlen under CUDA graph capture: cu_seqlens are not read on the host while a graph captures (a host read fails the
# capture); the graph reads the cu_seqlens / block_table / q / k / v tensors' contents at each replay


def _capture(fn):
    """fn's result tensors from a CUDA graph captured after two eager warm-up calls on a side stream (which compile
    and load the kernels the capture launches), and the graph"""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        res = fn()
    return graph, res


def _refill(*ts):
    for t in ts:
        t.copy_(torch.randn_like(t))


@pytest.mark.gpu
@pytest.mark.parametrize("D", [128, 96], ids=["hd128", "hd96"])
def test_varlen_cuda_graph_capture_gpu(D):
    """varlen forward + backward captured once, replayed with new q / k / v / dout and new sequence boundaries
    written into the captured tensors: each replay equals the eager call on those values (forward bitwise)"""
    dev, dt = "cuda", torch.bfloat16
    cu_q = torch.tensor([0, 70, 70, 200], dtype=torch.int32, device=dev)
    cu_k = torch.tensor([0, 90, 150, 300], dtype=torch.int32, device=dev)
    q = torch.randn(200, 4, D, device=dev, dtype=dt, requires_grad=True)
    k = torch.randn(300, 2, D, device=dev, dtype=dt, requires_grad=True)
    v = torch.randn(300, 2, D, device=dev, dtype=dt, requires_grad=True)
    do = torch.randn(200, 4, D, device=dev, dtype=dt)
    step = lambda: (lambda o: (o,) + torch.autograd.grad(o, (q, k, v), do))(  # noqa: E731
        tilefold.varlen_attention(q, k, v, cu_q, cu_k, 140, 150, causal=True))
    graph, res = _capture(step)
    for bounds in (([0, 70, 70, 200], [0, 90, 150, 300]), ([0, 0, 140, 200], [0, 150, 160, 300])):
        cu_q.copy_(torch.tensor(bounds[0], dtype=torch.int32))
        cu_k.copy_(torch.tensor(bounds[1], dtype=torch.int32))
        with torch.no_grad():
            _refill(q, k, v, do)
        graph.replay()
        torch.cuda.synchronize()
        eager = step()
        assert torch.equal(res[0], eager[0])
        for a, b in zip(res[1:], eager[1:]):
            torch.testing.assert_close(a, b, atol=2e-2, rtol=1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("page", [128, 16])
@pytest.mark.parametrize("max_q", [300, 1], ids=["prefill", "decode"])
def test_paged_varlen_cuda_graph_capture_gpu(page, max_q):
    """varlen_attention with a block table (and the compat flash_attn_varlen_func) captured once, replayed with the
    table permuted, new lengths and new pools written into the captured tensors: each replay equals the eager call"""
    from tilefold.compat.flash_attn_interface import flash_attn_varlen_func

    dev, dt, B, H, HK, D = "cuda", torch.bfloat16, 3, 8, 2, 128
    nb = -(-1024 // page)
    pool_k = torch.randn(B * nb + 5, page, HK, D, device=dev, dtype=dt)
    pool_v = torch.randn_like(pool_k)
    table = torch.randperm(B * nb + 5, device=dev)[:B * nb].reshape(B, nb).to(torch.int32)
    lens_q = [min(max_q, n) for n in (300, 1, 200)]
    cu_q = torch.tensor([0] + lens_q, device=dev).cumsum(0).to(torch.int32)
    cu_k = torch.tensor([0, 700, 701, 1724], dtype=torch.int32, device=dev)  # lengths 700, 1, 1023
    q = torch.randn(int(cu_q[-1]), H, D, device=dev, dtype=dt)
    fns = (lambda: tilefold.varlen_attention(q, pool_k, pool_v, cu_q, cu_k, max_q, 1024, causal=True,  # noqa: E731
                                             block_table=table),
           lambda: flash_attn_varlen_func(q, pool_k, pool_v, cu_q, cu_k, max_q, 1024, causal=True,  # noqa: E731
                                          block_table=table))
    with torch.no_grad():
        for fn in fns:
            graph, out = _capture(fn)
            for lens_k in ([700, 1, 1023], [1024, 512, 3]):
                cu_k.copy_(torch.tensor([0] + lens_k).cumsum(0).to(torch.int32))
                table.copy_(table[torch.randperm(B, device=dev)].flip(1))
                _refill(q, pool_k, pool_v)
                graph.replay()
                torch.cuda.synchronize()
                assert torch.equal(out, fn())


# ---------------------------------------------------------------------------------------------------
# PyTorch features around the ops (found by an integration review)

def test_compile_dynamic_fullgraph_cpu():
    """dynamic=True traces the argument checks too (math.isfinite on them broke the graph, fullgraph failed)"""
    q, k, v = _qkv(2, 16, 16, 4, 2, 32, torch.float32, "cpu", grad=True)
    cu = torch.tensor([0, 5, 16], dtype=torch.int32)
    f = torch.compile(lambda q, k, v: tilefold.attention(q, k, v, causal=True, softcap=3.0), fullgraph=True,
                      dynamic=True, backend="aot_eager")
    torch.testing.assert_close(f(q, k, v), tilefold.attention(q, k, v, causal=True, softcap=3.0))
    g = torch.compile(lambda q, k, v: tilefold.varlen_attention(q, k, v, cu, cu, 11, 11, causal=True),
                      fullgraph=True, dynamic=True, backend="aot_eager")
    torch.testing.assert_close(g(q[0], k[0], v[0]), tilefold.varlen_attention(q[0], k[0], v[0], cu, cu, 11, 11,
                                                                             causal=True))


def test_meta_fake_and_vmap():
    """meta tensors and FakeTensorMode give shapes (they bypassed the op's fake rule: .item() on meta), and vmap over a
    leading dim equals the loop (it bypassed the op's batching: in-place arithmetic on a batched tensor)"""
    from torch._subclasses.fake_tensor import FakeTensorMode
    q, k = torch.empty(2, 5, 4, 16, device="meta"), torch.empty(2, 7, 2, 16, device="meta")
    o, lse = tilefold.attention(q, k, k, return_lse=True)
    assert o.shape == (2, 5, 4, 16) and o.device.type == "meta" and lse.shape == (2, 4, 5)
    with FakeTensorMode():
        qv, cu = torch.randn(16, 4, 32), torch.tensor([0, 5, 16], dtype=torch.int32)
        o, lse = tilefold.varlen_attention(qv, qv, qv, cu, cu, 11, 11, causal=True, return_lse=True)
        assert o.shape == (16, 4, 32) and lse.shape == (4, 16)
    q5, k5, v5 = (torch.randn(3, 2, n, h, 16) for n, h in ((5, 4), (7, 2), (7, 2)))
    o = torch.func.vmap(lambda a, b, c: tilefold.attention(a, b, c, causal=True))(q5, k5, v5)
    ref = torch.stack([tilefold.attention(q5[i], k5[i], v5[i], causal=True) for i in range(3)])
    torch.testing.assert_close(o, ref, rtol=0, atol=0)


def test_autocast_keeps_fp32_arithmetic_cpu():
    """under CPU autocast the torch fold's matmuls ran in bf16: lse from bf16 scores, the backward (outside autocast)
    recomputing P in fp32 against it -- gradients 4e-2 off. The fold now computes in fp32 as documented."""
    from tilefold.ops.attention.naive import attention_ref
    torch.manual_seed(0)
    q, k, v = (3 * torch.randn(2, 64, 4, 32) for _ in range(3))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    do = torch.randn(2, 64, 4, 32)
    with tilefold.use_backend("torch"), torch.autocast("cpu", dtype=torch.bfloat16):
        o = tilefold.attention(q, k, v, causal=True)
    g = torch.autograd.grad(o, (q, k, v), do)
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    r, _ = attention_ref(*leaves, causal=True)
    rg = torch.autograd.grad(r, leaves, do.double())
    assert o.dtype == torch.float32
    for a, b in zip((o,) + g, (r,) + rg):
        assert ((a.double() - b).norm() / b.norm()).item() < 1e-5


# ---------------------------------------------------------------------------------------------------
# Dropout under torch.compile and CUDA graph capture: the Philox key is three words drawn on the device
# (interface._dropout_key), so the call traces without a graph break and a captured graph draws a new mask per replay


def _dropout_fwd(q, k, v, p=0.2, **opts):
    out, lse, S = tilefold.attention(q, k, v, dropout_p=p, return_attn_probs=True, **opts)
    return out, S


def _dropout_step(q, k, v, do, fwd=_dropout_fwd, **opts):
    """One dropout forward (``fwd``: compiled or not; with S_dmask) and its backward"""
    out, S = fwd(q, k, v, **opts)
    return (out, S) + torch.autograd.grad(out, (q, k, v), do)


def _check_against_decoded_mask(res, q, k, v, do, p, compute_dtype, **opts):
    """out and the gradients of one dropout step follow the mask its S_dmask carries (2x rule vs fp64)"""
    from tilefold.ops.attention.naive import attention_ref
    out, S, *g = res
    keep = ~torch.signbit(S)
    ref, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, **opts)
    low, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, compute_dtype=compute_dtype, **opts)
    rg = torch.autograd.grad(ref, (q, k, v), do.double())
    lg = torch.autograd.grad(low, (q, k, v), do)
    err = lambda a, b: (a.double() - b.double()).abs().max().item()  # noqa: E731
    for a, r, lo in zip([out] + g, [ref, *rg], [low, *lg]):
        assert err(a, r) <= 2 * err(lo, r) + 1e-5


def _check_two_steps(a, b, q, k, v, do, compute_dtype):
    """two dropout steps: different masks, each one's out and gradients following its own mask (causal, p = 0.2)"""
    assert not torch.equal(torch.signbit(a[1]), torch.signbit(b[1]))
    for res in (a, b):
        _check_against_decoded_mask(res, q, k, v, do, 0.2, compute_dtype, causal=True)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_compile_fullgraph_dropout_cpu(backend):
    """fullgraph compile of a dropout step (it broke the graph while the key was read from the generator on the
    host): out and gradients follow the mask S carries (so the backward regenerated the forward's mask), the same
    seed gives the same result, the next call another mask."""
    torch._dynamo.reset()
    q, k, v = _qkv(2, 24, 40, 4, 2, 16, torch.float32, "cpu", grad=True)
    do = torch.randn(2, 24, 4, 16)
    fwd = torch.compile(_dropout_fwd, fullgraph=True, backend="aot_eager")
    with tilefold.use_backend(backend):
        torch.manual_seed(4)
        a = _dropout_step(q, k, v, do, fwd, causal=True)
        b = _dropout_step(q, k, v, do, fwd, causal=True)
        torch.manual_seed(4)
        a2 = _dropout_step(q, k, v, do, fwd, causal=True)
    assert all(torch.equal(x, y) for x, y in zip(a, a2))
    _check_two_steps(a, b, q, k, v, do, torch.float32)


@pytest.mark.gpu
@pytest.mark.parametrize("D", [128, 96], ids=["hd128", "hd96"])
def test_compile_fullgraph_dropout_gpu(D):
    """inductor, fullgraph, bf16: hd128 takes the Hopper Gluon kernels on sm_90, hd96 the Triton ones"""
    torch._dynamo.reset()
    q, k, v = _qkv(2, 256, 384, 4, 2, D, torch.bfloat16, "cuda", grad=True)
    do = torch.randn(2, 256, 4, D, device="cuda", dtype=torch.bfloat16)
    fwd = torch.compile(_dropout_fwd, fullgraph=True)
    a, b = (_dropout_step(q, k, v, do, fwd, causal=True) for _ in range(2))
    _check_two_steps(a, b, q, k, v, do, torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.parametrize("D", [128, 96], ids=["hd128", "hd96"])
def test_dropout_cuda_graph_capture_gpu(D):
    """A dropout forward + backward captured in a CUDA graph after an eager warm-up (which compiles and loads the
    kernels the capture launches): each replay draws a new mask, and each replay's out and gradients follow the
    mask its S carries."""
    q, k, v = _qkv(2, 256, 384, 4, 2, D, torch.bfloat16, "cuda", grad=True)
    do = torch.randn(2, 256, 4, D, device="cuda", dtype=torch.bfloat16)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            _dropout_step(q, k, v, do, causal=True)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        res = _dropout_step(q, k, v, do, causal=True)
    snaps = []
    for _ in range(2):
        graph.replay()
        torch.cuda.synchronize()
        snaps.append([t.clone() for t in res])
    _check_two_steps(snaps[0], snaps[1], q, k, v, do, torch.bfloat16)


def test_opcheck_dropout_ops_cpu():
    """the forward, backward and S_dmask ops with dropout and a key tensor (schema, fake tensors, autograd
    registration)"""
    q, k, v = _qkv(1, 9, 13, 4, 2, 16, torch.float32, "cpu", grad=True)
    words = torch.tensor([5, -7, 11], dtype=torch.int32)
    with tilefold.use_backend("torch"):
        fwd = _fwd_args(q, k, v, right=0) + (0.3, 0, 0, words)
        torch.library.opcheck(torch.ops.tilefold.attention_fwd.default, fwd)
        out, lse = torch.ops.tilefold.attention_fwd(*fwd)
        out, lse = out.detach(), lse.detach()
        bwd = (torch.randn_like(out), q.detach(), k.detach(), v.detach(), out, lse, None, None, None, 9, 13, 0.25,
               -1, 0, 0.0, 0, 0.3, 0, 0, words)
        torch.library.opcheck(torch.ops.tilefold.attention_bwd.default, bwd)
        probs = (q.detach(), k.detach(), v.detach(), None, None, 9, 13, lse, 0.25, -1, 0, 0.0, 0.3, words)
        torch.library.opcheck(torch.ops.tilefold.attention_probs.default, probs)
