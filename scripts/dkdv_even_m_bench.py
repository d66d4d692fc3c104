"""Device call: the dK/dV kernel's query-row bounds (EVEN_M: lengths a multiple of the query tile load
masked tiles without row bounds) crossed with its loop shape (one query-tile loop vs three), same process,
alternating, bf16 B2 H16, hd 64/128, S 8k/16k, causal and not: backward ms (do_bench median) and the dK/dV
kernel alone (torch.profiler). EVEN_M is forced off by wrapping the launch. One JSON line per case."""
import json

import torch
import triton.testing
from torch.profiler import ProfilerActivity, profile

import tilefold
from tilefold.ops.attention import backward as B
from tilefold.ops.attention import config as C

REAL = B.attention_bwd_dkdv_kernel


class Force:
    def __init__(self, even):
        self.even = even

    def __getitem__(self, grid):
        def launch(*a, **kw):
            kw["EVEN_M"] = self.even and kw["EVEN_M"]
            return REAL[grid](*a, **kw)
        return launch


def dkdv_ms(o, q, k, v, do):
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(5):
            torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
        torch.cuda.synchronize()
    t = [e.self_device_time_total for e in p.key_averages() if "dkdv" in e.key]
    return round(sum(t) / 5 / 1000, 4)


for D in (128, 64):
    for S in (8192, 16384):
        for causal in (True, False):
            g = torch.Generator(device="cuda").manual_seed(0)
            q, k, v = (torch.randn(2, S, 16, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
                       for _ in range(3))
            o = tilefold.attention(q, k, v, causal=causal)
            do = torch.randn_like(o)
            rec = dict(D=D, S=S, causal=causal)
            for rnd in range(2):
                for one in (False, True):
                    for even in (False, True):
                        C.DKDV_ONE_LOOP = one
                        B.attention_bwd_dkdv_kernel = Force(even)
                        ms = triton.testing.do_bench(
                            lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True),
                            warmup=25, rep=100, return_mode="median")
                        tag = f"{'one' if one else 'three'}_{'even' if even else 'rows'}"
                        rec.setdefault(f"bwd_{tag}", []).append(round(ms, 4))
                        rec.setdefault(f"dkdv_{tag}", []).append(dkdv_ms(o, q, k, v, do))
            print(json.dumps(rec), flush=True)
            del q, k, v, o, do
