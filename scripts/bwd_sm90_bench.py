"""Backward time with the Gluon kernels (TILEFOLD_BWD_SM90 auto: dK/dV and dQ), with the Gluon dK/dV only
("gluon-dkdv": dQ from backward.py), with backward.py's kernels ("0") and SDPA's FlashAttention-2 backward,
same process, alternating rounds. bf16, B2 H16. JSON lines to --out.
Usage: python scripts/bwd_sm90_bench.py [--out F] [--seqs 8192,16384] [--dims 128,64] [--rounds 2]"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from triton.testing import do_bench

import tilefold
from tilefold.ops.attention import backward_sm90 as bw
from tilefold.ops.attention import config as cfg

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="bwd_sm90.jsonl")
ap.add_argument("--seqs", default="8192,16384")
ap.add_argument("--dims", default="128,64")
ap.add_argument("--rounds", type=int, default=2)
a = ap.parse_args()
B, H = 2, 16
real_dq_supported = bw.dq_supported
f = open(a.out, "w")
for D in (int(x) for x in a.dims.split(",")):
    for S in (int(x) for x in a.seqs.split(",")):
        for causal in (False, True):
            torch.manual_seed(0)
            q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
            dout = torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16)
            flops = 2.5 * 4 * B * H * S * S * D * (0.5 if causal else 1.0)
            out = tilefold.attention(q, k, v, causal=causal)
            qt, kt, vt = (t.detach().transpose(1, 2).requires_grad_() for t in (q, k, v))
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                out_f = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
            dout_t = dout.transpose(1, 2)
            res = {}
            for r in range(a.rounds):
                for name in ("gluon", "gluon-dkdv", "triton", "fa2"):
                    if name == "fa2":
                        fn = lambda: torch.autograd.grad(out_f, (qt, kt, vt), dout_t, retain_graph=True)  # noqa: E731
                    else:
                        cfg.BWD_SM90 = "0" if name == "triton" else "auto"
                        bw.dq_supported = real_dq_supported if name == "gluon" else (lambda *a, **kw: False)
                        fn = lambda: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)  # noqa: E731
                    ms = do_bench(fn, warmup=50, rep=300)
                    res.setdefault(name, []).append(ms)
                bw.dq_supported = real_dq_supported
            cfg.BWD_SM90 = "auto"
            rec = dict(D=D, S=S, causal=causal, ms={n: [round(x, 4) for x in v] for n, v in res.items()},
                       tflops={n: round(flops / min(v) / 1e9, 1) for n, v in res.items()})
            rec["gluon_x_fa2"] = round(rec["tflops"]["gluon"] / rec["tflops"]["fa2"], 3)
            print(json.dumps(rec), flush=True)
            f.write(json.dumps(rec) + "\n")
            f.flush()
            del q, k, v, out, out_f, qt, kt, vt
            torch.cuda.empty_cache()
