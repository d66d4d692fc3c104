"""ALiBi's cost on the decode path: tilefold.attention(num_splits=0) (the decode kernel, contiguous K / V) and
tilefold.attention_with_kvcache over a paged cache (pages of 256 keys, shuffled) with and without alibi_slopes, bf16,
hd128, 32 query heads / 8 key heads, causal, seqlen_q 1 and 16; GB/s = K + V bytes read once over the time (triton's
do_bench), providers interleaved over three rounds (median). One JSON line per record, all in DIR/alibi_decode.json.

  python scripts/alibi_decode_bench.py --out DIR
"""
import argparse
import json
import os

import torch
import triton

import tilefold

CASES = [(1, 32768), (8, 32768), (1, 131072), (16, 8192), (32, 32768)]


def main(out_dir):
    H, HK, D, page = 32, 8, 128, 256
    rows = []
    g = torch.Generator(device="cuda").manual_seed(0)
    slopes = torch.pow(2.0, -8.0 * torch.arange(1, H + 1, device="cuda") / H).float()
    for B, N in CASES:
        k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
        v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
        nb = N // page
        perm = torch.randperm(B * nb, device="cuda", generator=g)
        pool_k = torch.empty(B * nb, page, HK, D, device="cuda", dtype=torch.bfloat16)
        pool_v = torch.empty_like(pool_k)
        pool_k[perm] = k.reshape(B * nb, page, HK, D)
        pool_v[perm] = v.reshape(B * nb, page, HK, D)
        table = perm.reshape(B, nb).to(torch.int32)
        lens = torch.full((B,), N, dtype=torch.int32, device="cuda")
        kv_bytes = 2 * k.numel() * k.element_size()
        for M in (1, 16):
            q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16, generator=g)

            def contig(alibi):
                return lambda: tilefold.attention(q, k, v, causal=True, num_splits=0,
                                                  alibi_slopes=slopes if alibi else None)

            def paged(alibi):
                return lambda: tilefold.attention_with_kvcache(q, pool_k, pool_v, cache_seqlens=lens, block_table=table,
                                                               causal=True, alibi_slopes=slopes if alibi else None)
            provs = {"tilefold": contig(False), "tilefold-alibi": contig(True), "paged": paged(False),
                     "paged-alibi": paged(True)}
            with torch.no_grad():
                ref = provs["tilefold-alibi"]().float()
                err = (provs["paged-alibi"]().float() - ref).abs().max().item()  # same bias both ways
                times = {p: [] for p in provs}
                for f in provs.values():
                    f()
                for _ in range(3):
                    for p, f in provs.items():
                        times[p].append(triton.testing.do_bench(f, warmup=10, rep=60))
            for p in provs:
                ms = sorted(times[p])[1]
                r = dict(provider=p, batch=B, seqlen_q=M, seqlen_k=N, heads=H, heads_k=HK, headdim=D, ms=ms,
                         ms_rounds=times[p], gbps=kv_bytes / ms / 1e6, paged_vs_contig_max_err=err)
                print(json.dumps(r), flush=True)
                rows.append(r)
        del k, v, pool_k, pool_v
    with open(os.path.join(out_dir, "alibi_decode.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), results=rows), f, indent=1)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    main(ap.parse_args().out)
