"""ALiBi's cost: tilefold.attention with and without alibi_slopes, as dispatched (on sm_90 the Gluon forward, with
ALiBi since the sixteenth session; the backward with ALiBi on the Triton kernels) and on the Triton kernels alone
(config FWD_SM90 / BWD_SM90 = "0"), bf16,
hd128, 32 heads, seqlen 8k, batch 2, causal and not; forward and forward + backward, TFLOP/s by triton's do_bench,
providers interleaved over --rounds rounds (default 3; median). One JSON line per record.

  python scripts/alibi_bench.py --out DIR
"""
import argparse
import json
import os

import torch
import triton

import tilefold
from tilefold.ops.attention import backward_sm90 as bsm90
from tilefold.ops.attention import config as cfg


def main(out_dir, rounds=3, gluon_bwd=False, modes=(False, True)):
    B, N, H, D = 2, 8192, 32, 128
    g = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
               for _ in range(3))
    do = torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
    slopes = torch.pow(2.0, -8.0 * torch.arange(1, H + 1, device="cuda") / H).float()
    rows = []
    for causal in (False, True):
        flops_f = 4 * B * H * D * N * N / (2 if causal else 1)

        def run(alibi, triton_only, bwd, gluon_bwd_alibi=False):
            def f():
                saved = cfg.FWD_SM90, cfg.BWD_SM90, bsm90.ALIBI
                if triton_only:
                    cfg.FWD_SM90 = cfg.BWD_SM90 = "0"
                bsm90.ALIBI = gluon_bwd_alibi
                try:
                    o = tilefold.attention(q, k, v, causal=causal, alibi_slopes=slopes if alibi else None)
                    if bwd:
                        torch.autograd.grad(o, (q, k, v), do)
                finally:
                    cfg.FWD_SM90, cfg.BWD_SM90, bsm90.ALIBI = saved
            return f
        provs = {"tilefold": (False, False), "tilefold-alibi": (True, False), "tilefold-triton": (False, True),
                 "tilefold-triton-alibi": (True, True)}
        if gluon_bwd:  # the opt-in Gluon backward with ALiBi (TILEFOLD_BWD_SM90_ALIBI=1)
            provs["tilefold-alibi-gluon-bwd"] = (True, False, True)
        for bwd in modes:
            times = {p: [] for p in provs}
            for p, a in provs.items():
                run(a[0], a[1], bwd, *a[2:])()
            for _ in range(rounds):
                for p, a in provs.items():
                    times[p].append(triton.testing.do_bench(run(a[0], a[1], bwd, *a[2:]), warmup=10, rep=80))
            for p in provs:
                ms = sorted(times[p])[len(times[p]) // 2]
                fl = flops_f * (3.5 if bwd else 1.0)  # backward 2.5x the forward's matmul work
                r = dict(provider=p, causal=causal, mode="fwd+bwd" if bwd else "fwd", batch=B, seqlen=N, heads=H,
                         headdim=D, ms=ms, ms_rounds=times[p], tflops=fl / ms / 1e9)
                print(json.dumps(r), flush=True)
                rows.append(r)
    with open(os.path.join(out_dir, "alibi.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), results=rows), f, indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--gluon-bwd", action="store_true", help="also the opt-in Gluon backward with ALiBi")
    ap.add_argument("--bwd-only", action="store_true", help="forward + backward records only")
    a = ap.parse_args()
    main(a.out, a.rounds, a.gluon_bwd, (True,) if a.bwd_only else (False, True))
