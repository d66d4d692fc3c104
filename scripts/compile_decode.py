"""Compile the decode kernel for sm_90 offline (Triton's ptxas, no GPU) as a launch specializes it (16-divisible
pointers and strides): registers, stack, shared memory, SASS instructions and local-memory ops per config.

  python scripts/compile_decode.py            # the shipped tiles and the KPAR tiles, bf16 hd128, 4 packed rows
  python scripts/compile_decode.py alibi      # only the configs whose name holds "alibi" (and their pairs without)
"""
import inspect
import json
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from tilefold.ops.decode.kernel import decode_fwd_kernel

BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
PTRS = {"Q": "*bf16", "K": "*bf16", "V": "*bf16", "O": "*fp32", "LSE": "*fp32", "OUT": "*bf16", "LSE_OUT": "*fp32",
        "CNT": "*i32", "cu_seqlens_q": "*i32", "cu_seqlens_k": "*i32", "seqused_k": "*i32", "cache_batch_idx": "*i32",
        "BLOCK_TABLE": "*i32", "cache_leftpad": "*i32", "ALIBI": "*fp32"}
FLOATS = {"qk_scale", "softcap_pre", "softcap_post"}


def compile_decode(cons, warps, stages):
    params = list(inspect.signature(decode_fwd_kernel.fn).parameters)
    base = dict(GROUP=4, BLOCK_D=128, IS_VARLEN=False, HAS_LO=False, HAS_HI=False, HAS_SOFTCAP=False, EVEN_D=True,
                DOT_PREC="tf32", FUSED_COMBINE=False, COMBINE_UNROLL=1, USE_TMA=False, FOLD_ROWS=0, PDL=False, KPAR=1,
                HAS_SEQUSED=False, HAS_CACHE_IDX=False, PAGED=False, HAS_LEFTPAD=False, HAS_ALIBI=False)
    cons = dict(base, **cons)
    if not cons["HAS_SEQUSED"]:
        cons["seqused_k"] = None
    if not cons["HAS_CACHE_IDX"]:
        cons["cache_batch_idx"] = None
    if not cons["HAS_LEFTPAD"]:
        cons["cache_leftpad"] = None
    sig = {n: "constexpr" if n in cons else PTRS.get(n, "fp32" if n in FLOATS else "i32") for n in params}
    div = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(params)
           if n not in cons and (sig[n].startswith("*") or n.startswith("stride_") or n == "D")}
    src = ASTSource(decode_fwd_kernel, sig, constexprs={(params.index(k),): v for k, v in cons.items()}, attrs=div)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        res = subprocess.run([os.path.join(BIN, "cuobjdump"), "-res-usage", f.name], capture_output=True, text=True).stdout
        sass = subprocess.run([os.path.join(BIN, "nvdisasm"), "-c", f.name], capture_output=True, text=True).stdout
    return dict(smem=k.metadata.shared, regs=int(re.search(r"REG:(\d+)", res).group(1)),
                stack=int(re.search(r"STACK:(\d+)", res).group(1)), sass=sass.count(";"),
                local=len(re.findall(r"\b(?:LDL|STL)\b", sass)), ldgsts=len(re.findall(r"\bLDGSTS\b", sass)),
                hmma=len(re.findall(r"\bHMMA\b", sass)), converts=k.asm["ttgir"].count("convert_layout"))


if __name__ == "__main__":
    for name, cons, w, st in [("ptr16x64x3", dict(BLOCK_M=16, BLOCK_N=64), 4, 3),
                              ("kpar32x3", dict(BLOCK_M=16, BLOCK_N=32, KPAR=4), 4, 3),
                              ("kpar16x4", dict(BLOCK_M=16, BLOCK_N=16, KPAR=4), 4, 4),
                              ("kpar32x3-causal-win-fused", dict(BLOCK_M=16, BLOCK_N=32, KPAR=4, HAS_LO=True, HAS_HI=True,
                                                                 FUSED_COMBINE=True, FOLD_ROWS=4, COMBINE_UNROLL=16), 4, 3),
                              ("kpar32x3-d72-softcap", dict(BLOCK_M=16, BLOCK_N=32, KPAR=4, EVEN_D=False,
                                                            HAS_SOFTCAP=True), 4, 3),
                              # a padded KV cache's per-sequence lengths (attention_with_kvcache)
                              ("ptr16x64x3-seqused", dict(BLOCK_M=16, BLOCK_N=64, HAS_SEQUSED=True), 4, 3),
                              ("ptr16x64x3-seqused-slots", dict(BLOCK_M=16, BLOCK_N=64, HAS_SEQUSED=True,
                                                                HAS_CACHE_IDX=True), 4, 3),
                              ("kpar32x3-causal-fused-seqused", dict(BLOCK_M=16, BLOCK_N=32, KPAR=4, HAS_HI=True,
                                                                     FUSED_COMBINE=True, FOLD_ROWS=4, COMBINE_UNROLL=16,
                                                                     HAS_SEQUSED=True), 4, 3),
                              # a paged cache (block_table): each tile's rows looked up in the table
                              ("ptr16x64x3-seqused-paged", dict(BLOCK_M=16, BLOCK_N=64, HAS_SEQUSED=True, PAGED=True),
                               4, 3),
                              ("ptr16x64x3-causal-fused-seqused-paged", dict(BLOCK_M=16, BLOCK_N=64, HAS_HI=True,
                                                                            FUSED_COMBINE=True, FOLD_ROWS=4,
                                                                            COMBINE_UNROLL=16, HAS_SEQUSED=True,
                                                                            PAGED=True), 4, 3),
                              ("block64x64x4-seqused", dict(BLOCK_M=64, BLOCK_N=64, HAS_SEQUSED=True), 4, 4),
                              # a left-padded cache (cache_leftpad), with descriptors and with KPAR
                              ("ptr16x64x3-seqused-leftpad", dict(BLOCK_M=16, BLOCK_N=64, HAS_SEQUSED=True,
                                                                  HAS_LEFTPAD=True), 4, 3),
                              ("desc16x32x4-seqused-slots-leftpad", dict(BLOCK_M=16, BLOCK_N=32, HAS_SEQUSED=True,
                                                                         HAS_CACHE_IDX=True, HAS_LEFTPAD=True,
                                                                         USE_TMA=True), 4, 4),
                              ("kpar32x3-causal-fused-seqused-leftpad", dict(BLOCK_M=16, BLOCK_N=32, KPAR=4, HAS_HI=True,
                                                                             FUSED_COMBINE=True, FOLD_ROWS=4,
                                                                             COMBINE_UNROLL=16, HAS_SEQUSED=True,
                                                                             HAS_LEFTPAD=True), 4, 3),
                              ("block64x64x4-seqused-paged", dict(BLOCK_M=64, BLOCK_N=64, HAS_SEQUSED=True,
                                                                  PAGED=True), 4, 4),
                              # ALiBi (each packed row its own slope), against the same configs without it
                              ("alibi-pair:desc16x32x4", dict(BLOCK_M=16, BLOCK_N=32, USE_TMA=True), 4, 4),
                              ("alibi:desc16x32x4", dict(BLOCK_M=16, BLOCK_N=32, USE_TMA=True, HAS_ALIBI=True), 4, 4),
                              ("alibi-pair:kpar32x3-causal", dict(BLOCK_M=16, BLOCK_N=32, KPAR=4, HAS_HI=True), 4, 3),
                              ("alibi:kpar32x3-causal", dict(BLOCK_M=16, BLOCK_N=32, KPAR=4, HAS_HI=True,
                                                             HAS_ALIBI=True), 4, 3),
                              ("alibi-pair:block64x64x4-seqused", dict(BLOCK_M=64, BLOCK_N=64, HAS_SEQUSED=True), 4, 4),
                              ("alibi:block64x64x4-seqused", dict(BLOCK_M=64, BLOCK_N=64, HAS_SEQUSED=True,
                                                                  HAS_ALIBI=True), 4, 4),
                              ("alibi-pair:ptr16x64x5-seqused-paged", dict(BLOCK_M=16, BLOCK_N=64, HAS_SEQUSED=True,
                                                                           PAGED=True), 4, 5),
                              ("alibi:ptr16x64x5-seqused-paged", dict(BLOCK_M=16, BLOCK_N=64, HAS_SEQUSED=True,
                                                                      PAGED=True, HAS_ALIBI=True), 4, 5)]:
        if len(sys.argv) > 1 and sys.argv[1] not in name:
            continue
        print(json.dumps(dict(config=name, **compile_decode(cons, w, st))), flush=True)
