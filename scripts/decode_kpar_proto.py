"""Prototype (2026-12-04, sixth session; not library code): an unsplit decode program whose warps stream disjoint
key ranges ("keys in parallel"), for the one-program-per-(batch, key head) case where cuDNN beats our split + combine.

Call 55's ncu (benchmarks/NOTES.md, "Decode: call 55") showed cuDNN at B=16 runs one 128-thread program per (batch,
key head), no split and no reduction kernel, with its 4 warps laid out along the keys (1x4x1); our kernel at the same
grid (num_splits=1) has the warps along the keys for Q·Kᵀ but along the head dim for P·V, so P crosses warps through
shared memory every tile, and it streamed ~3% slower; our split=2 run pays a ~3-4 µs combine instead.

Here warp w folds the keys [w·N/W, (w+1)·N/W) into its own state (level 1 of DESIGN.md §1, W states per program)
with a batched (3-D) dot, so no tile crosses warps; the W states are merged once at the end (⊕ over axis 0).
Scope: seqlen_q = 1, GQA rows packed (G live of BLOCK_M), N divisible by W·BLOCK_N, no masks, bf16/fp16.

  python scripts/decode_kpar_proto.py compile   # offline sm_90: registers, spills, shared memory, SASS counts
  python scripts/decode_kpar_proto.py bench     # GPU: max error vs fp32 SDPA, graph-replay µs and do_bench GB/s
                                                # beside cuDNN and tilefold.split_kv_attention (JSON lines)
(Call 56 ran the bench with a CUDA-event graph timer of its own and a tilefold call missing window / softcap, which
recorded an error; it now uses bench_timing's timer and the full call.)
"""
import json
import sys

import torch
import triton
import triton.language as tl


@triton.jit
def kpar_kernel(Q, K, V, O, stride_qb, stride_qh, stride_kb, stride_kn, stride_kh, stride_vb, stride_vn, stride_vh,
                stride_ob, stride_oh, N, qk_scale, HK: tl.constexpr, G: tl.constexpr, W: tl.constexpr,
                BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, D: tl.constexpr):
    pid = tl.program_id(0)
    b = (pid // HK).to(tl.int64)
    hk = pid % HK
    offs_w = tl.arange(0, W)
    offs_m = tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, D)
    head = (hk * G + offs_m % G).to(tl.int64)  # rows past G repeat the live ones (not stored)
    q_off = head[:, None] * stride_qh + offs_d[None, :]
    q3 = tl.load(Q + b * stride_qb + tl.broadcast_to(q_off[None, :, :], (W, BLOCK_M, D)))
    n_w = N // W
    rows = offs_w[:, None, None] * n_w + offs_n[None, :, None]
    k_ptrs = K + b * stride_kb + hk * stride_kh + rows.to(tl.int64) * stride_kn + offs_d[None, None, :]
    v_ptrs = V + b * stride_vb + hk * stride_vh + rows.to(tl.int64) * stride_vn + offs_d[None, None, :]
    m_i = tl.full([W, BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([W, BLOCK_M], tl.float32)
    acc = tl.zeros([W, BLOCK_M, D], tl.float32)
    for _ in range(0, n_w, BLOCK_N):
        k = tl.load(k_ptrs)
        v = tl.load(v_ptrs)
        s = tl.dot(q3, tl.permute(k, (0, 2, 1))) * qk_scale
        m_new = tl.maximum(m_i, tl.max(s, 2))
        alpha = tl.math.exp2(m_i - m_new)
        p = tl.math.exp2(s - m_new[:, :, None])
        l_i = l_i * alpha + tl.sum(p, 2)
        acc = tl.dot(p.to(v.dtype), v, acc * alpha[:, :, None])
        m_i = m_new
        k_ptrs += BLOCK_N * stride_kn
        v_ptrs += BLOCK_N * stride_vn
    m_all = tl.max(m_i, 0)
    sc = tl.math.exp2(m_i - m_all[None, :])
    l_all = tl.sum(l_i * sc, 0)
    o = tl.sum(acc * sc[:, :, None], 0) / l_all[:, None]
    tl.store(O + b * stride_ob + head[:, None] * stride_oh + offs_d[None, :], o.to(O.dtype.element_ty),
             mask=(offs_m < G)[:, None])


def kpar(q, k, v, W=4, BLOCK_N=32, stages=3):
    B, _, H, D = q.shape
    _, N, HK, _ = k.shape
    o = torch.empty_like(q)
    kpar_kernel[(B * HK,)](q, k, v, o, q.stride(0), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
                           v.stride(0), v.stride(1), v.stride(2), o.stride(0), o.stride(2), N,
                           D ** -0.5 * 1.4426950408889634, HK=HK, G=H // HK, W=W, BLOCK_M=16, BLOCK_N=BLOCK_N, D=D,
                           num_warps=W, num_stages=stages)
    return o


VARIANTS = [(4, 32, 3), (4, 32, 4), (4, 16, 4), (4, 16, 6), (4, 64, 2), (8, 16, 3), (8, 16, 4)]


def compile_offline():
    import inspect
    import os
    import re
    import subprocess
    import tempfile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    params = list(inspect.signature(kpar_kernel.fn).parameters)
    binp = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")
    for W, BN, st in VARIANTS:
        cons = dict(HK=8, G=4, W=W, BLOCK_M=16, BLOCK_N=BN, D=128)
        sig = {n: "constexpr" if n in cons else "*bf16" if n in "QKVO" else "fp32" if n == "qk_scale" else "i32"
               for n in params}
        div = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(params)
               if n not in cons and (sig[n].startswith("*") or n.startswith("stride_") or n == "N")}
        src = ASTSource(kpar_kernel, sig, constexprs={(params.index(c),): v for c, v in cons.items()}, attrs=div)
        kk = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=W, num_stages=st))
        ttg = kk.asm["ttgir"]
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(kk.asm["cubin"])
            f.flush()
            res = subprocess.run([os.path.join(binp, "cuobjdump"), "-res-usage", f.name], capture_output=True,
                                 text=True).stdout
            sass = subprocess.run([os.path.join(binp, "nvdisasm"), "-c", f.name], capture_output=True,
                                  text=True).stdout
        regs = re.search(r"REG:(\d+)", res)
        stack = re.search(r"STACK:(\d+)", res)
        count = lambda op: len(re.findall(r"\b" + op + r"\b", sass))
        print(json.dumps(dict(W=W, BLOCK_N=BN, stages=st, smem=kk.metadata.shared, regs=int(regs.group(1)),
                              stack=int(stack.group(1)), sass=sass.count(";"), HMMA=count("HMMA"),
                              LDGSTS=count("LDGSTS"), LDSM=count("LDSM"), STS=count("STS"), LDS=count("LDS"),
                              BAR=count("BAR"), LDL=count("LDL"), converts=ttg.count("convert_layout"))))


def bench():
    import torch.nn.functional as F
    import triton.testing
    from bench_timing import cudnn_gqa, graph_us
    from tilefold.ops.decode import split_kv_attention
    H, HK, D = 32, 8, 128

    for B, N in [(16, 8192), (16, 32768), (32, 8192), (8, 32768), (16, 131072)]:
        g = torch.Generator(device="cuda").manual_seed(N + B)
        q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16, generator=g)
        k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
        v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16, generator=g)
        nbytes = 2 * B * N * HK * D * 2
        ref = F.scaled_dot_product_attention(q.transpose(1, 2).float(), k.transpose(1, 2).float(),
                                             v.transpose(1, 2).float(), enable_gqa=True).transpose(1, 2)

        cudnn = lambda: cudnn_gqa(q, k, v)  # noqa: E731
        provs = [("cudnn", cudnn), ("tilefold", lambda: split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5,
                                                                           window=(-1, -1), softcap=0.0)[0])]
        provs += [(f"kpar-w{W}-n{BN}-s{st}", (lambda W=W, BN=BN, st=st: kpar(q, k, v, W, BN, st)))
                  for W, BN, st in VARIANTS]
        provs.append(("cudnn", cudnn))
        for name, fn in provs:
            rec = dict(B=B, N=N, provider=name)
            try:
                out = fn()
                rec["maxerr"] = float((out.float() - ref).abs().max())
                rec["graph_us"] = graph_us(fn)
                rec["gbps"] = round(nbytes / triton.testing.do_bench(fn, warmup=25, rep=100) / 1e6, 1)
            except Exception as e:  # noqa: BLE001
                rec["error"] = repr(e)[:300]
            print(json.dumps(rec), flush=True)
        del q, k, v, ref


if __name__ == "__main__":
    compile_offline() if sys.argv[1:] == ["compile"] else bench()
