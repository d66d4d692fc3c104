"""CPU tier: the command line, ``python -m tilefold {info,demo,bench}``, run as a user would."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tilefold

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, interpret=False, timeout=120):
    env = dict(os.environ)
    # conftest sets TRITON_INTERPRET=1 for the kernel tests; a user's `demo` runs without it
    env.pop("TRITON_INTERPRET", None)
    if interpret:
        env["TRITON_INTERPRET"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("CUDA_VISIBLE_DEVICES", "")  # the CPU tier stays on the CPU even on a GPU host
    return subprocess.run([sys.executable, "-m", "tilefold", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


needs_attention = pytest.mark.skipif(not hasattr(tilefold, "attention"),
                                     reason="tilefold.attention is not importable yet (lead's kernels not landed)")


def test_info_runs():
    r = run_cli("info")
    assert r.returncode == 0, r.stderr
    for word in ("python", "torch", "triton", "numpy", "providers", "sdpa-flash", "flex", "fa4"):
        assert word in r.stdout
    assert "no CUDA" in r.stdout
    assert "TRITON_INTERPRET not set" in r.stdout
    assert "gluon" in r.stdout  # whether the Hopper kernels can run, and their switches


def test_info_reports_interpreter():
    r = run_cli("info", interpret=True)
    assert r.returncode == 0, r.stderr
    assert "TRITON_INTERPRET=1" in r.stdout


def test_usage_errors():
    r = run_cli()
    assert r.returncode != 0 and "demo" in r.stderr
    r = run_cli("bench", "no_such_op")
    assert r.returncode == 2 and "no_such_op" in r.stderr


@needs_attention
def test_demo_cpu():
    r = run_cli("demo", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for word in ("mha", "causal", "gqa", "window", "fwd ms", "out err", "lse err", "dqkv err", "torch out"):
        assert word in out
    assert "all within the bound" in out
    assert "NO" not in out.split()


@needs_attention
def test_bench_attention_cpu_smoke(tmp_path):
    r = run_cli("bench", "attention", "--quick", "--out", str(tmp_path), "--no-plot", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    files = list(tmp_path.glob("attention-*.json"))
    assert len(files) == 1, r.stdout + r.stderr
    records = json.loads(files[0].read_text())
    providers = {rec["provider"] for rec in records}
    assert {"tilefold", "copy"} <= providers
    tf = [rec for rec in records if rec["provider"] == "tilefold"]
    assert {rec["mode"] for rec in tf} == {"fwd", "bwd"} and {rec["causal"] for rec in tf} == {False, True}
    assert all(rec["ms"] > 0 and rec["tflops"] > 0 and rec["max_err"] < 1e-3 for rec in tf)
