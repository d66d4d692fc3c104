"""Same-process A/B of the dropout key's kernel modes (2026-12-05): integer arguments (seed, offset; the public
path until cbf365f) vs three int32 words loaded from a device tensor once at the kernel's start (RNG_PTR, the public
path since) vs the words' pointer passed as the seed and loaded inside each dropout_keep (KEY_AT_USE), on the dropout
bench's shape (bf16, B 2, H 16, hd 128, 8k), forward and backward, causal and not; alternating order, 3 rounds,
TFLOP/s of the median. Also checks the two give bitwise equal out / lse / dq / dk / dv for the same key.
Usage: python scripts/dropout_rng_ab.py [--out DIR]"""
import argparse
import json
import os

import torch
import triton

from tilefold.ops.attention.function import _bwd_impl, _fwd_impl
from tilefold.ops.common import philox_torch
from tilefold.ops.common.philox_torch import as_int32

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=".")
a = ap.parse_args()
B, H, N, D, p = 2, 16, 8192, 128, 0.1
seed, offset = (0x1234_5678 << 32) | 0x9ABC_DEF0, 77
words = torch.tensor([as_int32(seed), as_int32(seed >> 32), offset], dtype=torch.int32, device="cuda")
torch.manual_seed(0)
q, k, v, do = (torch.randn(B, N, H, D, device="cuda", dtype=torch.bfloat16) for _ in range(4))
recs = []
for causal in (False, True):
    right = 0 if causal else -1
    fl = 4 * B * H * N * N * D * (0.5 if causal else 1.0)
    keys = {"int": (seed, offset, None), "words": (0, 0, words), "words_at_use": (0, 0, words)}
    res = {}
    for name, key in keys.items():
        philox_torch.KEY_AT_USE = None if name == "int" else name == "words_at_use"
        o, lse = _fwd_impl(q, k, v, None, None, N, N, D ** -0.5, -1, right, 0.0, 0, p, *key)
        g = _bwd_impl(do, q, k, v, o, lse, None, None, None, N, N, D ** -0.5, -1, right, 0.0, 0, p, *key)
        res[name] = (o, lse) + tuple(g)
    same = all(torch.equal(x, y) for n in ("words", "words_at_use") for x, y in zip(res["int"], res[n]))
    o, lse = res["int"][:2]
    times = {(m, n): [] for m in ("fwd", "bwd") for n in keys}
    for r in range(3):
        for name in (keys if r % 2 == 0 else reversed(list(keys))):
            key = keys[name]
            philox_torch.KEY_AT_USE = None if name == "int" else name == "words_at_use"
            times[("fwd", name)].append(triton.testing.do_bench(
                lambda: _fwd_impl(q, k, v, None, None, N, N, D ** -0.5, -1, right, 0.0, 0, p, *key), rep=200))
            times[("bwd", name)].append(triton.testing.do_bench(
                lambda: _bwd_impl(do, q, k, v, o, lse, None, None, None, N, N, D ** -0.5, -1, right, 0.0, 0, p, *key),
                rep=200))
    for (m, name), ms in times.items():
        ms = sorted(ms)[1]
        tf = (fl if m == "fwd" else 2.5 * fl) / ms / 1e9
        recs.append(dict(mode=m, causal=causal, key=name, ms=ms, tflops=round(tf, 1), rounds=times[(m, name)],
                         bitwise_equal=same))
        print(f"{m} causal={causal} {name:5s} {ms:.3f} ms {tf:.1f} TFLOP/s  bitwise_equal={same}", flush=True)
philox_torch.KEY_AT_USE = None
with open(os.path.join(a.out, "dropout-rng-ab.json"), "w") as f:
    json.dump(recs, f, indent=1)
