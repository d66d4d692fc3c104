"""Where the host time of a 1k-token training step goes (device call 44, 2026-12-04, fourth session).

Call 43 (scripts/launch_micro.py) found one Gluon forward launch cheap on this host (~30 µs for the whole launcher, 7-16
of it the launch), the forward with grad at ~90 µs, but the forward + backward step at ~545 µs (SDPA 155): ~450 µs
in the backward and the autograd engine. B2 H16 S1024 hd128 bf16, host µs per call (loops without sync):
  step          torch.autograd.grad(tilefold.attention(q, k, v), (q, k, v), dout)
  fwd_grad      tilefold.attention(q, k, v) with grad
  bwd_direct    function._bwd_impl(...) on the main thread (no autograd engine)
  engine_only   the same step through a do-nothing autograd.Function (Python backward returning empty_like grads)
  sdpa_step     SDPA-flash forward + backward
and cProfile (main thread) of 200 bwd_direct calls and of 200 fwd_grad calls: the top functions by own time.
Writes $OUT/host-profile-bwd.json and $OUT/host-profile-bwd.txt."""
import cProfile
import io
import json
import os
import pstats

import torch

import tilefold
from tilefold.ops.attention import function as F

from bench_timing import host_us as per_call


def profile(fn, n=200):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    st = pstats.Stats(pr, stream=s)
    st.sort_stats("tottime").print_stats(30)
    st.sort_stats("cumulative").print_stats(40)
    return s.getvalue()


class Nothing(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v):
        ctx.save_for_backward(q, k, v)
        return torch.empty_like(q)

    @staticmethod
    def backward(ctx, dout):
        q, k, v = ctx.saved_tensors
        return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def main():
    B, S, H, D = 2, 1024, 16, 128
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
               for _ in range(3))
    dout = torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
    scale = D ** -0.5
    res = {}
    res["step"] = per_call(lambda: torch.autograd.grad(tilefold.attention(q, k, v), (q, k, v), dout))
    res["fwd_grad"] = per_call(lambda: tilefold.attention(q, k, v))
    with torch.no_grad():
        out, lse = tilefold.attention(q, k, v, return_lse=True)
    qd, kd, vd = q.detach(), k.detach(), v.detach()
    bwd = lambda: F._bwd_impl(dout, qd, kd, vd, out, lse, None, None, None, S, S, scale, -1, -1, 0.0, 0)  # noqa: E731
    res["bwd_direct"] = per_call(bwd)
    res["engine_only"] = per_call(lambda: torch.autograd.grad(Nothing.apply(q, k, v), (q, k, v), dout))
    res["empty_like3"] = per_call(lambda: (torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)))
    from torch.nn.attention import SDPBackend, sdpa_kernel
    qs, ks, vs = (t.detach().transpose(1, 2).clone().requires_grad_() for t in (q, k, v))
    dos = dout.transpose(1, 2)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        res["sdpa_step"] = per_call(lambda: torch.autograd.grad(
            torch.nn.functional.scaled_dot_product_attention(qs, ks, vs), (qs, ks, vs), dos))
    res["step_again"] = per_call(lambda: torch.autograd.grad(tilefold.attention(q, k, v), (q, k, v), dout))
    print(json.dumps(res, indent=1), flush=True)
    text = "== bwd_direct\n" + profile(bwd) + "\n== fwd_grad\n" + profile(lambda: tilefold.attention(q, k, v))
    print(text[:6000])
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, "host-profile-bwd.json"), "w") as f:
            json.dump(res, f, indent=1)
        with open(os.path.join(out_dir, "host-profile-bwd.txt"), "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
