"""Device call (2026-12-03, third session): decode tuning in one process, JSON lines on stdout.

  kind=combine  per case: GB/s (K+V bytes / do_bench median, L2 flushed) and host-loop µs per call for the
                two-launch combine ("kernel"), the one-launch fold with 1 state per round trip ("fused-u1")
                and with combine_unroll's default ("fused-u"), cuDNN beside; two alternating rounds.
  kind=cfg      per case x decode config (tile, warps, stages, descriptors) at the split count the model
                picks for that config: GB/s for kernel / fused, max |out - cuDNN|.
  kind=splits   per case x split count, baseline config and descriptor config.
  kind=sweep2   (call 21) the better descriptor configs of call 20 x split counts that fill the SMs evenly.
  kind=small    (call 23) small K/V: B=1 8k..64k, B=8 / 16 at 8k, split counts x pointer / descriptor tiles, GB/s
                by do_bench and GPU µs per call replayed from a CUDA graph (no host time), cuDNN beside.
  kind=b16      (call 55) the cases call 47 left below cuDNN (B=16 8k / 32k / 128k, B=4 32k, B=1 256k): split counts
                x five tiles, GB/s by do_bench and GPU µs by graph replay, cuDNN before and after.
  kind=kpar     (call 57) keys in parallel (one key chunk per warp) vs the shipped tiles over the bench grid.
  kind=host     B=1 N=32k: host µs per call of the public call and of its parts (allocation, counters,
                the bare Triton launch with fixed arguments, the launch through CompiledKernel), plus a
                cProfile of the call (stderr).
bf16, 32 query / 8 key heads, hd128, seqlen_q 1, no mask."""
import cProfile
import json
import os
import pstats
import sys
import time

import torch
import torch.nn.functional as F
import triton.testing
from torch.nn.attention import SDPBackend, sdpa_kernel

from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import splitkv as SK
from tilefold.ops.decode import choose_num_splits, split_kv_attention

H, HK, D = 32, 8, 128
# also: b16, kpar; nothing runs when imported for its helpers (scripts/decode_q16_sweep.py)
PART = (sys.argv[1:] or ["host", "combine", "cfg", "splits", "sweep2", "small"]) if __name__ == "__main__" else []


def tf(q, k, v, S=0):
    return split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0)[0]


def cudnn(q, k, v):
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        return F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                              enable_gqa=True).transpose(1, 2)


def loop_us(fn, n=200):
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    torch.cuda.synchronize()
    return round((time.perf_counter() - t0) / n * 1e6, 1)


def gb(nbytes, fn):
    return round(nbytes / triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median") / 1e6, 1)


def data(B, N, M=1):
    g = torch.Generator(device="cuda").manual_seed(N + B)
    q = torch.randn(B, M, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
    return q, k, v, 2 * B * N * HK * D * 2


def emit(**r):
    print(json.dumps(r), flush=True)


_unroll = K.combine_unroll
_config = K.decode_config


def mode(name):
    """Set the combine mode: kernel, fused-u1 (one state per round trip), fused-u (the default unroll)."""
    os.environ["TILEFOLD_DECODE_COMBINE"] = "kernel" if name == "kernel" else "fused"
    K.combine_unroll = (lambda bm, bd: 1) if name == "fused-u1" else _unroll
    K.clear_plans()


def use_config(cfg):
    """Run every decode call with ``cfg`` (None: the shipped one); the split model sees it too."""
    K.decode_config = _config if cfg is None else (lambda *a: cfg)
    SK.decode_config = K.decode_config
    SK._choose_cached.cache_clear()
    K.clear_plans()


CASES = [(1, 8192), (1, 32768), (1, 131072), (1, 1 << 20), (8, 32768), (8, 131072), (32, 8192), (32, 32768)]

if "host" in PART:
    for B, N in [(1, 32768), (1, 8192)]:
        q, k, v, nbytes = data(B, N)
        mode("fused-u")
        rec = dict(kind="host", B=B, N=N)
        rec["call"] = loop_us(lambda: tf(q, k, v))
        rec["gbps"] = gb(nbytes, lambda: tf(q, k, v))
        rec["cudnn"] = loop_us(lambda: cudnn(q, k, v))
        rec["gbps_cudnn"] = gb(nbytes, lambda: cudnn(q, k, v))
        rec["empty2"] = loop_us(lambda: (torch.empty_like(q), torch.empty(1, 32, 1, device="cuda")))
        S = choose_num_splits(B, H, 1, N, D, q.dtype, q.device, heads_k=HK)
        rec["decode_fwd"] = loop_us(lambda: K.decode_fwd(q, k, v, S, D ** -0.5, (-1, -1), 0.0))
        rec["fast_launches"] = K._DECODE.fast_launches
        # GPU time alone: the call replayed from a CUDA graph (no host work per call)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            tf(q, k, v)
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            tf(q, k, v)
        rec["graph_us"] = loop_us(graph.replay)
        rec["gbps_graph_flushed"] = gb(nbytes, graph.replay)
        emit(**rec)
        del graph
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(300):
        tf(q, k, v)
    torch.cuda.synchronize()
    pr.disable()
    pstats.Stats(pr, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    del q, k, v

if "combine" in PART:
    use_config(None)
    for B, N in CASES:
        q, k, v, nbytes = data(B, N)
        rec = dict(kind="combine", B=B, N=N, splits=choose_num_splits(B, H, 1, N, D, q.dtype, q.device, heads_k=HK))
        for rnd in range(2):
            for name in ("kernel", "fused-u1", "fused-u", "cudnn"):
                if name == "cudnn":
                    fn = lambda: cudnn(q, k, v)
                else:
                    mode(name)
                    fn = lambda: tf(q, k, v)
                rec.setdefault(f"gbps_{name}", []).append(gb(nbytes, fn))
                rec.setdefault(f"loop_us_{name}", []).append(loop_us(fn))
        ref = cudnn(q, k, v).float()
        for name in ("kernel", "fused-u1", "fused-u"):
            mode(name)
            rec[f"maxdiff_{name}"] = float((tf(q, k, v).float() - ref).abs().max())
        emit(**rec)
        del q, k, v

C = K.DecodeConfig
# (BLOCK_M, BLOCK_N, warps, stages, programs per SM for the split model, descriptors). Offline sm_90 (bf16
# hd128, fused combine with 1 state per round trip): pointer 16x64x3 71.7 KB 204 regs (2 per SM by registers);
# descriptors 16x64x3 71.7 KB 106 regs (3 per SM), 16x64x4 104.5 KB, 16x128x3 139 KB 154 regs.
CONFIGS = [C(16, 64, 4, 3, 3), C(16, 64, 4, 3, 3, True), C(16, 64, 4, 4, 2, True), C(16, 128, 4, 2, 3, True),
           C(16, 128, 4, 3, 1, True), C(16, 64, 4, 2, 4, True), C(16, 32, 4, 4, 4, True), C(16, 128, 8, 3, 1, True)]
if "cfg" in PART:
    for B, N in [(1, 32768), (1, 131072), (1, 1 << 20), (8, 131072), (32, 32768)]:
        q, k, v, nbytes = data(B, N)
        ref = cudnn(q, k, v).float()
        emit(kind="cfg", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)))
        for cfg in CONFIGS:
            use_config(cfg)
            rec = dict(kind="cfg", B=B, N=N, cfg=str(cfg),
                       splits=choose_num_splits(B, H, 1, N, D, q.dtype, q.device, heads_k=HK))
            for name in ("kernel", "fused-u"):
                mode(name)
                try:
                    rec[f"gbps_{name}"] = gb(nbytes, lambda: tf(q, k, v))
                    rec[f"maxdiff_{name}"] = float((tf(q, k, v).float() - ref).abs().max())
                except Exception as e:  # noqa: BLE001
                    rec[f"error_{name}"] = repr(e)[:300]
            emit(**rec)
        emit(kind="cfg", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)))
        del q, k, v
    use_config(None)

if "splits" in PART:
    sweep = {1: [16, 22, 27, 33, 44, 66], 8: [2, 3, 4, 5, 8], 32: [1, 2]}
    for B, N in [(1, 32768), (1, 131072), (1, 1 << 20), (8, 131072), (32, 32768)]:
        q, k, v, nbytes = data(B, N)
        for cfg in CONFIGS[:2]:
            use_config(cfg)
            for S in sweep[B]:
                rec = dict(kind="splits", B=B, N=N, cfg=str(cfg), S=S)
                for name in ("kernel", "fused-u"):
                    mode(name)
                    rec[f"gbps_{name}"] = gb(nbytes, lambda: tf(q, k, v, S))
                emit(**rec)
        del q, k, v
    use_config(None)

C2 = [C(16, 128, 4, 3, 1, True), C(16, 128, 4, 2, 3, True), C(16, 32, 4, 4, 4, True), C(16, 128, 8, 3, 1, True),
      C(16, 64, 4, 3, 3)]
if "sweep2" in PART:
    sweep = {1: [16, 27, 33, 49, 66, 99], 8: [2, 4, 6, 8], 32: [1, 2]}
    for B, N in [(1, 1 << 20), (1, 131072), (8, 131072), (32, 32768), (32, 8192), (8, 32768), (1, 32768)]:
        q, k, v, nbytes = data(B, N)
        ref = cudnn(q, k, v).float()
        emit(kind="sweep2", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)))
        name = "fused-u" if 2 * nbytes <= (256 << 20) * 2 and B * N <= 32768 else "kernel"
        mode(name)
        for cfg in C2:
            use_config(cfg)
            for S in sweep[B]:
                rec = dict(kind="sweep2", B=B, N=N, cfg=str(cfg), S=S, mode=name)
                try:
                    rec["gbps"] = gb(nbytes, lambda: tf(q, k, v, S))
                    rec["maxdiff"] = float((tf(q, k, v, S).float() - ref).abs().max())
                except Exception as e:  # noqa: BLE001
                    rec["error"] = repr(e)[:300]
                emit(**rec)
        emit(kind="sweep2", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)))
        del q, k, v
    use_config(None)


def graph_us(fn, n=200):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    us = loop_us(g.replay, n)
    del g
    return us


def measure_split(rec, q, k, v, S, nbytes, ref):
    """Fill ``rec`` with the call at S splits: GB/s by do_bench, GPU µs by graph replay, max |out - ref|; or the error."""
    try:
        rec["gbps"] = gb(nbytes, lambda: tf(q, k, v, S))
        rec["graph_us"] = graph_us(lambda: tf(q, k, v, S))
        rec["maxdiff"] = float((tf(q, k, v, S).float() - ref).abs().max())
    except Exception as e:  # noqa: BLE001
        rec["error"] = repr(e)[:300]
    return rec


if "small" in PART:
    C3 = [C(16, 64, 4, 3, 3), C(16, 128, 4, 2, 3, True), C(16, 32, 4, 4, 4, True)]
    plan = [(1, 8192, [2, 4, 8, 16, 32], 2), (1, 16384, [4, 8, 16, 32], 2), (1, 32768, [8, 12, 16, 24, 32], 2),
            (1, 65536, [8, 16, 24, 33], 2), (8, 8192, [1, 2, 4, 8], 3), (16, 8192, [1, 2, 4], 3)]
    for B, N, Ss, ncfg in plan:
        q, k, v, nbytes = data(B, N)
        ref = cudnn(q, k, v).float()
        emit(kind="small", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)),
             graph_us=graph_us(lambda: cudnn(q, k, v)))
        os.environ.pop("TILEFOLD_DECODE_COMBINE", None)
        for cfg in C3[:ncfg]:
            use_config(cfg)
            for S in Ss:
                rec = dict(kind="small", B=B, N=N, cfg=str(cfg), S=S)
                measure_split(rec, q, k, v, S, nbytes, ref)
                emit(**rec)
        emit(kind="small", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)))
        del q, k, v
    use_config(None)

if "b16" in PART:
    # (device call 55, 2026-12-04, sixth session) the cases call 47 left below cuDNN: B=16 8k / 32k / 128k, B=4 32k,
    # B=1 256k; split counts around the shipped one (incl. ~3 programs per SM) x five tiles, GB/s by do_bench and
    # GPU µs from a CUDA graph replay, cuDNN before and after in the same process
    C4 = [C(16, 128, 4, 2, 3, True), C(16, 32, 4, 4, 4, True), C(16, 64, 4, 3, 3), C(16, 64, 4, 4, 3, True),
          C(16, 128, 4, 3, 1, True)]
    plan = [(16, 8192, [1, 2, 3, 4]), (16, 32768, [1, 2, 3, 4, 6]), (4, 32768, [4, 6, 8, 12, 16]),
            (16, 131072, [1, 2, 3, 4]), (1, 262144, [16, 33, 49, 66])]
    os.environ.pop("TILEFOLD_DECODE_COMBINE", None)
    for B, N, Ss in plan:
        q, k, v, nbytes = data(B, N)
        ref = cudnn(q, k, v).float()
        use_config(None)
        emit(kind="b16", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)),
             graph_us=graph_us(lambda: cudnn(q, k, v)))
        emit(kind="b16", B=B, N=N, provider="shipped", S=choose_num_splits(B, H, 1, N, D, q.dtype, q.device, heads_k=HK),
             gbps=gb(nbytes, lambda: tf(q, k, v)), graph_us=graph_us(lambda: tf(q, k, v)))
        for cfg in C4:
            use_config(cfg)
            for S in Ss:
                rec = dict(kind="b16", B=B, N=N, cfg=str(cfg)[13:].replace("num_", ""), S=S)
                measure_split(rec, q, k, v, S, nbytes, ref)
                emit(**rec)
        use_config(None)
        emit(kind="b16", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)),
             graph_us=graph_us(lambda: cudnn(q, k, v)))
        del q, k, v
    use_config(None)

if "kpar" in PART:
    # (device call 57, 2026-12-04, sixth session) keys in parallel (KPAR: one key chunk per warp) against the shipped
    # tiles over the bench grid: shipped (TILEFOLD_DECODE_KPAR=0, its own split), KPAR at ~1 and ~2 programs per SM
    # with the 147 KB (1 per SM) and 115 KB (2 per SM) tiles; GB/s by do_bench, GPU µs by graph replay, cuDNN beside
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    K1, K2 = C(16, 32, 4, 3, 1, kpar=4), C(16, 16, 4, 4, 2, kpar=4)
    grid = [(1, 8192), (1, 32768), (1, 131072), (1, 262144), (1, 1 << 20), (4, 8192), (4, 32768), (4, 131072),
            (8, 8192), (8, 32768), (8, 131072), (16, 8192), (16, 32768), (16, 131072), (32, 8192), (32, 32768)]
    os.environ.pop("TILEFOLD_DECODE_COMBINE", None)
    for B, N in grid:
        q, k, v, nbytes = data(B, N)
        ref = cudnn(q, k, v).float()
        emit(kind="kpar", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)),
             graph_us=graph_us(lambda: cudnn(q, k, v)))
        use_config(None)
        os.environ["TILEFOLD_DECODE_KPAR"] = "0"
        S0 = choose_num_splits(B, H, 1, N, D, q.dtype, q.device, heads_k=HK)
        emit(kind="kpar", B=B, N=N, provider="shipped", S=S0, gbps=gb(nbytes, lambda: tf(q, k, v)),
             graph_us=graph_us(lambda: tf(q, k, v)), maxdiff=float((tf(q, k, v).float() - ref).abs().max()))
        os.environ["TILEFOLD_DECODE_KPAR"] = "auto"
        s1 = max(1, round(sms / (B * HK)))
        s2 = max(1, round(2 * sms / (B * HK)))
        for cfg, Ss in ((K1, sorted({s1, max(1, s1 // 2)})), (K2, sorted({s1, s2}))):
            use_config(cfg)
            for S in Ss:
                rec = dict(kind="kpar", B=B, N=N, cfg=f"kpar{cfg.BLOCK_N}x{cfg.num_stages}", S=S)
                if "error" not in measure_split(rec, q, k, v, S, nbytes, ref):
                    rec["took_kpar"] = all(p.cons.get("KPAR", 1) == 4 for p in K._PLANS.values())
                emit(**rec)
        use_config(None)
        emit(kind="kpar", B=B, N=N, provider="cudnn", gbps=gb(nbytes, lambda: cudnn(q, k, v)),
             graph_us=graph_us(lambda: cudnn(q, k, v)))
        del q, k, v, ref
    os.environ.pop("TILEFOLD_DECODE_KPAR", None)
    use_config(None)
