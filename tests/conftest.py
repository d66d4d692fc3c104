"""Test tiers: the default run is the CPU tier (torch path + the Triton kernels under the
interpreter at small shapes); `pytest -m gpu` is the GPU tier."""
import os

import torch

if not torch.cuda.is_available():
    # The Triton kernels run on CPU tensors through the interpreter; must be set before triton.jit runs.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    """With TILEFOLD_FAIL_LOG=<path>, each failure's report is appended there at once (a device run cut
    off by its time limit never prints pytest's final summary)."""
    path = os.environ.get("TILEFOLD_FAIL_LOG")
    if path and report.failed:
        with open(path, "a") as f:
            f.write(f"==== {report.nodeid} ({report.when})\n{report.longreprtext[-3000:]}\n")
