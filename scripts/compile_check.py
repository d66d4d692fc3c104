"""Compile the attention kernels for sm_90 on a machine without a GPU (Triton's ptxas), to catch
compile errors and read resource use (shared memory, wgmma in PTX) before spending device time."""
import inspect, itertools, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from tilefold.ops.attention.forward import attention_fwd_kernel
from tilefold.ops.attention.backward import (attention_bwd_dkdv_kernel, attention_bwd_dq_kernel,
                                             attention_bwd_preprocess_kernel)

PTR = {"Q", "K", "V", "O", "DO", "DK", "DV", "DQ"}
F32P = {"LSE", "LSE2", "DELTA", "DLSE", "P"}
FLOATS = {"qk_scale", "softcap_pre", "softcap_post", "sm_scale", "drop_rscale"}


def compile_one(fn, cons, dtype="bf16", warps=4, stages=2):
    params = list(inspect.signature(fn.fn).parameters)
    sig = {}
    for n in params:
        if n in cons:
            sig[n] = "constexpr"
        elif n in PTR:
            sig[n] = "*" + dtype
        elif n in F32P:
            sig[n] = "*fp32"
        elif n.startswith("cu_"):
            sig[n] = "*i32"
        elif n in FLOATS:
            sig[n] = "fp32"
        else:
            sig[n] = "i32"
    src = ASTSource(fn, sig, constexprs={(params.index(k),): v for k, v in cons.items()})
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages))
    ptx = k.asm["ptx"]
    return k.metadata.shared, ("wgmma" in ptx), ptx.count("ld.local") + ptx.count("st.local")


if __name__ == "__main__":
    drop = "--dropout" in sys.argv
    flags = dict(IS_VARLEN=False, HAS_LO=False, HAS_HI=True, HAS_SOFTCAP=False, EVEN_D=True, DOT_PREC="tf32",
                 HAS_DROPOUT=drop)
    fwd_list = [] if "--bwd-only" in sys.argv else [(128, 64, 128, 8, 3, False, False), (128, 128, 128, 4, 2, True, True),
                                      (128, 64, 128, 4, 2, True, False), (128, 128, 128, 8, 2, True, False),
                                      (128, 64, 128, 8, 3, True, False), (64, 64, 256, 4, 2, False, False),
                                      (128, 128, 64, 4, 2, True, True), (64, 64, 256, 4, 2, True, True)]
    for BM, BN, BD, w, s, tma, ws in fwd_list:
        for causal in (False, True):
            f = dict(flags, HAS_HI=causal)
            try:
                r = compile_one(attention_fwd_kernel, dict(BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=BD, IS_SPLIT=False,
                                                           USE_TMA=tma, WARP_SPEC=ws, RETURN_P=False, **f), warps=w, stages=s)
                print("fwd", BM, BN, BD, w, s, "tma", tma, "ws", ws, "causal", causal, "smem", r[0], "wgmma", r[1], "local", r[2], flush=True)
            except Exception as ex:
                print("fwd", BM, BN, BD, w, s, "tma", tma, "ws", ws, "causal", causal, "FAILED", str(ex).splitlines()[-1][:200], flush=True)
    if "--fwd-only" in sys.argv:
        sys.exit(0)
    for BM, BN, BD, w, s, tma in [(64, 128, 128, 8, 3, False), (64, 128, 128, 8, 3, True), (64, 128, 128, 8, 2, True),
                                  (64, 64, 128, 4, 3, True), (32, 64, 256, 4, 1, False)]:
        for kern, cons in (("dkdv", dict(BLOCK_M=BM, BLOCK_N=BN, GROUP_ACC=False)), ("dq", dict(BLOCK_M=BN, BLOCK_N=BM))):
            fn = attention_bwd_dkdv_kernel if kern == "dkdv" else attention_bwd_dq_kernel
            try:
                r = compile_one(fn, dict(BLOCK_D=BD, USE_TMA=tma, **cons, **flags), warps=w, stages=s)
                print(kern, cons, BD, w, s, "tma", tma, "smem", r[0], "wgmma", r[1], "local", r[2], flush=True)
            except Exception as ex:
                print(kern, cons, BD, w, s, "tma", tma, "FAILED", str(ex).splitlines()[-1][:200], flush=True)
    r = compile_one(attention_bwd_preprocess_kernel, dict(BLOCK_M=64, BLOCK_D=128, IS_VARLEN=True, HAS_DLSE=True))
    r2 = compile_one(attention_fwd_kernel, dict(BLOCK_M=128, BLOCK_N=64, BLOCK_D=128, IS_SPLIT=False, USE_TMA=False,
                                                WARP_SPEC=False, RETURN_P=True, **flags), warps=8, stages=3)
    print("fwd RETURN_P", r2)
    print("pre", r)
