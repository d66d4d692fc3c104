"""Where the time goes outside the kernels (run on a GPU; writes to $OUT):
1. host time per call (no sync inside the loop; the GPU work is tiny, so the loop is host-bound) of
   tilefold.attention fwd / fwd+bwd at B2 H16 S1024 hd128 bf16, causal and not, beside SDPA; the decode
   path (num_splits=0) at B1 N32k; and the bare Triton launch of the forward kernel;
2. a cProfile of each (top functions by own time);
3. the backward's kernels one by one (torch.profiler) at S 8k / 16k, causal and not."""
import cProfile, io, json, os, pstats, sys, time
import torch
import tilefold

OUT = os.environ.get("OUT", ".")
dev = "cuda"
res = {}


def host_us(fn, n=300):
    for _ in range(20):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    return (t1 - t0) / n * 1e6, (t2 - t0) / n * 1e6


def prof(name, fn, n=200):
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(n):
        fn()
    pr.disable()
    torch.cuda.synchronize()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(28)
    with open(os.path.join(OUT, f"cprofile-{name}.txt"), "w") as f:
        f.write(s.getvalue())


def mk(B, M, N, H, HK, D, grad):
    g = torch.Generator(device=dev).manual_seed(0)
    q = torch.randn(B, M, H, D, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_(grad)
    k = torch.randn(B, N, HK, D, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_(grad)
    v = torch.randn(B, N, HK, D, device=dev, dtype=torch.bfloat16, generator=g).requires_grad_(grad)
    return q, k, v


sdpa = torch.nn.functional.scaled_dot_product_attention
for causal in (False, True):
    q, k, v = mk(2, 1024, 1024, 16, 16, 128, True)
    qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_() for x in (q, k, v))
    do = torch.randn_like(q)
    cases = {
        "tf_fwd_nograd": lambda: tilefold.attention(q.detach(), k.detach(), v.detach(), causal=causal),
        "tf_fwd_grad": lambda: tilefold.attention(q, k, v, causal=causal),
        "tf_fwd_bwd": lambda: torch.autograd.grad(tilefold.attention(q, k, v, causal=causal), (q, k, v), do),
        "sdpa_fwd_nograd": lambda: sdpa(qt.detach(), kt.detach(), vt.detach(), is_causal=causal),
        "sdpa_fwd_bwd": lambda: torch.autograd.grad(sdpa(qt, kt, vt, is_causal=causal), (qt, kt, vt),
                                                     do.transpose(1, 2)),
    }
    for name, fn in cases.items():
        res[f"{name}_c{int(causal)}"] = host_us(fn)
        print(name, causal, res[f"{name}_c{int(causal)}"], flush=True)
    for name in ("tf_fwd_nograd", "tf_fwd_grad", "tf_fwd_bwd"):
        prof(f"{name}_c{int(causal)}", cases[name])

# bare launch of the forward kernel (the launcher's own cost)
from tilefold.ops.attention import forward as F
q, k, v = mk(2, 1024, 1024, 16, 16, 128, False)
orig = F.attention_fwd_kernel
launch_args = {}


class Spy:
    def __getitem__(self, grid):
        def run(*a, **kw):
            launch_args["grid"], launch_args["a"], launch_args["kw"] = grid, a, kw
            return orig[grid](*a, **kw)
        return run


from tilefold.ops.attention import config as _cfg
F.attention_fwd_kernel = Spy()
_sm90, _cfg.FWD_SM90 = _cfg.FWD_SM90, "0"  # the Triton kernel's launch (the Gluon forward is the default on Hopper)
F.attention_fwd(q, k, v, softmax_scale=0.088, window=(-1, -1), softcap=0.0)
F.attention_fwd_kernel, _cfg.FWD_SM90 = orig, _sm90
g, a, kw = launch_args["grid"], launch_args["a"], launch_args["kw"]
res["bare_launch"] = host_us(lambda: orig[g](*a, **kw))
print("bare launch", res["bare_launch"], flush=True)
prof("bare_launch", lambda: orig[g](*a, **kw))
res["torch_empty_x2"] = host_us(lambda: (torch.empty_like(q), torch.empty((2, 16, 1024), device=dev)))

# decode
q, k, v = mk(1, 1, 32768, 32, 8, 128, False)
res["decode_b1_n32k"] = host_us(lambda: tilefold.attention(q, k, v, num_splits=0))
res["decode_sdpa_b1_n32k"] = host_us(lambda: sdpa(q.transpose(1, 2), k.transpose(1, 2).repeat_interleave(4, 1),
                                                  v.transpose(1, 2).repeat_interleave(4, 1)))
print("decode", res["decode_b1_n32k"], flush=True)
prof("decode_b1_n32k", lambda: tilefold.attention(q, k, v, num_splits=0))

# backward kernels one by one (HOST_PROFILE_NO_KERNELS=1: skip)
from torch.profiler import profile, ProfilerActivity
kern = {}
for S in (() if os.environ.get("HOST_PROFILE_NO_KERNELS") else (8192, 16384)):
    for causal in (False, True):
        q, k, v = mk(2, S, S, 16, 16, 128, True)
        o = tilefold.attention(q, k, v, causal=causal)
        do = torch.randn_like(o)
        for _ in range(3):
            torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as p:
            for _ in range(5):
                torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
            torch.cuda.synchronize()
        agg = {}
        for e in p.key_averages():
            if e.device_type.name == "CUDA" or getattr(e, "self_device_time_total", 0) > 0:
                agg[e.key[:60]] = round(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) / 5 / 1000, 4)
        kern[f"S{S}_c{int(causal)}"] = agg
        print(S, causal, agg, flush=True)
        del q, k, v, o, do
res["bwd_kernels_ms"] = kern
json.dump(res, open(os.path.join(OUT, "host_profile.json"), "w"), indent=1)
