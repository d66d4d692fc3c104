"""The Hopper Gluon forward (tilefold/ops/attention/forward_sm90.py).

CPU tier: which calls it takes (it never takes CPU tensors) and the (batch·seqlen, heads·head_dim) view it
reads through. GPU tier (sm_90 only): the path is taken for the cases it claims, and its out / lse meet the
2x rule against fp64 and agree with forward.py's Triton kernel (TILEFOLD_FWD_SM90=0) over masks, lengths
that are not multiples of the tiles, GQA/MQA, packed layouts and empty rows.
"""
import pytest
import torch

import attention_helpers as h

import tilefold
from tilefold.ops.attention import config as cfg
from tilefold.ops.attention import forward_sm90 as sm90

Case = h.Case



@pytest.fixture(autouse=True)
def _kv3d_off(monkeypatch):
    """Every test starts with the KV3D path off (ragged batches on forward.py's kernel), whatever the environment
    or the default (on) says, so the flat-view tests mean the same everywhere; tests of the KV3D path set it."""
    monkeypatch.setattr(sm90, "KV3D", False)

def test_rows_view():
    q = torch.empty(2, 33, 4, 64)
    assert sm90._rows_view(q) == (66, 256, 256)
    qkv = torch.empty(2, 33, 3, 4, 64)
    assert sm90._rows_view(qkv[:, :, 1]) == (66, 256, 768)      # packed QKV: rows 3·H·D apart
    assert sm90._rows_view(q.transpose(1, 2).contiguous().transpose(1, 2)) is None  # heads outermost
    assert sm90._rows_view(torch.empty(2, 33, 4, 128)[..., :64]) is None             # padded head dim
    assert sm90._rows_view(torch.empty(1, 33, 1, 64)) == (33, 64, 64)


def test_layout_ok_ragged_keys_only_at_batch_one():
    """seqlen_k not a multiple of the key tile: only batch 1 reads K / V through the flat view (no tile
    reaches into another batch's rows)."""
    def qkv(B, M, N, D=128):
        return torch.empty(B, M, 4, D), torch.empty(B, N, 2, D), torch.empty(B, N, 2, D)
    assert sm90._layout_ok(*qkv(1, 300, 1023))
    assert not sm90._layout_ok(*qkv(2, 300, 1023))
    assert sm90._layout_ok(*qkv(2, 300, 1024))
    assert sm90._layout_ok(*qkv(2, 301, 1024, 64))
    assert not sm90._layout_ok(*qkv(2, 0, 1024))
    assert sm90._layout_ok(*qkv(2, 300, 960, 256))      # head dim 256: 64-key tiles
    assert not sm90._layout_ok(*qkv(2, 300, 960))       # head dim 128: 128-key tiles


@pytest.mark.parametrize("text, D, match", [("128,4", 128, "shared memory"), ("96,2", 256, "power of two"),
                                            ("96,2", 128, "power of two"), ("128", 128, "two integers"),
                                            ("64,0", 64, "STAGES")])
def test_cfg_override_checked(text, D, match, monkeypatch):
    """A sweep override that cannot run at a head dim is a ValueError naming the variable, not a compile failure."""
    monkeypatch.setattr(sm90, "_CFG_ENV", text)
    with pytest.raises(ValueError, match=match):
        sm90._config(D)


def test_cfg_override_applies(monkeypatch):
    monkeypatch.setattr(sm90, "_CFG_ENV", "64,3")
    assert sm90._config(128) == (64, 3)
    assert sm90._config(256) == (64, 2)    # 64,3 cannot fit head dim 256: it keeps its own tile
    monkeypatch.setattr(sm90, "_CFG_ENV", "32,3")
    assert sm90._config(256) == (32, 3)    # one that fits is taken there too


def test_kv3d_admits_ragged_batches(monkeypatch):
    """TILEFOLD_FWD_SM90_KV3D (default on): ragged seqlen_k at batch > 1 reads K / V through rank-3 descriptors,
    so the batch guard lets it through (the warp-specialized variant only)."""
    q, k = torch.empty(2, 300, 4, 128), torch.empty(2, 1000, 2, 128)
    assert not sm90._layout_ok(q, k, k)
    monkeypatch.setattr(sm90, "KV3D", True)
    assert sm90._layout_ok(q, k, k)
    monkeypatch.setattr(sm90, "VARIANT", "sync")
    assert not sm90._layout_ok(q, k, k)


def test_hd256_config_fits_shared_memory():
    """Head dim 256 runs 64-key tiles, two slots: Q (2 x 64 rows) + 2 x (K + V) within the 227 KB an sm_90
    block can take (the kernel's barriers and alignment need a few hundred bytes more)."""
    bn, st = sm90._config(256)
    assert (bn, st) == (64, 2) or sm90._CFG_ENV
    assert 2 * 64 * 256 * 2 + st * 2 * bn * 256 * 2 <= sm90.SMEM_MAX


@pytest.mark.skipif(not sm90.HAVE_GLUON, reason="this Triton has no Gluon")
def test_cached_smem_layout_is_the_default():
    from triton.experimental.gluon import language as gl
    for rows, D, dt, gdt in ((64, 128, torch.bfloat16, gl.bfloat16), (128, 64, torch.float16, gl.float16)):
        assert sm90._smem_layout(rows, D, dt) == gl.NVMMASharedLayout.get_default_for([rows, D], gdt)
        assert sm90._smem_layout(rows, D, dt) is sm90._smem_layout(rows, D, dt)


def test_never_on_cpu():
    q = torch.randn(1, 16, 2, 64)
    assert not sm90.supported(q, q, q, softcap=0.0, window=(-1, -1), dropout_p=0.0, num_splits=1,
                              varlen=False, shift_extra=0)


def _is_sm90():
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] == 9


needs_sm90 = pytest.mark.skipif(not _is_sm90(), reason="needs a Hopper (sm_90) GPU")

MASKS = [dict(), dict(causal=True), dict(window=(64, 0)), dict(window=(100, 37)), dict(window=(-1, 5)),
         dict(window=(0, -1)), dict(causal=True, window=(300, -1))]
SEQS = [(1, 1), (17, 17), (128, 128), (1023, 1023), (113, 1023), (1023, 113), (1, 700), (2048, 4096),
        (4096, 2048), (300, 129)]
# batch 2 where seqlen_k is a multiple of the 128-key tile, else batch 1 (the only batch that path takes)
GRID = [Case(2 if N % 128 == 0 else 1, M, N, H, HK, D, **m)
        for (M, N), D, (H, HK), m in h.rotate_grid(SEQS, (64, 128), [(4, 4), (8, 2), (4, 1)], MASKS)]
GRID += [Case(1, 1023, 1023, 8, 2, 128, causal=True, layout="packed"),
         Case(2, 1000, 1024, 4, 4, 64, window=(16, 16), layout="packed"),
         Case(2, 1500, 384, 8, 2, 128, causal=True),          # rows and whole blocks that see no key
         Case(2, 640, 640, 4, 4, 128, window=(0, 0)),         # each row sees one key
         Case(2, 4096, 2048, 8, 2, 64, window=(300, -1)),     # left edge only, across many blocks
         Case(1, 333, 999, 4, 1, 128, window=(-1, 2))]        # right edge only
# head dim 256 (64-key tiles: batch 2 where seqlen_k is a multiple of 64)
GRID += [Case(2, 1023, 1024, 4, 4, 256), Case(1, 1023, 1023, 8, 2, 256, causal=True),
         Case(2, 300, 640, 4, 1, 256, window=(100, 37)), Case(1, 113, 1023, 4, 4, 256, causal=True),
         Case(2, 1500, 384, 8, 2, 256, causal=True), Case(1, 17, 17, 4, 1, 256, window=(0, -1)),
         Case(1, 1, 700, 4, 4, 256), Case(1, 1023, 1023, 8, 2, 256, causal=True, layout="packed"),
         Case(2, 4096, 2048, 4, 2, 256, window=(300, -1)),
         Case(2, 300, 960, 4, 2, 256)]   # seqlen_k a multiple of the 64-key tile, not of 128


@pytest.fixture
def count_sm90(monkeypatch):
    calls = []
    real = sm90.attention_fwd_sm90

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(sm90, "attention_fwd_sm90", counted)
    monkeypatch.setattr(cfg, "FWD_SM90", "1")  # whatever the environment says
    monkeypatch.setattr(sm90, "HD256", True)
    return calls


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=h.dtype_id)
@pytest.mark.parametrize("case", GRID, ids=h.case_id)
def test_sm90_forward(case, dtype, count_sm90, monkeypatch):
    res, _ = h.check_case(case, dtype, device="cuda")
    assert count_sm90, "the Gluon forward was not taken"
    if case.M > case.N and case.causal:
        n_empty = case.M - case.N
        assert torch.all(res["out"][:, :n_empty] == 0)
        assert torch.all(torch.isneginf(res["lse"][:, :, :n_empty]))
    # same inputs through forward.py's kernel
    torch.manual_seed(0)
    q, k, v = h.make_qkv(case, dtype, "cuda")
    out, lse = tilefold.attention(q, k, v, return_lse=True, **case.opts)
    monkeypatch.setattr(cfg, "FWD_SM90", "0")
    n = len(count_sm90)
    out_t, lse_t = tilefold.attention(q, k, v, return_lse=True, **case.opts)
    assert len(count_sm90) == n
    fin = torch.isfinite(lse_t)
    assert torch.equal(fin, torch.isfinite(lse))
    assert (lse[fin] - lse_t[fin]).abs().max().item() <= 1e-3 if fin.any() else True
    tol = 2e-2 if dtype == torch.bfloat16 else 4e-3
    assert (out.float() - out_t.float()).abs().max().item() <= tol


@pytest.mark.gpu
@needs_sm90
def test_sm90_not_taken_outside_scope(count_sm90, monkeypatch):
    q = torch.randn(1, 256, 4, 96, device="cuda", dtype=torch.bfloat16)   # head dim 96
    tilefold.attention(q, q, q)
    q = torch.randn(1, 256, 4, 256, device="cuda", dtype=torch.bfloat16)  # head dim 256, switched off
    monkeypatch.setattr(sm90, "HD256", False)
    tilefold.attention(q, q, q)
    monkeypatch.setattr(sm90, "HD256", True)
    q = torch.randn(1, 256, 4, 128, device="cuda", dtype=torch.float32)   # fp32
    tilefold.attention(q, q, q)
    q = torch.randn(1, 256, 4, 128, device="cuda", dtype=torch.bfloat16)
    tilefold.attention(q, q, q, softcap=5.0)                              # softcap
    assert not count_sm90
    tilefold.attention(q, q, q)
    assert count_sm90


@pytest.mark.gpu
@needs_sm90
def test_sm90_probs_do_not_change_out(count_sm90):
    """return_attn_probs without dropout: probabilities from forward.py's kernel, out / lse still the
    Gluon kernel's, bitwise the call without probabilities."""
    # batch 1: ragged seqlen_k (300) at batch 2 takes forward.py's kernel (the batch guard, _layout_ok)
    q, k, v = (torch.randn(1, 300, 4, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    a, la = tilefold.attention(q, k, v, causal=True, return_lse=True)
    b, lb, S = tilefold.attention(q, k, v, causal=True, return_attn_probs=True)
    assert torch.equal(a, b) and torch.equal(la, lb) and len(count_sm90) == 2
    assert torch.allclose(S.sum(-1), torch.ones_like(S.sum(-1)), atol=1e-3)


VARIANT_CASES = [Case(1, 1023, 1023, 8, 2, 128, causal=True), Case(1, 700, 1500, 4, 4, 64, window=(100, 37)),
                 Case(2, 129, 384, 4, 1, 128), Case(1, 700, 1500, 4, 2, 256, window=(100, 37)),
                 Case(2, 1023, 1024, 4, 4, 256, causal=True)]


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("variant", ["ws-pp", "ws-nopp", "sync"])
@pytest.mark.parametrize("case", VARIANT_CASES, ids=h.case_id)
def test_sm90_variants(case, variant, count_sm90, monkeypatch):
    """The variants the default does not take for a head dim (ping-pong on / off, the non-specialized v1;
    head dim 256 has no v1: those calls take forward.py's kernel)."""
    monkeypatch.setattr(sm90, "VARIANT", "sync" if variant == "sync" else "ws")
    monkeypatch.setattr(sm90, "PINGPONG", variant == "ws-pp")
    h.check_case(case, torch.bfloat16, device="cuda")
    assert bool(count_sm90) == (variant != "sync" or case.D != 256)


DROP_CASES = [Case(1, 1023, 1023, 8, 2, 128, causal=True), Case(1, 700, 1500, 4, 4, 64, window=(100, 37)),
              Case(1, 300, 129, 4, 1, 128), Case(2, 256, 256, 2, 2, 128),
              Case(2, 1500, 384, 8, 2, 128, causal=True), Case(2, 512, 1024, 4, 4, 64, window=(200, -1)),
              Case(1, 1023, 1023, 4, 2, 256, causal=True), Case(2, 512, 640, 4, 4, 256, window=(200, -1)),
              # ragged seqlen_k at batch 2: the KV3D path (rank-3 K / V descriptors)
              Case(2, 300, 1000, 4, 2, 128, causal=True), Case(2, 500, 999, 4, 1, 256)]


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("p", [0.1, 0.6])
@pytest.mark.parametrize("case", DROP_CASES, ids=h.case_id)
def test_sm90_dropout_same_mask(case, p, count_sm90, monkeypatch):
    """Dropout in the Gluon kernel draws the mask of forward.py's kernel (same seed and offset): the outputs
    of the two kernels agree to rounding, and out decodes against the returned S (its mask) under the 2x
    rule (tests/ops/attention/test_dropout.py runs the full dropout suite on whichever kernel is default)."""
    from tilefold.ops.attention.naive import attention_ref
    monkeypatch.setattr(sm90, "KV3D", True)  # the default: ragged batches too
    q, k, v = h.make_qkv(case, torch.bfloat16, "cuda")
    torch.manual_seed(123)
    out, lse, S = tilefold.attention(q, k, v, dropout_p=p, return_attn_probs=True, **case.opts)
    assert count_sm90, "the Gluon forward was not taken"
    keep = ~torch.signbit(S)
    ref, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, **case.opts)
    low, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, compute_dtype=torch.bfloat16, **case.opts)
    err, base = (out.double() - ref).abs().max().item(), (low.double() - ref).abs().max().item()
    assert err <= 2 * base + 1e-5, (err, base)
    monkeypatch.setattr(cfg, "FWD_SM90", "0")
    torch.manual_seed(123)
    out_t = tilefold.attention(q, k, v, dropout_p=p, **case.opts)
    assert (out.float() - out_t.float()).abs().max().item() <= 2e-2 / (1 - p)


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("case", [DROP_CASES[0], DROP_CASES[1], DROP_CASES[3], DROP_CASES[8]], ids=h.case_id)
def test_sm90_dropout_mask_producer(case, count_sm90, monkeypatch):
    """The opt-in mask producer partition (MASK_WS) gives bitwise the output of the consumers' own Philox rounds."""
    monkeypatch.setattr(sm90, "KV3D", True)  # the ragged batch-2 case takes the Gluon kernel through KV3D
    plans = []
    real_plan = sm90._fwd_plan
    monkeypatch.setattr(sm90, "_FWD_PLANS", {})  # plans made here, not reused from other tests
    monkeypatch.setattr(sm90, "_fwd_plan", lambda *a, **kw: plans.append(real_plan(*a, **kw)) or plans[-1])
    q, k, v = h.make_qkv(case, torch.bfloat16, "cuda")
    outs = []
    for on in (False, True):
        monkeypatch.setattr(sm90, "MASK_WS", on)
        torch.manual_seed(5)
        outs.append(tilefold.attention(q, k, v, dropout_p=0.2, **case.opts))
    assert count_sm90, "the Gluon forward was not taken"
    assert [pl.consts["MASK_WS"] for pl in plans] == [False, True], "the producer path was not taken"
    assert torch.equal(outs[0], outs[1])


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("kv3d", [False, True], ids=["flat", "kv3d"])
@pytest.mark.parametrize("D", [128, 256])
def test_sm90_batches_stay_apart(D, kv3d, count_sm90, monkeypatch):
    """inf / NaN in batch 1's K and V never reach batch 0's output (ragged seqlen_k at batch 2: the
    Triton kernel, or with KV3D the Gluon kernel through zero-filling rank-3 descriptors; a multiple of the
    tile: the Gluon kernel, whose tiles then end at the batch edge)."""
    from tilefold.ops.attention.naive import attention_ref
    monkeypatch.setattr(sm90, "KV3D", kv3d)
    for N in (1000, 1024) + ((960,) if D == 256 else ()):
        q = torch.randn(2, 300, 4, D, device="cuda", dtype=torch.bfloat16)
        k, v = (torch.randn(2, N, 4, D, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        k[1, :64] = float("inf")
        v[1, :64] = float("nan")
        n = len(count_sm90)
        out = tilefold.attention(q, k, v)
        assert (len(count_sm90) > n) == (kv3d or N % sm90._config(D)[0] == 0)
        ref, _ = attention_ref(q[:1], k[:1], v[:1])
        assert torch.isfinite(out[0]).all()
        assert (out[0].double() - ref[0]).abs().max().item() < 2e-2


KV3D_CASES = [Case(2, 300, 1000, 4, 2, 128, causal=True), Case(2, 1000, 700, 4, 4, 64, window=(100, 37)),
              Case(3, 129, 333, 8, 2, 128), Case(2, 500, 999, 4, 1, 256, causal=True), Case(2, 64, 1, 4, 4, 64),
              Case(2, 1023, 1023, 8, 2, 128, causal=True, layout="packed")]


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("case", KV3D_CASES, ids=h.case_id)
def test_sm90_kv3d_ragged_batches(case, dtype, count_sm90, monkeypatch):
    """KV3D (the default; first GPU run in call 40): ragged seqlen_k at batch > 1 on the Gluon kernel, out / lse
    under the 2x rule and against forward.py's kernel; off, the same call takes forward.py's kernel."""
    q, k, v = h.make_qkv(case, dtype, "cuda")
    out_t, lse_t = tilefold.attention(q, k, v, return_lse=True, **case.opts)
    assert not count_sm90
    monkeypatch.setattr(sm90, "KV3D", True)
    out, lse = tilefold.attention(q, k, v, return_lse=True, **case.opts)
    assert count_sm90
    fin = torch.isfinite(lse_t)
    assert torch.equal(fin, torch.isfinite(lse))
    assert (lse[fin] - lse_t[fin]).abs().max().item() <= 1e-3 if fin.any() else True
    assert (out.float() - out_t.float()).abs().max().item() <= 2e-2
    h.check_case(case, dtype, device="cuda")


GRAD_CASES = [Case(2, 1024, 1024, 8, 2, 128, causal=True), Case(1, 700, 1500, 4, 4, 64, window=(100, 37)),
              Case(2, 1500, 384, 4, 1, 128, causal=True), Case(2, 1024, 1024, 4, 2, 256, causal=True),
              Case(1, 700, 1500, 4, 1, 256, window=(100, 37))]


@pytest.mark.gpu
@needs_sm90
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=h.dtype_id)
@pytest.mark.parametrize("case", GRAD_CASES, ids=h.case_id)
def test_sm90_backward_on_its_out_lse(case, dtype, count_sm90):
    """The backward consumes the Gluon forward's out and lse: every gradient under the 2x rule."""
    h.check_case(case, dtype, device="cuda", grad=True)
    assert count_sm90


def test_kv3d_on_by_default():
    """Without TILEFOLD_{FWD,BWD}_SM90_KV3D in the environment, ragged batches take the Gluon kernels' KV3D path
    (its GPU tests passed in call 40); "0" opts out."""
    import os
    import subprocess
    import sys
    code = ("from tilefold.ops.attention import forward_sm90 as f, backward_sm90 as b; "
            "print(int(f.KV3D), int(b.KV3D))")
    for value, want in ((None, "1 1"), ("0", "0 0"), ("1", "1 1")):
        env = {k: x for k, x in os.environ.items() if k not in ("TILEFOLD_FWD_SM90_KV3D", "TILEFOLD_BWD_SM90_KV3D")}
        if value is not None:
            env.update(TILEFOLD_FWD_SM90_KV3D=value, TILEFOLD_BWD_SM90_KV3D=value)
        got = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert got.stdout.split()[-2:] == want.split(), got.stdout


@pytest.mark.skipif(not sm90.HAVE_GLUON, reason="this Triton has no Gluon")
def test_fwd_plan_arguments(monkeypatch):
    """The cached launch plan hands the kernel what the call needs: descriptors over the new call's tensors
    ((batch·seqlen, heads·head_dim) views; K / V rank 3 for a ragged batch), contiguous out / lse with their strides,
    the lengths, heads, window, scale and Philox key — and a second call of the same shape reuses the plan."""
    from tilefold.ops.common import launch
    rec = h.KernelRecorder()
    monkeypatch.setattr(sm90, "attention_fwd_sm90_ws_kernel", rec)
    monkeypatch.setattr(sm90, "_FWD_PLANS", {})
    monkeypatch.setattr(launch, "DIRECT_GLUON", False)
    monkeypatch.setattr(sm90, "KV3D", True)
    B, M, N, H, HK, D = 2, 300, 1000, 4, 2, 128
    for trial in range(2):
        q = torch.randn(B, M, H, D, dtype=torch.bfloat16)
        k, v = (torch.randn(B, N, HK, D, dtype=torch.bfloat16) for _ in range(2))
        out, lse = sm90.attention_fwd_sm90(q, k, v, softmax_scale=0.1, window=(100, 37), dropout_p=0.25,
                                           seed=(7 << 32) + 5 + trial, offset=12)
        grid, args, kw = rec.calls[-1]
        assert grid == (3, B * H, 1)
        dq_, dk_, dv_ = args[:3]
        assert dq_.base is q and dq_.shape == [B * M, H * D] and dq_.strides == [H * D, 1] and dq_.block_shape == [64, D]
        for d, t in ((dk_, k), (dv_, v)):
            assert d.base is t and d.shape == [B, N, HK * D] and d.strides == [N * HK * D, HK * D, 1]
            assert d.block_shape == [1, 128, D]
        assert args[3] is out and args[4] is lse and out.shape == q.shape and out.is_contiguous()
        assert lse.shape == (B, H, M) and lse.dtype == torch.float32
        assert args[5:10] == (M * H * D, H * D, D, H * M, M)
        assert args[10:17] == (M, N, H, H // HK, N - M, 100, 37)
        assert args[17] == pytest.approx(0.1 * sm90.LOG2E)
        assert args[18:22] == (5 + trial, 7, 12, round(0.25 * 65536)) and args[22] == pytest.approx(1 / 0.75)
        assert kw["KV3D"] and kw["HAS_DROPOUT"] and kw["HAS_LO"] and kw["HAS_HI"] and kw["HEAD_D"] == D
        assert kw["BLOCK_N"] == 128 and kw["num_warps"] == 4
    assert len(rec.calls) == 2
    assert len(sm90._FWD_PLANS) == 1  # one plan for both calls
