"""The CPU path (tilefold/ops/attention/cpu.py) beside torch's SDPA on the CPU, fp32, ms per call (best of N):
forward without grad and forward + backward. Usage: python scripts/cpu_bench.py [--reps 3]"""
import argparse
import time

import torch
import torch.nn.functional as F

import tilefold

ap = argparse.ArgumentParser()
ap.add_argument("--reps", type=int, default=3)
a = ap.parse_args()
torch.manual_seed(0)
CASES = [(1, 1024, 8, 8, 64, False), (1, 1024, 8, 8, 64, True), (1, 2048, 8, 2, 128, True),
         (2, 512, 16, 16, 64, False), (1, 1024, 8, 8, 64, "window")]
print(f"threads {torch.get_num_threads()}")
for B, S, H, HK, D, mask in CASES:
    q = torch.randn(B, S, H, D, requires_grad=True)
    k, v = (torch.randn(B, S, HK, D, requires_grad=True) for _ in range(2))
    causal = mask is True
    win = (256, 0) if mask == "window" else (-1, -1)

    def tf():
        return tilefold.attention(q, k, v, causal=causal, window_size=win)

    def sd():
        if mask == "window":
            return None
        kk, vv = (t.repeat_interleave(H // HK, 2) for t in (k, v))
        return F.scaled_dot_product_attention(q.transpose(1, 2), kk.transpose(1, 2), vv.transpose(1, 2),
                                              is_causal=causal).transpose(1, 2)
    row = []
    for fn in (tf, sd):
        if fn() is None:
            row.append("   -   /   -   ")
            continue
        best_f = best_fb = float("inf")
        for _ in range(a.reps):
            with torch.no_grad():
                t = time.perf_counter()
                fn()
                best_f = min(best_f, time.perf_counter() - t)
            t = time.perf_counter()
            o = fn()
            torch.autograd.grad(o, (q, k, v), torch.ones_like(o) * 0.01 + o.detach())
            best_fb = min(best_fb, time.perf_counter() - t)
        row.append(f"{best_f * 1e3:7.1f} / {best_fb * 1e3:7.1f}")
    print(f"B{B} S{S} H{H}/{HK} D{D} {str(mask):6}  tilefold fwd / fwd+bwd ms {row[0]}   sdpa {row[1]}")
