"""B=1, seqlen_k 8k, seqlen_q 1 (bf16, 32 / 8 heads, hd128): tilefold.attention vs attention_with_kvcache (full
lengths as a CUDA tensor), where calls 89-90's decode bench measured the kvcache path 3x slower (~100 us vs ~30).
Per provider: GPU time of the kernels (torch.profiler, CUDA events per call) and host wall per call over 2000
back-to-back calls, so host-bound and device-bound costs separate. Usage: python scripts/kvcache_small_probe.py"""
import time

import torch
import triton

import tilefold

torch.manual_seed(0)
B, M, N, H, HK, D = 1, 1, 8192, 32, 8, 128
q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16)
k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
v = torch.randn_like(k)
lens = torch.full((B,), N, dtype=torch.int32, device="cuda")
fns = {"tilefold": lambda: tilefold.attention(q, k, v, num_splits=0),
       "kvcache": lambda: tilefold.attention_with_kvcache(q, k, v, cache_seqlens=lens),
       "kvcache-int": lambda: tilefold.attention_with_kvcache(q, k, v, cache_seqlens=N)}
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
    kern = {e.key: round(e.device_time_total / e.count, 2) for e in prof.key_averages() if e.device_time_total > 0}
    print(f"{name:12s} host/call {host:6.1f} us  wall/call {wall:6.1f} us  do_bench {ms * 1e3:6.1f} us  kernels {kern}",
          flush=True)
