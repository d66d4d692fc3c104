"""Is Python slower on the autograd engine's device thread? (device call 45, 2026-12-04, fourth session)

Call 44 (scripts/host_profile_bwd.py): step 716-783 µs, forward with grad 129, the backward called on the main thread
178, a do-nothing autograd.Function step 146 -- about 300 µs of the step unexplained. Host µs per step here (loops
without sync, B2 H16 S1024 hd128 bf16), each a torch.autograd.grad through a Python autograd.Function:
  nothing       backward returns three empty_like
  busy          backward also runs a pure-Python loop (busy(), timed alone on the main thread as busy_main)
  launches      backward also launches 4 small torch kernels (x.add(1)); launches_main: the same on the main thread
  our_bwd       backward calls function._bwd_impl (our whole backward) -- compare bwd_main (the same on the main thread)
  step          tilefold.attention forward + backward
and inside each backward the wall time of its body (perf_counter on the engine's thread), so
step - fwd - body = the engine's own share. Writes $OUT/engine-diag.json."""
import json
import os
import time

import torch

import tilefold
from tilefold.ops.attention import function as F

from bench_timing import host_us as per_call

B, S, H, D = 2, 1024, 16, 128
body_us = {}


def busy():
    s = 0
    for i in range(3000):
        s += i
    return s


x1 = None


def launches():
    for _ in range(4):
        x1.add(1)


def make(kind, out_lse):
    class Fn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v):
            ctx.save_for_backward(q, k, v)
            return torch.empty_like(q)

        @staticmethod
        def backward(ctx, dout):
            t0 = time.perf_counter()
            q, k, v = ctx.saved_tensors
            if kind == "busy":
                busy()
            elif kind == "launches":
                launches()
            elif kind == "our_bwd":
                out, lse = out_lse
                r = F._bwd_impl(dout, q, k, v, out, lse, None, None, None, S, S, D ** -0.5, -1, -1, 0.0, 0)
                body_us.setdefault(kind, []).append(time.perf_counter() - t0)
                return r
            r = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
            body_us.setdefault(kind, []).append(time.perf_counter() - t0)
            return r
    return Fn


def main():
    global x1
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
               for _ in range(3))
    dout = torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
    x1 = torch.ones(1, device="cuda")
    with torch.no_grad():
        out_lse = tilefold.attention(q, k, v, return_lse=True)
    res = {}
    res["busy_main"] = per_call(busy)
    res["launches_main"] = per_call(launches)
    qd, kd, vd = q.detach(), k.detach(), v.detach()
    res["bwd_main"] = per_call(lambda: F._bwd_impl(dout, qd, kd, vd, *out_lse, None, None, None, S, S, D ** -0.5,
                                                   -1, -1, 0.0, 0))
    for kind in ("nothing", "busy", "launches", "our_bwd"):
        Fn = make(kind, out_lse)
        body_us.clear()
        res[kind] = per_call(lambda: torch.autograd.grad(Fn.apply(q, k, v), (q, k, v), dout))
        b = body_us.get(kind, [])[20:]
        res[kind + "_body"] = round(sum(b) / max(len(b), 1) * 1e6, 1)
    res["fwd_grad"] = per_call(lambda: tilefold.attention(q, k, v))
    res["step"] = per_call(lambda: torch.autograd.grad(tilefold.attention(q, k, v), (q, k, v), dout))
    # the step with the backward's body timed on the engine thread
    real = F._backward
    acc = []

    def timed(*a, **kw):
        t0 = time.perf_counter()
        r = real(*a, **kw)
        acc.append(time.perf_counter() - t0)
        return r
    F._backward = timed
    res["step_timed"] = per_call(lambda: torch.autograd.grad(tilefold.attention(q, k, v), (q, k, v), dout))
    F._backward = real
    res["step_backward_body"] = round(sum(acc[20:]) / max(len(acc) - 20, 1) * 1e6, 1)
    Fn0 = make("nothing", None)
    res["nothing_again"] = per_call(lambda: torch.autograd.grad(Fn0.apply(q, k, v), (q, k, v), dout))
    print(json.dumps(res, indent=1), flush=True)
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, "engine-diag.json"), "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
