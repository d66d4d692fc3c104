"""Benchmark machinery shared by every op: registry, timing, record format, FLOP counts, output.

An op module (``tilefold/bench/<op>.py``) registers one function::

    @register("attention")
    def run(quick: bool, progress, providers=None) -> list[dict]:
        bar = progress(total=len(cases), desc="attention")   # or: for c in progress(cases): ...
        ...
        bar.update()
        ...
        return records          # one dict per measurement, built with ``base_record``

``progress`` is a factory with a subset of tqdm's interface: ``progress(iterable=None, total=None,
desc=None)`` returns a bar that can be iterated (when given an iterable) or advanced with
``bar.update(n)``; ``bar.write(msg)`` prints without breaking the bar; ``bar.close()`` ends it (it is
also a context manager). ``providers`` (optional parameter) is a set of provider names the user asked
for (``--providers``) or ``None`` for all.

Op modules are imported lazily by name (``tilefold.bench.<op>``), so one op's missing optional
dependency never breaks another op. Records follow DESIGN.md §6.
"""
from __future__ import annotations

import datetime
import importlib
import inspect
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

# ---------------------------------------------------------------------------------------------
# registry

REGISTRY: dict[str, Callable] = {}
# Per-op plot options (x key, y key); filled by ``register``.
PLOT_OPTIONS: dict[str, dict] = {}

MEASURE_KEYS = ("ms", "tflops", "gbps", "max_err")
ROUND_KEYS = ("ms_rounds",)  # per-round measures (``--rounds``): kept in the JSON, not table columns
RUN_META_KEYS = ("cuda", "commit", "date", "env", "timing", "smoke")  # in the JSON, not in the printed table
META_KEYS = ("gpu", "torch", "triton", *RUN_META_KEYS)


def register(name: str, *, plot_x: str = "seqlen_q", plot_y: str = "tflops", ratios: tuple = ()):
    """Decorator: ``@register("attention")`` makes ``run(quick, progress) -> list[dict]`` the op's
    benchmark. ``plot_x``/``plot_y`` name the record keys the PNG plots (one line per provider);
    ``ratios`` names anchors the table compares ``tilefold`` with (columns ``tilefold/<anchor>``)."""

    def deco(fn):
        REGISTRY[name] = fn
        PLOT_OPTIONS[name] = {"x": plot_x, "y": plot_y, "ratios": tuple(ratios)}
        return fn

    return deco


def available_ops() -> list[str]:
    """Op names that have a module in ``tilefold/bench`` (not imported) or are registered."""
    here = Path(__file__).parent
    names = {p.stem for p in here.glob("*.py") if p.stem not in ("__init__", "core") and not p.stem.startswith("_")}
    return sorted(names | set(REGISTRY))


def load_op(name: str) -> Callable:
    """Import ``tilefold.bench.<name>`` (lazily, only this op) and return its registered run function."""
    if name not in REGISTRY:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"op: expected a name like 'attention', got {name!r}")
        try:
            importlib.import_module(f"tilefold.bench.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"tilefold.bench.{name}":
                raise ValueError(f"op: expected one of {available_ops()}, got {name!r}") from None
            raise
    if name not in REGISTRY:
        raise ValueError(f"op: module tilefold.bench.{name} registered no op {name!r} (use @register({name!r}))")
    return REGISTRY[name]


# ---------------------------------------------------------------------------------------------
# environment


def gpu_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"cpu-{platform.machine() or 'unknown'}"


def slug(text: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "unknown"


def triton_version() -> str | None:
    try:
        import triton

        return triton.__version__
    except Exception:  # noqa: BLE001 - a missing triton must not break the CPU path
        return None


def dtype_name(dtype) -> str:
    """torch.bfloat16 -> 'bfloat16'; strings pass through."""
    return str(dtype).removeprefix("torch.")


def base_record(op: str, provider: str, mode: str, dtype, **fields) -> dict:
    """One measurement in the DESIGN.md §6 format.

    Key order: op, provider, mode, dtype, the distinguishing ``fields`` (batch, heads, ...), then
    ms, tflops, gbps, max_err (``None`` when not given), then gpu, torch, triton.
    """
    rec = {"op": op, "provider": provider, "mode": mode, "dtype": dtype_name(dtype)}
    measures = {k: fields.pop(k, None) for k in MEASURE_KEYS}
    rec.update(fields)
    rec.update(measures)
    rec.update({"gpu": gpu_name(), "torch": torch.__version__.split("+")[0], "triton": triton_version()})
    rec.update(_run_meta())
    return rec


def _run_meta() -> dict:
    """What else a record needs to be read later: CUDA version, the source commit (when run from a git checkout), the
    time, the TILEFOLD_* switches set, the timing method, and whether it is a CPU smoke run (meaningless numbers)."""
    cuda = torch.cuda.is_available()
    return {"cuda": torch.version.cuda, "commit": _git_commit(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("TILEFOLD_")},
            "timing": ("triton do_bench median; 256 MB L2 flush before each call (host time beyond the flush's "
                       "~60-90 us is timed)" if cuda else "CPU wall-clock median (smoke run)"),
            "smoke": not cuda}


_COMMIT: list = []


def _git_commit():
    if not _COMMIT:
        import subprocess
        try:
            r = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).resolve().parent,
                               capture_output=True, text=True, timeout=10)
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                                   cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10)
            _COMMIT.append(r.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if r.returncode == 0
                           else None)
        except Exception:  # noqa: BLE001 - no git: an installed package
            _COMMIT.append(None)
    return _COMMIT[0]


# ---------------------------------------------------------------------------------------------
# timing


def bench_ms(fn: Callable[[], object], warmup: int = 25, rep: int = 100) -> float:
    """Median milliseconds of ``fn()``. On CUDA: ``triton.testing.do_bench`` (warmup/rep are time
    budgets in ms, L2 flushed between calls). Without CUDA: a wall-clock loop with the same budgets
    (at least 3 timed calls) — for smoke runs only."""
    if torch.cuda.is_available():
        import triton.testing

        return float(triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6) * 1e3
    for _ in range(max(0, min(int(warmup / one), 100))):
        fn()
    n = max(3, min(int(rep / one), 1000))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(statistics.median(times))


def wall_us(fn: Callable[[], object], calls: int = 300) -> float:
    """Microseconds per call of ``calls`` back-to-back calls (one sync after the last), no L2 flush: max(host time,
    GPU time) per call, the cost an eager loop of small calls sees. Where the host is the bound (decode at small batch)
    this is the host path's time, which ``bench_ms`` partly hides behind its L2 flush; where the GPU is, inputs that
    fit in L2 stay there between calls (faster than ``bench_ms``). On CPU: plain wall time."""
    cuda = torch.cuda.is_available()
    if not cuda:  # smoke runs: a few calls
        calls = min(calls, 5)
    for _ in range(10 if cuda else 1):
        fn()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / calls * 1e6


def _ceiling_record(op: str, provider: str, nbytes: int | None, dtype, moves: int, make_call) -> dict:
    """A bandwidth ceiling over ``nbytes`` of random ``dtype`` data (default 2 GiB on CUDA, 64 MiB on CPU):
    ``make_call(src)`` is the timed call, ``moves`` how many times it moves the bytes (the ``gbps`` count)."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if nbytes is None:
        nbytes = (2 << 30) if dev == "cuda" else (64 << 20)
    esize = torch.empty((), dtype=dtype).element_size()
    n = nbytes // esize
    src = torch.randn(n, device=dev, dtype=torch.float32).to(dtype) if dev == "cpu" else \
        torch.empty(n, device=dev, dtype=dtype).normal_()
    ms = bench_ms(make_call(src))
    rec = base_record(op, provider, "fwd", dtype, bytes=n * esize, ms=ms, gbps=gbps(moves * n * esize, ms))
    del src
    if dev == "cuda":
        torch.cuda.empty_cache()
    return rec


def copy_record(op: str, nbytes: int | None = None, dtype=torch.bfloat16) -> dict:
    """The ``copy`` provider: a device-to-device copy, ``gbps`` counting bytes read + written — the read + write
    bandwidth ceiling of this run."""
    def make_call(src):
        dst = torch.empty_like(src)
        return lambda: dst.copy_(src)
    return _ceiling_record(op, "copy", nbytes, dtype, 2, make_call)


def read_record(op: str, nbytes: int | None = None, dtype=torch.bfloat16) -> dict:
    """The ``read`` provider: a sum, ``gbps`` counting the bytes read once -- the read-only stream, the matching
    ceiling for figures that count reads only (decode's K and V: a copy also writes, and measured ~7% below what
    decode reads at, call 71)."""
    return _ceiling_record(op, "read", nbytes, dtype, 1, lambda src: lambda: torch.sum(src, dtype=torch.float32))


CEILINGS = ("copy", "read")  # the bandwidth providers every op knows


def check_providers(providers, known) -> None:
    """ValueError for a requested provider name the op does not know (``copy`` and ``read`` are always known)."""
    if providers is None:
        return
    unknown = set(providers) - set(known) - set(CEILINGS)
    if unknown:
        raise ValueError(f"providers: expected names from {list(known) + list(CEILINGS)}, got {sorted(unknown)}")


def copy_records(op: str, providers=None) -> list[dict]:
    """The bandwidth ceilings wanted (``copy``: read + write, ``read``: read only); a failure is reported, not raised."""
    out = []
    for name, fn in (("copy", copy_record), ("read", read_record)):
        if providers is not None and name not in providers:
            continue
        try:
            out.append(fn(op))
        except Exception as e:  # noqa: BLE001
            print(f"[{name}] failed: {type(e).__name__}: {e}", file=sys.stderr)
    return out


# ---------------------------------------------------------------------------------------------
# FLOP and bandwidth counts


def visible_pairs(M: int, N: int, causal: bool = False, window_size=(-1, -1)) -> int:
    """Exact number of (query i, key j) pairs that are visible, bottom-right aligned: query i sees key j
    iff ``i + N - M - left <= j <= i + N - M + right`` (``right = 0`` under causal; -1 unbounded)."""
    left, right = window_size
    if causal:
        right = 0 if right < 0 else min(right, 0)
    shift = N - M
    # Per row the visible keys are one interval [lo, hi]; sum the lengths (exact, vectorized).
    i = torch.arange(M, dtype=torch.int64)
    hi = torch.full_like(i, N - 1) if right < 0 else torch.clamp(i + shift + right, max=N - 1)
    lo = torch.zeros_like(i) if left < 0 else torch.clamp(i + shift - left, min=0)
    return int(torch.clamp(hi - lo + 1, min=0).sum())


def attention_flops(batch: int, heads: int, seqlen_q: int, seqlen_k: int, headdim: int,
                    causal: bool = False, window_size=(-1, -1), mode: str = "fwd",
                    headdim_v: int | None = None) -> int:
    """Matmul FLOPs of attention: 2·D (QK^T) + 2·Dv (PV) per visible pair, i.e. 4·B·H·M·N·D unmasked;
    masks count the visible pairs exactly. ``bwd`` is 2.5× the forward, ``fwd+bwd`` 3.5×."""
    dv = headdim if headdim_v is None else headdim_v
    fwd = 2 * batch * heads * visible_pairs(seqlen_q, seqlen_k, causal, window_size) * (headdim + dv)
    factor = {"fwd": 1.0, "bwd": 2.5, "fwd+bwd": 3.5}
    if mode not in factor:
        raise ValueError(f"mode: expected one of {list(factor)}, got {mode!r}")
    return int(fwd * factor[mode])


def tflops(flops: float, ms: float) -> float:
    return flops / (ms * 1e-3) / 1e12


def gbps(nbytes: float, ms: float) -> float:
    return nbytes / (ms * 1e-3) / 1e9


# ---------------------------------------------------------------------------------------------
# progress


class _SimpleBar:
    """tqdm stand-in: counter on stderr ('\\r' on a terminal, a line every ~10% otherwise)."""

    def __init__(self, iterable=None, total=None, desc=None, file=None):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.n = total, desc or "", 0
        self.file = file or sys.stderr
        self.tty = hasattr(self.file, "isatty") and self.file.isatty()
        self._last = -1
        self.t0 = time.time()

    def __iter__(self):
        for x in self.iterable:
            yield x
            self.update()
        self.close()

    def _show(self, force=False):
        tot = f"/{self.total}" if self.total else ""
        line = f"{self.desc}: {self.n}{tot} [{time.time() - self.t0:.0f}s]"
        if self.tty:
            print("\r" + line, end="", file=self.file, flush=True)
            return
        step = max(1, (self.total or 10) // 10)
        if force or self.n // step != self._last:
            self._last = self.n // step
            print(line, file=self.file, flush=True)

    def update(self, n: int = 1):
        self.n += n
        self._show()

    def write(self, msg: str):
        if self.tty:
            print("\r", end="", file=self.file)
        print(msg, file=self.file, flush=True)

    def set_postfix_str(self, s: str):  # tqdm compatibility; nothing to show
        pass

    def close(self):
        if self.tty:
            print(file=self.file, flush=True)
        self.file.flush()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(iterable: Iterable | None = None, total: int | None = None, desc: str | None = None):
    """A progress bar: tqdm if installed, else a plain stderr counter (same small interface)."""
    try:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, file=sys.stderr, mininterval=1.0)
    except ImportError:
        return _SimpleBar(iterable, total=total, desc=desc)


# ---------------------------------------------------------------------------------------------
# output: table, JSON, plot


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "y" if v else "n"
    if isinstance(v, float):
        if v == 0 or math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.3g}" if abs(v) < 1e-2 else f"{v:.2f}" if abs(v) < 1e4 else f"{v:.0f}"
    if isinstance(v, (list, tuple)):
        return ",".join(str(x) for x in v)
    return str(v)


def _varying_keys(records: list[dict]) -> list[str]:
    """Keys other than provider/measures/meta whose value differs between records (first-seen order). A key that some
    provider's records never carry (decode's num_splits, GLA's rms_err) describes that provider's run, not the case:
    as a row key it would put each provider on its own rows and leave the ratio columns empty."""
    skip = {"op", "provider", *MEASURE_KEYS, *ROUND_KEYS, *META_KEYS}
    keys: list[str] = []
    for r in records:
        for k in r:
            if k not in skip and k not in keys:
                keys.append(k)
    by_provider: dict = {}
    for r in records:
        by_provider.setdefault(r.get("provider"), set()).update(r)
    keys = [k for k in keys if all(k in ks for ks in by_provider.values())]
    return [k for k in keys if len({json.dumps(r.get(k)) for r in records}) > 1]


def _case_keys(records: list[dict]) -> list[str]:
    """The varying keys, less those that repeat an earlier one in every record (seqlen_k == seqlen_q)."""
    out: list[str] = []
    for k in _varying_keys(records):
        if not any(all(r.get(k) == r.get(o) for r in records) for o in out):
            out.append(k)
    return out


def format_table(records: list[dict], value: str | None = None, ratios: Iterable[str] = ()) -> str:
    """A pivot table: one row per case (the varying keys), one column per provider, cells = ``value``
    (default: tflops, or gbps where a record has no tflops, else ms), rows grouped by mode. Constant
    keys are in the header. ``ratios``: anchors to add a ``tilefold/<anchor>`` column for (speed
    ratio, same run). Below it, the copy (bandwidth ceiling) records."""
    if not records:
        return "(no records)"
    main = [r for r in records if r["provider"] not in CEILINGS]
    copies = [r for r in records if r["provider"] in CEILINGS]
    lines = []
    if main:
        keys = _case_keys(main)
        providers = list(dict.fromkeys(r["provider"] for r in main))
        varying = set(_varying_keys(main))
        # the header: keys with one value over all records (a provider-only key such as num_splits is in neither)
        const = {k: main[0].get(k) for k in main[0]
                 if k not in varying and k not in ("provider", *MEASURE_KEYS, *ROUND_KEYS, *RUN_META_KEYS)
                 and all(r.get(k) == main[0].get(k) for r in main)}
        lines.append("  ".join(f"{k}={_fmt(v)}" for k, v in const.items()))

        def cell(r):
            if value is not None:
                return r.get(value)
            for k in ("tflops", "gbps", "ms"):
                if r.get(k) is not None:
                    return r[k]
            return None

        unit = value or ("TFLOP/s" if any(r.get("tflops") is not None for r in main) else
                         "GB/s" if any(r.get("gbps") is not None for r in main) else "ms")
        rows: dict[tuple, dict] = {}
        for r in main:
            rows.setdefault(tuple(json.dumps(r.get(k)) for k in keys), {})[r["provider"]] = r
        modes = list(dict.fromkeys(r.get("mode") for r in main))
        order = sorted(rows, key=lambda key: modes.index(next(iter(rows[key].values())).get("mode")))
        ratios = [a for a in ratios if a in providers and "tilefold" in providers]
        header = keys + providers + [f"tilefold/{a}" for a in ratios]
        body = []
        for key in order:
            by_p = rows[key]
            first = next(iter(by_p.values()))
            row = [_fmt(first.get(k)) for k in keys] + [_fmt(cell(by_p[p])) if p in by_p else "-" for p in providers]
            for a in ratios:
                t, b = by_p.get("tilefold"), by_p.get(a)
                row.append(f"{b['ms'] / t['ms']:.2f}x" if t and b and t.get("ms") and b.get("ms") else "-")
            body.append(row)
        widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]
        lines.append(f"[{unit}]")
        lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
        lines.append("  ".join("-" * w for w in widths))
        lines.extend("  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body)
        errs = {}
        for r in main:
            if r.get("max_err") is not None:
                errs[r["provider"]] = max(errs.get(r["provider"], 0.0), r["max_err"])
        if errs:
            lines.append("max_err (worst over cases): " + "  ".join(f"{p}={e:.3g}" for p, e in errs.items()))
    for r in copies:
        what = "read + write" if r["provider"] == "copy" else "read only"
        lines.append(f"{r['provider']} ({r.get('bytes', 0) / 2**30:.2f} GiB, {r['dtype']}): {r['ms']:.3f} ms, "
                     f"{r['gbps']:.0f} GB/s ({what})")
    return "\n".join(lines)


def print_table(records: list[dict], file=None, ratios: Iterable[str] = ()) -> None:
    print(format_table(records, ratios=ratios), file=file or sys.stdout, flush=True)


def result_path(op: str, out_dir: str | os.PathLike | None = None, gpu: str | None = None,
                date: str | None = None, suffix: str = ".json") -> Path:
    """``<out_dir>/<op>-<gpu-slug>-<date><suffix>``; out_dir defaults to ``benchmarks/results`` (CPU smoke runs:
    ``benchmarks/results/cpu-smoke``, apart from the GPU results)."""
    gpu = gpu or gpu_name()
    if out_dir is not None:
        out = Path(out_dir)
    else:
        out = Path("benchmarks") / "results" / ("cpu-smoke" if not torch.cuda.is_available() else "")
    date = date or datetime.date.today().isoformat()
    return out / f"{op}-{slug(gpu)}-{date}{suffix}"


def write_json(records: list[dict], op: str, out_dir=None, gpu: str | None = None, date: str | None = None) -> Path:
    """Write the records (a JSON list, one object per measurement) and return the path; a file of the same name (an
    earlier run that day) is kept: the new one gets -2, -3, ..."""
    path = result_path(op, out_dir, gpu=gpu, date=date)
    n = 2
    while path.exists():
        path = result_path(op, out_dir, gpu=gpu, date=date, suffix=f"-{n}.json")
        n += 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records, indent=1) + "\n")
    return path


def plot_records(records: list[dict], path: str | os.PathLike, x: str = "seqlen_q", y: str = "tflops",
                 title: str | None = None) -> Path | None:
    """PNG: one panel per combination of the other varying keys, one line per provider (y against x).
    Returns the path, or ``None`` (with a message) when matplotlib is missing or nothing fits."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plot skipped: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return None
    pts = [r for r in records if r.get(x) is not None and r.get(y) is not None and r["provider"] not in CEILINGS]
    if not pts:
        print(f"plot skipped: no records with both {x!r} and {y!r}", file=sys.stderr)
        return None
    facet_keys = [k for k in _case_keys(pts) if k != x]
    panels: dict[tuple, list[dict]] = {}
    for r in pts:
        panels.setdefault(tuple(r.get(k) for k in facet_keys), []).append(r)
    n = len(panels)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    height = 3.3 * rows + 0.8
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, height), squeeze=False)
    providers = list(dict.fromkeys(r["provider"] for r in pts))
    colors = {p: f"C{i % 10}" for i, p in enumerate(providers)}
    for ax, (key, rs) in zip(axes.flat, panels.items()):
        for p in providers:
            line = sorted((r[x], r[y]) for r in rs if r["provider"] == p)
            if line:
                ax.plot([a for a, _ in line], [b for _, b in line], "o-", color=colors[p], label=p, ms=3)
        ax.set_title(", ".join(f"{k}={_fmt(v)}" for k, v in zip(facet_keys, key)) or (title or ""), fontsize=8)
        if all(isinstance(r[x], (int, float)) and r[x] > 0 for r in rs):
            ax.set_xscale("log", base=2)
        ax.set_xlabel(x, fontsize=8)
        ax.set_ylabel(y, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colors[p], marker="o", label=p) for p in providers]
    first = pts[0]
    top = 1 - 0.75 / height
    fig.suptitle(title or f"{first['op']} on {first.get('gpu')} ({y})", y=1 - 0.1 / height, va="top", fontsize=10)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.35 / height),
               ncol=min(len(providers), 8), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, top))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_op(name: str, quick: bool = False, out_dir=None, providers: Iterable[str] | None = None,
           plot: bool = True, rounds: int = 1) -> tuple[list[dict], Path | None]:
    """Load op ``name``, run it, print the table, write JSON (+ PNG). Returns (records, json path).
    ``rounds`` > 1: ops that take it measure their grid that many times and record the median (each round's ms
    beside it); others run once and say so."""
    fn = load_op(name)
    kwargs = {}
    params = inspect.signature(fn).parameters
    takes = lambda k: k in params or any(p.kind is p.VAR_KEYWORD for p in params.values())  # noqa: E731
    if providers is not None:
        if takes("providers"):
            kwargs["providers"] = set(providers)
        else:
            print(f"note: op {name!r} takes no provider filter; running all providers", file=sys.stderr)
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if rounds > 1:
        if takes("rounds"):
            kwargs["rounds"] = rounds
        else:
            print(f"note: op {name!r} takes no rounds; running its grid once", file=sys.stderr)
    t0 = time.time()
    records = fn(quick, progress, **kwargs)
    print(f"\n{name}: {len(records)} records in {time.time() - t0:.0f}s on {gpu_name()}")
    opts = PLOT_OPTIONS.get(name, {})
    print_table(records, ratios=opts.get("ratios", ()))
    if not records:
        print("no records: nothing written", file=sys.stderr)
        return records, None
    path = write_json(records, name, out_dir)
    print(f"wrote {path}")
    if plot:
        png = plot_records(records, path.with_suffix(".png"), x=opts.get("x", "seqlen_q"), y=opts.get("y", "tflops"))
        if png is not None:
            print(f"wrote {png}")
    return records, path
