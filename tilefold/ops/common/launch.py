"""Launching a Triton kernel again without Triton's per-call argument binding, and per-stream scratch.

``fn[grid](*args)`` re-derives the kernel's specialization on every call (the type and 16-byte alignment
of every pointer, the value class of every int: 1, divisible by 16, other), hashes it and looks the
compiled kernel up: on the H200 machine's host that is a large part of the ~110 us a decode call cost
(benchmarks/NOTES.md, "Decode: host"). Where a launcher already knows a key that fixes the
specialization -- every int argument and every constexpr is a function of the key, and every pointer's
alignment is in it -- ``LaunchCache`` launches the compiled kernel it got from the first call with that
key directly (``CompiledKernel.run``, with Triton's launch hooks, so profilers still see it). The first
call per key, the interpreter, and calls while Triton's JIT hooks are set go through ``fn[grid]``.

``stream_scratch`` keeps small per-(device, stream) buffers (split-KV partial states, the combine's
counters) alive between calls: kernels on one stream run in order, so a buffer reused on the same stream
is never in use by an earlier call. During CUDA graph capture it hands out fresh buffers instead (a graph
may be replayed on another stream)."""
from __future__ import annotations

import inspect
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

    def clear(self):
        self.kernels.clear()

    def launch(self, key, grid, args: tuple, constexprs: dict, **options):
        if interpreter_enabled():
            self.fn[grid](*args, **constexprs, **options)
            return
        dev = torch.cuda.current_device()  # the compiled kernel's module is loaded per device
        entry = self.kernels.get((dev, key))
        if entry is None:
            ck = self.fn[grid](*args, **constexprs, **options)
            if ck is not None and hasattr(ck, "run"):
                if len(self.kernels) >= self.max_entries:
                    self.kernels.clear()
                tail = tuple(constexprs[n] if n in constexprs else self._defaults[n]
                             for n in self._names[len(args):])
                self.kernels[(dev, key)] = (ck, tail)
            return
        ck, tail = entry
        full = args + tail
        stream = _raw_stream(dev)
        knobs = triton.knobs.runtime
        ck.run(grid[0], grid[1], grid[2], stream, ck.function, ck.packed_metadata,
               ck.launch_metadata(grid, stream, *full), knobs.launch_enter_hook, knobs.launch_exit_hook, *full)
        self.fast_launches += 1


_SCRATCH: dict = {}
SCRATCH_MAX_BYTES = 32 << 20  # larger requests get a fresh allocation per call


def stream_scratch(name: str, numel: int, dtype: torch.dtype, device: torch.device, zero: bool = False):
    """A 1-D buffer of at least ``numel`` elements for use on the current stream of ``device``. ``zero``:
    the buffer is all zeros when first handed out, and the caller's kernels leave it all zeros again (the
    fused combine's counters); otherwise its contents are undefined."""
    nbytes = numel * torch.empty((), dtype=dtype).element_size()
    if nbytes > SCRATCH_MAX_BYTES or torch.cuda.is_current_stream_capturing():
        return (torch.zeros if zero else torch.empty)(numel, dtype=dtype, device=device)
    idx = device.index if device.index is not None else torch.cuda.current_device()
    # per host thread too: two threads on one stream could otherwise interleave a split launch and its
    # combine launch around each other's writes to the same partial states
    key = (name, dtype, idx, _raw_stream(idx), threading.get_ident())
    buf = _SCRATCH.get(key)
    if buf is None or buf.numel() < numel:
        buf = (torch.zeros if zero else torch.empty)(max(numel, 2 * (buf.numel() if buf is not None else 0)),
                                                     dtype=dtype, device=device)
        _SCRATCH[key] = buf
    return buf
