"""Paged prefill against contiguous: tilefold.varlen_attention with a block table (the
shipped policy: descriptors over the pool where pages hold whole key tiles, else the pages gathered first up to
kvcache.PAGED_GATHER_MAX_BYTES), the same call forced in place (pointer loads where no descriptors), the pointer
loads in place and the gather-first path with the descriptors turned off, vs the same sequences packed contiguously,
and vs gathering the pages first then the contiguous call.
bf16, 32 / 8 heads hd128, causal; one process, TFLOP/s by triton's do_bench (L2 flushed), ROUNDS rounds with the
providers interleaved (call 94 saw one provider's figure move 20% between two identical calls measured back to back);
each record carries every round's time and the median.

  python scripts/paged_prefill_bench.py --out DIR
"""
import argparse
import json
import os

import torch
import triton

import tilefold
from tilefold.ops.attention import forward
from tilefold.ops.decode import kvcache
from tilefold.ops.decode.kvcache import _gather_pages


def case(B, Mq, Nk, page, H=32, HK=8, D=128, dtype=torch.bfloat16):
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(0)
    nb = -(-Nk // page)
    n_pages = B * nb + 7
    table = torch.randperm(n_pages, device=dev, generator=g)[:B * nb].reshape(B, nb).to(torch.int32)
    pk = torch.randn(n_pages, page, HK, D, device=dev, dtype=dtype, generator=g)
    pv = torch.randn(n_pages, page, HK, D, device=dev, dtype=dtype, generator=g)
    q = torch.randn(B * Mq, H, D, device=dev, dtype=dtype, generator=g)
    cu_q = torch.arange(0, (B + 1) * Mq, Mq, device=dev, dtype=torch.int32)
    cu_k = torch.arange(0, (B + 1) * Nk, Nk, device=dev, dtype=torch.int32)
    kc = _gather_pages(pk, table)[:, :Nk].reshape(B * Nk, HK, D).contiguous()
    vc = _gather_pages(pv, table)[:, :Nk].reshape(B * Nk, HK, D).contiguous()
    paged = lambda: tilefold.varlen_attention(q, pk, pv, cu_q, cu_k, Mq, Nk, causal=True, block_table=table)

    def in_place():  # no gather whatever the pool (kvcache.PAGED_GATHER_MAX_BYTES = 0)
        cap, kvcache.PAGED_GATHER_MAX_BYTES = kvcache.PAGED_GATHER_MAX_BYTES, 0
        try:
            return paged()
        finally:
            kvcache.PAGED_GATHER_MAX_BYTES = cap
    def no_descriptors(cap):  # the paged call as if the pool could not be read through descriptors
        def run():
            ok, saved = forward.paged_tma_ok, kvcache.PAGED_GATHER_MAX_BYTES
            forward.paged_tma_ok, kvcache.PAGED_GATHER_MAX_BYTES = (lambda *a: False), cap
            try:
                return paged()
            finally:
                forward.paged_tma_ok, kvcache.PAGED_GATHER_MAX_BYTES = ok, saved
        return run
    pointer_in_place, gather_first = no_descriptors(0), no_descriptors(1 << 40)
    contig = lambda: tilefold.varlen_attention(q, kc, vc, cu_q, cu_k, Mq, Nk, causal=True)

    def gathered():
        k = _gather_pages(pk, table)[:, :Nk].reshape(B * Nk, HK, D)
        v = _gather_pages(pv, table)[:, :Nk].reshape(B * Nk, HK, D)
        return tilefold.varlen_attention(q, k, v, cu_q, cu_k, Mq, Nk, causal=True)

    ref = contig()
    err = max((f() - ref).abs().max().item() for f in (paged, in_place, pointer_in_place, gather_first))
    # causal bottom-right: query i of Mq sees Nk - Mq + i + 1 keys
    flops = 4 * B * H * D * (Mq * (Nk - Mq) + Mq * (Mq + 1) / 2)
    provs = (("contiguous", contig), ("paged", paged), ("paged-in-place", in_place),
             ("pointer-in-place", pointer_in_place), ("gather-first-shipped", gather_first),
             ("gather+contiguous", gathered))
    times = {name: [] for name, _ in provs}
    with torch.no_grad():
        for name, fn in provs:
            fn()
        for _ in range(ROUNDS):
            for name, fn in provs:
                times[name].append(triton.testing.do_bench(fn, warmup=10, rep=60))
    rows = []
    for name, _ in provs:
        ms = sorted(times[name])[len(times[name]) // 2]
        rows.append(dict(provider=name, batch=B, seqlen_q=Mq, seqlen_k=Nk, page=page, ms=ms, ms_rounds=times[name],
                         tflops=flops / ms / 1e9, max_abs_diff_vs_contiguous=err))
    return rows


ROUNDS = 3


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    a = ap.parse_args()
    res = []
    for B, Mq, Nk, page in ((4, 2048, 8192, 256), (4, 2048, 8192, 128), (4, 2048, 8192, 16), (8, 512, 16384, 256),
                             (1, 8192, 8192, 256)):
        for r in case(B, Mq, Nk, page):
            print(json.dumps(r), flush=True)
            res.append(r)
    with open(os.path.join(a.out, "paged-prefill.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), results=res), f, indent=1)
