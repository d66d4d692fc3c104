"""The dK/dV kernel with one query-tile loop (config.DKDV_ONE_LOOP) against three loops, same process,
alternating, bf16 B2 H16, S 8k/16k, causal and not: backward ms (do_bench median) and the dK/dV kernel alone
(torch.profiler). One JSON line per case, each variant a list over the two rounds.
  python scripts/dkdv_one_loop_bench.py            # hd 128/64/256, one vs three loops
  python scripts/dkdv_one_loop_bench.py --even-m   # hd 128/64, crossed with EVEN_M forced off ("rows": the
                                                   # masked tiles' row bounds) or left on ("even")
(results/dkdv-one-loop-h200-2026-12-03.jsonl came from the first form before the two were merged, with
keys bwd_ms_<loop>_<round>; results/dkdv-even-m-h200-2026-12-03.jsonl from the second.)"""
import json
import sys

import torch
import triton.testing
from torch.profiler import ProfilerActivity, profile

import tilefold
from tilefold.ops.attention import backward as B
from tilefold.ops.attention import config as C

REAL = B.attention_bwd_dkdv_kernel


class Force:
    """Stands in for the dK/dV kernel: EVEN_M as the launcher chose it, or forced off."""

    def __init__(self, even):
        self.even = even

    def __getitem__(self, grid):
        def launch(*a, **kw):
            kw["EVEN_M"] = self.even and kw["EVEN_M"]
            return REAL[grid](*a, **kw)
        return launch


def dkdv_ms(o, q, k, v, do):
    with profile(activities=[ProfilerActivity.CUDA]) as p:
        for _ in range(5):
            torch.autograd.grad(o, (q, k, v), do, retain_graph=True)
        torch.cuda.synchronize()
    t = [e.self_device_time_total for e in p.key_averages() if "dkdv" in e.key]
    return round(sum(t) / 5 / 1000, 4)


def main():
    cross = "--even-m" in sys.argv
    evens = (False, True) if cross else (True,)
    for D in ((128, 64) if cross else (128, 64, 256)):
        for S in (8192, 16384):
            for causal in (True, False):
                g = torch.Generator(device="cuda").manual_seed(0)
                q, k, v = (torch.randn(2, S, 16, D, device="cuda", dtype=torch.bfloat16,
                                       generator=g).requires_grad_() for _ in range(3))
                o = tilefold.attention(q, k, v, causal=causal)
                do = torch.randn_like(o)
                rec = dict(D=D, S=S, causal=causal)
                for _ in range(2):
                    for one in (False, True):
                        for even in evens:
                            C.DKDV_ONE_LOOP = one
                            B.attention_bwd_dkdv_kernel = Force(even)
                            ms = triton.testing.do_bench(
                                lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True),
                                warmup=25, rep=100, return_mode="median")
                            tag = ("one" if one else "three") + (("_even" if even else "_rows") if cross else "")
                            rec.setdefault(f"bwd_{tag}", []).append(round(ms, 4))
                            rec.setdefault(f"dkdv_{tag}", []).append(dkdv_ms(o, q, k, v, do))
                print(json.dumps(rec), flush=True)
                del q, k, v, o, do
    B.attention_bwd_dkdv_kernel = REAL


if __name__ == "__main__":
    main()
