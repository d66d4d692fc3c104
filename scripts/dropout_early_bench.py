"""(Experiment of call 49, 2026-12-04 fifth session; the EARLY_RNG switch it sets was removed afterwards, see
benchmarks/NOTES.md "Where the Philox rounds run": no variant gained.) Forward with dropout on the Gluon kernel: where the Philox rounds run (forward_sm90.EARLY_RNG: 0 after the
softmax, 1 / 2 issued with the tile's products, 3 behind a no-op barrier wait) x consumer registers, against p = 0
and SDPA-flash in the same process; bf16 B2 H16 hd128, causal and not. Each variant's output is compared bitwise
with EARLY_RNG = 0's (same seed), so a variant that changes the mask shows up as a mismatch.
  python scripts/dropout_early_bench.py --warm   # compile every variant (parallel processes)
  python scripts/dropout_early_bench.py --out F  # time them (do_bench median), one JSON line each"""
import argparse
import concurrent.futures as cf
import json
import multiprocessing as mp
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

VARIANTS = [(0, 232), (1, 232), (1, 240), (3, 240), (2, 240)]
if os.environ.get("AB_VARIANTS"):  # e.g. "MASK_WS=0;MASK_WS=1" (call 52): forward_sm90 attributes per variant
    VARIANTS = [tuple(kv.split("=")) for kv in os.environ["AB_VARIANTS"].split(";")]
B, H, D = 2, 16, 128


def run(variant, causal, p, S):
    import tilefold
    from tilefold.ops.attention import forward_sm90 as sm90
    if isinstance(variant[1], str):
        setattr(sm90, variant[0], int(variant[1]))
    else:
        sm90.EARLY_RNG, sm90.CONSUMER_REGS = variant
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))

    def fn():
        torch.manual_seed(1)
        return tilefold.attention(q, k, v, causal=causal, dropout_p=p)
    return fn


def warm(spec):
    variant, causal = spec
    try:
        run(variant, causal, 0.1, 256)()
        torch.cuda.synchronize()
    except Exception as ex:  # noqa: BLE001 - report and go on
        return f"warm {spec}: ERROR {str(ex)[:1500]}"
    return f"warm {spec}"


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--warm", action="store_true")
    ap.add_argument("--out", default="dropout_early.jsonl")
    ap.add_argument("--seq", type=int, default=8192)
    a = ap.parse_args()
    if a.warm:
        specs = [(vr, c) for vr in VARIANTS for c in (False, True)]
        with cf.ProcessPoolExecutor(8, mp_context=mp.get_context("spawn")) as ex:
            for r in ex.map(warm, specs):
                print(r, flush=True)
        sys.exit(0)
    import triton
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel
    f = open(a.out, "a")
    S = a.seq
    for causal in (False, True):
        flops = 4 * B * H * S * S * D / (2 if causal else 1)
        ref = None
        cases = [("tilefold", 0.0, VARIANTS[0])] + [("tilefold", 0.1, vr) for vr in VARIANTS] + \
            [("sdpa-flash", 0.0, None), ("sdpa-flash", 0.1, None)]
        for name, p, vr in cases:
            same = None
            if name == "sdpa-flash":
                torch.manual_seed(0)
                qt, kt, vt = (torch.randn(B, S, H, D, device="cuda", dtype=torch.bfloat16).transpose(1, 2)
                              for _ in range(3))

                def fn():
                    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                        return F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal, dropout_p=p)
            else:
                fn = run(vr, causal, p, S)
                try:
                    o = fn()
                except Exception as ex:  # noqa: BLE001 - report and go on
                    print(json.dumps(dict(variant=vr, causal=causal, p=p, error=str(ex)[:1500])), flush=True)
                    continue
                if p > 0:
                    o = o[0] if isinstance(o, tuple) else o
                    if ref is None:
                        ref = o
                    same = bool(torch.equal(o, ref))
            with torch.no_grad():
                ms = triton.testing.do_bench(fn, warmup=25, rep=200)
            rec = dict(provider=name, dropout_p=p, causal=causal, hd=D, seqlen=S, batch=B, heads=H,
                       variant="=".join(map(str, vr)) if vr else None, ms=ms,
                       tflops=flops / ms / 1e9, bitwise_equal_to_first=same)
            print(json.dumps(rec), flush=True)
            f.write(json.dumps(rec) + "\n")
            f.flush()
