"""CPU tier: the pure helpers of tilefold.bench.core (no GPU, no op modules)."""
import json

import pytest
import torch

from tilefold.bench import core


def brute_pairs(M, N, causal=False, window=(-1, -1)):
    left, right = window
    if causal:
        right = 0 if right < 0 else min(right, 0)
    n = 0
    for i in range(M):
        for j in range(N):
            ok = True
            if right >= 0 and j > i + N - M + right:
                ok = False
            if left >= 0 and j < i + N - M - left:
                ok = False
            n += ok
    return n


@pytest.mark.parametrize("M", [1, 7, 64, 1000])
def test_causal_square_is_half_plus_diagonal(M):
    assert core.visible_pairs(M, M, causal=True) == M * (M + 1) // 2


def test_unmasked_is_full():
    assert core.visible_pairs(13, 29) == 13 * 29
    assert core.attention_flops(2, 16, 1024, 2048, 128) == 4 * 2 * 16 * 1024 * 2048 * 128


def test_causal_bottom_right_examples():
    # (2, 5): row 0 sees keys 0..3, row 1 sees 0..4
    assert core.visible_pairs(2, 5, causal=True) == 4 + 5
    # (5, 2): rows 0..2 see nothing, row 3 sees key 0, row 4 keys 0..1
    assert core.visible_pairs(5, 2, causal=True) == 1 + 2
    # the example: seqlen_q 10, seqlen_k 20 -> query 0 sees keys 0..10
    assert core.visible_pairs(1, 20, causal=True) == 20
    assert core.visible_pairs(10, 20, causal=True) == sum(11 + i for i in range(10))


@pytest.mark.parametrize("M,N", [(1, 1), (17, 113), (113, 17), (64, 64), (5, 40), (40, 5)])
@pytest.mark.parametrize("causal,window", [(False, (-1, -1)), (True, (-1, -1)), (False, (3, 5)),
                                           (True, (8, -1)), (False, (0, 0)), (False, (-1, 2)), (True, (4, 3))])
def test_pairs_match_brute_force(M, N, causal, window):
    assert core.visible_pairs(M, N, causal, window) == brute_pairs(M, N, causal, window)


def test_pairs_match_reference_mask():
    from tilefold.ops.attention.naive import visible_mask

    for M, N, causal, window in [(33, 70, True, (-1, -1)), (70, 33, True, (5, -1)), (50, 50, False, (7, 2))]:
        assert core.visible_pairs(M, N, causal, window) == int(visible_mask(M, N, causal, window).sum())


def test_flops_modes_and_headdim_v():
    fwd = core.attention_flops(1, 2, 100, 100, 64, causal=True)
    assert fwd == 4 * 2 * (100 * 101 // 2) * 64
    assert core.attention_flops(1, 2, 100, 100, 64, causal=True, mode="bwd") == int(2.5 * fwd)
    assert core.attention_flops(1, 2, 100, 100, 64, causal=True, mode="fwd+bwd") == int(3.5 * fwd)
    assert core.attention_flops(1, 1, 10, 10, 64, headdim_v=32) == 2 * 100 * (64 + 32)
    with pytest.raises(ValueError, match="mode"):
        core.attention_flops(1, 1, 10, 10, 64, mode="sideways")


def test_rates():
    assert core.tflops(2e12, 1000.0) == pytest.approx(2.0)
    assert core.gbps(3e9, 1.0) == pytest.approx(3000.0)


def test_record_format():
    r = core.base_record("attention", "tilefold", "fwd", torch.bfloat16, batch=2, heads=16, heads_k=16,
                         headdim=128, seqlen_q=8192, seqlen_k=8192, causal=True, ms=1.0, tflops=540.0,
                         max_err=0.004)
    assert list(r) == ["op", "provider", "mode", "dtype", "batch", "heads", "heads_k", "headdim", "seqlen_q",
                       "seqlen_k", "causal", "ms", "tflops", "gbps", "max_err", "gpu", "torch", "triton", "cuda",
                       "commit", "date", "env", "timing", "smoke"]
    assert r["dtype"] == "bfloat16" and r["gbps"] is None
    assert isinstance(r["gpu"], str) and r["torch"] == torch.__version__.split("+")[0]
    json.dumps(r)  # serializable


def test_slug_and_path(tmp_path):
    assert core.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    p = core.result_path("gla", tmp_path, gpu="NVIDIA H200", date="2026-01-02")
    assert p == tmp_path / "gla-nvidia-h200-2026-01-02.json"


def test_write_json(tmp_path):
    recs = [core.base_record("attention", "tilefold", "fwd", "float32", seqlen_q=s, ms=float(s), tflops=1.0)
            for s in (128, 256)]
    path = core.write_json(recs, "attention", tmp_path / "out", gpu="Test GPU", date="2026-01-02")
    assert path == tmp_path / "out" / "attention-test-gpu-2026-01-02.json"
    assert json.loads(path.read_text()) == recs
    # a second run the same day keeps the first
    path2 = core.write_json(recs[:1], "attention", tmp_path / "out", gpu="Test GPU", date="2026-01-02")
    assert path2 == tmp_path / "out" / "attention-test-gpu-2026-01-02-2.json"
    assert json.loads(path.read_text()) == recs and json.loads(path2.read_text()) == recs[:1]


def test_bench_ms_cpu_fallback():
    calls = []
    ms = core.bench_ms(lambda: calls.append(1), warmup=1, rep=1)
    assert ms >= 0 and len(calls) >= 5


def test_progress_interfaces(capsys):
    bar = core._SimpleBar(total=3, desc="x")
    bar.update()
    bar.write("hello")
    bar.update(2)
    bar.close()
    assert list(core._SimpleBar(range(4), desc="y")) == [0, 1, 2, 3]
    assert list(core.progress(range(3), desc="z")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "hello" in err and "x: 3/3" in err


def test_table_pivots_providers():
    recs = []
    for s in (128, 256):
        for p, ms in (("tilefold", 1.0), ("sdpa-flash", 2.0)):
            recs.append(core.base_record("attention", p, "fwd", "bfloat16", seqlen_q=s, seqlen_k=s, ms=ms,
                                         tflops=10.0 / ms, max_err=0.01))
    recs.append(core.base_record("attention", "copy", "fwd", "bfloat16", bytes=1 << 30, ms=1.0, gbps=2000.0))
    text = core.format_table(recs, ratios=("sdpa-flash",))
    assert "tilefold/sdpa-flash" in text and "2.00x" in text
    assert "seqlen_k" not in text.splitlines()[2]  # repeats seqlen_q: no column of its own
    assert "2000 GB/s" in text


def test_registry_and_run_op(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(core.REGISTRY, "toy", None)
    monkeypatch.setitem(core.PLOT_OPTIONS, "toy", {})

    @core.register("toy", plot_x="n", plot_y="gbps")
    def run(quick, progress):
        out = []
        for n in progress([1, 2], desc="toy"):
            out.append(core.base_record("toy", "tilefold", "fwd", "float32", n=n, ms=1.0 * n, gbps=1.0 / n))
        return out

    assert core.load_op("toy") is run
    records, path = core.run_op("toy", quick=True, out_dir=tmp_path, providers=["tilefold"], plot=True)
    assert [r["n"] for r in records] == [1, 2]
    assert json.loads(path.read_text()) == records
    out = capsys.readouterr()
    assert "wrote" in out.out and "takes no provider filter" in out.err
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "plot skipped" in out.err
    else:
        assert path.with_suffix(".png").exists()


def test_unknown_op_names_the_known_ones():
    with pytest.raises(ValueError, match="attention"):
        core.load_op("no_such_op")
    with pytest.raises(ValueError, match="op"):
        core.load_op("../etc")


def test_op_modules_are_not_imported_eagerly():
    import subprocess
    import sys

    code = ("import sys, tilefold.bench, tilefold.bench.core as c; "
            "print(sorted(m for m in sys.modules if m.startswith('tilefold.bench.') and m != 'tilefold.bench.core'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_run_op_rounds(tmp_path, monkeypatch, capsys):
    """--rounds: an op that takes ``rounds`` gets it; one that does not runs once and says so; < 1 is refused."""
    monkeypatch.setitem(core.REGISTRY, "toy_r", None)
    monkeypatch.setitem(core.PLOT_OPTIONS, "toy_r", {})
    monkeypatch.setitem(core.REGISTRY, "toy_once", None)
    monkeypatch.setitem(core.PLOT_OPTIONS, "toy_once", {})
    seen = []

    @core.register("toy_r")
    def run_r(quick, progress, rounds=1):
        seen.append(rounds)
        return [core.base_record("toy_r", "tilefold", "fwd", "float32", n=1, ms=1.0)]

    @core.register("toy_once")
    def run_once(quick, progress):
        return [core.base_record("toy_once", "tilefold", "fwd", "float32", n=1, ms=1.0)]

    core.run_op("toy_r", quick=True, out_dir=tmp_path, plot=False, rounds=3)
    core.run_op("toy_r", quick=True, out_dir=tmp_path, plot=False)
    assert seen == [3, 1]
    core.run_op("toy_once", quick=True, out_dir=tmp_path, plot=False, rounds=3)
    assert "takes no rounds" in capsys.readouterr().err
    with pytest.raises(ValueError, match="rounds"):
        core.run_op("toy_r", quick=True, out_dir=tmp_path, plot=False, rounds=0)


def test_decode_rounds_cpu(tmp_path):
    """The decode bench on CPU (smoke shapes) with 2 rounds: each record keeps both rounds' ms and their median; the
    table does not make a column of them."""
    import statistics
    # one provider: each decode call runs under the interpreter here (the paged provider made this test ~5 min)
    records, _ = core.run_op("decode", quick=True, out_dir=tmp_path, plot=False, rounds=2, providers=["tilefold"])
    main = [r for r in records if r["provider"] not in core.CEILINGS]
    assert main and all(len(r["ms_rounds"]) == 2 for r in main)
    assert all(abs(r["ms"] - statistics.median(r["ms_rounds"])) <= 1e-6 * r["ms"] for r in main)
    assert "ms_rounds" not in core.format_table(records)


def test_decode_paged_provider_matches_the_contiguous_call():
    """the bench's paged providers lay the same keys out as shuffled pages (a length not a multiple of the page too)"""
    import tilefold
    from tilefold.bench.decode import _tilefold_paged
    torch.manual_seed(3)
    q, k = torch.randn(2, 1, 4, 16), torch.randn(2, 37, 2, 16)
    v = torch.randn_like(k)
    with tilefold.use_backend("torch"):
        want = tilefold.attention(q, k, v)
        for page in (16, 256):
            assert torch.allclose(_tilefold_paged(page)(q, k, v), want, atol=1e-5)
