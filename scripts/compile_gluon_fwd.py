"""Offline sm_90 compile of the Gluon forward (tilefold/ops/attention/forward_sm90.py), no GPU needed:
registers, spills, shared memory and the SASS order of HGMMA / WARPGROUP waits / MUFU.EX2 in the main loop.
Usage: python scripts/compile_gluon_fwd.py [--d 128] [--causal] [--dump FILE]"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime.jit import mangle_type

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tilefold.ops.attention import forward_sm90 as F  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402
from triton.experimental.gluon._runtime import GluonASTSource  # noqa: E402
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor  # noqa: E402

_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def compile_fwd(D=128, causal=False, left=False, dtype=torch.bfloat16, block_n=None, stages=None, ws=False, regs=232, pingpong=True, dropout=False, kv3d=False, mask_ws=False, mask_regs=None, rng_ptr=False,
                alibi=False):
    bn, st = F._config(D)
    bn, st = block_n or bn, stages or st
    gdt = gl.bfloat16 if dtype == torch.bfloat16 else gl.float16
    x = torch.empty(4096, 2048, dtype=dtype)
    descs = [TensorDescriptor(x, [4096, 2048], [2048, 1], [blk, D], gl.NVMMASharedLayout.get_default_for([blk, D], gdt))
             for blk in (F.BLOCK_M // (2 if ws else 1), bn, bn)]
    if kv3d:  # K / V through (batch, seqlen_k, heads_k·head_dim) descriptors
        x3 = torch.empty(2, 4096, 1024, dtype=dtype)
        lay3 = gl.NVMMASharedLayout.get_default_for([1, bn, D], gdt)
        descs[1] = descs[2] = TensorDescriptor(x3, [2, 4096, 1024], [4096 * 1024, 1024, 1], [1, bn, D], lay3)
    fn = F.attention_fwd_sm90_ws_kernel if ws else F.attention_fwd_sm90_kernel
    import inspect
    params = list(inspect.signature(fn.fn).parameters)
    nw = 4 if ws else F.NUM_WARPS
    cons = dict(BLOCK_N=bn, HEAD_D=D, STAGES=st, HAS_LO=left, HAS_HI=causal, num_warps=nw)
    if ws:
        cons["CONSUMER_REGS"] = regs
        cons["PINGPONG"] = pingpong
        cons["HAS_DROPOUT"] = dropout
        cons["KV3D"] = kv3d
        cons["MASK_WS"] = mask_ws
        cons["MASK_REGS"] = mask_regs or F.MASK_REGS
        cons["MASK_STAGES"] = F.MASK_STAGES
        if mask_ws and regs == 232:  # the shipped split with the producer (forward_sm90.MASK_CONSUMER_REGS)
            cons["CONSUMER_REGS"] = F.MASK_CONSUMER_REGS
        cons["KV_LAYOUT"] = gl.NVMMASharedLayout.get_default_for([bn, D], gdt) if kv3d else None
        cons["RNG_PTR"] = rng_ptr  # dropout's key words: a pointer in the seed slot, loaded at the kernel's start
        cons["HAS_ALIBI"] = alibi
    sig = {}
    for n in params:
        if n in cons:
            sig[n] = "constexpr"
        elif n.endswith("_desc"):
            sig[n] = mangle_type(descs[["q_desc", "k_desc", "v_desc"].index(n)])
        elif n == "O":
            sig[n] = "*bf16" if dtype == torch.bfloat16 else "*fp16"
        elif n in ("LSE", "ALIBI"):
            sig[n] = "*fp32"
        elif n == "seed_lo" and rng_ptr:
            sig[n] = "*i32"
        elif n in ("qk_scale", "drop_rscale"):
            sig[n] = "fp32"
        else:
            sig[n] = "i32"
    div = [n for n in params if sig[n].startswith("*") or n.startswith("stride_o")]
    return build_sm90(fn, params, sig, cons, div, nw)


def build_sm90(fn, params, sig, cons, divisible, num_warps):
    """Compile the Gluon kernel ``fn`` for sm_90 with the signature ``sig`` (name -> type), the constexprs
    ``cons`` and 16-divisibility assumed for the ``divisible`` arguments (as a real launch specializes
    aligned pointers / strides); returns (compiled kernel, SASS, cuobjdump's resource usage)."""
    div = {(params.index(n),): [["tt.divisibility", 16]] for n in divisible}
    src = GluonASTSource(fn, sig, constexprs={(params.index(k),): v for k, v in cons.items()}, attrs=div)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=num_warps, num_stages=1))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        sass = subprocess.run([os.path.join(_BIN, "nvdisasm"), "-c", f.name], capture_output=True, text=True).stdout
        res = subprocess.run([os.path.join(_BIN, "cuobjdump"), "-res-usage", f.name], capture_output=True, text=True).stdout
    return k, sass, res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--left", action="store_true")
    ap.add_argument("--block-n", type=int)
    ap.add_argument("--stages", type=int)
    ap.add_argument("--dump")
    ap.add_argument("--ws", action="store_true")
    ap.add_argument("--regs", type=int, default=232)
    ap.add_argument("--no-pingpong", action="store_true")
    ap.add_argument("--dropout", action="store_true")
    ap.add_argument("--mask-ws", action="store_true", help="dropout's mask from a producer partition")
    ap.add_argument("--mask-regs", type=int, help="the producer's registers (default forward_sm90.MASK_REGS)")
    ap.add_argument("--kv3d", action="store_true", help="K / V through rank-3 descriptors (ragged seqlen_k, batch > 1)")
    ap.add_argument("--rng-ptr", action="store_true", help="dropout's key words from a device tensor (RNG_PTR)")
    ap.add_argument("--alibi", action="store_true", help="ALiBi slopes (HAS_ALIBI, the warp-specialized kernel)")
    a = ap.parse_args()
    k, sass, res = compile_fwd(a.d, a.causal, a.left, block_n=a.block_n, stages=a.stages, ws=a.ws, regs=a.regs, pingpong=not a.no_pingpong, dropout=a.dropout, kv3d=a.kv3d, mask_ws=a.mask_ws, mask_regs=a.mask_regs, rng_ptr=a.rng_ptr,
                               alibi=a.alibi)
    print(res.strip().splitlines()[-1] if res.strip() else "")
    print("shared", k.metadata.shared, "spills LDL/STL", len(re.findall(r"\b(?:LDL|STL)\b", sass)))
    if a.dump:
        open(a.dump, "w").write(sass)
        open(a.dump + ".ttgir", "w").write(k.asm["ttgir"])
    keys = ("HGMMA", "WARPGROUP.DEPBAR", "WARPGROUP.ARRIVE", "MUFU.EX2", "BAR.SYNC", "SYNCS", "BRA", "STS", "LDS")
    prev = None
    for line in sass.splitlines():
        m = re.search(r"\b(HGMMA|WARPGROUP\.DEPBAR|WARPGROUP\.ARRIVE|MUFU\.EX2|BAR\.SYNC|SYNCS\.\w+|BRA|STS|LDS)\S*", line)
        if m:
            tag = m.group(1)
            if tag != prev:
                print("  ", line.strip()[:110])
            prev = tag
