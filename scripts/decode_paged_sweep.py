"""Paged decode tiles (2026-12-05, call 92): call 91's bench put the paged cache at 0.70-0.93x the contiguous
tilefold call (pointer tiles where the contiguous call takes descriptor / KPAR tiles; the table-dependent loads get fewer
pipeline buffers). Sweep of the pointer tile (BLOCK_N, warps, stages) for a paged cache of 256-key pages, shuffled,
bf16 hd128 32 / 8 heads, seqlen_q 1, at the split count num_splits=0 picks; GB/s (K + V bytes / do_bench median)
beside the contiguous call. Usage: python scripts/decode_paged_sweep.py [--out DIR]"""
import argparse
import json
import os

import torch
import triton

import tilefold
from tilefold.ops.decode import kernel

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=".")
a = ap.parse_args()
H, HK, D, PAGE = 32, 8, 128, 256
real_select = kernel.select_config
TILES = [None, (32, 4, 6), (64, 4, 5), (64, 4, 6), (128, 4, 4), (128, 4, 5), (64, 8, 5), (128, 8, 4)]
recs = []
for B, N in [(1, 1 << 20), (8, 131072), (32, 8192), (32, 32768), (16, 8192), (1, 32768)]:
    torch.manual_seed(0)
    q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn_like(k)
    nb = N // PAGE
    perm = torch.randperm(B * nb, device="cuda")
    pk, pv = torch.empty(B * nb, PAGE, HK, D, device="cuda", dtype=k.dtype), torch.empty(B * nb, PAGE, HK, D, device="cuda", dtype=k.dtype)
    pk[perm], pv[perm] = k.reshape(B * nb, PAGE, HK, D), v.reshape(B * nb, PAGE, HK, D)
    table = perm.reshape(B, nb).to(torch.int32)
    lens = torch.full((B,), N, dtype=torch.int32, device="cuda")
    gb = 2 * B * N * HK * D * 2 / 1e9
    ms = triton.testing.do_bench(lambda: tilefold.attention(q, k, v, num_splits=0), rep=200, return_mode="median")
    want = tilefold.attention(q, k, v, num_splits=0)
    recs.append(dict(B=B, N=N, tile="contiguous", gbps=gb / ms * 1e3))
    print(B, N, "contiguous", round(gb / ms * 1e3), flush=True)
    for t in TILES:
        kernel.clear_plans()
        if t is None:
            kernel.select_config = real_select
            kernel.PAGED_EXTRA_STAGES = 2
        else:
            bn, w, st = t
            kernel.PAGED_EXTRA_STAGES = 0
            kernel.select_config = lambda *args, _c=kernel.DecodeConfig(16, bn, w, st, 1): _c
        fn = lambda: tilefold.attention_with_kvcache(q, pk, pv, block_table=table, cache_seqlens=lens)  # noqa: E731
        try:
            err = (fn().float() - want.float()).abs().max().item()
            ms = triton.testing.do_bench(fn, rep=200, return_mode="median")
            r = dict(B=B, N=N, tile=str(t or "shipped"), gbps=gb / ms * 1e3, err=err)
        except Exception as e:  # noqa: BLE001
            r = dict(B=B, N=N, tile=str(t), error=f"{type(e).__name__}: {str(e)[:200]}")
        recs.append(r)
        print(B, N, r.get("tile"), round(r.get("gbps", 0)), r.get("err", r.get("error")), flush=True)
    kernel.select_config = real_select
    kernel.PAGED_EXTRA_STAGES = 2
    kernel.clear_plans()
    del q, k, v, pk, pv
    torch.cuda.empty_cache()
    with open(os.path.join(a.out, "decode-paged-sweep.json"), "w") as f:
        json.dump(recs, f, indent=1)
