"""Keys in parallel (KPAR: the decode program's key range folded as one chunk per warp, the chunk states merged at
the end). Forced with TILEFOLD_DECODE_KPAR=1 on every case it takes (one 16-row block of 16-bit tiles up to hd128):
masks by row position, chunk ends that are not tile ends, empty chunks, splits and the fused combine, varlen;
2x rule against fp64, and the plans must really have taken KPAR; the host switches (mode per call, plan key, split
choice, no descriptors). CPU tier through the interpreter (fp16), GPU tier at decode sizes (bf16 / fp16)."""
import pytest
import torch

from decode_helpers import assert_2x, check_decode_gpu, window_ref
from tilefold.ops.attention.naive import attention_ref, varlen_attention_ref
from tilefold.ops.common.dispatch import use_backend
from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention

CASES = [  # (B, M, N, H, HK, D, window, softcap); rows = M * H / HK <= 16
    (2, 1, 113, 4, 2, 32, (-1, -1), 0.0),   # GQA decode, 113 keys: the last chunk ends inside a tile
    (1, 5, 70, 2, 2, 16, (8, 0), 0.0),      # causal + left window by position, 5 rows
    (2, 1, 50, 8, 2, 16, (-1, 0), 0.0),     # GQA packed, causal
    (1, 1, 50, 4, 1, 16, (-1, 3), 0.0),     # MQA packed, right window
    (1, 1, 50, 4, 2, 16, (6, -1), 0.0),     # left window only: two of the four chunks empty
    (1, 3, 1, 2, 2, 16, (-1, -1), 0.0),     # one key: three chunks empty
    (1, 4, 260, 4, 1, 72, (7, 3), 0.0),     # odd head dim (padded to 128), 16 rows, narrow window
    (2, 3, 77, 8, 2, 32, (-1, 0), 5.0),     # softcap, causal, 12 rows
]


def _cid(c):
    B, M, N, H, HK, D, w, cap = c
    return f"b{B}-q{M}-k{N}-h{H}x{HK}-d{D}-win{w[0]}_{w[1]}" + (f"-cap{cap:g}" if cap else "")


def _took_kpar():
    return bool(K._PLANS) and all(p.cons["KPAR"] == K.KPAR_W for p in K._PLANS.values())


def _check_varlen_causal(lens_q, lens_k, H, HK, D, dtype, device, splits):
    """Causal varlen decode through split_kv_attention for each split count: took KPAR, 2x rule against fp64."""
    cu_q = torch.tensor([0] + torch.tensor(lens_q).cumsum(0).tolist(), dtype=torch.int32, device=device)
    cu_k = torch.tensor([0] + torch.tensor(lens_k).cumsum(0).tolist(), dtype=torch.int32, device=device)
    q = torch.randn(sum(lens_q), H, D, device=device, dtype=dtype)
    k, v = (torch.randn(sum(lens_k), HK, D, device=device, dtype=dtype) for _ in range(2))
    ref_o, ref_l = varlen_attention_ref(q, k, v, cu_q, cu_k, causal=True)
    base_o, base_l = varlen_attention_ref(q, k, v, cu_q, cu_k, causal=True, compute_dtype=dtype)
    for S in splits:
        with use_backend("triton"):
            o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=(-1, 0), softcap=0.0,
                                      cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max(lens_q),
                                      max_seqlen_k=max(lens_k))
        assert _took_kpar()
        assert_2x(f"out S={S}", o, ref_o, base_o)
        assert_2x(f"lse S={S}", l, ref_l, base_l)


@pytest.mark.parametrize("S,combine", [(1, "kernel"), (3, "kernel"), (3, "fused"), (7, "fused")])
@pytest.mark.parametrize("case", CASES, ids=_cid)
def test_kpar_matches_reference(case, S, combine, monkeypatch):
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "1")
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", combine)
    K.clear_plans()
    B, M, N, H, HK, D, window, cap = case
    torch.manual_seed(N + M)
    q, k, v = (torch.randn(B, L, h, D).half() for L, h in ((M, H), (N, HK), (N, HK)))
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, window, cap, torch.float16)
    with use_backend("triton"):
        o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=window, softcap=cap)
    assert _took_kpar()
    assert o.dtype == torch.float16 and l.shape == (B, H, M)
    assert_2x(f"out S={S}", o, ref_o, base_o)
    assert_2x(f"lse S={S}", l, ref_l, base_l)


def test_kpar_varlen_with_empty_sequences(monkeypatch):
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "1")
    K.clear_plans()
    torch.manual_seed(3)
    _check_varlen_causal([1, 0, 2, 1], [40, 9, 0, 130], 8, 2, 32, torch.float16, "cpu", (1, 2, 0))


def test_kpar_mode_and_fit(monkeypatch):
    """Where KPAR may run (one 16-row block, 16-bit, head dim <= 128) and the switch's values."""
    assert K.kpar_ok(16, 128, torch.bfloat16) and K.kpar_ok(1, 72, torch.float16)
    assert not K.kpar_ok(17, 128, torch.bfloat16) and not K.kpar_ok(4, 256, torch.bfloat16)
    assert not K.kpar_ok(4, 128, torch.float32)
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "yes")
    with pytest.raises(ValueError, match="TILEFOLD_DECODE_KPAR"):
        K.kpar_mode()
    # outside its fit the forced mode leaves the 2-D path: fp32, and 64 packed rows
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "1")
    for dtype, M in ((torch.float32, 1), (torch.float16, 16)):
        K.clear_plans()
        q, k = torch.randn(1, M, 8, 32).to(dtype), torch.randn(1, 40, 2, 32).to(dtype)
        with use_backend("triton"):
            split_kv_attention(q, k, k, num_splits=2, softmax_scale=0.2, window=(-1, -1), softcap=0.0)
        assert all(p.cons["KPAR"] == 1 for p in K._PLANS.values())


def test_select_config_modes(gpu_policy, monkeypatch):
    """auto: the KPAR tile only for one unsplit wave (0.9-1 x SMs) of <= KPAR_MAX_KEYS keys in the swept case, on
    NVIDIA; "0" never; "1" wherever kpar_ok (also split)."""
    cuda, bf16 = torch.device("cuda"), torch.bfloat16
    sel = K.select_config
    assert sel(4, 128, bf16, cuda, 8192, 1, 128, 132, "auto") == K.KPAR_CONFIG
    assert sel(4, 128, bf16, cuda, 32768, 0, 119, 132, "auto") == K.KPAR_CONFIG
    for args in [(4, 128, bf16, cuda, 8192, 2, 128, 132), (4, 128, bf16, cuda, 32769, 1, 128, 132),
                 (4, 128, bf16, cuda, 8192, 1, 118, 132), (4, 128, bf16, cuda, 8192, 1, 133, 132),
                 (4, 64, bf16, cuda, 8192, 1, 128, 132), (4, 128, torch.float32, cuda, 8192, 1, 128, 132)]:
        assert sel(*args, "auto").kpar == 1, args
    assert sel(4, 128, bf16, cuda, 8192, 1, 128, 132, "0") == K.decode_config(4, 128, bf16, cuda, 8192, False, False)
    assert sel(4, 128, bf16, cuda, 8192, 2, 128, 132, "1") == K.KPAR_CONFIG
    assert sel(16, 64, torch.float16, cuda, 100, 3, 1, 132, "1") == K.KPAR_CONFIG
    for args in [(17, 128, bf16), (4, 256, bf16), (4, 128, torch.float32)]:
        assert sel(*args, cuda, 8192, 1, 128, 132, "1").kpar == 1, args
    monkeypatch.setattr(K, "_kpar_auto_ok", lambda: False)  # e.g. ROCm
    assert sel(4, 128, bf16, cuda, 8192, 1, 128, 132, "auto").kpar == 1


def test_split_choice_follows_kpar_mode(gpu_policy, monkeypatch):
    """B=16, 8 key heads, 8k keys: unsplit (the KPAR wave) under auto, two splits with TILEFOLD_DECODE_KPAR=0, read
    per call; an invalid value does not break the choice (the decode plan reports it)."""
    SK = gpu_policy
    choose = lambda: SK.choose_num_splits(16, 32, 1, 8192, 128, torch.bfloat16, "cuda", heads_k=8)  # noqa: E731
    monkeypatch.delenv("TILEFOLD_DECODE_KPAR", raising=False)
    assert choose() == 1
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "0")
    assert choose() == 2
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "1")
    assert choose() == 1
    assert SK.choose_num_splits(16, 32, 1, 131072, 128, torch.bfloat16, "cuda", heads_k=8) == 2
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "bad")
    assert choose() == 1


def test_kpar_never_with_descriptors(monkeypatch):
    """TILEFOLD_DECODE_TMA=1 with KPAR: pointer loads (the kernel's static_assert); without KPAR: descriptors."""
    monkeypatch.setattr(K, "tma_ok", lambda k, v: True)
    monkeypatch.setenv("TILEFOLD_DECODE_TMA", "1")
    q, k = torch.randn(2, 1, 8, 64).half(), torch.randn(2, 300, 2, 64).half()
    for mode, kpar, tma in (("1", K.KPAR_W, False), ("0", 1, True)):
        monkeypatch.setenv("TILEFOLD_DECODE_KPAR", mode)
        plan = K._make_plan(q, k, k, 2, 0.125, (-1, -1), 0.0, None, None, None, None)
        assert (plan.cons["KPAR"], plan.cons["USE_TMA"]) == (kpar, tma)


def test_plan_follows_kpar_env_between_calls(monkeypatch):
    """The plan cache is keyed by TILEFOLD_DECODE_KPAR: switching it between calls (no clear_plans) switches the kernel."""
    K.clear_plans()
    torch.manual_seed(5)
    q, k, v = torch.randn(1, 1, 8, 32).half(), torch.randn(1, 90, 2, 32).half(), torch.randn(1, 90, 2, 32).half()
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, (-1, -1), 0.0, torch.float16)
    seen = []
    for mode in ("1", "0", "1"):
        monkeypatch.setenv("TILEFOLD_DECODE_KPAR", mode)
        with use_backend("triton"):
            o, l = split_kv_attention(q, k, v, num_splits=2, softmax_scale=32 ** -0.5, window=(-1, -1), softcap=0.0)
        assert_2x(f"out {mode}", o, ref_o, base_o)
        assert_2x(f"lse {mode}", l, ref_l, base_l)
        seen.append(sorted(p.cons["KPAR"] for p in K._PLANS.values()))
    assert seen == [[K.KPAR_W], [1, K.KPAR_W], [1, K.KPAR_W]]


@pytest.mark.gpu
@pytest.mark.parametrize("case", [
    (2, 1, 3000, 16, 4, 72, (-1, -1), 0.0, torch.bfloat16),    # odd head dim (padded), G = 4
    (1, 2, 5000, 16, 2, 96, (700, 0), 0.0, torch.float16),      # fp16, causal + left window, 16 rows
    (3, 1, 2049, 32, 8, 128, (-1, -1), 20.0, torch.bfloat16),   # softcap
    (2, 3, 4100, 8, 2, 64, (-1, 5), 0.0, torch.float16),        # right window, head dim 64
], ids=lambda c: f"b{c[0]}-q{c[1]}-k{c[2]}-d{c[5]}-w{c[6][0]}_{c[6][1]}-cap{c[7]:g}-{str(c[8])[6:]}")
@pytest.mark.parametrize("S", [1, 5])
def test_kpar_gpu_variants(case, S, monkeypatch):
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "1")
    K.clear_plans()
    B, M, N, H, HK, D, window, cap, dtype = case
    torch.manual_seed(N + S)
    q, k, v = (torch.randn(B, L, h, D, device="cuda", dtype=dtype) for L, h in ((M, H), (N, HK), (N, HK)))
    (ref_o, ref_l), (base_o, base_l) = window_ref(q, k, v, window, cap, dtype)
    o, l = split_kv_attention(q, k, v, num_splits=S, softmax_scale=D ** -0.5, window=window, softcap=cap)
    assert _took_kpar()
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)


@pytest.mark.gpu
def test_kpar_varlen_gpu(monkeypatch):
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "1")
    K.clear_plans()
    torch.manual_seed(9)
    _check_varlen_causal([1, 0, 4, 1], [3000, 17, 0, 5000], 16, 4, 128, torch.bfloat16, "cuda", (1, 3, 0))


@pytest.mark.gpu
@pytest.mark.parametrize("M,causal", [(1, False), (1, True), (4, True)])
@pytest.mark.parametrize("S", [1, 3, 0])
def test_kpar_gpu(M, causal, S, monkeypatch):
    monkeypatch.setenv("TILEFOLD_DECODE_KPAR", "1")
    K.clear_plans()
    check_decode_gpu(M, causal, S, seed=M + S)
    assert _took_kpar()


@pytest.mark.gpu
def test_kpar_auto_one_wave_gpu(monkeypatch):
    """num_splits=0 where the unsplit programs make one wave of one per SM (B = SMs // 8 with 8 key heads, bf16 hd128,
    seqlen_q 1): the policy runs them unsplit on the KPAR tile; the result holds the 2x rule."""
    monkeypatch.delenv("TILEFOLD_DECODE_KPAR", raising=False)
    K.clear_plans()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    if not K.kpar_one_wave(sms // 8 * 8, 2053, sms) or torch.version.hip is not None:
        pytest.skip(f"{sms} SMs: no batch of 8-key-head programs falls in the one-wave band")
    B, N, H, HK, D = max(1, sms // 8), 2048 + 5, 32, 8, 128
    torch.manual_seed(7)
    q = torch.randn(B, 1, H, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(B, N, HK, D, device="cuda", dtype=torch.bfloat16)
    ref_o, ref_l = attention_ref(q, k, v)
    base_o, base_l = attention_ref(q, k, v, compute_dtype=torch.bfloat16)
    o, l = split_kv_attention(q, k, v, num_splits=0, softmax_scale=D ** -0.5, window=(-1, -1), softcap=0.0)
    plans = list(K._PLANS.values())
    assert len(plans) == 1 and plans[0].S == 1 and plans[0].cons["KPAR"] == K.KPAR_W
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)
