"""Device calls 82-83 (2026-12-04, ninth session; runs at commit b0a4530, where the kernel exists): the balanced
split-KV kernel (``decode_balanced_kernel``: the key tiles of all (batch, key head) pairs cut into P equal ranges,
P = programs per SM x SMs) against the shipped plan and cuDNN, over the seqlen_q 1 bench cases where the shipped grid
runs 128 or 256 programs on 132 SMs. Two rounds, variants alternating; GPU µs by CUDA graph replay, GB/s by do_bench
(L2 flushed), max |out - cuDNN|. bf16, 32 / 8 heads, hd128. JSON lines."""
import json
import sys

from tilefold.ops.decode import choose_num_splits
from tilefold.ops.decode import kernel as K

sys.path.insert(0, "scripts")
from decode_tune import D, H, HK, cudnn, data, gb, graph_us, tf  # noqa: E402

C = K.DecodeConfig
CFGS = {"ptr64x3": C(16, 64, 4, 3, 2), "tma128x2": C(16, 128, 4, 2, 3, use_tma=True),
        "tma32x4": C(16, 32, 4, 4, 4, use_tma=True)}
CASES = [(16, 8192), (4, 32768), (8, 8192), (8, 32768), (16, 32768), (32, 8192), (1, 131072), (1, 262144),
         (1, 32768), (4, 131072), (16, 131072), (32, 32768)]
# (config, programs per SM, ALIGN_HEADS); call 82 ran every config at (1, False) and (2, False); call 83 the list below
VARIANTS = [("ptr64x3", 2, True), ("tma128x2", 2, True), ("tma32x4", 2, True), ("tma128x2", 2, False)]


def emit(**r):
    print(json.dumps(r), flush=True)


def run(rec, q, k, v, nbytes, ref):
    try:
        rec["graph_us"] = graph_us(lambda: tf(q, k, v))
        rec["gbps"] = gb(nbytes, lambda: tf(q, k, v))
        rec["maxdiff"] = float((tf(q, k, v).float() - ref).abs().max())
        rec["balanced"] = sorted({p.balanced for p in K._PLANS.values()})
    except Exception as e:  # noqa: BLE001
        rec["error"] = repr(e)[:300]
    emit(**rec)


if __name__ == "__main__":
    cases = CASES if len(sys.argv) < 2 else CASES[:int(sys.argv[1])]
    for B, N in cases:
        q, k, v, nbytes = data(B, N)
        ref = cudnn(q, k, v).float()
        for rnd in range(2):
            emit(B=B, N=N, round=rnd, cfg="cudnn", graph_us=graph_us(lambda: cudnn(q, k, v)),
                 gbps=gb(nbytes, lambda: cudnn(q, k, v)))
            K.BALANCED_FORCE = None
            K.clear_plans()
            run(dict(B=B, N=N, round=rnd, cfg="shipped", S=choose_num_splits(B, H, 1, N, D, q.dtype, q.device,
                                                                              heads_k=HK)), q, k, v, nbytes, ref)
            for name, per_sm, align in VARIANTS:
                K.BALANCED_FORCE = (CFGS[name], per_sm, align)
                K.clear_plans()
                run(dict(B=B, N=N, round=rnd, cfg=name, per_sm=per_sm, align=align), q, k, v, nbytes, ref)
            K.BALANCED_FORCE = None
            K.clear_plans()
        del q, k, v, ref
