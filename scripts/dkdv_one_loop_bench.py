"""Next device call: the dK/dV kernel with one query-tile loop (config.DKDV_ONE_LOOP) against the default
three loops, same process, alternating, hd 64/128/256 bf16 B2 H16, S 8k/16k, causal and not: backward ms
(do_bench median) and the dK/dV kernel alone (torch.profiler). Prints one JSON line per case."""
import json, sys
import torch
import triton.testing
from torch.profiler import ProfilerActivity, profile

import tilefold
from tilefold.ops.attention import config as C


def dkdv_ms(o, q, k, v, do):
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(5):
            torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
        torch.cuda.synchronize()
    t = [e.self_device_time_total for e in p.key_averages() if "dkdv" in e.key]
    return round(sum(t) / 5 / 1000, 4)


for D in (128, 64, 256):
    for S in (8192, 16384):
        for causal in (False, True):
            g = torch.Generator(device="cuda").manual_seed(0)
            q, k, v = (torch.randn(2, S, 16, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
                       for _ in range(3))
            o = tilefold.attention(q, k, v, causal=causal)
            do = torch.randn_like(o)
            rec = dict(D=D, S=S, causal=causal)
            for rnd in range(2):
                for one in (False, True):
                    C.DKDV_ONE_LOOP = one
                    ms = triton.testing.do_bench(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True),
                                                 warmup=25, rep=100, return_mode="median")
                    rec[f"bwd_ms_{'one' if one else 'three'}_{rnd}"] = round(ms, 4)
                    rec[f"dkdv_ms_{'one' if one else 'three'}_{rnd}"] = dkdv_ms(o, q, k, v, do)
            print(json.dumps(rec), flush=True)
            del q, k, v, o, do
