"""Fill Triton's disk cache for the benchmark shapes in parallel processes (one compile job each), so the
benchmarks that follow in the same device call find their kernels compiled. Lengths are multiples of 16
like the timed shapes, so the specializations match.
  python scripts/gpu_prewarm.py attn        # bf16, B2 H16, head dims 64/128/256, causal and not, fwd+bwd
  python scripts/gpu_prewarm.py dropout     # hd128, p 0.1, causal and not, fwd+bwd"""
import concurrent.futures as cf
import multiprocessing as mp
import os
import sys
import time


def job(spec):
    import torch
    import tilefold
    D, causal, p = spec
    t0 = time.time()
    try:
        q = torch.randn(2, 256, 16, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn_like(q, requires_grad=True)
        v = torch.randn_like(q, requires_grad=True)
        o = tilefold.attention(q, k, v, causal=causal, dropout_p=p)
        torch.autograd.grad(o, (q, k, v), torch.randn_like(o))
        torch.cuda.synchronize()
        return f"warm D={D} causal={causal} p={p}: {time.time() - t0:.0f}s"
    except Exception as ex:  # the bench reports its own failures; just say so here
        return f"warm D={D} causal={causal} p={p}: ERROR {repr(ex)[:200]}"


if __name__ == "__main__":
    specs = []
    if "attn" in sys.argv:
        specs += [(D, c, 0.0) for D in (64, 128, 256) for c in (False, True)]
    if "dropout" in sys.argv:
        specs += [(128, c, 0.1) for c in (False, True)]
    t0 = time.time()
    with cf.ProcessPoolExecutor(max_workers=min(len(specs), os.cpu_count() or 4),
                                mp_context=mp.get_context("spawn")) as ex:
        for r in ex.map(job, specs):
            print(r, flush=True)
    print(f"prewarm: {len(specs)} jobs in {time.time() - t0:.0f}s", flush=True)
