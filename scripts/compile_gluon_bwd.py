"""Offline sm_90 compile of the Gluon backward kernels (tilefold/ops/attention/backward_sm90.py: dK/dV, or dQ
with --dq), no GPU needed: registers, spills, shared memory and the SASS instruction mix.
Usage: python scripts/compile_gluon_bwd.py [--dq] [--d 128] [--causal] [--left] [--dropout] [--fp16]
       [--block-m N] [--stages N] [--regs N] [--dump F]     (--block-m: the dQ kernel's key tile with --dq)"""
import argparse
import collections
import inspect
import os
import re
import sys

import torch
from triton.runtime.jit import mangle_type

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from compile_gluon_fwd import build_sm90  # noqa: E402
from tilefold.ops.attention import backward_sm90 as B  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor  # noqa: E402


def compile_bwd(D=128, causal=False, left=False, dtype=torch.bfloat16, block_m=None, stages=None, regs=None,
                dq=False, dropout=False, hd256=False, kv3d=False, rng_ptr=False, key_at_use=False, alibi=False):
    if hd256:  # the head-dim-256 dK/dV (one 64-key block per program)
        bm, st = block_m or 64, stages or 2
        blocks = (("q_desc", bm), ("k_desc", 64), ("v_desc", 64), ("do_desc", bm))
        fn = B.attention_bwd_dkdv_sm90_hd256_kernel
    elif dq:  # block_m: the key tile of the dQ kernel
        bn, st = B._dq_config(D)
        bn, st = block_m or bn, stages or st
        blocks = (("q_desc", B.DQ_M), ("k_desc", bn), ("v_desc", bn), ("do_desc", B.DQ_M))
        fn = B.attention_bwd_dq_sm90_kernel
    else:
        bm, st = B._config(D)
        bm, st = block_m or bm, stages or st
        blocks = (("q_desc", bm), ("k_desc", B.WG_N), ("v_desc", B.WG_N), ("do_desc", bm))
        fn = B.attention_bwd_dkdv_sm90_kernel
    gdt = gl.bfloat16 if dtype == torch.bfloat16 else gl.float16
    x = torch.empty(4096, 2048, dtype=dtype)
    lay = lambda blk: gl.NVMMASharedLayout.get_default_for([blk, D], gdt)  # noqa: E731
    descs = {n: TensorDescriptor(x, [4096, 2048], [2048, 1], [blk, D], lay(blk)) for n, blk in blocks}
    params = list(inspect.signature(fn.fn).parameters)
    cons = dict(HEAD_D=D, STAGES=st, HAS_LO=left, HAS_HI=causal, CONSUMER_REGS=regs or B.CONSUMER_REGS, HAS_DROPOUT=dropout,
                num_warps=4, RNG_PTR=rng_ptr, HAS_ALIBI=alibi)  # rng_ptr: the key words' pointer in the seed slot, loaded at the start
    x3 = torch.empty(2, 4096, 1024, dtype=dtype)
    lay3 = lambda blk: gl.NVMMASharedLayout.get_default_for([1, blk, D], gdt)  # noqa: E731
    if "KV3D" in params:  # the dQ kernel: K / V through rank-3 descriptors with --kv3d
        cons.update(KV3D=kv3d, KV_LAYOUT=lay(bn) if kv3d else None)
        if kv3d:
            for n in ("k_desc", "v_desc"):
                descs[n] = TensorDescriptor(x3, [2, 4096, 1024], [4096 * 1024, 1024, 1], [1, bn, D], lay3(bn))
    if "QD3D" in params:  # the dK / dV kernels: Q / dO through rank-3 descriptors with --kv3d
        cons.update(QD3D=kv3d, QD_LAYOUT=lay(bm) if kv3d else None)
        if kv3d:
            for n in ("q_desc", "do_desc"):
                descs[n] = TensorDescriptor(x3, [2, 4096, 1024], [4096 * 1024, 1024, 1], [1, bm, D], lay3(bm))
    sig = {}
    for n in params:
        if n in cons:
            sig[n] = "constexpr"
        elif n in descs:
            sig[n] = mangle_type(descs[n])
        elif n in ("DK", "DV", "DQ"):
            sig[n] = "*bf16" if dtype == torch.bfloat16 else "*fp16"
        elif n in ("LSE2", "DELTA", "ALIBI"):
            sig[n] = "*fp32"
        elif n == "seed_lo" and (rng_ptr or key_at_use):  # the key words' pointer in the seed slot
            sig[n] = "*i32"
        elif n in ("qk_scale", "sm_scale", "drop_rscale"):
            sig[n] = "fp32"
        else:
            sig[n] = "i32"
    div = [n for n in params if sig[n].startswith("*") or n.startswith("stride_")]
    return build_sm90(fn, params, sig, cons, div, 4)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--left", action="store_true")
    ap.add_argument("--block-m", type=int)
    ap.add_argument("--stages", type=int)
    ap.add_argument("--regs", type=int)
    ap.add_argument("--fp16", action="store_true")
    ap.add_argument("--dump")
    ap.add_argument("--dq", action="store_true", help="the dQ kernel (--block-m is then its key tile)")
    ap.add_argument("--dropout", action="store_true")
    ap.add_argument("--hd256", action="store_true", help="the head-dim-256 dK/dV kernel (implies --d 256)")
    ap.add_argument("--kv3d", action="store_true", help="rank-3 descriptors for the other side's tiles (dQ: K / V; dK/dV: Q / dO)")
    ap.add_argument("--rng-ptr", action="store_true", help="dropout's key words from a device tensor (RNG_PTR)")
    ap.add_argument("--key-at-use", action="store_true",
                    help="dropout's key words' pointer in the seed slot, loaded at each use (philox_torch.KEY_AT_USE)")
    ap.add_argument("--alibi", action="store_true", help="ALiBi slopes (HAS_ALIBI)")
    a = ap.parse_args()
    if a.hd256:
        a.d = 256
    k, sass, res = compile_bwd(a.d, a.causal, a.left, torch.float16 if a.fp16 else torch.bfloat16,
                               a.block_m, a.stages, a.regs, a.dq, a.dropout, a.hd256, a.kv3d, a.rng_ptr,
                               a.key_at_use, a.alibi)
    print(res.strip().splitlines()[-1] if res.strip() else "")
    print("shared", k.metadata.shared)
    ops = collections.Counter(re.findall(r"^\s+/\*[0-9a-f]{4,6}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", sass, re.M))
    print("total SASS", sum(ops.values()), "LDL/STL", ops["LDL"], ops["STL"], "HGMMA", ops["HGMMA"],
          "MUFU", ops["MUFU"], "WARPGROUP", ops["WARPGROUP"])
    if a.dump:
        open(a.dump, "w").write(sass)
