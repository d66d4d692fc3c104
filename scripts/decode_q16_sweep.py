"""Device calls 70 / 76 (2026-12-04, eighth session): decode tiles for seqlen_q = 16 (G = 4: 64 packed rows per (batch, key
head), one BLOCK_M = 64 wgmma block), never swept before -- decode_config gives them the v2 tile (64x64, 4 warps, 3
stages, pointer loads) and decode_splits' bandwidth model picks S. JSON lines on stdout.

Per case: the shipped call (its S), then each config x split count: GB/s by do_bench (the bench's method, L2 flushed),
GPU µs per call by CUDA graph replay, max |out - shipped out|. A copy figure (the bench's copy provider) first.
bf16, 32 query / 8 key heads, hd128, no mask.
  python scripts/decode_q16_sweep.py [BxN ...]          # call 70: seqlen_q 16, the 64-row tiles
  python scripts/decode_q16_sweep.py --m 8 [BxN ...]    # call 76: seqlen_q 8 (32 packed rows), 32- and 64-row tiles"""
import json
import sys

import torch

from tilefold.bench.core import copy_record
from tilefold.ops.decode import choose_num_splits
from tilefold.ops.decode import kernel as K

sys.path.insert(0, "scripts")
from decode_tune import D, H, HK, data, gb, graph_us, measure_split, tf, use_config  # noqa: E402

C = K.DecodeConfig
CONFIGS = [C(64, 64, 4, 3, 2), C(64, 64, 4, 4, 1), C(64, 32, 4, 4, 2), C(64, 32, 4, 6, 2), C(64, 64, 4, 3, 2, True),
           C(64, 64, 4, 4, 1, True), C(64, 32, 4, 6, 2, True), C(64, 128, 4, 2, 1, True), C(64, 64, 8, 3, 2),
           C(64, 64, 8, 4, 1, True), C(64, 128, 8, 3, 1, True)]
SPLITS = {1: [16, 33], 4: [4, 8], 8: [2, 4], 16: [1, 2]}
CASES = [(1, 32768, [8, 16]), (1, 131072, None), (4, 32768, None), (1, 262144, None), (8, 32768, None),
         (16, 32768, None)]
M = 16


def emit(**r):
    print(json.dumps(r), flush=True)


def name(cfg):
    return f"{cfg.BLOCK_M}x{cfg.BLOCK_N}x{cfg.num_warps}w{cfg.num_stages}s{'T' if cfg.use_tma else 'P'}"


CONFIGS_M8 = [C(32, 64, 4, 3, 2), C(32, 64, 4, 4, 2), C(32, 64, 4, 5, 1), C(32, 64, 4, 4, 2, True), C(64, 64, 4, 4, 1)]
SPLITS_M8 = {1: [16, 27], 4: [4, 7], 8: [2, 4], 16: [1, 2]}
CASES_M8 = [(1, 32768, [16, 27]), (1, 131072, None), (4, 32768, None), (8, 32768, None), (16, 32768, None)]

if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["--m"]:
        M, args = int(args[1]), args[2:]
        CONFIGS, SPLITS, CASES = CONFIGS_M8, SPLITS_M8, CASES_M8
    emit(kind="copy", **{k: v for k, v in copy_record("decode").items() if k in ("gbps", "ms", "bytes")})
    only = args
    for B, N, Ss in CASES:
        if only and f"{B}x{N}" not in only:
            continue
        q, k, v, nbytes = data(B, N, M)
        use_config(None)
        S0 = choose_num_splits(B, H, M, N, D, q.dtype, q.device, heads_k=HK)
        ref = tf(q, k, v).float()
        emit(kind="q16", M=M, B=B, N=N, cfg="shipped", S=S0, gbps=gb(nbytes, lambda: tf(q, k, v)),
             graph_us=graph_us(lambda: tf(q, k, v)))
        for cfg in CONFIGS:
            use_config(cfg)
            for S in Ss or SPLITS[B]:
                rec = dict(kind="q16", M=M, B=B, N=N, cfg=name(cfg), S=S)
                measure_split(rec, q, k, v, S, nbytes, ref)
                emit(**rec)
        use_config(None)
        emit(kind="q16", M=M, B=B, N=N, cfg="shipped-again", S=S0, gbps=gb(nbytes, lambda: tf(q, k, v)),
             graph_us=graph_us(lambda: tf(q, k, v)))
        del q, k, v, ref
