"""Compile the chunk_gla backward kernels for sm_90 on this CPU machine (Triton's ptxas) and print
shared memory, registers, stack frame and spill instructions (see scripts/compile_check.py).

    python scripts/gla_compile_check.py [v4|v5|dh|...]   (default: all)

bf16 inputs, K = V = 128, BT = 64: the configs the H200 bench runs."""
import inspect, json, sys, time

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

sys.path.insert(0, "scripts")
from compile_check import SMEM_LIMIT, resources  # noqa: E402

from tilefold.ops.gla import chunk as C  # noqa: E402
from tilefold.ops.gla.utils import G_FLOOR  # noqa: E402

F32 = {"gc", "h", "dh", "dht", "dh0", "ht", "h0", "dq32", "dk32"}
I32 = {"cu_seqlens", "chunk_indices", "chunk_offsets"}


def compile_kernel(fn, cons, types, warps, stages, dtype="bf16"):
    params = list(inspect.signature(fn.fn).parameters)
    sig = {}
    for n in params:
        if n in cons:
            sig[n] = "constexpr"
        elif n in types:
            sig[n] = types[n]
        elif n in F32:
            sig[n] = "*fp32"
        elif n in I32:
            sig[n] = "*i32"
        elif n == "scale":
            sig[n] = "fp32"
        elif n == "H":
            sig[n] = "i32"
        else:
            sig[n] = "*" + dtype
    div = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(params) if sig[n].startswith("*")}
    src = ASTSource(fn, sig, constexprs={(params.index(k),): v for k, v in cons.items()}, attrs=div)
    t = time.time()
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages))
    r = resources(k)
    r["compile_s"] = round(time.time() - t, 1)
    r["fits"] = r["smem"] <= SMEM_LIMIT
    return r


def jobs():
    K = V = 128
    BT, BK = 64, 128
    base = dict(K=K, V=V, BT=BT, BK=BK)
    out = {}
    out["v4-dqkv"] = lambda: compile_kernel(C.chunk_gla_bwd_dqkv_kernel, dict(base, BC=16, BV=64, PREC="tf32"),
                                            {"dq": "*fp32", "dk": "*fp32"}, 4, 1)
    out["v4-dh"] = lambda: compile_kernel(C.chunk_gla_bwd_dh_kernel, dict(base, BV=128, HAS_DHT=False,
                                          STORE_DH0=False, PREC="tf32", LOWP=False), {"dq": "*fp32"}, 8, 3)
    out["v4-dg"] = lambda: compile_kernel(C.chunk_gla_bwd_dg_kernel, dict(K=K, V=V, BT=BT, BK=64, BV=64,
                                          HAS_DHT=False, G_MIN=G_FLOOR, gc=None, dq_out=None,
                                          dk_out=None, BKF=16, SKIP_FAST=False), {"dq": "*fp32", "dk": "*fp32"}, 4, 1)
    from tilefold.ops.gla import chunk_bwd as B5
    for bs, w, st in ((64, 8, 2), (32, 4, 2), (64, 4, 2), (64, 8, 1)):
        for hd in ("fp32", "bf16"):
            out[f"v5-main-bs{bs}-w{w}-s{st}-h{hd}"] = (lambda bs=bs, w=w, st=st, hd=hd: compile_kernel(
                B5.chunk_gla_bwd_v5_kernel, dict(K=K, V=V, BT=BT, BK=BK, BS=bs, BI=64, G_MIN=G_FLOOR, PREC="tf32"),
                {"dq": "*bf16", "dk": "*bf16", "h": "*" + hd, "dh": "*" + hd}, w, st))
    for hd in ("fp32", "bf16"):
        out[f"v5-dh-h{hd}"] = (lambda hd=hd: compile_kernel(C.chunk_gla_bwd_dh_kernel, dict(
            base, BV=B5.DH_CFG[0], HAS_DHT=False, STORE_DH0=False, PREC="tf32", LOWP=True), {"dh": "*" + hd},
            B5.DH_CFG[1], B5.DH_CFG[2]))
    out["v5-dqkv-skipfast"] = lambda: compile_kernel(C.chunk_gla_bwd_dqkv_kernel, dict(base, BC=16, BV=64, PREC="tf32",
                                                     SKIP_FAST=True), {"dq": "*fp32", "dk": "*fp32"}, 4, 1)
    out["v5-dg-skipfast"] = lambda: compile_kernel(C.chunk_gla_bwd_dg_kernel, dict(
        K=K, V=V, BT=BT, BK=64, BV=64, HAS_DHT=False, G_MIN=G_FLOOR, BKF=128, SKIP_FAST=True),
        {"dq": "*fp32", "dk": "*fp32", "dq_out": "*bf16", "dk_out": "*bf16"}, 4, 1)
    return out


if __name__ == "__main__":
    want = sys.argv[1:]
    for name, fn in jobs().items():
        if want and not any(name.startswith(w) for w in want):
            continue
        try:
            print(name, json.dumps(fn()), flush=True)
        except Exception as ex:  # noqa: BLE001
            print(name, "FAILED", str(ex).strip().splitlines()[-1][:300] if str(ex).strip() else repr(ex), flush=True)
