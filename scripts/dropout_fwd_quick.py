"""Forward with dropout, Gluon kernel vs forward.py's kernel vs SDPA-flash, bf16 B2 H16 hd128 8k, causal and
not, p = 0 and 0.1; one JSON line per measurement to --out as it goes (do_bench median)."""
import argparse
import json
import os
import sys

import torch
import triton
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tilefold  # noqa: E402
from tilefold.ops.attention import forward_sm90 as sm90  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="dropout_fwd.jsonl")
ap.add_argument("--seq", type=int, default=8192)
a = ap.parse_args()
B, H, D, S = 2, 16, 128, a.seq
f = open(a.out, "a")
for causal in (False, True):
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    flops = 4 * B * H * S * S * D / (2 if causal else 1)
    for name, p, gluon_drop in (("tilefold", 0.0, True), ("tilefold", 0.1, True), ("tilefold-triton-dropout", 0.1, False),
                                ("sdpa-flash", 0.0, None), ("sdpa-flash", 0.1, None)):
        if name == "sdpa-flash":
            qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))

            def fn():
                with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                    return F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, dropout_p=p)
        else:
            def fn():
                sm90.DROPOUT = gluon_drop
                return tilefold.attention(q, k, v, causal=causal, dropout_p=p)
        with torch.no_grad():
            ms = triton.testing.do_bench(fn, warmup=25, rep=150)
        rec = dict(provider=name, dropout_p=p, causal=causal, hd=D, seqlen=S, ms=ms, tflops=flops / ms / 1e9)
        print(json.dumps(rec), flush=True)
        f.write(json.dumps(rec) + "\n")
        f.flush()
