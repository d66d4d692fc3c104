"""Is the attention at 1k-2k tokens host-bound or GPU-bound? (B2 H16 bf16, fwd+bwd with grads, per step)
For each shape and path (Gluon kernels = default on Hopper, Triton kernels = TILEFOLD_*_SM90 off, SDPA-flash):
  host_us   -- a loop of steps without sync (µs per step; equals GPU time once the launch queue is full),
  gpu_us    -- the sum of the CUDA kernels' own times per step (torch.profiler),
  kernels   -- that sum per kernel name.
Writes $OUT/small_seq_profile.json."""
import json, os, time
import torch
from torch.profiler import profile, ProfilerActivity
import tilefold
from tilefold.ops.attention import config as cfg

OUT = os.environ.get("OUT", ".")
sdpa = torch.nn.functional.scaled_dot_product_attention
res = []


def host_us(fn, n=100):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    return (t1 - t0) / n * 1e6, (time.perf_counter() - t0) / n * 1e6


def gpu_us(fn, n=10):
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    agg = {}
    for e in p.key_averages():
        t = getattr(e, "self_device_time_total", 0) or getattr(e, "self_cuda_time_total", 0)
        if t > 0:
            agg[e.key[:70]] = round(t / n, 2)
    return round(sum(agg.values()), 1), agg


for S in (1024, 2048, 4096):
    for D in (64, 128):
        for causal in (False, True):
            g = torch.Generator(device="cuda").manual_seed(0)
            q, k, v = (torch.randn(2, S, 16, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
                       for _ in range(3))
            do = torch.randn_like(q)
            qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_() for x in (q, k, v))
            for path in ("gluon", "triton", "sdpa-flash"):
                if path == "sdpa-flash":
                    def step():
                        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.FLASH_ATTENTION):
                            o = sdpa(qt, kt, vt, is_causal=causal)
                        torch.autograd.grad(o, (qt, kt, vt), do.transpose(1, 2))
                else:
                    cfg.FWD_SM90 = cfg.BWD_SM90 = "auto" if path == "gluon" else "0"

                    def step():
                        torch.autograd.grad(tilefold.attention(q, k, v, causal=causal), (q, k, v), do)
                h = host_us(step)
                gt, agg = gpu_us(step)
                r = dict(S=S, D=D, causal=causal, path=path, host_us=round(h[0], 1), host_sync_us=round(h[1], 1),
                         gpu_us=gt, kernels=agg)
                res.append(r)
                print(S, D, causal, path, r["host_us"], r["host_sync_us"], gt, flush=True)
            cfg.FWD_SM90 = cfg.BWD_SM90 = "auto"
json.dump(res, open(os.path.join(OUT, "small_seq_profile.json"), "w"), indent=1)
