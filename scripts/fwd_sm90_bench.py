"""Gluon sm_90 forward vs forward.py's Triton kernel vs SDPA (cuDNN, flash) in one process.
bf16, B2 H16, TFLOP/s by triton.testing.do_bench median; JSON lines to --out.
Usage: python scripts/fwd_sm90_bench.py [--hd 64 128] [--seq 8192 16384] [--out FILE]"""
import argparse
import json
import os
import sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import tilefold  # noqa: E402
from tilefold.ops.attention import config as cfg  # noqa: E402
from tilefold.ops.attention import forward_sm90 as sm90  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
import torch.nn.functional as F  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--hd", type=int, nargs="+", default=[64, 128])
ap.add_argument("--seq", type=int, nargs="+", default=[8192, 16384])
ap.add_argument("--variants", nargs="*", default=["ws-pp:128,2", "ws-nopp:128,2", "ws-pp:128,3", "sync:128,3"],
                help="Gluon variant (ws-pp, ws-nopp, sync) : BLOCK_N,STAGES")
ap.add_argument("--out", default="fwd_sm90.jsonl")
a = ap.parse_args()
B, H = 2, 16
cfg.FWD_SM90 = "1"  # the Gluon providers; tilefold-triton sets "0" around its calls
f = open(a.out, "a")
for D in a.hd:
    for S in a.seq:
        for causal in (False, True):
            torch.manual_seed(0)
            q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
            flops = 4 * B * H * S * S * D / (2 if causal else 1)
            qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
            ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal).transpose(1, 2)
            provs = {}

            for spec in a.variants:
                if spec.startswith("sync") and D == 256:  # no sync kernel at hd256: it would time forward.py's
                    continue
                def run_v(spec=spec):
                    var, c = spec.split(":")
                    saved = sm90.VARIANT, sm90.PINGPONG, sm90._CFG_ENV
                    sm90.VARIANT = "sync" if var == "sync" else "ws"
                    sm90.PINGPONG = var == "ws-pp"
                    sm90._CFG_ENV = c
                    try:
                        return tilefold.attention(q, k, v, causal=causal)
                    finally:
                        sm90.VARIANT, sm90.PINGPONG, sm90._CFG_ENV = saved
                provs[f"tilefold-gluon-{spec}"] = run_v

            def tr_run():
                old = cfg.FWD_SM90
                cfg.FWD_SM90 = "0"
                try:
                    return tilefold.attention(q, k, v, causal=causal)
                finally:
                    cfg.FWD_SM90 = old
            provs["tilefold-triton"] = tr_run
            for name, be in (("sdpa-cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa-flash", SDPBackend.FLASH_ATTENTION)):
                def sd(be=be):
                    with sdpa_kernel(be):
                        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
                provs[name] = sd
            for name, fn in provs.items():
                try:
                    o = fn()
                    if o.dim() == 4 and o.shape[1] == H and name.startswith("sdpa"):
                        o = o.transpose(1, 2)
                    err = (o.float() - ref.float()).abs().max().item()
                    with torch.no_grad():
                        ms = triton.testing.do_bench(fn, warmup=50, rep=300)
                    rec = dict(provider=name, hd=D, seqlen=S, causal=causal, ms=ms, tflops=flops / ms / 1e9, max_err=err)
                except Exception as ex:  # noqa: BLE001
                    rec = dict(provider=name, hd=D, seqlen=S, causal=causal, error=str(ex)[:300])
                print(json.dumps(rec), flush=True)
                f.write(json.dumps(rec) + "\n")
