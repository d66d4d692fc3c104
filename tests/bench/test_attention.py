"""CPU tier: the attention benchmark's failure handling (no GPU; the providers are faked)."""
import pytest
import torch

from tilefold.bench import attention as A
from tilefold.bench import core


def test_failing_provider_records_nothing_and_says_why_once(monkeypatch, capsys):
    calls = []

    def broken_factory():
        def fn(q, k, v, causal):
            calls.append(1)
            raise RuntimeError("kernel says no")
        return fn

    monkeypatch.setitem(A._FACTORIES, "tilefold", broken_factory)
    records = A.run(True, core._SimpleBar, providers={"tilefold"})
    assert records == [] and len(calls) > 2
    err = capsys.readouterr().err
    assert err.count("[tilefold fwd] failed") == 1 and err.count("[tilefold bwd] failed") == 1
    assert "kernel says no" in err and "case(s) failed" in err


def test_sticky_cuda_error_stops_but_keeps_records(monkeypatch, capsys):
    state = {"n": 0}

    def flaky_factory():
        def fn(q, k, v, causal):
            state["n"] += 1
            if causal:
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return q + k + v  # differentiable stand-in (seqlen_q == seqlen_k here)
        return fn

    monkeypatch.setitem(A._FACTORIES, "tilefold", flaky_factory)
    records = A.run(True, core._SimpleBar, providers={"tilefold"})
    assert records and all(not r["causal"] for r in records)
    assert "CUDA context is broken" in capsys.readouterr().err


def test_unknown_provider_is_a_value_error():
    with pytest.raises(ValueError, match="providers"):
        A.run(True, core._SimpleBar, providers={"sdpa-flashy"})


def test_unavailable_provider_is_reported(monkeypatch, capsys):
    def missing():
        raise ImportError("No module named 'flash_attn'")

    monkeypatch.setitem(A._FACTORIES, "tilefold", missing)
    assert A.run(True, core._SimpleBar, providers={"tilefold"}) == []
    assert "[tilefold] unavailable" in capsys.readouterr().err


def test_record_shape_with_stand_in_provider(monkeypatch):
    def fake_factory():
        return lambda q, k, v, causal: q + k + v
    monkeypatch.setitem(A._FACTORIES, "tilefold", fake_factory)
    records = A.run(True, core._SimpleBar, providers={"tilefold"})
    assert {(r["mode"], r["causal"]) for r in records} == {("fwd", False), ("fwd", True), ("bwd", False), ("bwd", True)}
    r = records[0]
    assert r["op"] == "attention" and r["dtype"] == "float32" and r["seqlen_q"] == r["seqlen_k"]
    assert r["max_err"] is not None and r["max_err"] > 0.1  # q+k+v is not attention: the check sees it
    fl = core.attention_flops(r["batch"], r["heads"], r["seqlen_q"], r["seqlen_k"], r["headdim"],
                              causal=r["causal"], mode=r["mode"])
    assert r["tflops"] == pytest.approx(core.tflops(fl, r["ms"]))
