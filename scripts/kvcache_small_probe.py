"""Host-bound decode (B=1, seqlen_q 1, bf16, 32 / 8 heads, hd128, seqlen_k 8k and 32k): where calls 89-90's decode
bench measured tilefold.attention at 0.62-0.75x cuDNN and the kvcache path ~100 us per call. Per provider: host time per
call over 2000 back-to-back calls, wall time per call after the sync, do_bench's median, GPU time of each kernel
(torch.profiler), so host-bound and device-bound costs separate; then a cProfile of tilefold.attention's host path.
Usage: python scripts/kvcache_small_probe.py [--out DIR]"""
import argparse
import cProfile
import io
import json
import os
import pstats
import time

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

import tilefold

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=".")
a = ap.parse_args()
torch.manual_seed(0)
recs = []
for N in (8192, 32768):
    B, M, H, HK, D = 1, 1, 32, 8, 128
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    lens = torch.full((B,), N, dtype=torch.int32, device="cuda")

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                                  enable_gqa=True).transpose(1, 2)

    fns = {"tilefold": lambda: tilefold.attention(q, k, v, num_splits=0),
           "kvcache": lambda: tilefold.attention_with_kvcache(q, k, v, cache_seqlens=lens),
           "kvcache-int": lambda: tilefold.attention_with_kvcache(q, k, v, cache_seqlens=N),
           "sdpa-cudnn": cudnn}
    for name, fn in fns.items():
        for _ in range(20):
            fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(2000):
            fn()
        host = (time.perf_counter() - t0) / 2000 * 1e6
        torch.cuda.synchronize()
        wall = (time.perf_counter() - t0) / 2000 * 1e6
        ms = triton.testing.do_bench(fn, rep=200, return_mode="median")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            for _ in range(50):
                fn()
            torch.cuda.synchronize()
        kern = {e.key[:60]: round(e.device_time_total / e.count, 2) for e in prof.key_averages()
                if e.device_time_total > 0}
        recs.append(dict(N=N, provider=name, host_us=host, wall_us=wall, do_bench_us=ms * 1e3, kernels_us=kern))
        print(f"N={N} {name:12s} host/call {host:6.1f} us  wall/call {wall:6.1f} us  do_bench {ms * 1e3:6.1f} us  "
              f"kernels {kern}", flush=True)
    if N == 8192:
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(1000):
            fns["tilefold"]()
        pr.disable()
        torch.cuda.synchronize()
        s = io.StringIO()
        pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(30)
        print(s.getvalue()[:6000], flush=True)
        with open(os.path.join(a.out, "kvcache-probe-cprofile.txt"), "w") as f:
            f.write(s.getvalue())
with open(os.path.join(a.out, "kvcache-probe.json"), "w") as f:
    json.dump(recs, f, indent=1)
