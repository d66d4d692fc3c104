"""Shared helpers of the attention tests: cases with readable ids, fresh random inputs in several
memory layouts, the fp64 / input-precision references with gradients, the 2x rule and poisoned
allocations.

The rule (FlashAttention's, DESIGN.md §5) for out, lse and every gradient::

    max|out - ref64| <= 2 * max|lowprec - ref64| + 1e-5

with ``ref64`` = ``attention_ref`` in fp64 and ``lowprec`` = ``attention_ref(..., compute_dtype=<input
dtype>)`` on the same inputs (its autograd for the gradients).
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sys
from dataclasses import dataclass, replace

import torch

import tilefold
from tilefold.ops.attention.naive import attention_ref, varlen_attention_ref

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"

# CPU tier: the interpreter gives garbage in bf16, so fp32/fp16 there; bf16 on the torch path only.
CPU_DTYPES = (torch.float32, torch.float16)
GPU_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
DTYPE_IDS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
ATOL = 1e-5


def dtype_id(dt):
    return DTYPE_IDS[dt]


def cuda_guard(fn):
    """A CUDA error (illegal address / instruction) poisons the process's CUDA context, so every later
    test of this pytest-xdist worker would fail too and the fast-failing worker would swallow the rest of
    the run. Under xdist the worker exits instead: xdist reports this test as crashed and starts a fresh
    worker. Outside xdist the error propagates as usual."""
    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except torch.AcceleratorError as e:  # noqa: F821 (torch >= 2.8)
            if os.environ.get("PYTEST_XDIST_WORKER"):
                sys.stderr.write(f"CUDA error, exiting worker: {e}\n")
                sys.stderr.flush()
                os._exit(3)
            raise
    return wrapper


# ---------------------------------------------------------------------------------------------------
# cases


@dataclass(frozen=True)
class Case:
    """One attention configuration. ``window`` is the public (left, right) pair."""
    B: int
    M: int
    N: int
    H: int
    HK: int
    D: int
    causal: bool = False
    window: tuple = (-1, -1)
    softcap: float = 0.0
    layout: str = "contig"

    @property
    def id(self):
        heads = "mha" if self.H == self.HK else ("mqa" if self.HK == 1 else "gqa")
        parts = [f"b{self.B}", f"q{self.M}", f"k{self.N}", f"{heads}{self.H}x{self.HK}", f"d{self.D}"]
        if self.causal:
            parts.append("causal")
        if tuple(self.window) != (-1, -1):
            parts.append("win{}_{}".format(*self.window))
        if self.softcap:
            parts.append(f"cap{self.softcap:g}")
        if self.layout != "contig":
            parts.append(self.layout)
        return "-".join(parts)

    @property
    def opts(self):
        return dict(causal=self.causal, window_size=tuple(self.window), softcap=self.softcap)

    def but(self, **kw):
        return replace(self, **kw)


def case_id(c):
    return c.id


HEADS = {"mha": (4, 4), "gqa": (8, 2), "mqa": (4, 1)}
MASKS = {
    "full": dict(),
    "causal": dict(causal=True),
    "win32_0": dict(window=(32, 0)),
    "win16_16": dict(window=(16, 16)),
    "win0_-1": dict(window=(0, -1)),
    "causal_cap": dict(causal=True, softcap=30.0),
    "cap": dict(softcap=5.0),
}
GPU_SEQLENS = [(1, 1), (17, 17), (113, 113), (1023, 1023), (113, 1023), (1023, 113), (1, 1023), (1023, 1)]
GPU_HEADDIMS = [40, 64, 72, 96, 128, 256]


def rotate_grid(primary_a, primary_b, *others):
    """Every (a, b) pair of the two primary axes once; each other axis cycles with a different stride,
    so each of its values meets every value of a and (nearly) every value of b. The full cartesian
    product of the GPU grid was ~7800 cases (~30 device-minutes); this keeps every value of every
    axis and every seqlen x headdim pair at a few percent of that."""
    rows = []
    for i, a in enumerate(primary_a):
        for j, b in enumerate(primary_b):
            rows.append((a, b) + tuple(o[(i + (k + 2) * j) % len(o)] for k, o in enumerate(others)))
    return rows


def gpu_grid(seqlens=GPU_SEQLENS, headdims=GPU_HEADDIMS, heads=HEADS, masks=MASKS, B=2):
    """GPU grid: every (seqlen pair, head dim) with head layouts and masks rotated (rotate_grid)."""
    out = []
    for (M, N), D, (H, HK), m in rotate_grid(seqlens, headdims, list(heads.values()), list(masks.values())):
        out.append(Case(B, M, N, H, HK, D, **m))
    return out


# ---------------------------------------------------------------------------------------------------
# inputs


def _rand(shape, dtype, device):
    return torch.randn(shape, device=device, dtype=torch.float32).to(dtype)


def make_qkv(c: Case, dtype, device=DEVICE):
    """Fresh random q (B, M, H, D), k/v (B, N, HK, D) in the layout of ``c`` (detached leaves that keep
    their strides; last dim always contiguous):

    - contig: plain tensors;
    - packed: q, k, v sliced from one (B, S, H + 2 HK, D) tensor (M == N) or q alone plus k, v from a
      (B, N, 2, HK, D) tensor;
    - transposed: (B, H, S, D) tensors viewed as (B, S, H, D);
    - padded: the last dim sliced out of a wider one (row strides != D).
    """
    B, M, N, H, HK, D = c.B, c.M, c.N, c.H, c.HK, c.D
    if c.layout == "contig":
        q, k, v = _rand((B, M, H, D), dtype, device), _rand((B, N, HK, D), dtype, device), \
            _rand((B, N, HK, D), dtype, device)
    elif c.layout == "packed":
        if M == N:
            qkv = _rand((B, M, H + 2 * HK, D), dtype, device)
            q, k, v = qkv[:, :, :H], qkv[:, :, H:H + HK], qkv[:, :, H + HK:]
        else:
            q = _rand((B, M, H, D), dtype, device)
            kv = _rand((B, N, 2, HK, D), dtype, device)
            k, v = kv[:, :, 0], kv[:, :, 1]
    elif c.layout == "transposed":
        q = _rand((B, H, M, D), dtype, device).transpose(1, 2)
        k = _rand((B, HK, N, D), dtype, device).transpose(1, 2)
        v = _rand((B, HK, N, D), dtype, device).transpose(1, 2)
    elif c.layout == "padded":
        q = _rand((B, M, H, D + 24), dtype, device)[..., 8:8 + D]
        k = _rand((B, N, HK, D + 8), dtype, device)[..., :D]
        v = _rand((B, N, HK, D + 16), dtype, device)[..., 16:]
    else:
        raise AssertionError(c.layout)
    if c.layout != "contig" and min(M, N, H) > 1:
        assert not (q.is_contiguous() and k.is_contiguous() and v.is_contiguous())
    return tuple(t.detach() for t in (q, k, v))


def make_grads(q, H, M, B=None, dtype=None):
    """Fresh random upstream gradients dout (like out) and dlse (fp32, like lse)."""
    dout = torch.randn(q.shape, device=q.device, dtype=torch.float32).to(dtype or q.dtype)
    lse_shape = (H, q.shape[0]) if q.dim() == 3 else (q.shape[0], H, M)
    dlse = torch.randn(lse_shape, device=q.device, dtype=torch.float32)
    return dout, dlse


# ---------------------------------------------------------------------------------------------------
# poison


@contextlib.contextmanager
def poison_allocations():
    """Inside the block every ``torch.empty`` / ``torch.empty_like`` / ``Tensor.new_empty`` returns
    NaN (floats) or a large sentinel (ints) instead of whatever memory it got: an output element the
    library allocates and never writes shows up as NaN / garbage in the comparison."""
    orig_empty, orig_like, orig_new = torch.empty, torch.empty_like, torch.Tensor.new_empty

    def fill(t):
        if t.is_floating_point():
            t.fill_(float("nan"))
        elif t.dtype in (torch.int32, torch.int64):
            t.fill_(0x3ABCDEF1)
        return t

    def empty(*a, **kw):
        return fill(orig_empty(*a, **kw))

    def empty_like(*a, **kw):
        return fill(orig_like(*a, **kw))

    def new_empty(self, *a, **kw):
        return fill(orig_new(self, *a, **kw))

    torch.empty, torch.empty_like, torch.Tensor.new_empty = empty, empty_like, new_empty
    try:
        yield
    finally:
        torch.empty, torch.empty_like, torch.Tensor.new_empty = orig_empty, orig_like, orig_new


def backend_ctx(backend):
    """``use_backend`` for the CPU tier; on CUDA tensors the Triton kernels always run."""
    return tilefold.use_backend(backend) if backend is not None else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------
# runs


def _grads(outs, inputs, dout, dlse, grad_into):
    """Gradients of (out, lse) wrt ``inputs`` with upstream gradients chosen by grad_into."""
    out, lse = outs
    if grad_into == "out":
        o, g = [out], [dout.to(out.dtype)]
    elif grad_into == "lse":
        o, g = [lse], [dlse.to(lse.dtype)]
    else:
        o, g = [out, lse], [dout.to(out.dtype), dlse.to(lse.dtype)]
    return torch.autograd.grad(o, inputs, g, allow_unused=True, materialize_grads=True)


def run_tilefold(q, k, v, opts, *, dout=None, dlse=None, grad_into="both", backend=None, poison=True,
                 varlen=None, deterministic=False):
    """tilefold forward (and backward when dout is given) on detached leaf copies that keep the caller's
    strides. Returns a dict with out, lse (and dq, dk, dv). ``varlen`` = (cu_q, cu_k, max_q, max_k)."""
    need_grad = dout is not None
    xs = [t.detach().requires_grad_(need_grad) for t in (q, k, v)]
    ctx = poison_allocations() if poison else contextlib.nullcontext()
    with backend_ctx(backend), ctx:
        if varlen is None:
            out, lse = tilefold.attention(*xs, return_lse=True, deterministic=deterministic, **opts)
        else:
            out, lse = tilefold.varlen_attention(*xs, *varlen, return_lse=True, deterministic=deterministic,
                                                 **opts)
        res = dict(out=out.detach(), lse=lse.detach())
        if need_grad:
            res["dq"], res["dk"], res["dv"] = _grads((out, lse), xs, dout, dlse, grad_into)
    return res


def run_reference(q, k, v, opts, compute_dtype, *, dout=None, dlse=None, grad_into="both", varlen=None):
    """attention_ref in ``compute_dtype`` (fp64: the truth; the input dtype: the low-precision baseline),
    with autograd gradients when ``dout`` is given. Leaves are cast to compute_dtype first so that fp64
    gradients are not rounded back to the input dtype."""
    need_grad = dout is not None
    xs = [t.detach().to(compute_dtype).requires_grad_(need_grad) for t in (q, k, v)]
    kw = dict(softcap=opts.get("softcap", 0.0), causal=opts.get("causal", False),
              window_size=tuple(opts.get("window_size", (-1, -1))), compute_dtype=compute_dtype)
    if "softmax_scale" in opts:
        kw["softmax_scale"] = opts["softmax_scale"]
    if opts.get("alibi_slopes") is not None:
        kw["alibi_slopes"] = opts["alibi_slopes"]
    if varlen is None:
        out, lse = attention_ref(*xs, **kw)
    else:
        out, lse = varlen_attention_ref(*xs, varlen[0], varlen[1], **kw)
    res = dict(out=out.detach(), lse=lse.detach())
    if need_grad:
        res["dq"], res["dk"], res["dv"] = _grads((out, lse), xs, dout, dlse, grad_into)
    return res


# ---------------------------------------------------------------------------------------------------
# the rule


def assert_close_2x(out, ref64, lowprec, name="out", atol=ATOL):
    """max|out - ref64| <= 2 max|lowprec - ref64| + atol over every element, computed in fp64.

    Positions where ref64 is infinite (the lse of a row that sees no key is -inf) must be the identical
    infinity in ``out`` (and in ``lowprec``); ``out`` must have no NaN anywhere (poisoned, unwritten
    elements are NaN)."""
    assert out.shape == ref64.shape, f"{name}: shape {tuple(out.shape)} != reference {tuple(ref64.shape)}"
    o, r, l = out.detach().double().cpu(), ref64.detach().double().cpu(), lowprec.detach().double().cpu()
    n_nan = int(torch.isnan(o).sum())
    assert n_nan == 0, f"{name}: {n_nan} NaN of {o.numel()} elements (unwritten or NaN-producing)"
    assert not torch.isnan(r).any(), f"{name}: the fp64 reference has NaN (test bug)"
    inf_r = torch.isinf(r)
    inf_o = torch.isinf(o)
    if not torch.equal(inf_r, inf_o) or not torch.equal(o[inf_r], r[inf_r]):
        bad = (inf_r != inf_o).nonzero()[:5].tolist()
        raise AssertionError(f"{name}: infinite positions differ from the reference (first: {bad}; "
                             f"{int(inf_o.sum())} inf in output, {int(inf_r.sum())} in reference)")
    fin = ~inf_r
    if not fin.any():
        return 0.0, 0.0
    err = (o[fin] - r[fin]).abs().max().item()
    l_fin = l[fin]
    l_err = (l_fin - r[fin]).abs()
    l_err = torch.where(torch.isfinite(l_err), l_err, torch.zeros_like(l_err))
    base = l_err.max().item()
    bound = 2 * base + atol
    assert err <= bound, (f"{name}: max|out - ref64| = {err:.3e} > 2 * {base:.3e} + {atol:g} = {bound:.3e} "
                          f"(max|ref64| = {r[fin].abs().max().item():.3e})")
    return err, base


def check_all(res, ref64, lowprec, names=None, label=""):
    """The 2x rule on every quantity in ``res``; failures are collected so one message lists all."""
    names = names or [n for n in ("out", "lse", "dq", "dk", "dv") if n in res]
    fails = []
    for n in names:
        try:
            assert_close_2x(res[n], ref64[n], lowprec[n], name=n)
        except AssertionError as e:
            fails.append(str(e))
    assert not fails, f"{label}\n" + "\n".join(fails)


@cuda_guard
def check_case(c: Case, dtype, *, backend=None, grad=False, grad_into="both", device=DEVICE, opts=None):
    """The whole comparison for one case: tilefold vs fp64 and input-precision references."""
    q, k, v = make_qkv(c, dtype, device)
    opts = dict(c.opts, **(opts or {}))
    dout = dlse = None
    if grad:
        dout, dlse = make_grads(q, c.H, c.M)
    clones = [t.clone() for t in (q, k, v)]
    res = run_tilefold(q, k, v, opts, dout=dout, dlse=dlse, grad_into=grad_into, backend=backend)
    ref64 = run_reference(q, k, v, opts, torch.float64, dout=dout, dlse=dlse, grad_into=grad_into)
    low = run_reference(q, k, v, opts, dtype, dout=dout, dlse=dlse, grad_into=grad_into)
    assert res["out"].dtype == dtype and res["lse"].dtype == torch.float32
    assert res["lse"].shape == (c.B, c.H, c.M)
    if grad:
        for n, x in zip(("dq", "dk", "dv"), (q, k, v)):
            assert res[n].shape == x.shape and res[n].dtype == x.dtype, n
    for a, b in zip((q, k, v), clones):
        assert torch.equal(a, b), "the caller's input was modified"
    check_all(res, ref64, low, label=f"{c.id} {dtype_id(dtype)} backend={backend}")
    return res, ref64


# ---------------------------------------------------------------------------------------------------
# varlen


def make_cu(lens, device=DEVICE):
    cu = [0]
    for n in lens:
        cu.append(cu[-1] + n)
    return torch.tensor(cu, dtype=torch.int32, device=device)


class KernelRecorder:
    """Stands in for a Triton / Gluon kernel in CPU tests of a launcher: records fn[grid](*args, **kwargs)
    instead of launching."""

    def __init__(self):
        self.calls = []

    def __getitem__(self, grid):
        def run(*args, **kwargs):
            self.calls.append((grid, args, kwargs))
        return run


def alibi_slopes(B, H, per_batch, device=DEVICE):
    """ALiBi's geometric slopes 2^(-8 (h + 1) / H), scaled up (x4) so the bias dominates the scores and a wrong
    distance, sign, head or batch row shows; per batch: each batch row its own multiple (fp32 (B, H), else (H,))."""
    base = 4 * torch.pow(2.0, -8.0 * torch.arange(1, H + 1, dtype=torch.float64) / H)
    if per_batch:
        base = base[None, :] * torch.linspace(0.5, 1.5, B, dtype=torch.float64)[:, None]
    return base.to(torch.float32).to(device)
