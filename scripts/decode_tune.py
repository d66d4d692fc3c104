"""Device call (2026-12-03, third session): decode tuning in one process, JSON lines on stdout.

  kind=combine  per case: GB/s (K+V bytes / do_bench median, L2 flushed) and host-loop µs per call for the
                two-launch combine ("kernel"), the one-launch fold with 1 state per round trip ("fused-u1")
                and with combine_unroll's default ("fused-u"), cuDNN beside; two alternating rounds.
  kind=cfg      per case x decode config (tile, warps, stages, descriptors) at the split count the model
                picks for that config: GB/s for kernel / fused, max |out - cuDNN|.
  kind=splits   per case x split count, baseline config and descriptor config.
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
PART = sys.argv[1:] or ["host", "combine", "cfg", "splits"]


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


def use_config(cfg):
    """Run every decode call with ``cfg`` (None: the shipped one); the split model sees it too."""
    K.decode_config = _config if cfg is None else (lambda *a: cfg)
    SK.decode_config = K.decode_config
    SK._choose_cached.cache_clear()


CASES = [(1, 8192), (1, 32768), (1, 131072), (1, 1 << 20), (8, 32768), (8, 131072), (32, 8192), (32, 32768)]

if "host" in PART:
    q, k, v, nbytes = data(1, 32768)
    mode("fused-u")
    rec = dict(kind="host", B=1, N=32768)
    rec["call"] = loop_us(lambda: tf(q, k, v))
    rec["cudnn"] = loop_us(lambda: cudnn(q, k, v))
    rec["empty4"] = loop_us(lambda: (torch.empty_like(q), torch.empty(1, 32, 1, device="cuda"),
                                     torch.empty(27, 1, 1, 32, 128, device="cuda"),
                                     torch.empty(27, 1, 32, 1, device="cuda")))
    rec["zeros"] = loop_us(lambda: torch.zeros(8, device="cuda", dtype=torch.int32))
    rec["environ"] = loop_us(lambda: os.environ.get("TILEFOLD_DECODE_COMBINE", "auto"), n=2000)
    # the bare launch with the arguments of one real call
    cap = {}
    orig = K.decode_fwd_kernel

    class Capture:
        def __getitem__(self, grid):
            def run(*a, **kw):
                cap.update(grid=grid, a=a, kw=kw)
                return orig[grid](*a, **kw)
            return run

    K.decode_fwd_kernel = Capture()
    tf(q, k, v)
    K.decode_fwd_kernel = orig
    g, a, kw = cap["grid"], cap["a"], cap["kw"]
    rec["launch_jit"] = loop_us(lambda: orig[g](*a, **kw))
    try:  # Triton's compiled-kernel launcher, no binding / specialization
        ck = orig[g](*a, **kw)
        consts = {"num_warps", "num_stages"}
        import inspect
        params = list(inspect.signature(orig.fn).parameters)
        full = list(a) + [kw[p] for p in params[len(a):] if p in kw]
        rec["n_args"] = len(full)
        rec["launch_compiled"] = loop_us(lambda: ck[g](*full))
    except Exception as e:  # noqa: BLE001
        rec["launch_compiled_error"] = repr(e)[:300]
    emit(**rec)
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
