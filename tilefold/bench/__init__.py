"""Benchmarks: ``python -m tilefold bench <op> [--quick]``.

``core`` holds the registry, timing, the record format (DESIGN.md §6), FLOP counts and output; each op
has a module here (``attention.py``, ``gla.py``, ...) imported lazily by ``core.load_op`` so that one
op's missing optional dependency does not break the others. Nothing here imports an op module.
"""
from .core import REGISTRY, base_record, bench_ms, register  # noqa: F401
