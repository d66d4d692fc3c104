"""The combine of split-KV states in one launch (TILEFOLD_DECODE_COMBINE=fused, or auto up to 256 MB of
K + V: the last program of each row block to finish folds the S states) against the two-launch combine ("kernel"): same results within
fp32 rounding of a different fold order, correct against the fp64 reference (2x rule), repeatable call
after call (the per-call counters start at zero), varlen with empty sequences, and a bad mode refused."""
import pytest
import torch

from decode_helpers import assert_2x
from tilefold.ops.attention.naive import attention_ref, varlen_attention_ref
from tilefold.ops.common.dispatch import use_backend
from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention


def _run(mode, monkeypatch, q, k, v, S, **kw):
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", mode)
    return split_kv_attention(q, k, v, num_splits=S, softmax_scale=q.shape[-1] ** -0.5,
                              softcap=kw.pop("softcap", 0.0), **kw)


@pytest.mark.parametrize("fold", ["live", "block"])
@pytest.mark.parametrize("S", [2, 3, 7])
@pytest.mark.parametrize("shape,window", [
    ((2, 1, 113, 8, 2, 32), (-1, -1)),    # decode, GQA packed
    ((1, 17, 113, 2, 1, 40), (-1, 0)),    # MQA, odd head dim, causal: rows past one block
    ((1, 33, 20, 4, 2, 16), (-1, 0)),     # empty rows (seqlen_q > seqlen_k), 2 row blocks
    ((1, 1, 70, 4, 2, 16), (6, -1)),      # left window: most splits empty
], ids=["gqa", "mqa-causal", "empty-rows", "left-window"])
def test_fused_equals_two_launch(shape, window, S, fold, monkeypatch):
    """fold: the fused fold over the live rows only (FOLD_ROWS, the default) or over the whole row block."""
    monkeypatch.setattr(K, "FOLD_MODE", fold)
    B, M, N, H, HK, D = shape
    g = torch.Generator().manual_seed(S)
    q, k, v = (torch.randn(B, n, h, D, generator=g) for n, h in ((M, H), (N, HK), (N, HK)))
    with use_backend("triton"):
        o_k, l_k = _run("kernel", monkeypatch, q, k, v, S, window=window)
        o_f, l_f = _run("fused", monkeypatch, q, k, v, S, window=window)
        o_f2, l_f2 = _run("fused", monkeypatch, q, k, v, S, window=window)
    torch.testing.assert_close(o_f, o_k, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l_f, l_k, rtol=1e-5, atol=1e-6)
    assert torch.equal(o_f, o_f2) and torch.equal(l_f, l_f2)
    causal = window == (-1, 0)
    ref_o, ref_l = attention_ref(q, k, v, causal=causal, window_size=window)
    base_o, base_l = attention_ref(q, k, v, causal=causal, window_size=window, compute_dtype=torch.float32)
    assert_2x("out", o_f, ref_o, base_o)
    assert_2x("lse", l_f, ref_l, base_l)


def test_fused_varlen_empty_sequences(monkeypatch):
    g = torch.Generator().manual_seed(0)
    lq, lk = [1, 0, 3, 2, 4], [50, 7, 0, 60, 9]
    cu_q = torch.tensor([0] + list(torch.tensor(lq).cumsum(0)), dtype=torch.int32)
    cu_k = torch.tensor([0] + list(torch.tensor(lk).cumsum(0)), dtype=torch.int32)
    q, k, v = torch.randn(sum(lq), 4, 16, generator=g), torch.randn(sum(lk), 2, 16, generator=g), \
        torch.randn(sum(lk), 2, 16, generator=g)
    kw = dict(window=(-1, 0), cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max(lq), max_seqlen_k=max(lk))
    with use_backend("triton"):
        o_k, l_k = _run("kernel", monkeypatch, q, k, v, 3, **kw)
        o_f, l_f = _run("fused", monkeypatch, q, k, v, 3, **kw)
    torch.testing.assert_close(o_f, o_k, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l_f, l_k, rtol=1e-5, atol=1e-6)
    ref_o, ref_l = varlen_attention_ref(q, k, v, cu_q, cu_k, causal=True)
    base_o, base_l = varlen_attention_ref(q, k, v, cu_q, cu_k, causal=True, compute_dtype=torch.float32)
    assert_2x("out", o_f, ref_o, base_o)
    assert_2x("lse", l_f, ref_l, base_l)


def test_bad_combine_mode(monkeypatch):
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "both")
    with pytest.raises(ValueError, match="TILEFOLD_DECODE_COMBINE"):
        K.fused_combine()


@pytest.mark.gpu
@pytest.mark.parametrize("case", [
    (1, 1, 32768 + 5, 32, 8, 128, (-1, -1), 0),      # B = 1 long context, chosen splits
    (8, 1, 8192, 32, 8, 128, (-1, 0), 4),            # batch, causal
    (2, 16, 4096 + 17, 32, 8, 128, (-1, 0), 16),     # 64 packed rows (wgmma tile), many splits
    (1, 1, 8192, 16, 2, 256, (1000, -1), 5),          # hd256, left window: empty splits
    (1, 3, 8192, 8, 8, 64, (-1, 0), 9),              # MHA hd64
    (8, 1, 65536 + 9, 32, 8, 128, (-1, -1), 4),      # wide, >= STREAM_KEYS per split: 32-key descriptor tile, ragged end
    (8, 3, 12000, 32, 8, 128, (500, 0), 4),          # wide, 12 packed rows, 3000 keys per split: 128-key descriptor tile
], ids=["b1-32k", "b8-causal", "q16-s16", "d256-window", "d64-mha", "stream-tile", "mid-tile-window"])
@pytest.mark.parametrize("fold", ["live", "block"])
def test_fused_combine_gpu(case, fold, monkeypatch):
    monkeypatch.setattr(K, "FOLD_MODE", fold)
    B, M, N, H, HK, D, window, S = case
    g = torch.Generator(device="cuda").manual_seed(B * 7 + M)
    q, k, v = (torch.randn(B, n, h, D, device="cuda", dtype=torch.bfloat16, generator=g)
               for n, h in ((M, H), (N, HK), (N, HK)))
    o_k, l_k = _run("kernel", monkeypatch, q, k, v, S, window=window)
    outs = [_run("fused", monkeypatch, q, k, v, S, window=window) for _ in range(3)]
    for o_f, l_f in outs:
        # bf16 outputs of two fold orders may differ by one rounding; lse in fp32
        torch.testing.assert_close(o_f.float(), o_k.float(), rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(l_f, l_k, rtol=1e-5, atol=1e-5)
        assert torch.equal(o_f, outs[0][0]) and torch.equal(l_f, outs[0][1])
    causal = window == (-1, 0)
    ref_o, ref_l = attention_ref(q, k, v, causal=causal, window_size=window)
    base_o, base_l = attention_ref(q, k, v, causal=causal, window_size=window, compute_dtype=torch.bfloat16)
    assert_2x("out", outs[0][0], ref_o, base_o)
    assert_2x("lse", outs[0][1], ref_l, base_l)


def test_auto_combine_policy(monkeypatch):
    """auto (the default): one launch while K + V fit FUSED_MAX_KV_BYTES, two above; explicit modes win."""
    monkeypatch.delenv("TILEFOLD_DECODE_COMBINE", raising=False)
    assert K.DECODE_COMBINE == "auto"
    assert K.fused_combine(K.FUSED_MAX_KV_BYTES)
    assert not K.fused_combine(K.FUSED_MAX_KV_BYTES + 1)
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "kernel")
    assert not K.fused_combine(0)
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "fused")
    assert K.fused_combine(1 << 40)


@pytest.mark.parametrize("mode", ["kernel", "fused"])
@pytest.mark.parametrize("S", [2, 5])
def test_no_keys_with_splits(mode, S, monkeypatch):
    """seqlen_k = 0 with num_splits > 1 (found by review: a zero split size divided by zero): the empty
    state, (0, -inf), like the unsplit call."""
    q, k = torch.randn(1, 1, 4, 16), torch.randn(1, 0, 2, 16)
    with use_backend("triton"):
        o, l = _run(mode, monkeypatch, q, k, k.clone(), S, window=(-1, -1))
    assert torch.equal(o, torch.zeros_like(q))
    assert torch.isneginf(l).all()


def test_streaming_tiles_and_even_splits_policy(monkeypatch):
    """The swept decode case (16 packed rows, 16-bit hd128): one program per SM while splits stay under
    ONE_WAVE_KEYS keys, else two per SM; the tile follows the keys per split when the launch is wide (about
    two programs per SM or more), the pointer tile otherwise. Other cases keep the bandwidth model and the
    64-key pointer tile (one 64-row block in a launch that fills one wave of one program per SM: BLOCK64_CONFIG)."""
    from tilefold.ops.decode import splitkv as SK
    assert SK.even_splits(8, 1 << 20, 132) == 33      # B=1 1M: 264 programs
    assert SK.even_splits(8, 131072, 132) == 33       # 16 splits would be 8192 keys each
    assert SK.even_splits(8, 65536, 132) == 16        # one program per SM
    assert SK.even_splits(8, 8192, 132) == 16
    assert SK.even_splits(8, 4000, 132) == 7          # splits of >= MIN_SPLIT_KEYS keys
    assert SK.even_splits(8, 300, 132) == 1
    assert SK.even_splits(64, 8192, 132) == 2         # B=8
    assert SK.even_splits(64, 131072, 132) == 4
    assert SK.even_splits(128, 8192, 132) == 2        # B=16: one per SM would be 8192 keys
    assert SK.even_splits(128, 8192, 132, kpar=True) == 1  # ... unless one wave of KPAR programs (calls 57-60)
    assert SK.even_splits(128, 32768, 132, kpar=True) == 1 and SK.even_splits(128, 131072, 132, kpar=True) == 2
    assert SK.even_splits(118, 8192, 132, kpar=True) == 2 and SK.even_splits(133, 8192, 132, kpar=True) == 2
    assert SK.even_splits(256, 8192, 132) == 1        # B=32
    assert SK.even_splits(1, 1 << 22, 132) == SK.MAX_SPLITS
    monkeypatch.setattr(K, "interpreter_enabled", lambda: False)
    cuda = torch.device("cuda")
    cfg = K.decode_config.__wrapped__
    assert K.streaming_tiles(4, 128, torch.bfloat16) and not K.streaming_tiles(64, 128, torch.bfloat16)
    assert not K.streaming_tiles(4, 256, torch.bfloat16) and not K.streaming_tiles(4, 128, torch.float32)
    big, mid, small = (cfg(4, 128, torch.bfloat16, cuda, n, True) for n in (K.STREAM_KEYS, K.MID_KEYS, K.MID_KEYS - 1))
    assert (big.BLOCK_N, big.num_stages, big.use_tma) == (32, 4, True)
    assert (mid.BLOCK_N, mid.num_stages, mid.use_tma) == (128, 2, True)
    assert (small.BLOCK_N, small.use_tma) == (64, False)
    assert cfg(4, 128, torch.bfloat16, cuda, 1 << 20, False) == small  # one program per SM: pointer tile
    # one 64-row block: the v2 tile, BLOCK64_CONFIG where the launch fills one wave (tests/ops/decode/test_block64.py)
    assert cfg(64, 128, torch.bfloat16, cuda, 1 << 20, True) == K.DecodeConfig(64, 64, 4, 3, 2)
    assert cfg(64, 128, torch.bfloat16, cuda, 0) == K.DecodeConfig(64, 64, 4, 3, 2)
    assert cfg(64, 128, torch.bfloat16, cuda, 0, False, True, False, True) == K.BLOCK64_CONFIG
    assert not cfg(4, 256, torch.bfloat16, cuda, 1 << 20, True).use_tma
    # one wave of one unsplit program per SM: the KPAR tile (swept case only, and only if allowed)
    assert cfg(4, 128, torch.bfloat16, cuda, 8192, False, True, True) == K.KPAR_CONFIG
    assert cfg(4, 128, torch.bfloat16, cuda, 8192, False, False, True) == small
    assert cfg(4, 128, torch.float32, cuda, 8192, False, True, True).kpar == 1


@pytest.mark.gpu
@pytest.mark.parametrize("case", [
    (1, 1, 131072 + 3, 32, 8, 128, (-1, -1), 0),     # B = 1 long context, chosen splits (33)
    (4, 1, 32768, 32, 8, 128, (-1, 0), 0),           # batch, causal, chosen splits
    (2, 16, 4096 + 17, 32, 8, 128, (-1, 0), 16),     # 64 packed rows, many splits
    (1, 3, 8192, 8, 8, 64, (100, 0), 9),             # MHA hd64, window: empty splits
], ids=["b1-128k", "b4-causal", "q16-s16", "d64-window"])
def test_combine_kernel_pdl_gpu(case, monkeypatch):
    """The combine kernel launched as a programmatic dependent of the split kernel (DECODE_PDL, the default) gives
    bitwise the results of a plain launch, eagerly and replayed from a CUDA graph, with fresh inputs every call."""
    B, M, N, H, HK, D, window, S = case
    g = torch.Generator(device="cuda").manual_seed(B * 11 + M)

    def inputs():
        return [torch.randn(B, n, h, D, device="cuda", dtype=torch.bfloat16, generator=g)
                for n, h in ((M, H), (N, HK), (N, HK))]

    x1, x2 = inputs(), inputs()
    res = {}
    for pdl in (False, True):
        monkeypatch.setattr(K, "DECODE_PDL", pdl)
        res[pdl] = [_run("kernel", monkeypatch, *x, S, window=window) for x in (x1, x2)]
    for (o0, l0), (o1, l1) in zip(res[False], res[True]):
        assert torch.equal(o0, o1) and torch.equal(l0, l1)
    plan = next(p for k, p in K._PLANS.items() if p.cgrid is not None and p.cons.get("PDL"))
    assert plan.copts == {"launch_pdl": True}
    # graph capture of the PDL pair, replayed on new inputs copied into the captured ones
    q, k, v = (t.clone() for t in x1)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        _run("kernel", monkeypatch, q, k, v, S, window=window)
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o_g, l_g = _run("kernel", monkeypatch, q, k, v, S, window=window)
    for t, src in zip((q, k, v), x2):
        t.copy_(src)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(o_g, res[False][1][0]) and torch.equal(l_g, res[False][1][1])
    causal = window == (-1, 0)
    ref_o, ref_l = attention_ref(*x2, causal=causal, window_size=window)
    base_o, base_l = attention_ref(*x2, causal=causal, window_size=window, compute_dtype=torch.bfloat16)
    assert_2x("out", o_g, ref_o, base_o)
    assert_2x("lse", l_g, ref_l, base_l)


def test_pdl_only_on_sm90_cuda(monkeypatch):
    """The combine's programmatic dependent launch needs griddepcontrol (sm_90 PTX; ptxas refuses it for sm_80-89)
    and an NVIDIA build: off for older GPUs, ROCm, CPU tensors and the interpreter."""
    monkeypatch.setattr(K, "interpreter_enabled", lambda: False)
    monkeypatch.setattr(K.torch.version, "hip", None)
    cuda0 = torch.device("cuda", 0)
    monkeypatch.setattr(K, "_major", lambda index: 8)
    assert not K._pdl_ok(cuda0)
    monkeypatch.setattr(K, "_major", lambda index: 9)
    assert K._pdl_ok(cuda0) == (K.DECODE_PDL and K.HAVE_GDC)
    monkeypatch.setattr(K, "DECODE_PDL", False)
    assert not K._pdl_ok(cuda0)
    monkeypatch.setattr(K, "DECODE_PDL", True)
    monkeypatch.setattr(K.torch.version, "hip", "6.2")
    assert not K._pdl_ok(cuda0)
    monkeypatch.setattr(K.torch.version, "hip", None)
    assert not K._pdl_ok(torch.device("cpu"))
    monkeypatch.setattr(K, "interpreter_enabled", lambda: True)
    assert not K._pdl_ok(cuda0)


def test_block_fold_keeps_its_unroll(monkeypatch):
    """FOLD_MODE 'block' (the whole row block at once, the 2026-12-03 fold) keeps its cap of 4 states per round trip;
    the live-row fold takes the live rows (seqlen_q · G = 4 here) and up to 16 states per round trip."""
    assert K.combine_unroll(16, 64, 4) == 4 and K.combine_unroll(16, 32, 4) == 4
    assert K.combine_unroll(4, 128) == 16 and K.combine_unroll(16, 128) == 4 and K.combine_unroll(64, 128) == 1
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "fused")
    q, k, v = torch.randn(2, 1, 8, 64), torch.randn(2, 300, 2, 64), torch.randn(2, 300, 2, 64)
    for mode, rows, unroll in (("block", 0, 4), ("live", 4, 16)):
        monkeypatch.setattr(K, "FOLD_MODE", mode)
        plan = K._make_plan(q, k, v, 5, 0.125, (-1, -1), 0.0, None, None, None, None)
        assert plan.fused and plan.cons["FOLD_ROWS"] == rows and plan.cons["COMBINE_UNROLL"] == unroll, plan.cons
