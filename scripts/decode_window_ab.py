"""Device call 65 (2026-12-04, seventh session): the decode splits sharing out the visible keys (window first, then
the split, per sequence) against the previous code, which split [0, max_seqlen_k) whatever the window. The previous
package is imported as ``tilefold_old`` from ``ab_old/`` (HEAD~ of the change exported there by gpu_call65.sh; the
decode path imports relatively, so its kernels are separate Triton functions). Per case three rounds with fresh
tensors: GPU µs by graph replay of each version's split_kv_attention(num_splits=0), its plan (S, KPAR, BLOCK_N,
descriptors) and max |new - old|. Unwindowed cases check that the shared-out split (now computed in the kernel)
costs nothing where nothing changes. JSON lines on stdout."""
import json
import sys

import torch
from bench_timing import graph_us

sys.path.insert(0, "ab_old")
from tilefold_old.ops.decode import kernel as K0  # noqa: E402
from tilefold_old.ops.decode import split_kv_attention as old_split  # noqa: E402

from tilefold.ops.decode import kernel as K1  # noqa: E402
from tilefold.ops.decode import split_kv_attention as new_split  # noqa: E402

H, HK, D = 32, 8, 128
CASES = [(16, 8192, (-1, -1)), (8, 8192, (-1, -1)), (1, 32768, (-1, -1)), (4, 32768, (-1, -1)), (32, 8192, (-1, -1)),
         (1, 131072, (-1, -1)),
         (1, 32768, (4096, 0)), (1, 131072, (4096, 0)), (4, 131072, (4096, 0)), (8, 32768, (4096, 0)),
         (1, 131072, (1024, 0)), (16, 32768, (4096, 0))]

for B, N, win in CASES:
    for rnd in range(3):
        q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
        rec = dict(B=B, N=N, window=win, round=rnd)
        outs = {}
        for name, fn, mod in (("old", old_split, K0), ("new", new_split, K1)):
            mod.clear_plans()
            call = (lambda fn=fn: fn(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=win, softcap=0.0)[0])
            outs[name] = call()
            rec[f"plan_{name}"] = [(p.S, p.cons["KPAR"], p.cons["BLOCK_N"], p.use_tma) for p in mod._PLANS.values()]
            rec[f"us_{name}"] = graph_us(call)
        rec["maxdiff"] = float((outs["new"].float() - outs["old"].float()).abs().max())
        print(json.dumps(rec), flush=True)
        del q, k, v, outs
