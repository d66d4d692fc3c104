"""Device calls 84-85 (2026-12-04, ninth session): KPAR tiles by pipeline depth (call 84), then (``il``, call 85)
with each warp folding every W-th tile instead of its own chunk (KPAR_INTERLEAVE, which exists at commit 21d8892
only), three rounds. Call 57 swept two KPAR tiles (16-key x 4 stages, the shipped KPAR_CONFIG, and 32-key x 3);
cuDNN's decode kernel at B=16 has the same layout (4 warps along the keys, one program per (batch, key head)) and
streams ~2% faster. Hypothesis: with one program per SM, the bytes in flight per SM (stages - 1 buffers of 4 warps x
BLOCK_N keys of K and V) limit the per-SM rate; deeper pipelines may close it. Cases where ~128 KPAR programs fill
one wave (split counts giving 128 programs), configs alternating; GPU µs by CUDA graph replay, GB/s by do_bench,
max |out - cuDNN|. bf16, 32 / 8 heads, hd128, seqlen_q 1. JSON lines."""
import json
import sys

from tilefold.ops.decode import kernel as K

sys.path.insert(0, "scripts")
from decode_tune import cudnn, data, gb, graph_us, measure_split, tf, use_config  # noqa: E402

C = K.DecodeConfig
CFGS = {f"kpar{bn}x{st}": C(16, bn, 4, st, 1, kpar=4)
        for bn, st in [(16, 3), (16, 4), (16, 5), (16, 6), (16, 7), (32, 2), (32, 3), (32, 4)]}
CASES = [(16, 8192, 1), (16, 32768, 1), (8, 8192, 2), (4, 32768, 4), (1, 32768, 16), (1, 131072, 16)]
IL = sys.argv[1:] == ["il"]
if IL:  # (config name, interleave)
    VARIANTS = [("kpar16x4", False), ("kpar16x4", True), ("kpar16x3", True), ("kpar32x3", True)]
    CASES = CASES + [(16, 131072, 1)]
else:
    VARIANTS = [(name, False) for name in CFGS]


def emit(**r):
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    for B, N, S in CASES:
        q, k, v, nbytes = data(B, N)
        ref = cudnn(q, k, v).float()
        for rnd in range(3 if IL else 2):
            emit(B=B, N=N, round=rnd, cfg="cudnn", graph_us=graph_us(lambda: cudnn(q, k, v)),
                 gbps=gb(nbytes, lambda: cudnn(q, k, v)))
            use_config(None)
            emit(B=B, N=N, round=rnd, cfg="shipped", graph_us=graph_us(lambda: tf(q, k, v)),
                 gbps=gb(nbytes, lambda: tf(q, k, v)), maxdiff=float((tf(q, k, v).float() - ref).abs().max()))
            for name, il in VARIANTS:
                use_config(CFGS[name])
                K.KPAR_INTERLEAVE = il
                rec = dict(B=B, N=N, round=rnd, cfg=name + ("-il" if il else ""), S=S)
                if "error" not in measure_split(rec, q, k, v, S, nbytes, ref):
                    rec["kpar"] = sorted({(p.cons.get("KPAR"), p.cons.get("KPAR_IL")) for p in K._PLANS.values()})
                emit(**rec)
            K.KPAR_INTERLEAVE = False
            use_config(None)
        del q, k, v, ref
