"""Compile the attention kernels for sm_90 on a machine without a GPU (Triton's ptxas), to catch
compile errors and read resource use (shared memory, wgmma in PTX, registers and spills of the cubin)
before spending device time.

Spills: ptxas spills to the stack frame, which the PTX never shows (``ld.local`` in PTX stays 0 even
for a kernel that spills kilobytes), so "local" below counts LDL/STL instructions in the SASS and
"stack" is the cubin's stack frame in bytes (cuobjdump -res-usage).

``--hd256``: enumerate head-dim-256 configs (fwd; bwd dK/dV and dQ) and print one JSON line each
(``--hd256-variants``: compile chosen candidates under the causal/window/fp16/padded-D/dropout variants;
``--hd256-split``: the dK/dV kernel with its head dim split over two programs, HD256_SPLIT)."""
import inspect, itertools, json, os, re, subprocess, sys, tempfile
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from tilefold.ops.attention.forward import attention_fwd_kernel
from tilefold.ops.attention.backward import (attention_bwd_dkdv_kernel, attention_bwd_dq_kernel,
                                             attention_bwd_preprocess_kernel)

PTR = {"Q", "K", "V", "O", "DO", "DK", "DV", "DQ"}
F32P = {"LSE", "LSE2", "DELTA", "DLSE", "P", "ALIBI"}
FLOATS = {"qk_scale", "softcap_pre", "softcap_post", "sm_scale", "drop_rscale"}


def compile_one(fn, cons, dtype="bf16", warps=4, stages=2):
    params = list(inspect.signature(fn.fn).parameters)
    if "SPLIT_D" in params and "SPLIT_D" not in cons:  # dK/dV kernel: head dim not split unless asked
        cons = dict(cons, SPLIT_D=1)
    cons = _optional_args(fn, dict(cons))
    sig = {}
    for n in params:
        if n in cons:
            sig[n] = "constexpr"
        elif n in ("seqused_k", "cache_batch_idx", "cache_leftpad", "BLOCK_TABLE") or (n == "seed_lo" and cons.get("RNG_PTR")):
            sig[n] = "*i32"
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
    r = resources(k)
    return k.metadata.shared, r["wgmma"], r["local"], r["regs"], r["stack"]


_BIN = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin")


def resources(k):
    """Shared memory, wgmma in PTX, and from the cubin: registers per thread, stack frame bytes and
    the number of local-memory (spill) instructions LDL/STL in the SASS."""
    ptx = k.asm["ptx"]
    out = dict(smem=k.metadata.shared, wgmma="wgmma" in ptx, regs=None, stack=None,
               local=ptx.count("ld.local") + ptx.count("st.local"))
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        try:
            ru = subprocess.run([os.path.join(_BIN, "cuobjdump"), "-res-usage", f.name], capture_output=True,
                                text=True, timeout=120).stdout
            m = re.search(r"REG:(\d+) STACK:(\d+)", ru)
            if m:
                out["regs"], out["stack"] = int(m.group(1)), int(m.group(2))
            sass = subprocess.run([os.path.join(_BIN, "cuobjdump"), "-sass", f.name], capture_output=True,
                                  text=True, timeout=300).stdout
            out["local"] += len(re.findall(r"\b(?:LDL|STL)(?:\.\w+)*\s", sass))
        except (OSError, subprocess.SubprocessError):
            pass
    return out


SMEM_LIMIT = 232448  # H200 / H100 per-block opt-in shared memory
FLAGS = dict(IS_VARLEN=False, HAS_LO=False, HAS_HI=False, HAS_SOFTCAP=False, EVEN_D=True, DOT_PREC="tf32",
             HAS_DROPOUT=False)


def _hd256_job(job):
    """One compile of the --hd256 enumeration: (kind, BM, BN, warps, stages, tma, variant overrides, dtype
    [, dkdv_split_d])."""
    kind, BM, BN, w, s, tma, var, dtype = job[:8]
    split = job[8] if len(job) > 8 else 1
    f = dict(FLAGS, **var)
    if kind == "fwd":
        fn, cons = attention_fwd_kernel, dict(BLOCK_M=BM, BLOCK_N=BN, IS_SPLIT=False, WARP_SPEC=False, RETURN_P=False)
    elif kind == "dkdv":
        fn, cons = attention_bwd_dkdv_kernel, dict(BLOCK_M=BM, BLOCK_N=BN, COMPENSATED=False, SEP_DLSE=False,
                                                    SPLIT_D=split)
    else:  # dq runs with the config's roles swapped: query rows BLOCK_N, key tiles BLOCK_M
        fn, cons = attention_bwd_dq_kernel, dict(BLOCK_M=BN, BLOCK_N=BM, COMPENSATED=False, SEP_DLSE=False)
    rec = dict(kind=kind, cfg=[BM, BN, w, s, tma] + ([split] if split != 1 else []), var=var, dtype=dtype)
    try:
        r = compile_one(fn, dict(BLOCK_D=256, USE_TMA=tma, **cons, **f), dtype=dtype, warps=w, stages=s)
        rec.update(smem=r[0], wgmma=r[1], local=r[2], regs=r[3], stack=r[4],
                   ok=r[0] <= SMEM_LIMIT and r[1] and r[2] == 0 and r[4] == 0)
    except Exception as ex:  # noqa: BLE001 - report and go on
        rec.update(error=str(ex).strip().splitlines()[-1][:200] if str(ex).strip() else repr(ex)[:200], ok=False)
    return rec


def hd256_jobs():
    """The enumeration. Skipped without compiling: fp32 accumulators that alone exceed the register file
    share of a thread (dK+dV: 2*BLOCK_N*256, dQ: BLOCK_N*256, fwd: BLOCK_M*256 fp32 over 32*warps
    threads > 224 registers) - they can only spill."""
    jobs, skipped = [], []
    for BM, BN, w, s, tma in itertools.product((64, 128), (32, 64, 128), (4, 8), (1, 2, 3), (False, True)):
        if BM * 256 // (32 * w) > 224:
            skipped.append(dict(kind="fwd", cfg=[BM, BN, w, s, tma], skipped="acc regs %d" % (BM * 256 // (32 * w))))
        else:
            jobs.append(("fwd", BM, BN, w, s, tma, {}, "bf16"))
    for BM, BN, w, s, tma in itertools.product((32, 64, 128), (32, 64, 128), (4, 8), (1, 2, 3), (False, True)):
        for kind, acc in (("dkdv", 2 * BN * 256), ("dq", BN * 256)):
            if acc // (32 * w) > 224:
                skipped.append(dict(kind=kind, cfg=[BM, BN, w, s, tma], skipped="acc regs %d" % (acc // (32 * w))))
            else:
                jobs.append((kind, BM, BN, w, s, tma, {}, "bf16"))
    return jobs, skipped


# --hd256-split: the dK/dV kernel with its head dim split over two programs (KernelConfig.dkdv_split_d=2;
# accumulators 2*BLOCK_N*128 fp32 over 32*warps threads), beside the current config (split 1) as baseline,
# non-causal and causal, compiled as launched (loop_spills). (BM query rows, BN keys, warps, stages, tma,
# split); COMPILE_CANDS="BM,BN,w,s,tma,split;..." overrides. Over 232448 B of shared memory (don't fit):
# split 64x64 8w 3st (264192), 128x64 8w 2st (329728), 64x128 8w 2st (262704).
HD256_SPLIT = [(64, 64, 8, 2, True, 1), (64, 64, 8, 2, True, 2), (32, 64, 8, 2, True, 2), (32, 64, 8, 3, True, 2),
               (32, 128, 8, 2, True, 2), (16, 64, 8, 3, True, 2), (64, 64, 4, 2, True, 2)]


def hd256_split_jobs():
    if os.environ.get("COMPILE_CANDS"):
        cands = [tuple(int(x) for x in c.split(",")) for c in os.environ["COMPILE_CANDS"].split(";")]
    else:
        cands = HD256_SPLIT
    return [(BM, BN, w, s, bool(tma), sp, causal) for BM, BN, w, s, tma, sp in cands for causal in (False, True)]


def _optional_args(fn, cons):
    """Constexprs with defaults not given take their defaults; ``seqused_k`` is a None constexpr unless HAS_SEQUSED,
    ``cache_batch_idx`` unless HAS_CACHE_IDX, ``cache_leftpad`` unless HAS_LEFTPAD (RNG_PTR: seed_lo is the key words'
    pointer)."""
    params = inspect.signature(fn.fn).parameters
    for n, prm in params.items():
        if n not in cons and "constexpr" in str(prm.annotation) and prm.default is not inspect.Parameter.empty:
            cons[n] = prm.default
    for ptr, flag in (("seqused_k", "HAS_SEQUSED"), ("cache_batch_idx", "HAS_CACHE_IDX"), ("cache_leftpad", "HAS_LEFTPAD")):
        if ptr in params and not cons.get(flag):
            cons[ptr] = None
    return cons


def _compile_as_launched(fn, cons, warps, stages):
    """Compile for sm_90 as a real launch specializes (16-divisible pointers, strides and D; constexpr
    flags not given: off, SPLIT_D 1) and disassemble the cubin. Returns (kernel, resources, SASS lines,
    loops as (first, last) line pairs of every backward branch)."""
    params = list(inspect.signature(fn.fn).parameters)
    if "SPLIT_D" in params and "SPLIT_D" not in cons:
        cons = dict(cons, SPLIT_D=1)
    cons = _optional_args(fn, dict(cons))
    for n, prm in inspect.signature(fn.fn).parameters.items():  # constexpr flags added since: off
        if n not in cons and "constexpr" in str(prm.annotation):
            cons = dict(cons, **{n: False})
    sig = {n: "constexpr" if n in cons else "*bf16" if n in PTR else "*fp32" if n in F32P else
           "*i32" if n.startswith("cu_") or n in ("CNT", "seqused_k", "cache_batch_idx", "cache_leftpad", "BLOCK_TABLE")
           or (n == "seed_lo" and cons.get("RNG_PTR")) else "fp32" if n in FLOATS else "i32"
           for n in params}
    div = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(params)
           if n not in cons and (sig[n].startswith("*") or n.startswith("stride_") or n == "D")}
    src = ASTSource(fn, sig, constexprs={(params.index(k),): v for k, v in cons.items()}, attrs=div)
    k = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps, num_stages=stages))
    r = resources(k)
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(k.asm["cubin"])
        f.flush()
        lines = subprocess.run([os.path.join(_BIN, "nvdisasm"), "-c", f.name], capture_output=True,
                               text=True, timeout=300).stdout.splitlines()
    labels = {m.group(1): i for i, l in enumerate(lines) for m in [re.match(r"^\s*(\.L_x_\d+):", l)] if m}
    loops = sorted({(labels[m.group(1)], i) for i, l in enumerate(lines)
                    for m in [re.search(r"BRA\s+`?\(?(\.L_x_\d+)", l)] if m and labels.get(m.group(1), i) < i})
    return k, r, lines, loops


def loop_spills(fn, cons, warps, stages):
    """Compile as a real launch specializes (16-divisible pointers, strides and D: without that, ptxas
    spills several times more) and count LDL/STL inside each innermost SASS loop (the query-tile loops
    of the dK/dV kernel: masked, unmasked, masked) besides the totals: spills outside the loops (around
    the GQA group loop, the epilogue) cost little."""
    k, r, lines, loops = _compile_as_launched(fn, cons, warps, stages)
    inner = [a for a in loops if not any(b != a and a[0] <= b[0] and b[1] <= a[1] for b in loops)]
    spill = lambda l: re.search(r"\b(?:LDL|STL)(?:\.\w+)*\s", l) is not None
    hot = [(sum(spill(l) for l in lines[a:b + 1]), sum("HGMMA" in l for l in lines[a:b + 1]))
           for a, b in inner if b - a > 50]
    return dict(smem=r["smem"], regs=r["regs"], stack=r["stack"], ldl_stl=sum(spill(l) for l in lines),
                loop_ldl_stl=[h[0] for h in hot], loop_hgmma=[h[1] for h in hot])


def _split_job(job):
    BM, BN, w, s, tma, split, causal = job
    rec = dict(kind="dkdv", cfg=[BM, BN, w, s, tma], split=split, causal=causal)
    cons = dict(FLAGS, HAS_HI=causal, BLOCK_M=BM, BLOCK_N=BN, BLOCK_D=256, USE_TMA=tma, COMPENSATED=False,
                SEP_DLSE=False, LPT=False, SPLIT_D=split)
    try:
        rec.update(loop_spills(attention_bwd_dkdv_kernel, cons, w, s))
        rec["ok"] = rec["smem"] <= SMEM_LIMIT and not any(rec["loop_ldl_stl"])
    except Exception as ex:  # noqa: BLE001 - report and go on
        rec.update(error=str(ex).strip().splitlines()[-1][:200] if str(ex).strip() else repr(ex)[:200], ok=False)
    return rec


# variants every chosen hd256 candidate must also compile under (the non-TMA twin covers padded head
# dims 129..255, which take pointer loads under the same config)
HD256_VARIANTS = [({}, "bf16"), (dict(HAS_HI=True), "bf16"), (dict(HAS_LO=True, HAS_HI=True), "bf16"), ({}, "fp16"),
                  (dict(HAS_HI=True), "fp16"), (dict(EVEN_D=False), "bf16"), (dict(HAS_DROPOUT=True), "bf16"),
                  (dict(HAS_SOFTCAP=True, HAS_HI=True), "bf16")]


def run_hd256(jobs, skipped, procs):
    import multiprocessing as mp
    for r in skipped:
        print(json.dumps(r), flush=True)
    with mp.get_context("spawn").Pool(procs, maxtasksperchild=8) as pool:
        for r in pool.imap_unordered(_hd256_job, jobs):
            print(json.dumps(r), flush=True)


def _hd256_cli():
    procs = int(os.environ.get("COMPILE_PROCS", os.cpu_count() or 1))
    if "--hd256-variants" in sys.argv:
        # COMPILE_CANDS="kind:BM,BN,w,s,tma[,split];..." (kind fwd or bwd; bwd compiles dkdv and dq;
        # kind dkdv: only the dK/dV kernel, with its head-dim split)
        jobs = []
        for item in os.environ["COMPILE_CANDS"].split(";"):
            kind, c = item.split(":")
            BM, BN, w, s, tma, *sp = (int(x) for x in c.split(","))
            split = sp[0] if sp else 1
            for var, dt in HD256_VARIANTS:
                if var.get("EVEN_D") is False and tma:
                    tma_eff = False
                else:
                    tma_eff = bool(tma)
                for kk in {"fwd": ("fwd",), "dkdv": ("dkdv",)}.get(kind, ("dkdv", "dq")):
                    jobs.append((kk, BM, BN, w, s, tma_eff, var, dt, split))
        run_hd256(jobs, [], procs)
    elif "--hd256-split" in sys.argv:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(procs, maxtasksperchild=8) as pool:
            for r in pool.imap_unordered(_split_job, hd256_split_jobs()):
                print(json.dumps(r), flush=True)
    else:
        run_hd256(*hd256_jobs(), procs)


def loop_counts(fn, cons, warps, stages):
    """Per-thread SASS instruction mix of the first KV loop (the first outermost backward branch),
    compiled with 16-divisible pointers and strides as a real launch specializes them; plus shared
    memory, registers, stack and the TTGIR's convert_layout count. For comparing a feature's in-loop
    cost (``--loop-counts``: dropout on / off), not absolute speed."""
    import collections
    k, r, lines, loops = _compile_as_launched(fn, cons, warps, stages)
    outer = [a for a in loops if not any(b != a and b[0] <= a[0] and a[1] <= b[1] for b in loops)]
    mix = collections.Counter()
    if outer:
        for l in lines[outer[0][0]:outer[0][1] + 1]:
            m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", l)
            if m:
                mix[m.group(1)] += 1
    return dict(smem=r["smem"], regs=r["regs"], stack=r["stack"], local=r["local"],
                converts=k.asm["ttgir"].count("ttg.convert_layout"), loop_sass=sum(mix.values()),
                mix=dict(mix.most_common(14)))


if __name__ == "__main__" and "--loop-counts" in sys.argv:
    # dropout's in-loop cost: forward 128x64 / 128x128 (8 warps, 3 stages, TMA) and dQ 128x64, p = 0 vs p > 0
    for name, fn, cons, w, st in [
            ("fwd 128x64", attention_fwd_kernel, dict(BLOCK_M=128, BLOCK_N=64, USE_TMA=True), 8, 3),
            ("fwd 128x128", attention_fwd_kernel, dict(BLOCK_M=128, BLOCK_N=128, USE_TMA=True), 8, 3),
            ("dq 128x64", attention_bwd_dq_kernel, dict(BLOCK_M=128, BLOCK_N=64, USE_TMA=False), 8, 3),
            ("dkdv 64x128", attention_bwd_dkdv_kernel, dict(BLOCK_M=64, BLOCK_N=128, USE_TMA=False), 8, 3)]:
        # --rng-ptr: also dropout with its key words loaded from device memory (RNG_PTR: capture / torch.compile)
        for drop, rng_ptr in ((False, False), (True, False)) + (((True, True),) if "--rng-ptr" in sys.argv else ()):
            c = dict(FLAGS, BLOCK_D=128, HAS_DROPOUT=drop, IS_SPLIT=False, WARP_SPEC=False, RETURN_P=False,
                     RNG_PTR=rng_ptr, **cons)
            c = {k: v for k, v in c.items() if k in inspect.signature(fn.fn).parameters}
            tag = ("dropout" if drop else "p=0") + (" rng_ptr" if rng_ptr else "")
            try:
                print(name, tag, json.dumps(loop_counts(fn, c, w, st)), flush=True)
            except Exception as ex:
                print(name, tag, "FAILED", str(ex).splitlines()[-1][:200], flush=True)
    sys.exit(0)

if __name__ == "__main__" and ("--hd256" in sys.argv or "--hd256-variants" in sys.argv or "--hd256-split" in sys.argv):
    _hd256_cli()
    sys.exit(0)

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
                print("fwd", BM, BN, BD, w, s, "tma", tma, "ws", ws, "causal", causal, "smem", r[0], "wgmma", r[1], "local", r[2], "regs", r[3], "stack", r[4], flush=True)
            except Exception as ex:
                print("fwd", BM, BN, BD, w, s, "tma", tma, "ws", ws, "causal", causal, "FAILED", str(ex).splitlines()[-1][:200], flush=True)
    if "--fwd-only" in sys.argv:
        sys.exit(0)
    for BM, BN, BD, w, s, tma in [(64, 128, 128, 8, 3, False), (64, 128, 128, 8, 3, True), (64, 128, 128, 8, 2, True),
                                  (64, 64, 128, 4, 3, True), (32, 64, 256, 4, 1, False)]:
        for kern, cons in (("dkdv", dict(BLOCK_M=BM, BLOCK_N=BN, COMPENSATED=False, SEP_DLSE=False, SPLIT_D=1,
                                                  ONE_LOOP=False, EVEN_M=False)), ("dq", dict(BLOCK_M=BN, BLOCK_N=BM, COMPENSATED=False, SEP_DLSE=False))):
            fn = attention_bwd_dkdv_kernel if kern == "dkdv" else attention_bwd_dq_kernel
            try:
                r = compile_one(fn, dict(BLOCK_D=BD, USE_TMA=tma, **cons, **flags), warps=w, stages=s)
                print(kern, cons, BD, w, s, "tma", tma, "smem", r[0], "wgmma", r[1], "local", r[2], "regs", r[3], "stack", r[4], flush=True)
            except Exception as ex:
                print(kern, cons, BD, w, s, "tma", tma, "FAILED", str(ex).splitlines()[-1][:200], flush=True)
    r = compile_one(attention_bwd_preprocess_kernel, dict(BLOCK_M=64, BLOCK_D=128, IS_VARLEN=True, HAS_DLSE=True, EXACT_DELTA=False))
    r2 = compile_one(attention_fwd_kernel, dict(BLOCK_M=128, BLOCK_N=64, BLOCK_D=128, IS_SPLIT=False, USE_TMA=False,
                                                WARP_SPEC=False, RETURN_P=True, **flags), warps=8, stages=3)
    print("fwd RETURN_P", r2)
    print("pre", r)
