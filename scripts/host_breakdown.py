"""Where the host time of an attention step goes at 1k tokens (B2 H16 bf16), on the GPU machine's host.
1. host µs per step (a loop without sync; the GPU work is ~110-160 µs per step, so the loop is host-bound) for the
   forward without grad, the forward with grad and forward + backward, with the Gluon kernels launched directly
   from cached plans (TILEFOLD_SM90_DIRECT_LAUNCH, the default) and through their own launch path, beside SDPA;
2. the same step with wall-clock timers around its layers (inclusive µs per step): tilefold.attention, the
   forward launcher, the backward (function._backward), backward.attention_bwd, the two Gluon backward launchers,
   every Triton JITFunction.run by kernel name and the direct launches — so the autograd engine's share is the
   step minus the layers.
Writes $OUT/host_breakdown.json."""
import collections, functools, json, os, time
import torch
import tilefold
from tilefold.ops.common import launch
from tilefold.ops.attention import function as F, forward_sm90 as S90, backward_sm90 as B90

OUT = os.environ.get("OUT", ".")
sdpa = torch.nn.functional.scaled_dot_product_attention
res = {"loops": [], "layers": {}}


def host_us(fn, n=200):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return round((t1 - t0) / n * 1e6, 1)


for D in (128, 64):
    for causal in (False, True):
        g = torch.Generator(device="cuda").manual_seed(0)
        q, k, v = (torch.randn(2, 1024, 16, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
                   for _ in range(3))
        do = torch.randn_like(q)
        qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_() for x in (q, k, v))
        cases = {
            "fwd_nograd": lambda: tilefold.attention(q.detach(), k.detach(), v.detach(), causal=causal),
            "fwd_grad": lambda: tilefold.attention(q, k, v, causal=causal),
            "fwd_bwd": lambda: torch.autograd.grad(tilefold.attention(q, k, v, causal=causal), (q, k, v), do),
        }
        row = dict(D=D, causal=causal)
        for direct in (True, False, True):
            launch.DIRECT_GLUON = direct
            for name, fn in cases.items():
                row.setdefault(f"{name}_{'direct' if direct else 'triton_launch'}", []).append(host_us(fn))
        launch.DIRECT_GLUON = True
        row["sdpa_fwd_nograd"] = host_us(lambda: sdpa(qt.detach(), kt.detach(), vt.detach(), is_causal=causal))
        row["sdpa_fwd_bwd"] = host_us(lambda: torch.autograd.grad(sdpa(qt, kt, vt, is_causal=causal), (qt, kt, vt),
                                                                   do.transpose(1, 2)))
        res["loops"].append(row)
        print(row, flush=True)

# layer timers (direct launches on), hd128 non-causal fwd + bwd
acc = collections.defaultdict(float)
cnt = collections.defaultdict(int)


def timed(name, fn):
    @functools.wraps(fn)
    def w(*a, **kw):
        t0 = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            acc[name] += time.perf_counter() - t0
            cnt[name] += 1
    return w


from triton.runtime import jit as _jit
_run = _jit.JITFunction.run


def run_timed(self, *a, **kw):
    t0 = time.perf_counter()
    try:
        return _run(self, *a, **kw)
    finally:
        name = "jit.run:" + self.fn.__name__
        acc[name] += time.perf_counter() - t0
        cnt[name] += 1


_launch = launch.LaunchCache.launch


def launch_timed(self, *a, **kw):
    t0 = time.perf_counter()
    try:
        return _launch(self, *a, **kw)
    finally:
        name = "LaunchCache.launch:" + self.fn.fn.__name__
        acc[name] += time.perf_counter() - t0
        cnt[name] += 1


tilefold_attention = tilefold.attention
patched = [(tilefold, "attention"), (S90, "attention_fwd_sm90"), (F, "attention_fwd"), (F, "_fwd_impl"),
           (F, "attention_bwd"), (B90, "attention_dkdv_sm90"), (B90, "attention_dq_sm90"), (F, "_backward")]
saved = []
for item in patched:
    mod, name = item
    saved.append((mod, name, getattr(mod, name)))
    setattr(mod, name, timed(f"{mod.__name__.split('.')[-1]}.{name}", getattr(mod, name)))
_jit.JITFunction.run = run_timed
launch.LaunchCache.launch = launch_timed
g = torch.Generator(device="cuda").manual_seed(0)
q, k, v = (torch.randn(2, 1024, 16, 128, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
           for _ in range(3))
do = torch.randn_like(q)
step = timed("step", lambda: torch.autograd.grad(tilefold.attention(q, k, v), (q, k, v), do))
for _ in range(20):
    step()
torch.cuda.synchronize()
acc.clear()
cnt.clear()
N = 200
for _ in range(N):
    step()
torch.cuda.synchronize()
res["layers"] = {name: dict(us_per_step=round(acc[name] / N * 1e6, 1), calls_per_step=cnt[name] / N)
                 for name in sorted(acc, key=lambda n: -acc[n])}
for name, r in res["layers"].items():
    print(f"{name:60s} {r['us_per_step']:8.1f} µs  x{r['calls_per_step']}", flush=True)
json.dump(res, open(os.path.join(OUT, "host_breakdown.json"), "w"), indent=1)
