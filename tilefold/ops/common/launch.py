"""Launching a Triton kernel again without Triton's per-call argument binding, and per-stream scratch.

``fn[grid](*args)`` re-derives the kernel's specialization on every call (the type and 16-byte alignment
of every pointer, the value class of every int: 1, divisible by 16, other), hashes it and looks the
compiled kernel up: on the H200 machine's host that is a large part of the ~110 us a decode call cost
(benchmarks/NOTES.md, "Decode: host"). Where a launcher already knows a key that fixes the
specialization -- every int argument and every constexpr is a function of the key, and every pointer's
alignment is in it -- ``LaunchCache`` launches the compiled kernel it got from the first call with that
key directly (``CompiledKernel.run``, with Triton's launch hooks, so profilers still see it). The first
call per key, the interpreter, and calls while Triton's JIT hooks are set go through ``fn[grid]``.

``stream_scratches`` keeps small per-(device, stream) buffers (split-KV partial states, the combine's
counters) alive between calls: kernels on one stream run in order, so a buffer reused on the same stream
is never in use by an earlier call. During CUDA graph capture it hands out fresh buffers instead (a graph
may be replayed on another stream)."""
from __future__ import annotations

import inspect
import os
import threading

import torch
import triton

from .dispatch import interpreter_enabled

try:  # the raw stream handle Triton itself launches on
    from torch._C import _cuda_getCurrentRawStream as _raw_stream
except ImportError:  # pragma: no cover - CPU-only builds
    _raw_stream = None


class LaunchCache:
    """``launch(key, grid, args, constexprs, num_warps=..., num_stages=...)`` == ``fn[grid](*args, **constexprs,
    num_warps=..., num_stages=...)``, through the compiled kernel after the first call with ``key``. The caller
    guarantees ``key`` determines Triton's specialization (see the module docstring); ``args`` are the
    kernel's leading positional parameters, ``constexprs`` the rest by name."""

    def __init__(self, fn, max_entries: int = 256):
        self.fn = fn
        self.max_entries = max_entries
        self.kernels: dict = {}
        params = inspect.signature(fn.fn).parameters
        self._names = list(params)
        self._defaults = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
        self.fast_launches = 0  # how many calls took the direct path (tests read it)
        self.raw_launches = 0  # how many of those went through _RawLaunch (cached encoded descriptors)

    def clear(self):
        self.kernels.clear()

    def _hooked(self) -> bool:
        """Triton's launch path does work the direct path would skip: pre-run hooks, JIT cache / compile hooks, debug
        builds (knobs.runtime.debug is part of the compiled kernel's options)."""
        rt = triton.knobs.runtime
        comp = getattr(triton.knobs, "compilation", None)
        return bool(getattr(self.fn, "pre_run_hooks", None) or getattr(rt, "jit_cache_hook", None)
                    or getattr(rt, "jit_post_compile_hook", None) or getattr(rt, "debug", False)
                    or getattr(comp, "instrumentation_mode", None))  # sanitizers / proton: in the compile key

    def launch(self, key, grid, args: tuple, constexprs: dict, **options):
        if interpreter_enabled() or self._hooked():
            self.fn[grid](*args, **constexprs, **options)
            return
        dev = torch.cuda.current_device()  # the compiled kernel's module is loaded per device
        entry = self.kernels.get((dev, key))
        if entry is None:
            ck = self.fn[grid](*args, **constexprs, **options)
            if ck is not None and hasattr(ck, "run"):
                if len(self.kernels) >= self.max_entries:
                    self.kernels.clear()
                # a launch option that is also a kernel parameter (the Gluon kernels' num_warps) takes the option's value
                tail = tuple(constexprs[n] if n in constexprs else options[n] if n in options else self._defaults[n]
                             for n in self._names[len(args):])
                full = args + tail
                self.kernels[(dev, key)] = (ck, tail, _RawLaunch.make(ck, full) if RAW_LAUNCH else None)
            return
        ck, tail, raw = entry
        full = args + tail
        stream = _raw_stream(dev)
        knobs = triton.knobs.runtime
        if raw is not None and _no_hook(knobs.launch_enter_hook) and _no_hook(knobs.launch_exit_hook):
            raw(grid, stream, full)
            self.raw_launches += 1
        else:
            ck.run(grid[0], grid[1], grid[2], stream, ck.function, ck.packed_metadata,
                   ck.launch_metadata(grid, stream, *full), knobs.launch_enter_hook, knobs.launch_exit_hook, *full)
        self.fast_launches += 1


# Hopper host tensor descriptors: Triton's launcher wrapper encodes every descriptor argument with the driver
# (cuTensorMapEncodeTiled) on every launch; _RawLaunch calls the launcher's C entry itself with encoded
# descriptors cached per (pointer, shape, strides). "0": every direct launch goes through CompiledKernel.run.
RAW_LAUNCH = os.environ.get("TILEFOLD_RAW_LAUNCH", "1") != "0"
DESC_CACHE_MAX = 4096


def _no_hook(h) -> bool:
    """A launch hook slot that would call nothing: None or an empty chain (Triton 3.6's knobs hold a HookChain that
    profilers such as proton add to)."""
    return h is None or (type(h).__name__ == "HookChain" and not h.calls)


class _RawLaunch:
    """The C launch entry of one compiled CUDA kernel, called with its descriptor arguments already expanded the way
    Triton 3.6's wrapper (``wrap_handle_tensordesc`` / ``make_tensordesc_arg``) expands them: the encoded CUtensorMap
    object, then the shape and the strides. An encoded descriptor is a pure function of the base pointer, shape,
    strides, padding and the kernel's per-descriptor metadata (swizzle, element type, block), so it is cached per
    (descriptor slot, pointer, shape, strides, padding): the tensors of a training loop recur at the same addresses.
    ``make`` returns None (the caller keeps ``CompiledKernel.run``) for anything it does not recognize: another
    launcher class, kernels that need global or profile scratch, descriptors lowered to pointers."""

    __slots__ = ("launch", "function", "metadata", "coop", "pdl", "pos", "metas", "cache", "encode", "hits")

    @classmethod
    def make(cls, ck, full):
        try:
            from triton.backends.nvidia import driver as nvd
            run = ck.run
            if type(run).__name__ != "CudaLauncher" or run.global_scratch_size or run.profile_scratch_size:
                return None
            sig = list(ck.src.signature.values())
            pos = [i for i, t in enumerate(sig) if isinstance(t, str) and t.startswith("tensordesc")]
            if len(sig) != len(full):
                return None
            inner = run.launch
            if pos:
                metas = getattr(ck.metadata, "tensordesc_meta", None)
                cells = dict(zip(inner.__code__.co_freevars, inner.__closure__ or ()))
                if not metas or len(metas) != len(pos) or any(m is None for m in metas) or "launcher" not in cells:
                    return None
                raw = cells["launcher"].cell_contents
            else:
                metas, raw = [], inner
            self = object.__new__(cls)
            self.launch, self.function, self.metadata = raw, ck.function, ck.packed_metadata
            self.coop, self.pdl = run.launch_cooperative_grid, run.launch_pdl
            self.pos, self.metas, self.cache, self.hits = pos, metas, {}, 0
            self.encode = nvd.make_tensordesc_arg
            return self
        except Exception:  # noqa: BLE001 - a Triton whose internals differ: keep its own launch path
            return None

    def __call__(self, grid, stream, full):
        if self.pos:
            ex = list(full)
            cache = self.cache
            for j in range(len(self.pos) - 1, -1, -1):
                i = self.pos[j]
                d = full[i]
                key = (j, d.base.data_ptr(), tuple(d.shape), tuple(d.strides), d.padding)
                enc = cache.get(key)
                if enc is None:
                    if len(cache) >= DESC_CACHE_MAX:
                        cache.clear()
                    enc = cache[key] = self.encode(d, self.metas[j])
                else:
                    self.hits += 1
                ex[i:i + 1] = enc
        else:
            ex = full
        self.launch(grid[0], grid[1], grid[2], stream, self.function, self.coop, self.pdl, None, None,
                    self.metadata, None, None, None, *ex)


_SCRATCH: dict = {}
SCRATCH_MAX_BYTES = 32 << 20  # larger requests get a fresh allocation per call


def stream_scratches(device: torch.device, *specs):
    """1-D buffers of at least ``numel`` elements each, ``specs`` = ``(name, numel, dtype, zero)``, for use on the
    current stream of ``device``. ``zero``: the buffer is all zeros when first handed out, and the caller's kernels
    leave it all zeros again (the fused combine's counters); otherwise its contents are undefined. The capture check,
    the stream handle and the thread id are looked up once per call (host time: the decode path takes three buffers)."""
    capturing = torch.cuda.is_current_stream_capturing()
    idx = device.index if device.index is not None else torch.cuda.current_device()
    # per host thread too: two threads on one stream could otherwise interleave a split launch and its
    # combine launch around each other's writes to the same partial states
    where = (idx, _raw_stream(idx), threading.get_ident())
    out = []
    for name, numel, dtype, zero in specs:
        if capturing or numel * dtype.itemsize > SCRATCH_MAX_BYTES:
            out.append((torch.zeros if zero else torch.empty)(numel, dtype=dtype, device=device))
            continue
        key = (name, dtype, where)
        buf = _SCRATCH.get(key)
        if buf is None or buf.numel() < numel:
            buf = (torch.zeros if zero else torch.empty)(max(numel, 2 * (buf.numel() if buf is not None else 0)),
                                                         dtype=dtype, device=device)
            _SCRATCH[key] = buf
        out.append(buf)
    return out


def int_class(x: int) -> tuple:
    """What Triton 3.6 specializes an int argument on (``native_specialize_impl``): equal to 1 (then a constant),
    divisible by 16, and whether it fits in int32. A launch key that holds an int argument's class instead of
    its value keeps that argument free to vary between direct launches."""
    return (x == 1, x % 16 == 0, -2 ** 31 <= x < 2 ** 31)


def arg_class(x) -> tuple:
    """``int_class`` of an int argument; of a tensor argument (a pointer) its 16-byte alignment."""
    if isinstance(x, torch.Tensor):
        return ("ptr", x.data_ptr() % 16 == 0)
    return int_class(x)


def plain_descriptor(cls, base, shape, strides, block_shape, layout):
    """A host tensor descriptor (Gluon's ``TensorDescriptor`` dataclass ``cls``) built without its per-object checks
    (rank, 16-byte alignment, positive shape, the layout's type), for a launcher that ran them once for the same
    shape, strides, block and layout (a cached plan). The base pointer's 16-byte alignment is the caller's to check
    on every call (the attention launchers' ``supported`` / ``plan`` do, before they launch)."""
    d = object.__new__(cls)
    d.base, d.shape, d.strides, d.block_shape, d.layout, d.padding = base, shape, strides, block_shape, layout, "zero"
    return d


# Hopper Gluon launchers: a cached plan per call shape (grid, integer arguments, descriptor shapes) and a direct
# launch of the compiled kernel (LaunchCache); "0" sends every call through the kernel's own launch (fn[grid])
DIRECT_GLUON = os.environ.get("TILEFOLD_SM90_DIRECT_LAUNCH", "1") != "0"
PLANS_MAX = 256
