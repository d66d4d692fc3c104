"""Attention kernels launched through ``launch_kernel`` (common/launch.py): after the first call with a
specialization, later calls go straight to the compiled kernel. Every call must use its own tensors, a
pointer with another alignment must get its own kernel, and per-call ints that Triton does not specialize
on (dropout seeds and offsets) must not defeat the cache. The key itself is tested on CPU."""
import pytest
import torch

from attention_helpers import Case, check_case
from tilefold.ops.attention import backward as BW
from tilefold.ops.attention import forward as FW
from tilefold.ops.common import launch as L


def test_spec_key_classes():
    t = torch.zeros(64)
    base = L.spec_key((t, 1, 32, 17, 0.5, None, True), dict(A=1))
    # same classes, other values: same key (seeds, offsets, lengths of the same class)
    assert L.spec_key((torch.ones(64), 1, 48, 33, 0.25, None, True), dict(A=1)) == base
    # each class change is a new key
    assert L.spec_key((t[1:], 1, 32, 17, 0.5, None, True), dict(A=1)) != base      # misaligned pointer
    assert L.spec_key((t.half(), 1, 32, 17, 0.5, None, True), dict(A=1)) != base   # dtype
    assert L.spec_key((t, 2, 32, 17, 0.5, None, True), dict(A=1)) != base          # no longer 1
    assert L.spec_key((t, 1, 33, 17, 0.5, None, True), dict(A=1)) != base          # not divisible by 16
    assert L.spec_key((t, 1, 32, 1 << 33, 0.5, None, True), dict(A=1)) != base     # int64
    assert L.spec_key((t, 1, 32, 17, 0.5, None, False), dict(A=1)) != base         # bool value
    assert L.spec_key((t, 1, 32, 17, 0.5, None, True), dict(A=2)) != base          # constexpr


def _fast():
    return sum(c.fast_launches for fn, c in L._CACHES.items()
               if fn in (FW.attention_fwd_kernel, BW.attention_bwd_dkdv_kernel, BW.attention_bwd_dq_kernel))


@pytest.mark.gpu
@pytest.mark.parametrize("case", [
    Case(2, 300, 300, 4, 2, 128, causal=True),
    Case(1, 257, 1000, 4, 1, 64, window=(100, 3), softcap=5.0, layout="padded"),
], ids=lambda c: c.id)
def test_repeated_calls_fresh_data(case):
    """Three calls of one shape with fresh data (make_qkv draws new tensors): forward and backward right
    every time (2x rule against fp64), the later calls through the direct launch."""
    before = _fast()
    for _ in range(3):
        check_case(case, torch.bfloat16, device="cuda", grad=True)
    assert _fast() - before >= 2 * 3  # calls 2 and 3: forward, dK/dV and dQ at least


@pytest.mark.gpu
def test_misaligned_views_get_their_own_kernel():
    """q, k, v one element into their buffers (2-byte aligned) after aligned calls of the same strides."""
    c = Case(1, 200, 333, 2, 2, 64)
    check_case(c, torch.float16, device="cuda", grad=True)
    q0 = torch.randn(1 * 200 * 2 * 64 + 1, device="cuda", dtype=torch.float16)[1:].view(1, 200, 2, 64)
    k0 = torch.randn(1 * 333 * 2 * 64 + 1, device="cuda", dtype=torch.float16)[1:].view(1, 333, 2, 64)
    v0 = torch.randn(1 * 333 * 2 * 64 + 1, device="cuda", dtype=torch.float16)[1:].view(1, 333, 2, 64)
    assert q0.data_ptr() % 16 and q0.stride() == (200 * 2 * 64, 2 * 64, 64, 1)
    import tilefold
    from tilefold.ops.attention.naive import attention_ref
    q, k, v = (t.clone().requires_grad_() for t in (q0, k0, v0))  # aligned copies for the references
    qm, km, vm = (t.requires_grad_() for t in (q0, k0, v0))
    out = tilefold.attention(qm, km, vm)
    dout = torch.randn_like(out)
    got = torch.autograd.grad(out, (qm, km, vm), dout)
    ref = attention_ref(q.double(), k.double(), v.double())[0]
    low = attention_ref(q, k, v, compute_dtype=torch.float16)[0]
    rg = torch.autograd.grad(ref, (q, k, v), dout.double())
    lg = torch.autograd.grad(low, (q, k, v), dout)
    for a, r, b in [(out, ref, low)] + list(zip(got, rg, lg)):
        err = (a.double() - r).abs().max().item()
        assert err <= 2 * (b.double() - r).abs().max().item() + 1e-5, err
