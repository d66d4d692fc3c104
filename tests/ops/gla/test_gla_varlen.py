"""Packed sequences: cu_seqlens against a per-sequence loop (empty and length-1 sequences included), and
packing by masking the gate at sequence starts (-0.1*finfo.max, -1e4, -inf) against cu_seqlens resets."""
import pytest
import torch

from tilefold.ops.common.dispatch import use_backend

from gla_helpers import MODES, NAMES, TOL, check_all, make_inputs, reference, rms_rel, run_with_grads

LENS = [0, 1, 17, 0, 70, 5]


def _cu(lens, device="cpu"):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=device)


def _per_sequence(fn, q, k, v, g, h0, do, dht, cu):
    """Each sequence alone (B = 1, no cu_seqlens), results concatenated like the packed call's."""
    outs = []
    c = cu.tolist()
    for n in range(len(c) - 1):
        s, e = c[n], c[n + 1]
        sl = slice(s, e)
        outs.append(run_with_grads(fn, q[:, sl], k[:, sl], v[:, sl], g[:, sl], h0[n:n + 1], do[:, sl],
                                   dht[n:n + 1]))
    cat_t = [1, 0, 1, 1, 1, 1, 0]  # o, ht, dq, dk, dv, dg, dh0: time axis or sequence axis
    return tuple(torch.cat([o[i] for o in outs], cat_t[i]) for i in range(len(NAMES)))


# the torch path is one implementation behind every mode: one mode covers it
@pytest.mark.parametrize("mode,backend", [(m, "triton") for m in MODES] + [("chunk", "torch")])
def test_varlen_vs_per_sequence(mode, backend):
    torch.manual_seed(10)
    T = sum(LENS)
    q, k, v, g, h0 = make_inputs(1, T, 2, 60, 64, n_states=len(LENS))
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    cu = _cu(LENS)
    with use_backend(backend):
        packed = run_with_grads(MODES[mode], q, k, v, g, h0, do, dht, cu_seqlens=cu)
        loop = _per_sequence(MODES[mode], q, k, v, g, h0, do, dht, cu)
    ref = reference(q, k, v, g, h0, do, dht, cu_seqlens=cu)
    check_all(packed, ref, TOL[torch.float32], f"{mode} packed")
    for name, a, b in zip(NAMES, packed, loop):
        assert rms_rel(a, b) <= 1e-5, name
    # empty sequences pass their state through untouched, and its gradient too
    for n, length in enumerate(LENS):
        if length == 0:
            assert torch.equal(packed[1][n], h0[n])
            assert torch.equal(packed[6][n], dht[n])


def _masked_check(mode, dtype, values, device, H=1, K=64, V=64, lens=(20, 45, 35)):
    """Pack len(lens) sequences in one row; for each gate value, mask the gate at the sequence starts and
    compare with the exact resets of cu_seqlens and with the fp64 reference."""
    T = sum(lens)
    q, k, v, g, _ = make_inputs(1, T, H, K, V, dtype=dtype, device=device)
    cu = _cu(list(lens), device)
    starts = cu[1:-1].long()
    N = cu.numel() - 1
    do = torch.randn_like(v)
    fn = MODES[mode]
    # exact resets: the same rows with cu_seqlens (the gate values at the starts do not matter there)
    zN = torch.zeros(N, H, K, V, device=device)
    reset = run_with_grads(fn, q, k, v, g, zN, do, torch.zeros_like(zN), cu_seqlens=cu)
    ref = reference(q, k, v, g, zN, do, torch.zeros_like(zN), cu_seqlens=cu)
    for value in values:
        gm = g.clone()
        gm[:, starts] = value
        _masked_one(fn, q, k, v, gm, do, reset, ref, starts, TOL[dtype], f"{mode} {dtype} gate={value}")


def _masked_one(fn, q, k, v, gm, do, reset, ref, starts, tol, label):
    z = torch.zeros(1, q.shape[2], q.shape[3], v.shape[3], device=q.device)
    # masked packing: one sequence of length T, zero initial state
    masked = run_with_grads(fn, q, k, v, gm, z, do, torch.zeros_like(z))
    for name, i in (("o", 0), ("dq", 2), ("dk", 3), ("dv", 4)):
        assert torch.isfinite(masked[i]).all(), f"{label}: {name} not finite"
        assert rms_rel(masked[i].cpu(), ref[i]) <= tol, f"{label}: {name} masked vs reference"
        assert rms_rel(reset[i].cpu(), ref[i]) <= tol, f"{label}: {name} reset vs reference"
    # dg: away from the masked positions it is the reset's; at a masked position exp(g) = 0, so it is 0
    dg_m, dg_r = masked[5].clone(), reset[5].clone()
    assert torch.isfinite(dg_m).all(), label
    assert (dg_m[:, starts] == 0).all(), label
    dg_r[:, starts] = 0
    assert rms_rel(dg_m.cpu(), dg_r.cpu()) <= tol, f"{label}: dg"
    # no leakage: the final state of the masked row equals the last sequence's own final state
    assert rms_rel(masked[1][0].cpu(), ref[1][-1]) <= tol, f"{label}: final state"


def _values(dtype):
    return [-0.1 * torch.finfo(dtype).max, -1e4, float("-inf")]


@pytest.mark.parametrize("mode", list(MODES))
def test_masked_gate_packing_interpreter(mode):
    torch.manual_seed(11)
    with use_backend("triton"):
        _masked_check(mode, torch.float32, _values(torch.float32), "cpu")


def test_masked_gate_packing_torch():
    torch.manual_seed(12)
    with use_backend("torch"):
        _masked_check("chunk", torch.float32, _values(torch.float32), "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=str)
@pytest.mark.parametrize("mode", list(MODES))
def test_gpu_masked_gate_packing(mode, dtype):
    torch.manual_seed(13)
    _masked_check(mode, dtype, _values(dtype), "cuda", H=4, K=128, V=128, lens=(300, 1, 700, 64, 200))


@pytest.mark.gpu
@pytest.mark.parametrize("mode", list(MODES))
def test_gpu_varlen_bf16(mode):
    torch.manual_seed(14)
    lens = [0, 1, 300, 64, 0, 129, 1000]
    q, k, v, g, h0 = make_inputs(1, sum(lens), 4, 128, 128, dtype=torch.bfloat16, device="cuda", n_states=len(lens))
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    cu = _cu(lens, "cuda")
    out = run_with_grads(MODES[mode], q, k, v, g, h0, do, dht, cu_seqlens=cu)
    check_all(out, reference(q, k, v, g, h0, do, dht, cu_seqlens=cu), TOL[torch.bfloat16], mode)
