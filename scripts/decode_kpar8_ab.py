"""Device call 73 (2026-12-04, eighth session): keys in parallel with 8 warps (KPAR = 8: eight key chunks per program,
196 KB of shared memory at 4 stages, one program per SM) against the shipped tiles and KPAR with 4 warps, where the
shipped plan splits a few (batch, key head) programs (B=4 / 8) or where B=16 runs one 4-warp KPAR program per SM.
Two rounds, configs alternating; GPU µs by CUDA graph replay, GB/s by do_bench, max |out - cuDNN|. bf16, 32 / 8 heads,
hd128, seqlen_q 1. JSON lines on stdout."""
import json
import sys

from tilefold.ops.decode import choose_num_splits
from tilefold.ops.decode import kernel as K

sys.path.insert(0, "scripts")
from decode_tune import D, H, HK, cudnn, data, gb, graph_us, measure_split, tf, use_config  # noqa: E402

C = K.DecodeConfig
CFGS = {"kpar4": C(16, 16, 4, 4, 2, kpar=4), "kpar8x4": C(16, 16, 8, 4, 1, kpar=8), "kpar8x3": C(16, 16, 8, 3, 1, kpar=8)}
PLAN = [(8, 8192, {"kpar4": [2], "kpar8x4": [1, 2], "kpar8x3": [1]}),
        (8, 32768, {"kpar4": [4], "kpar8x4": [1, 2], "kpar8x3": [2]}),
        (16, 8192, {"kpar8x4": [1], "kpar8x3": [1]}),
        (16, 32768, {"kpar8x4": [1]}),
        (4, 8192, {"kpar4": [4], "kpar8x4": [2, 4]}),
        (4, 32768, {"kpar4": [4], "kpar8x4": [2, 4]}),
        (1, 32768, {"kpar4": [16], "kpar8x4": [8, 16]})]


def emit(**r):
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    for B, N, variants in PLAN:
        q, k, v, nbytes = data(B, N)
        ref = cudnn(q, k, v).float()
        for rnd in range(2):
            emit(B=B, N=N, round=rnd, cfg="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)),
                 graph_us=graph_us(lambda: cudnn(q, k, v)))
            use_config(None)
            S0 = choose_num_splits(B, H, 1, N, D, q.dtype, q.device, heads_k=HK)
            emit(B=B, N=N, round=rnd, cfg="shipped", S=S0, gbps=gb(nbytes, lambda: tf(q, k, v)),
                 graph_us=graph_us(lambda: tf(q, k, v)), maxdiff=float((tf(q, k, v).float() - ref).abs().max()))
            for name, Ss in variants.items():
                use_config(CFGS[name])
                for S in Ss:
                    rec = dict(B=B, N=N, round=rnd, cfg=name, S=S)
                    if "error" not in measure_split(rec, q, k, v, S, nbytes, ref):
                        rec["kpar"] = sorted({p.cons.get("KPAR") for p in K._PLANS.values()})
                    emit(**rec)
            use_config(None)
        del q, k, v, ref
