"""Decode: the fused fold over the live rows (FOLD_ROWS, up to 16 states per round trip) against the whole-block fold
(4 states per round trip) and the combine kernel (device call 45, 2026-12-04, fourth session; call 47: `kernel` = the combine kernel as a programmatic dependent
launch, `kernel-nopdl` without, given as argv[1] = a comma-separated provider list). seqlen_q = 1, bf16,
32 query / 8 key heads, hd128, the shipped split policy. Per case and provider, two alternating rounds: GB/s (K + V
bytes / do_bench median, L2 flushed) and GPU µs per call replayed from a CUDA graph; cuDNN beside. JSON lines on
stdout and in $OUT/decode-fold.jsonl."""
import json
import os
import sys

import torch
import triton.testing

from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention

from bench_timing import cudnn_gqa as cudnn, graph_us

H, HK, D = 32, 8, 128
OUT = os.environ.get("OUT")
log = open(os.path.join(OUT, "decode-fold.jsonl"), "w") if OUT else None


def emit(**r):
    line = json.dumps(r)
    print(line, flush=True)
    if log:
        log.write(line + "\n")
        log.flush()


def tf(q, k, v):
    return split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0)[0]


def mode(name):
    if name == "cudnn":
        return cudnn
    os.environ["TILEFOLD_DECODE_COMBINE"] = {"kernel": "kernel", "kernel-nopdl": "kernel", "auto": "auto"}.get(name, "fused")
    K.FOLD_MODE = "block" if name == "fused-block" else "live"
    K.DECODE_PDL = name != "kernel-nopdl"
    return tf


CASES = [(1, 8192), (1, 16384), (1, 32768), (1, 65536), (1, 131072), (1, 262144), (4, 8192), (4, 32768),
         (8, 8192), (16, 8192), (16, 32768)]
PROVIDERS = sys.argv[1].split(",") if len(sys.argv) > 1 else ["kernel", "fused-block", "fused-live", "cudnn"]
for B, N in CASES:
    g = torch.Generator(device="cuda").manual_seed(N + B)
    q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
    nbytes = 2 * B * N * HK * D * 2
    ref = cudnn(q, k, v).float()
    for rnd in range(2):
        for p in (PROVIDERS if rnd == 0 else PROVIDERS[::-1]):
            fn = mode(p)
            rec = dict(B=B, N=N, provider=p, round=rnd)
            try:
                ms = triton.testing.do_bench(lambda: fn(q, k, v), warmup=25, rep=100, return_mode="median")
                rec["gbps"] = round(nbytes / ms / 1e6, 1)
                rec["graph_us"] = graph_us(lambda: fn(q, k, v))
                rec["maxdiff"] = float((fn(q, k, v).float() - ref).abs().max())
            except Exception as e:  # noqa: BLE001
                rec["error"] = repr(e)[:300]
            emit(**rec)
    del q, k, v
os.environ.pop("TILEFOLD_DECODE_COMBINE", None)
