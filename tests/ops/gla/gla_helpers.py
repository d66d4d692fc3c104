"""Shared test helpers for GLA: inputs, the fp64 reference with gradients, the error metric."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from tilefold.gla import chunk_gla, fused_chunk_gla, fused_recurrent_gla
from tilefold.ops.gla.naive import naive_recurrent_gla

MODES = {"fused_recurrent": fused_recurrent_gla, "chunk": chunk_gla, "fused_chunk": fused_chunk_gla}
# fp16: ~2x its unit roundoff (4.9e-4); measured 3-6e-4 RMS-relative for every mode and gate regime (CPU tier)
TOL = {torch.float32: 1e-4, torch.bfloat16: 5e-3, torch.float16: 1e-3}
NAMES = ("o", "ht", "dq", "dk", "dv", "dg", "dh0")


def rms_rel(x, ref):
    """||x - ref|| / ||ref|| in float64 (RMS-relative error); NaN never passes."""
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    if not torch.isfinite(x).all():
        return float("inf")
    den = ref.norm()
    return ((x - ref).norm() / den).item() if den > 0 else (x - ref).norm().item()


def make_inputs(B, T, H, K, V, dtype=torch.float32, device="cpu", n_states=None, gate_dtype=None):
    n = B if n_states is None else n_states
    q = torch.randn(B, T, H, K, device=device).to(dtype)
    k = torch.randn(B, T, H, K, device=device).to(dtype)
    v = torch.randn(B, T, H, V, device=device).to(dtype)
    # typical GLA gates (logsigmoid / 4): decays between 0.5 and 1, so information crosses chunks
    g = (F.logsigmoid(torch.randn(B, T, H, K, device=device)) / 4).to(gate_dtype or dtype)
    h0 = torch.randn(n, H, K, V, device=device)
    return q, k, v, g, h0


def run_with_grads(fn, q, k, v, g, h0, do, dht, **kw):
    """(o, ht, dq, dk, dv, dg, dh0) of fn with upstream gradients do, dht; inputs are not modified."""
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g, h0)]
    o, ht = fn(*xs[:4], initial_state=xs[4], output_final_state=True, **kw)
    loss = (o.double() * do.double()).sum() + (ht.double() * dht.double()).sum()
    grads = torch.autograd.grad(loss, xs, allow_unused=True, materialize_grads=True)
    return (o, ht) + tuple(grads)


def reference(q, k, v, g, h0, do, dht, **kw):
    """The fp64 recurrence with its autograd gradients, on the inputs' device (fp64 on the GPU is fast
    enough for T ~ 1000 and keeps the GPU tier short)."""
    return run_with_grads(naive_recurrent_gla, q, k, v, g, h0, do, dht, **kw)


def check_all(out, ref, tol, label=""):
    errs = {n: rms_rel(a.cpu(), b) for n, a, b in zip(NAMES, out, ref)}
    bad = {n: e for n, e in errs.items() if not e <= tol}
    assert not bad, f"{label}: RMS-relative error above {tol}: {bad} (all: {errs})"
    return errs
