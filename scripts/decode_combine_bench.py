"""Device call: split-KV decode with the two-launch combine ("kernel") against the one-launch combine
("fused": the last program of each row block folds the states), SDPA-cuDNN beside, one process, modes
alternating. bf16, 32 query / 8 key heads, hd128, no mask; the `bench decode --quick` cases. Per case: GB/s
(K+V bytes / do_bench median, L2 flushed) for each, and host-loop µs per call (200 back-to-back calls, one
sync: max of host and GPU time per call). One JSON line per case."""
import json
import os
import time

import torch
import torch.nn.functional as F
import triton.testing
from torch.nn.attention import SDPBackend, sdpa_kernel

from tilefold.ops.decode import choose_num_splits, split_kv_attention

H, HK, D = 32, 8, 128


def tf(q, k, v):
    return split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0)[0]


def cudnn(q, k, v):
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              enable_gqa=True).transpose(1, 2)


def loop_us(fn, n=200):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / n * 1e6


cases = [(1, 1, 8192), (1, 1, 32768), (1, 1, 131072), (1, 1, 1 << 20), (8, 1, 32768), (8, 1, 131072),
         (32, 1, 8192), (32, 1, 32768), (1, 16, 131072), (8, 16, 32768)]
for B, M, N in cases:
    g = torch.Generator(device="cuda").manual_seed(N + B)
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
    nbytes = 2 * B * N * HK * D * 2
    rec = dict(B=B, M=M, N=N, splits=choose_num_splits(B, H, M, N, D, q.dtype, q.device, heads_k=HK))
    outs = {}
    for rnd in range(2):
        for name in ("kernel", "fused", "cudnn"):
            if name == "cudnn":
                fn = lambda: cudnn(q, k, v)
            else:
                os.environ["TILEFOLD_DECODE_COMBINE"] = name
                fn = lambda: tf(q, k, v)
            ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
            rec.setdefault(f"gbps_{name}", []).append(round(nbytes / ms / 1e6, 1))
            rec.setdefault(f"loop_us_{name}", []).append(round(loop_us(fn), 1))
            if rnd == 0:
                outs[name] = fn().float()
    rec["maxdiff_fused_kernel"] = float((outs["fused"] - outs["kernel"]).abs().max())
    rec["maxdiff_fused_cudnn"] = float((outs["fused"] - outs["cudnn"]).abs().max())
    print(json.dumps(rec), flush=True)
    del q, k, v
