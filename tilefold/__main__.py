"""``python -m tilefold {demo,bench,info}``.

- ``demo``: ``tilefold.attention`` on the default device (CUDA if available, else CPU) against the
  fp64 reference for a few configurations, forward and backward; prints time and errors.
- ``bench <op> [--quick] [--out DIR] [--providers a,b] [--rounds N]``: the registered benchmark of ``op``
  (``tilefold/bench/<op>.py``); writes JSON (+ PNG) to DIR (default ``benchmarks/results``).
- ``info``: versions, the GPU, and which benchmark providers are importable.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import sys
import time


# ---------------------------------------------------------------------------------------------
# demo


def _demo_configs(cuda: bool, interpreted: bool = False):
    if cuda:
        B, H, S, D = 2, 16, 2048, 128
        win = (256, 256)
    elif interpreted:  # Triton interpreter on the CPU: slow, keep it small
        B, H, S, D = 1, 2, 128, 32
        win = (32, 32)
    else:
        B, H, S, D = 1, 4, 512, 64
        win = (64, 64)
    g = 4 if H % 4 == 0 and H > 4 else 2
    return [
        ("mha", dict(B=B, H=H, HK=H, M=S, N=S, D=D), dict(causal=False)),
        ("causal", dict(B=B, H=H, HK=H, M=S, N=S, D=D), dict(causal=True)),
        (f"gqa {g}:1 causal", dict(B=B, H=H, HK=H // g, M=S, N=S, D=D), dict(causal=True)),
        (f"window {win[0]},{win[1]}", dict(B=B, H=H, HK=H, M=S, N=S, D=D), dict(window_size=win)),
        ("causal sq<sk", dict(B=B, H=H, HK=H, M=S // 2, N=S, D=D), dict(causal=True)),
        ("softcap 30 sq>sk", dict(B=B, H=H, HK=H, M=S, N=S // 2, D=D), dict(softcap=30.0)),
    ]


def _maxdiff(a, b):
    import torch

    a, b = a.detach().double(), b.detach().double()
    both_inf = torch.isinf(a) & torch.isinf(b) & (torch.sign(a) == torch.sign(b))
    d = (a - b).abs().masked_fill(both_inf, 0.0)
    return float(d.max()) if d.numel() else 0.0


def demo(args) -> int:
    import torch

    import tilefold
    from tilefold.bench.core import bench_ms
    from tilefold.ops.attention.naive import attention_ref

    if not hasattr(tilefold, "attention"):
        print("tilefold.attention is not available in this build", file=sys.stderr)
        return 1
    cuda = torch.cuda.is_available() and not args.cpu
    device = "cuda" if cuda else "cpu"
    dtype = torch.bfloat16 if cuda else torch.float32
    try:
        from tilefold.ops.common.dispatch import backend_for

        backend = backend_for(torch.empty(0, device=device))
    except Exception:  # noqa: BLE001
        backend = "?"
    where = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"tilefold demo on {where} ({device}, {str(dtype).removeprefix('torch.')}, backend: {backend})")
    print("errors are max |x - ref_fp64|; 'torch' is the same reference computed at the input precision;"
          " ok: err <= 2*torch + 1e-5 for out, lse and dq/dk/dv")
    header = ["config", "shape B,M,N,H/HK,D", "fwd ms", "bwd ms", "out err", "lse err", "dqkv err",
              "torch out", "torch lse", "torch dqkv", "ok"]
    rows = []
    all_ok = True
    budget = dict(warmup=5, rep=20) if not cuda else dict(warmup=25, rep=100)
    for name, s, kw in _demo_configs(cuda, interpreted=not cuda and backend == "triton"):
        q = torch.randn(s["B"], s["M"], s["H"], s["D"], device=device, dtype=dtype, requires_grad=True)
        k = torch.randn(s["B"], s["N"], s["HK"], s["D"], device=device, dtype=dtype, requires_grad=True)
        v = torch.randn(s["B"], s["N"], s["HK"], s["D"], device=device, dtype=dtype, requires_grad=True)
        dout = torch.randn(s["B"], s["M"], s["H"], s["D"], device=device, dtype=dtype)

        out, lse = tilefold.attention(q, k, v, return_lse=True, **kw)
        grads = torch.autograd.grad(out, (q, k, v), dout)

        leaves64 = [t.detach().double().requires_grad_() for t in (q, k, v)]
        out64, lse64 = attention_ref(*leaves64, **kw)
        grads64 = torch.autograd.grad(out64, leaves64, dout.double())
        leaves_lp = [t.detach().clone().requires_grad_() for t in (q, k, v)]
        out_lp, lse_lp = attention_ref(*leaves_lp, compute_dtype=dtype, **kw)
        grads_lp = torch.autograd.grad(out_lp, leaves_lp, dout)

        e_out, e_lse = _maxdiff(out, out64), _maxdiff(lse, lse64)
        e_g = max(_maxdiff(g, r) for g, r in zip(grads, grads64))
        t_out, t_lse = _maxdiff(out_lp, out64), _maxdiff(lse_lp, lse64)
        t_g = max(_maxdiff(g, r) for g, r in zip(grads_lp, grads64))
        ok = e_out <= 2 * t_out + 1e-5 and e_lse <= 2 * t_lse + 1e-5 and e_g <= 2 * t_g + 1e-5
        all_ok &= ok

        fwd_ms = bench_ms(lambda: tilefold.attention(q, k, v, **kw), **budget)
        o = tilefold.attention(q, k, v, **kw)
        bwd_ms = bench_ms(lambda: torch.autograd.grad(o, (q, k, v), dout, retain_graph=True), **budget)
        shape = f"{s['B']},{s['M']},{s['N']},{s['H']}/{s['HK']},{s['D']}"
        rows.append([name, shape, f"{fwd_ms:.3f}", f"{bwd_ms:.3f}", f"{e_out:.2e}", f"{e_lse:.2e}",
                     f"{e_g:.2e}", f"{t_out:.2e}", f"{t_lse:.2e}", f"{t_g:.2e}", "yes" if ok else "NO"])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths))))
    for r in rows:
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print("all within the bound" if all_ok else "SOME ERRORS EXCEED THE BOUND")
    return 0 if all_ok else 2


# ---------------------------------------------------------------------------------------------
# info


def _try_import(name: str):
    """(ok, version or reason). Any exception counts as unavailable."""
    try:
        mod = importlib.import_module(name)
    except Exception as e:  # noqa: BLE001 - a broken optional package must not break info
        return False, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
    ver = getattr(mod, "__version__", None)
    if ver is None:
        try:
            from importlib.metadata import version

            ver = version(name.split(".")[0].replace("_", "-"))
        except Exception:  # noqa: BLE001
            ver = "installed"
    return True, str(ver)


def _hopper_line(torch) -> str:
    """Whether the Gluon kernels (Hopper forward, dK/dV and dQ) can run here, and their switches."""
    try:
        from tilefold.ops.attention import backward_sm90, config, forward_sm90
    except Exception as e:  # noqa: BLE001
        return f"gluon    not importable: {type(e).__name__}: {e}"
    if not (forward_sm90.HAVE_GLUON and backward_sm90.HAVE_GLUON):
        return "gluon    not in this Triton (the Triton kernels run everywhere)"
    sm90 = [i for i in range(torch.cuda.device_count()) if torch.cuda.get_device_capability(i)[0] == 9] \
        if torch.cuda.is_available() else []
    where = f"Hopper GPU(s) {sm90}" if sm90 else "no Hopper GPU here, so unused"
    return (f"gluon    available; forward TILEFOLD_FWD_SM90={config.FWD_SM90}, backward TILEFOLD_BWD_SM90="
            f"{config.BWD_SM90} ({where})")


def info(args) -> int:
    lines = [f"python   {platform.python_version()} ({sys.executable})"]
    try:
        import torch

        lines.append(f"torch    {torch.__version__} (cuda {torch.version.cuda or '-'})")
    except Exception as e:  # noqa: BLE001
        print("\n".join(lines + [f"torch    not importable: {e}"]))
        return 1
    for name in ("triton", "numpy"):
        ok, ver = _try_import(name)
        lines.append(f"{name:<8} {ver if ok else 'not importable: ' + ver}")
    try:
        from importlib.metadata import version

        tf_ver = version("tilefold")
    except Exception:  # noqa: BLE001
        tf_ver = "not installed (running from source)"
    lines.append(f"tilefold {tf_ver}")
    interp = os.environ.get("TRITON_INTERPRET")
    if interp not in (None, "", "0"):
        lines.append(f"TRITON_INTERPRET={interp} (the Triton kernels run on CPU tensors through the interpreter)")
    else:
        lines.append("TRITON_INTERPRET not set")

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        for i in range(n):
            p = torch.cuda.get_device_properties(i)
            lines.append(f"gpu {i}    {p.name}, {p.multi_processor_count} SMs, {p.total_memory / 2**30:.1f} GiB, "
                         f"sm_{p.major}{p.minor}")
    else:
        lines.append("gpu      no CUDA (tilefold runs its CPU path; `demo` uses the CPU)")

    try:
        import tilefold

        has_attn = hasattr(tilefold, "attention")
    except Exception as e:  # noqa: BLE001
        has_attn = False
        lines.append(f"tilefold import failed: {type(e).__name__}: {e}")
    lines.append(f"tilefold.attention {'available' if has_attn else 'not available'}")
    lines.append(_hopper_line(torch))

    lines.append("providers (bench anchors):")
    cuda = torch.cuda.is_available()
    b = torch.backends
    sdpa = [
        ("sdpa-flash", getattr(b.cuda, "is_flash_attention_available", lambda: cuda)()),
        ("sdpa-cudnn", b.cudnn.is_available() and cuda,
         f"cudnn {b.cudnn.version()}" if b.cudnn.is_available() else "no cuDNN"),
        ("sdpa-efficient", cuda),
    ]
    for row in sdpa:
        name, ok = row[0], bool(row[1])
        extra = row[2] if len(row) > 2 else ""
        note = "" if cuda else " (CUDA needed to run)"
        lines.append(f"  {name:<15} {'yes' if ok else 'no'} {extra}{note}".rstrip())
    for prov, mod in (("flex", "torch.nn.attention.flex_attention"), ("fla", "fla"),
                      ("fa4", "flash_attn.cute"), ("sage", "sageattention")):
        ok, ver = _try_import(mod)
        lines.append(f"  {prov:<15} {'yes (' + ver + ')' if ok else 'no'}  [{mod}]")
    opt = []
    for name in ("tqdm", "matplotlib"):
        ok, _ = _try_import(name)
        opt.append(f"{name} {'yes' if ok else 'no'}")
    lines.append(f"bench extras (optional): {', '.join(opt)}")
    from tilefold.bench.core import available_ops

    lines.append(f"bench ops: {', '.join(available_ops()) or '(none)'}")
    print("\n".join(lines))
    return 0


# ---------------------------------------------------------------------------------------------
# bench


def bench(args) -> int:
    from tilefold.bench.core import run_op

    providers = None
    if args.providers:
        providers = [p.strip() for p in args.providers.split(",") if p.strip()]
    try:
        records, _ = run_op(args.op, quick=args.quick, out_dir=args.out, providers=providers, plot=not args.no_plot,
                            rounds=args.rounds)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0 if records else 1  # nothing measured (e.g. bench dropout without CUDA): a failure for scripts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tilefold",
                                 description="tilefold: the demo, the benchmarks and what this machine offers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="attention on the default device vs the fp64 reference")
    d.add_argument("--cpu", action="store_true", help="use the CPU even if CUDA is available")
    d.set_defaults(func=demo)
    bp = sub.add_parser("bench", help="benchmark an op against the anchors (JSON + PNG)")
    from tilefold.bench.core import available_ops
    bp.add_argument("op", help=f"op name: {', '.join(available_ops())}")
    size = bp.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the few headline shapes only")
    size.add_argument("--full", action="store_true", help="the full sweep (the default)")
    bp.add_argument("--out", default=None, help="output folder (default benchmarks/results)")
    bp.add_argument("--providers", default=None, help="comma-separated provider names (default: all)")
    bp.add_argument("--no-plot", action="store_true", help="skip the PNG")
    bp.add_argument("--rounds", type=int, default=1,
                    help="measure the grid this many times with fresh inputs, record the median (ops that take it)")
    bp.set_defaults(func=bench)
    ip = sub.add_parser("info", help="versions, GPU, available providers")
    ip.set_defaults(func=info)
    args = ap.parse_args(argv)
    t0 = time.time()
    rc = args.func(args)
    if args.cmd != "info":
        print(f"({time.time() - t0:.1f}s)", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
