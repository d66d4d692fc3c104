"""GPU check + config sweep for the attention kernels (run on the device):
correctness of a few configs vs fp64 (2x rule), then fwd/bwd timing of candidate block configs
beside SDPA cuDNN/flash at headdim 128, seqlen 8k/16k. Writes JSON lines to $OUT/sweep.jsonl."""
import json, math, os, sys, time
import torch, triton
import tilefold
from tilefold.ops.attention import config as C
from tilefold.ops.attention.naive import attention_ref
from torch.nn.attention import sdpa_kernel, SDPBackend

OUT = os.environ.get("OUT", "/tmp")
dev = "cuda"
log = open(os.path.join(OUT, "sweep.jsonl"), "a") if __name__ == "__main__" else None  # not in prewarm workers
def emit(**r):
    print(json.dumps(r), flush=True); log.write(json.dumps(r) + "\n"); log.flush()

def check(B, M, N, H, HK, D, dtype, causal, ws=(-1, -1), sc=0.0):
    q = torch.randn(B, M, H, D, device=dev, dtype=dtype, requires_grad=True)
    k = torch.randn(B, N, HK, D, device=dev, dtype=dtype, requires_grad=True)
    v = torch.randn(B, N, HK, D, device=dev, dtype=dtype, requires_grad=True)
    o, l = tilefold.attention(q, k, v, causal=causal, window_size=ws, softcap=sc, return_lse=True)
    do = torch.randn_like(o)
    g = torch.autograd.grad(o, (q, k, v), do)
    ro, rl = attention_ref(q.double(), k.double(), v.double(), causal=causal, window_size=ws, softcap=sc)
    rg = torch.autograd.grad(ro, (q, k, v), do.double())
    lo, ll = attention_ref(q, k, v, causal=causal, window_size=ws, softcap=sc, compute_dtype=dtype)
    lg = torch.autograd.grad(lo, (q, k, v), do)
    e = lambda a, b: (a.double() - b.double()).abs().nan_to_num(posinf=0, neginf=0).max().item()
    res = dict(kind="check", shape=[B, M, N, H, HK, D], dtype=str(dtype), causal=causal, ws=ws, sc=sc)
    ok = True
    for name, a, r, t in [("out", o, ro, lo)] + [(n, a, r, t) for n, a, r, t in zip(("dq", "dk", "dv"), g, rg, lg)]:
        ea, et = e(a, r), e(t, r)
        res[name] = [ea, et]
        ok &= ea <= 2 * et + 1e-5
    res["lse"] = e(l, rl); res["ok"] = bool(ok)
    emit(**res)

ORDERS = os.environ.get("SWEEP_ORDERS", "head").split(",")


def _warm(job):
    """Compile one (mode, config, causal, order) at a small shape with the same specializations as the
    timed shapes (every length a multiple of 16), so the timed loop finds it in Triton's disk cache."""
    mode, cfg, causal, order, D = job
    t0 = time.time()
    try:
        C.ORDER = order
        q = torch.randn(2, 256, 16, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
        k = torch.randn_like(q, requires_grad=True); v = torch.randn_like(q, requires_grad=True)
        if mode == "fwd":
            C.fwd_config = lambda *a: cfg
            tilefold.attention(q.detach(), k.detach(), v.detach(), causal=causal)
        else:
            C.bwd_config = lambda *a: cfg
            o = tilefold.attention(q, k, v, causal=causal)
            torch.autograd.grad(o, (q, k, v), torch.randn_like(o))
        torch.cuda.synchronize()
        return f"warm {mode} {cfg} causal={causal} {order}: {time.time() - t0:.0f}s"
    except Exception as ex:
        return f"warm {mode} {cfg} causal={causal} {order}: ERROR {repr(ex)[:200]}"


def prewarm(fwd_cands, bwd_cands, D):
    import concurrent.futures as cf, multiprocessing as mp
    jobs = [(m, c, causal, o, D) for m, cands in (("fwd", fwd_cands), ("bwd", bwd_cands)) for c in cands
            for causal in (False, True) for o in (ORDERS if causal else ORDERS[:1])]
    t0 = time.time()
    with cf.ProcessPoolExecutor(max_workers=min(len(jobs), os.cpu_count() or 4), mp_context=mp.get_context("spawn")) as ex:
        for r in ex.map(_warm, jobs):
            print(r, flush=True)
    emit(kind="prewarm", jobs=len(jobs), seconds=time.time() - t0)


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")

if __name__ == "__main__":
    torch.manual_seed(0)
    if "--v3" in sys.argv:  # checks run through the descriptor backward
        _orig_b = C.bwd_config
        C.bwd_config = lambda D, m, dt, dev: C.KernelConfig(64, 128, 8, 3, True) if dt != torch.float32 and D <= 128 else _orig_b(D, m, dt, dev)
    if "--v2" in sys.argv:  # checks run through the descriptor path
        _orig = C.fwd_config
        C.fwd_config = lambda D, m, dt, dev: C.KernelConfig(128, 64, 4, 2, True) if dt != torch.float32 and D <= 128 else _orig(D, m, dt, dev)
    print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
    checks = [] if "--no-checks" in sys.argv else [(2, 128, 128, 4, 4, 64, torch.bfloat16, False), (2, 113, 1023, 4, 1, 128, torch.bfloat16, True),
                 (1, 1023, 113, 8, 2, 96, torch.float16, True), (1, 300, 300, 4, 2, 256, torch.bfloat16, False),
                 (1, 257, 257, 2, 2, 40, torch.float16, True, (31, 0)), (3, 77, 1000, 4, 2, 64, torch.bfloat16, True, (100, 5), 10.0), (1, 200, 333, 2, 1, 128, torch.float32, False, (-1, -1), 30.0)]
    for args in checks:
        try:
            check(*args)
        except Exception as ex:
            emit(kind="check", args=str(args), error=repr(ex)[:400])
    B, H, D = 2, 16, int(os.environ.get("SWEEP_D", "256" if "--hd256" in sys.argv else "128"))
    if "--hd256" in sys.argv:  # head dim 256 (bf16); first entries are the current configs (baselines)
        # Offline sm_90 compile check (scripts/compile_check.py --hd256; regs/stack from the cubin): every
        # pointer-load config spills at hd256 (the [BLOCK, 256] pointer tensors), including both baselines
        # (fwd 3.3 KB stack; bwd dkdv can't fit 2*64*256 fp32 accumulators in 4 warps). With descriptors:
        #   fwd 128x32 8w 2/3 st: 202 regs, no spill, 131/164 KB   fwd 128x64 8w 2 st: FA2 tile, 112 B stack
        #   fwd 64x64 8w 2 st: 244 regs, no spill (64-row tiles at 8 warps compute QK^T twice: [8,1] layout)
        #   fwd 64x32 8w 2 st: 205 regs, no spill, 98 KB
        fwd_cands = [C.KernelConfig(64, 64, 4, 2), C.KernelConfig(128, 32, 8, 2, True), C.KernelConfig(128, 32, 8, 3, True),
                     C.KernelConfig(128, 64, 8, 2, True), C.KernelConfig(64, 64, 8, 2, True), C.KernelConfig(64, 32, 8, 2, True)]
        # bwd: no config is spill-free with wgmma in both kernels. Spill-free pairs (mma.sync, no wgmma: the
        # dK/dV dots have M = BLOCK_N = 32): 64x32 8w 1st (dkdv 252 regs, dq 234), 32x32 8w 2st (248 / 217);
        # 64x32 8w 2st (dkdv 24 B stack). wgmma ones spill: 64x64 8w 2st (FA2 tile; dkdv 1760 B stack,
        # dq 192 B), 32x64 8w 2st (dkdv 1352 B, dq 136 B).
        # Measured in sweep hd256 (benchmarks/NOTES.md): 64x64 8w 2st best (187 / 180 TFLOP/s), the current default.
        # Split head dim (dkdv_split_d=2: two programs per key block, each accumulating half of dK/dV's columns;
        # 1.5x the dK/dV matmuls), offline with 16-divisible strides as launched, LDL/STL inside the three
        # query-tile loops non-causal | causal (baseline 64x64 2st: 116/57/104 | 140/61/85, 648 B stack):
        #   64x64 8w 2st split: 30/5/38 | 27/39/40, 368 B     32x64 8w 3st split: 0 | 0, 152 B (outside loops), 165 KB
        #   32x128 8w 2st split: 0 | 0, 152 B, 197 KB          16x64 8w 3st split: no stack at all (both), 115 KB
        #   (python scripts/compile_check.py --hd256-split)
        # dQ stays the baseline's 64x64 8w 2st tile (dq=) so only the dK/dV kernel changes.
        # SWEEP_HD256_OLD=1 re-runs the earlier non-split candidates too.
        dq256 = C.KernelConfig(64, 64, 8, 2, True)
        bwd_cands = [C.KernelConfig(64, 64, 8, 2, True),
                     C.KernelConfig(64, 64, 8, 2, True, dkdv_split_d=2, dq=dq256),
                     C.KernelConfig(32, 64, 8, 3, True, dkdv_split_d=2, dq=dq256),
                     C.KernelConfig(32, 128, 8, 2, True, dkdv_split_d=2, dq=dq256),
                     C.KernelConfig(16, 64, 8, 3, True, dkdv_split_d=2, dq=dq256)]
        if os.environ.get("SWEEP_BWD_ONLY"):  # the forward candidates were measured in sweep hd256
            fwd_cands = []
        if os.environ.get("SWEEP_HD256_OLD"):
            bwd_cands += [C.KernelConfig(32, 64, 4, 1), C.KernelConfig(64, 32, 8, 1, True), C.KernelConfig(64, 32, 8, 2, True),
                          C.KernelConfig(32, 32, 8, 2, True), C.KernelConfig(32, 64, 8, 2, True)]
    elif "--bwd128" in sys.argv:  # session 3: dQ with its own tile, descriptors, program order (SWEEP_ORDERS)
        fwd_cands = [C.fwd_config(D, False, torch.bfloat16, torch.device(dev))]
        bwd_cands = [C.KernelConfig(64, 128, 8, 3), C.KernelConfig(64, 128, 8, 3, True), C.KernelConfig(64, 128, 8, 2, True),
                     C.KernelConfig(64, 128, 8, 3, dq=C.KernelConfig(128, 64, 8, 3, True)),
                     C.KernelConfig(64, 128, 8, 3, dq=C.KernelConfig(128, 128, 8, 2, True))]
    elif "--v3" in sys.argv:  # backward with tensor descriptors (Q/dO in dK/dV, K/V in dQ) vs the pointer baseline
        fwd_cands = []
        bwd_cands = [C.KernelConfig(64, 128, 8, 3), C.KernelConfig(64, 128, 8, 3, True), C.KernelConfig(64, 128, 8, 2, True),
                     C.KernelConfig(64, 64, 4, 3, True)]
    elif "--v2" in sys.argv:  # tensor-descriptor (TMA) K/V loads vs the pointer baseline, forward only
        fwd_cands = [C.KernelConfig(128, 64, 8, 3), C.KernelConfig(128, 64, 4, 2, True), C.KernelConfig(128, 128, 8, 2, True),
                     C.KernelConfig(128, 64, 8, 3, True), C.KernelConfig(128, 64, 8, 2, True), C.KernelConfig(128, 128, 8, 3, True)]
        bwd_cands = []
    else:
        fwd_cands = [C.KernelConfig(128, 64, 4, 3), C.KernelConfig(128, 128, 8, 2), C.KernelConfig(128, 64, 8, 3),
                     C.KernelConfig(128, 128, 8, 3), C.KernelConfig(64, 64, 4, 3), C.KernelConfig(128, 32, 4, 3)]
        bwd_cands = [C.KernelConfig(64, 128, 8, 2), C.KernelConfig(32, 128, 4, 2), C.KernelConfig(64, 64, 4, 2),
                     C.KernelConfig(64, 128, 4, 2), C.KernelConfig(32, 64, 4, 3), C.KernelConfig(64, 128, 8, 3)]
    if "--prewarm" in sys.argv:
        prewarm(fwd_cands, bwd_cands, D)
    for S in tuple(int(x) for x in os.environ.get("SWEEP_S", "8192,16384").split(",")):
        for causal in (False, True):
            q = torch.randn(B, S, H, D, device=dev, dtype=torch.bfloat16, requires_grad=True)
            k = torch.randn_like(q, requires_grad=True); v = torch.randn_like(q, requires_grad=True)
            do = torch.randn_like(q)
            fl = 4 * B * H * S * S * D * (0.5 if causal else 1.0)
            qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
            for name, be in (("sdpa-cudnn", SDPBackend.CUDNN_ATTENTION), ("sdpa-flash", SDPBackend.FLASH_ATTENTION)):
                try:
                    with sdpa_kernel(be):
                        ms = bench(lambda: torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal))
                        o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
                        msb = bench(lambda: torch.autograd.grad(o, (qt, kt, vt), do.transpose(1, 2), retain_graph=True))
                    emit(kind="bench", provider=name, S=S, causal=causal, fwd_ms=ms, fwd_tflops=fl / ms * 1e-9,
                         bwd_ms=msb, bwd_tflops=2.5 * fl / msb * 1e-9)
                except Exception as ex:
                    emit(kind="bench", provider=name, error=repr(ex)[:300])
            orders = ORDERS if causal else ORDERS[:1]
            for cfg in fwd_cands:
                C.fwd_config = lambda *a, cfg=cfg: cfg
                for order in orders:
                    C.ORDER = order
                    try:
                        ms = bench(lambda: tilefold.attention(q.detach(), k.detach(), v.detach(), causal=causal))
                        emit(kind="bench", provider="tilefold", mode="fwd", cfg=str(cfg), order=order, S=S, causal=causal, ms=ms, tflops=fl / ms * 1e-9)
                    except Exception as ex:
                        emit(kind="bench", provider="tilefold", mode="fwd", cfg=str(cfg), order=order, error=repr(ex)[:300])
            if not bwd_cands:
                continue
            o = tilefold.attention(q, k, v, causal=causal)
            for cfg in bwd_cands:
                C.bwd_config = lambda *a, cfg=cfg: cfg
                for order in orders:
                    C.ORDER = order
                    try:
                        ms = bench(lambda: torch.autograd.grad(o, (q, k, v), do, retain_graph=True))
                        emit(kind="bench", provider="tilefold", mode="bwd", cfg=str(cfg), order=order, S=S, causal=causal, ms=ms, tflops=2.5 * fl / ms * 1e-9)
                    except Exception as ex:
                        emit(kind="bench", provider="tilefold", mode="bwd", cfg=str(cfg), order=order, error=repr(ex)[:300])
            C.ORDER = "head"
