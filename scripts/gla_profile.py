"""Per-stage timing of chunk_gla forward and backward on a CUDA machine, per backward variant.

    GLA_PROFILE_VARIANTS=v5,v4,v5b python scripts/gla_profile.py

For each variant (TILEFOLD_GLA_BWD, in the order given; the first call of each also compiles, and its
seconds are reported): do_bench medians of the whole forward and forward+backward at B8 T4096 H16
K=V=128 bf16 (q, k, v, do ~ randn, g = logsigmoid(randn)/16, like ``python -m tilefold bench gla``),
then every kernel's device time per forward+backward from torch.profiler (mean over GLA_PROFILE_ITERS
iterations), then dq, dk, dv, dg at that shape against v4's (max abs and RMS-relative) and, at
B2 T1000 H16 (GLA_PROFILE_REF=0 skips), every gradient against the fp64 recurrence (the accuracy bar:
RMS-relative <= 5e-3 in bf16). Prints tables; writes JSON lines to $OUT/gla_profile.jsonl (one per
measurement, flushed as they come, so a run cut short keeps what it measured).

Env: GLA_PROFILE_VARIANTS (default v5,v5:bs32:w4:fh64/4/2,v5b,v4), GLA_PROFILE_SHAPE (default 8,4096,16,128,128),
GLA_PROFILE_ITERS (default 5), GLA_PROFILE_REF (default 1), GLA_PROFILE_FLA=1 (also time fla's chunk_gla
in this process, if it imports: the same-run anchor; its backward autotunes for minutes). A variant entry is a TILEFOLD_GLA_BWD name
with optional kernel settings: ``v5:bs32:w4:s2`` sets TILEFOLD_GLA_V5_BS=32, _WARPS=4, _STAGES=2 for
that entry only; ``fh64/4/2`` sets fwd_h's (BV, warps, stages) (TILEFOLD_GLA_FWDH), ``dh128/8/3``
bwd_dh's under v5 (TILEFOLD_GLA_DH). The errors "vs v4" need a v4 entry (v4's bwd_dqkv compiles for 30-110 s: keep it last).
"""
from __future__ import annotations

import collections
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tilefold.gla import chunk_gla  # noqa: E402

OUT = os.environ.get("OUT", ".")
JSONL = os.path.join(OUT, "gla_profile.jsonl")
NAMES = ("dq", "dk", "dv", "dg")
# without CUDA (a smoke run of this script: TRITON_INTERPRET=1, tiny shape): fp32 on the CPU
DEV = "cuda" if torch.cuda.is_available() else "cpu"
DT = torch.bfloat16 if DEV == "cuda" else torch.float32


def emit(rec):
    with open(JSONL, "a") as f:
        f.write(json.dumps(rec) + "\n")


def inputs(B, T, H, K, V, seed, dtype=DT):
    gen = torch.Generator(device=DEV).manual_seed(seed)
    r = lambda *s: torch.randn(*s, device=DEV, generator=gen)  # noqa: E731
    q, k, v = r(B, T, H, K).to(dtype), r(B, T, H, K).to(dtype), r(B, T, H, V).to(dtype)
    g = (F.logsigmoid(r(B, T, H, K)) / 16).to(dtype)
    do = r(B, T, H, V).to(dtype)
    return q, k, v, g, do


def grads(q, k, v, g, do):
    xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g)]
    o, _ = chunk_gla(*xs)
    return torch.autograd.grad(o, xs, do)


def rms_rel(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item() if b.norm() > 0 else (a - b).norm().item()


def kernel_times(call, iters):
    """{kernel name: (device ms per call, launches per call)} over `iters` calls of `call`."""
    from torch.profiler import ProfilerActivity, profile

    sync()
    with profile(activities=[ProfilerActivity.CUDA if DEV == "cuda" else ProfilerActivity.CPU]) as prof:
        for _ in range(iters):
            call()
        sync()
    out = collections.OrderedDict()
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", None)
        if t is None:
            t = getattr(e, "cuda_time_total", 0)
        if DEV == "cpu":
            t = e.self_cpu_time_total if e.key.startswith("chunk_gla") or "Backward" in e.key else 0
        if t and e.count:
            out[e.key] = (t / 1e3 / iters, e.count / iters)
    return out


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def bench(fn):
    if DEV == "cuda":
        import triton.testing

        return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


SPEC_KEYS = {"bs": "TILEFOLD_GLA_V5_BS", "w": "TILEFOLD_GLA_V5_WARPS", "s": "TILEFOLD_GLA_V5_STAGES",
             "fh": "TILEFOLD_GLA_FWDH", "dh": "TILEFOLD_GLA_DH"}


def apply_spec(spec):
    """'v5:bs32:w4' -> TILEFOLD_GLA_BWD=v5, TILEFOLD_GLA_V5_BS=32, TILEFOLD_GLA_V5_WARPS=4 (others unset);
    'v5:fh64/4/2' -> TILEFOLD_GLA_FWDH=64/4/2."""
    name, *opts = spec.split(":")
    os.environ["TILEFOLD_GLA_BWD"] = name
    for key in SPEC_KEYS.values():
        os.environ.pop(key, None)
    for o in opts:
        key = next(k for k in sorted(SPEC_KEYS, key=len, reverse=True) if o.startswith(k))
        os.environ[SPEC_KEYS[key]] = o[len(key):]


def main():
    variants = [x.strip() for x in os.environ.get("GLA_PROFILE_VARIANTS", "v5,v5:bs32:w4:fh64/4/2,v5b,v4").split(",") if x.strip()]
    default = "8,4096,16,128,128" if DEV == "cuda" else "1,128,2,64,64"
    B, T, H, K, V = (int(x) for x in os.environ.get("GLA_PROFILE_SHAPE", default).split(","))
    iters = int(os.environ.get("GLA_PROFILE_ITERS", 5))
    do_ref = os.environ.get("GLA_PROFILE_REF", "1") != "0"
    os.makedirs(OUT, exist_ok=True)
    t_start = time.time()
    q, k, v, g, do = inputs(B, T, H, K, V, seed=0)
    shape = dict(B=B, T=T, H=H, K=K, V=V, dtype=str(DT).replace("torch.", ""),
                 gpu=torch.cuda.get_device_name() if DEV == "cuda" else "cpu")
    if os.path.exists(JSONL):
        os.remove(JSONL)
    saved = {}
    small = inputs(*((2, 1000, 16) if DEV == "cuda" else (1, 70, 2)), K, V, seed=1) if do_ref else None
    ref = None
    for var in variants:
        apply_spec(var)
        xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g)]

        def fwd():
            return chunk_gla(*xs)[0]

        def fwdbwd():
            fwd().backward(do)

        t0 = time.time()
        fwdbwd()
        sync()
        compile_s = time.time() - t0
        ms_f = bench(fwd)
        ms_fb = bench(fwdbwd)
        print(f"\n== {var}: fwd {ms_f:.3f} ms   fwd+bwd {ms_fb:.3f} ms   (first call incl. compiles "
              f"{compile_s:.1f} s; elapsed {time.time() - t_start:.0f} s)", flush=True)
        emit(dict(shape, variant=var, what="whole", fwd_ms=ms_f, fwdbwd_ms=ms_fb, first_call_s=compile_s))
        kt = kernel_times(fwdbwd, iters)
        tot = sum(ms for ms, _ in kt.values())
        print(f"   {'kernel':60s} {'ms/iter':>9s} {'calls':>6s}")
        for name, (ms, n) in sorted(kt.items(), key=lambda kv: -kv[1][0]):
            print(f"   {name[:60]:60s} {ms:9.3f} {n:6.1f}")
            emit(dict(shape, variant=var, what="kernel", kernel=name, ms=ms, calls=n))
        print(f"   {'sum of kernel times':60s} {tot:9.3f}", flush=True)
        gr = grads(q, k, v, g, do)
        saved[var] = [x.float() for x in gr]
        if do_ref:
            from tilefold.ops.gla.naive import naive_recurrent_gla

            sq, sk, sv, sg, sdo = small
            if ref is None:
                rx = [x.detach().clone().requires_grad_() for x in (sq, sk, sv, sg)]
                ro, _ = naive_recurrent_gla(*rx)
                ref = [ro] + list(torch.autograd.grad(ro, rx, sdo.double()))
            sx = [x.detach().clone().requires_grad_() for x in (sq, sk, sv, sg)]
            so, _ = chunk_gla(*sx)
            mine = [so] + list(torch.autograd.grad(so, sx, sdo))
            errs = {n: rms_rel(a, b) for n, a, b in zip(("o",) + NAMES, mine, ref)}
            print(f"   vs fp64 recurrence {tuple(sq.shape)}, RMS-relative: " +
                  "  ".join(f"{n} {e:.2e}" for n, e in errs.items()) +
                  ("   OK (<= 5e-3)" if max(errs.values()) <= 5e-3 else "   ABOVE 5e-3"), flush=True)
            del sx, so, mine
            emit(dict(shape, variant=var, what="vs_fp64", shape_ref=list(sq.shape) + [V], **errs))
    if os.environ.get("GLA_PROFILE_FLA") == "1":
        try:
            from fla.ops.gla import chunk_gla as fla_chunk

            xs = [x.detach().clone().requires_grad_() for x in (q, k, v, g)]
            t0 = time.time()
            fla_chunk(*xs)[0].backward(do)
            sync()
            first = time.time() - t0
            ms_f = bench(lambda: fla_chunk(*xs)[0])
            ms_fb = bench(lambda: fla_chunk(*xs)[0].backward(do))
            print(f"\n== fla chunk_gla: fwd {ms_f:.3f} ms   fwd+bwd {ms_fb:.3f} ms   (first call {first:.1f} s)",
                  flush=True)
            emit(dict(shape, variant="fla", what="whole", fwd_ms=ms_f, fwdbwd_ms=ms_fb, first_call_s=first))
        except Exception as e:  # noqa: BLE001 - an optional anchor
            print(f"\n== fla not measured: {type(e).__name__}: {e}", flush=True)
    if "v4" in saved:
        print("\n== vs v4 at the bench shape (max abs, RMS-relative)")
        for var, gr in saved.items():
            if var == "v4":
                continue
            errs = {n: ((a - b).abs().max().item(), rms_rel(a, b)) for n, a, b in zip(NAMES, gr, saved["v4"])}
            print(f"   {var}: " + "  ".join(f"{n} {m:.2e}/{r:.2e}" for n, (m, r) in errs.items()))
            emit(dict(shape, variant=var, what="vs_v4", **{f"{n}_max": m for n, (m, _) in errs.items()},
                      **{f"{n}_rms": r for n, (_, r) in errs.items()}))
    print(f"\ntotal {time.time() - t_start:.0f} s; JSON lines in {JSONL}", flush=True)


if __name__ == "__main__":
    main()
