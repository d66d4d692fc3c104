"""fused_recurrent_gla at the edges of its two-steps-ahead prefetch (fused_recurrent.py): packed sequences
of length 0, 1, 2, 3 and 5 (fewer steps than the prefetch distance, at the start and at the end of the
tensor, where the masked-off prefetch addresses fall outside it), several value blocks with a partial
last one, K below its block, with and without initial / final states. CPU tier: the kernels under the
interpreter, fp32 against the fp64 recurrence (TOL) and fp16 under the 2x rule."""
import pytest
import torch

from tilefold.gla import fused_recurrent_gla
from tilefold.ops.common.dispatch import use_backend
from tilefold.ops.gla import fused_recurrent as FR
from tilefold.ops.gla.naive import naive_recurrent_gla

from gla_helpers import NAMES, TOL, check_all, make_inputs, reference, rms_rel, run_with_grads

# [0, 1, ...]: an empty sequence and a length-1 one both start at row 0 (reverse prefetch below the
# tensor); [2, 3, 0, 5, 1]: length 2 first, length 1 last (forward prefetch past the tensor's end)
ORDERS = {"0-1-2-3-5": [0, 1, 2, 3, 5], "2-3-0-5-1": [2, 3, 0, 5, 1]}
H, K, V = 2, 20, 40


@pytest.fixture
def small_state(monkeypatch):
    """State slices of 32 x 16: K = 20 pads to 32 and V = 40 takes three value blocks, the last partial."""
    monkeypatch.setitem(FR.CFG, "state", 256)
    assert FR._blocks(K, V) == (32, 16)


def _cu(lens):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32)


@pytest.mark.parametrize("order", list(ORDERS))
def test_varlen_short_sequences(order, small_state):
    torch.manual_seed(31)
    lens = ORDERS[order]
    q, k, v, g, h0 = make_inputs(1, sum(lens), H, K, V, n_states=len(lens))
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    cu = _cu(lens)
    ref = reference(q, k, v, g, h0, do, dht, cu_seqlens=cu)
    with use_backend("triton"):
        out = run_with_grads(fused_recurrent_gla, q, k, v, g, h0, do, dht, cu_seqlens=cu)
    check_all(out, ref, TOL[torch.float32], order)
    for n, length in enumerate(lens):
        if length == 0:  # the state and its gradient pass through untouched
            assert torch.equal(out[1][n], h0[n]) and torch.equal(out[6][n], dht[n])


@pytest.mark.parametrize("T", [1, 2, 3])
def test_no_states_short(T, small_state):
    """No initial state, no final state (HAS_H0, HAS_DHT, STORE_DH0 off), dense batch of T < 4 steps."""
    torch.manual_seed(32 + T)
    q, k, v, g, _ = make_inputs(2, T, H, K, V)
    do = torch.randn_like(v)

    def grads(fn):
        xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g)]
        o, ht = fn(*xs)
        assert ht is None
        return (o,) + torch.autograd.grad((o.double() * do.double()).sum(), xs)

    ref = grads(naive_recurrent_gla)
    with use_backend("triton"):
        out = grads(fused_recurrent_gla)
    for name, a, b in zip(("o", "dq", "dk", "dv", "dg"), out, ref):
        assert rms_rel(a, b) <= TOL[torch.float32], (T, name, rms_rel(a, b))


def test_varlen_fp16_two_x_rule(small_state):
    """fp16 inputs: max error vs fp64 within 2x the fp16 torch recurrence's (+ 1e-5), every output."""
    torch.manual_seed(35)
    lens = ORDERS["2-3-0-5-1"]
    q, k, v, g, h0 = make_inputs(1, sum(lens), H, K, V, dtype=torch.float16, n_states=len(lens))
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    cu = _cu(lens)
    ref = reference(q, k, v, g, h0, do, dht, cu_seqlens=cu)
    low = run_with_grads(naive_recurrent_gla, q, k, v, g, h0, do, dht, cu_seqlens=cu, dtype=torch.float16)
    with use_backend("triton"):
        out = run_with_grads(fused_recurrent_gla, q, k, v, g, h0, do, dht, cu_seqlens=cu)

    def err(a, b):
        return (a.double() - b.double()).abs().max().item()

    for name, a, r, lo in zip(NAMES, out, ref, low):
        assert torch.isfinite(a).all(), name
        assert err(a, r) <= 2 * err(lo, r) + 1e-5, (name, err(a, r), err(lo, r))


@pytest.mark.parametrize("backend,mode", [("triton", "fused_recurrent"), ("triton", "chunk"),
                                          ("triton", "fused_chunk"), ("torch", "chunk")])
def test_gate_floor(small_state, backend, mode):
    """Gates below the floor, -30 (-40, -inf), decay by exp(-30), not less, in every pass and mode and on both
    backends: at the first step, behind a 1e12 initial state (exp(-30) * 1e12 ~ 0.09 against k v^T ~ 1: o, ht, dq)
    and for dh0 (the only term, exp(-30) dS_0), against the reference on clamped gates (gradient 0 below the floor,
    as the kernels give). The floor is a literal here, not the library's G_FLOOR: a changed floor must fail (a floor
    of -10 leaks exp(-10) of the reset state; reading G_FLOOR, the reference moved with it)."""
    from gla_helpers import MODES
    G_FLOOR = -30.0

    torch.manual_seed(36)
    q, k, v, g, h0 = make_inputs(2, 5, H, K, V)
    g[0, 0], g[1, 0] = -40.0, float("-inf")
    h0 = h0 * 1e12
    do, dht = torch.randn_like(v), torch.randn_like(h0)

    def clamped(q, k, v, g, **kw):
        return naive_recurrent_gla(q, k, v, g.clamp(min=G_FLOOR), **kw)

    ref = run_with_grads(clamped, q, k, v, g, h0, do, dht)
    with use_backend(backend):
        out = run_with_grads(MODES[mode], q, k, v, g, h0, do, dht)
    check_all(out, ref, TOL[torch.float32], f"floored gates {backend} {mode}")
