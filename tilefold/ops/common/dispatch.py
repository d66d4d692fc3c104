"""Which implementation runs a call: the Triton kernels or the torch fold.

CUDA tensors run the Triton kernels. CPU tensors run the torch implementation of the same fold,
unless ``TRITON_INTERPRET=1`` is set, in which case the Triton kernels run on the CPU tensors through
the interpreter -- except bf16 tensors: the interpreter computes through numpy, which has no bf16, and its
bf16 results are wrong (attention: errors ~1e8), so bf16 stays on the torch implementation.
``use_backend`` overrides the choice in a scope (tests use it to run both on CPU).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import threading

import torch

from .host import env_get

_local = threading.local()

# Triton is a Linux package: without it the library still imports and runs its torch implementation on CPU tensors
try:
    HAVE_TRITON = importlib.util.find_spec("triton") is not None
except (ImportError, ValueError):
    HAVE_TRITON = False


def missing_triton(what: str):
    """A stand-in for a Triton entry point on a machine without Triton: raises saying so if it is ever called
    (``backend_for`` sends no call there)."""
    def _missing(*args, **kwargs):
        raise RuntimeError(f"{what} needs Triton, which is not installed (pip install triton; Linux only): only the "
                           f"torch implementation on CPU tensors is available")
    return _missing


def interpreter_enabled() -> bool:
    return env_get("TRITON_INTERPRET", "0") not in ("", "0")


@contextlib.contextmanager
def use_backend(name: str | None):
    """Force ``"triton"`` or ``"torch"`` for calls inside the block (``None``: automatic)."""
    if name not in (None, "triton", "torch"):
        raise ValueError(f"backend: expected 'triton', 'torch' or None, got {name!r}")
    old = getattr(_local, "backend", None)
    _local.backend = name
    try:
        yield
    finally:
        _local.backend = old


def backend_for(t: torch.Tensor) -> str:
    forced = getattr(_local, "backend", None)
    if not HAVE_TRITON:
        if t.device.type == "cuda" or forced == "triton":
            raise RuntimeError("tilefold's kernels need Triton, which is not installed (pip install triton; Linux "
                               "only): without it only CPU tensors run, on the torch implementation")
        return "torch"
    if forced == "triton" and t.device.type != "cuda":
        if not interpreter_enabled():
            raise RuntimeError("backend 'triton' on CPU tensors needs TRITON_INTERPRET=1 before import")
        if t.dtype == torch.bfloat16:  # the automatic choice keeps these on torch; forced, they gave ~1e8 errors
            raise RuntimeError("backend 'triton' on bf16 CPU tensors: the interpreter computes through numpy, which "
                               "has no bf16, and its results are wrong; use fp16 / fp32 or the torch backend")
    if forced is not None:
        return forced
    if t.device.type == "cuda":
        return "triton"
    if interpreter_enabled() and t.dtype != torch.bfloat16:
        return "triton"
    return "torch"
