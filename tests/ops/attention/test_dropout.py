"""Fused dropout: mask in the sign bit of the returned probabilities, regenerated in the backward."""
import math

import pytest
import torch
import triton
import triton.language as tl

import tilefold
from tilefold.ops.attention.interface import _dropout_key
from tilefold.ops.attention.naive import attention_ref, varlen_attention_ref
from tilefold.ops.common.philox import as_int32, dropout_keep, dropout_keep_torch, dropout_threshold
from tilefold.ops.common.philox_torch import rng_seed_offset

BACKENDS = ["torch", "triton"]


def _err(a, b):
    return (a.double() - b.double()).abs().max().item()


def _check(out, ref64, low):
    assert _err(out, ref64) <= 2 * _err(low, ref64) + 1e-5


def _run(q, k, v, seed, **kw):
    torch.manual_seed(seed)
    return tilefold.attention(q, k, v, return_attn_probs=True, **kw)


def _dropout_case(backend, device, dtype, B, M, N, H, HK, D, p, **mask):
    with tilefold.use_backend(backend):
        q = torch.randn(B, M, H, D, device=device, dtype=dtype, requires_grad=True)
        k = torch.randn(B, N, HK, D, device=device, dtype=dtype, requires_grad=True)
        v = torch.randn(B, N, HK, D, device=device, dtype=dtype, requires_grad=True)
        out, lse, S = _run(q, k, v, 7, dropout_p=p, **mask)
        # the same seed without probabilities: same output, and its backward regenerates the mask
        torch.manual_seed(7)
        out2 = tilefold.attention(q, k, v, dropout_p=p, **mask)
        assert torch.equal(out, out2)
        do = torch.randn_like(out)
        g = torch.autograd.grad(out2, (q, k, v), do)
    keep = ~torch.signbit(S)
    ref, rlse = attention_ref(q, k, v, dropout_p=p, keep=keep, **mask)
    low, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, compute_dtype=dtype, **mask)
    _check(out, ref, low)
    assert torch.equal(torch.isneginf(lse), torch.isneginf(rlse))
    fin = torch.isfinite(rlse)
    assert _err(lse[fin], rlse[fin]) <= 1e-4
    rg = torch.autograd.grad(ref, (q, k, v), do.double())
    lg = torch.autograd.grad(low, (q, k, v), do)
    for a, r, lo in zip(g, rg, lg):
        _check(a, r, lo)
    return S


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("case", [
    dict(B=2, M=37, N=45, H=4, HK=2, D=32, p=0.3, causal=True, window_size=(20, -1), softcap=5.0),
    dict(B=1, M=50, N=17, H=2, HK=1, D=40, p=0.1, causal=True),
    dict(B=1, M=16, N=64, H=2, HK=2, D=16, p=0.5),
], ids=["gqa-causal-window-softcap", "mqa-causal-sq>sk", "mha-full"])
def test_decoded_mask_reproduces_out_and_grads(backend, dtype, case):
    _dropout_case(backend, "cpu", dtype, **case)


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("case", [
    dict(B=2, M=113, N=1023, H=8, HK=2, D=128, p=0.17, causal=True),
    dict(B=1, M=1023, N=113, H=4, HK=4, D=64, p=0.3, window_size=(64, 8)),
    dict(B=2, M=257, N=257, H=4, HK=1, D=96, p=0.1, causal=True, softcap=20.0),
    dict(B=2, M=256, N=384, H=8, HK=2, D=128, p=0.2, causal=True),   # every Hopper Gluon kernel at batch 2
], ids=["gqa-causal", "window", "mqa-softcap", "gqa-causal-tiles"])
def test_decoded_mask_reproduces_out_and_grads_gpu(dtype, case):
    _dropout_case("triton", "cuda", dtype, **case)


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_positions_positive_zero_and_dropped_zero_negative(backend):
    with tilefold.use_backend(backend):
        q, k, v = (torch.randn(1, 24, 2, 16) for _ in range(3))
        q = q * 30  # sharp softmax: many probabilities underflow to 0
        _, _, S = _run(q, k, v, 3, dropout_p=0.5, causal=True)
    i = torch.arange(24).view(-1, 1)
    j = torch.arange(24).view(1, -1)
    masked = (j > i).expand_as(S)
    assert (S[masked] == 0).all() and not torch.signbit(S[masked]).any()
    underflow = (S == 0) & ~masked
    assert torch.signbit(S[underflow]).any(), "a dropped underflowed probability must be -0.0"


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_seed_bitwise_next_call_differs(backend):
    with tilefold.use_backend(backend):
        q, k, v = (torch.randn(1, 32, 2, 16, requires_grad=True) for _ in range(3))
        res = []
        for _ in range(2):
            torch.manual_seed(11)
            out, _, S = tilefold.attention(q, k, v, dropout_p=0.2, return_attn_probs=True)
            g = torch.autograd.grad(out.sum(), (q, k, v))
            res.append((out, S, g))
        assert torch.equal(res[0][0], res[1][0]) and torch.equal(res[0][1], res[1][1])
        assert all(torch.equal(a, b) for a, b in zip(res[0][2], res[1][2]))
        _, _, S_next = tilefold.attention(q, k, v, dropout_p=0.2, return_attn_probs=True)
        assert not torch.equal(torch.signbit(S_next), torch.signbit(res[1][1]))


def _mirror_keep(seed, offset, B, H, M, N, p, b_offset=0):
    """keep[b, h, i, j] from the torch Philox mirror with the row index bh = (b_offset + b) · H + h of the query head"""
    bh = ((torch.arange(B)[:, None] + b_offset) * H + torch.arange(H)[None, :])[:, :, None, None]
    return dropout_keep_torch(seed, offset, bh, torch.arange(M)[:, None], torch.arange(N)[None, :],
                              dropout_threshold(p))


@pytest.mark.parametrize("H,HK", [(4, 4), (8, 2), (4, 1)], ids=["mha", "gqa", "mqa"])
def test_cpu_and_kernel_draw_the_same_mask(H, HK):
    """both backends' masks equal each other and the torch mirror keyed by the query head (GQA / MQA: the heads of
    one key head draw different masks)"""
    q = torch.randn(2, 40, H, 16)
    k, v = (torch.randn(2, 40, HK, 16) for _ in range(2))
    masks = []
    for backend in BACKENDS:
        with tilefold.use_backend(backend):
            _, _, S = _run(q, k, v, 99, dropout_p=0.25)
            masks.append(torch.signbit(S))
    assert torch.equal(masks[0], masks[1])
    torch.manual_seed(99)
    seed, offset = rng_seed_offset(_dropout_key(q.device, 0.25))
    assert torch.equal(masks[0], ~_mirror_keep(seed, offset, 2, H, 40, 40, 0.25))


def test_cpu_and_kernel_draw_the_same_mask_varlen():
    """varlen: sequence b draws the mask of batch row b (each sequence its own), equal in both backends and to the
    mirror; the padding of S is +0.0"""
    cu = torch.tensor([0, 7, 7, 30, 41], dtype=torch.int32)
    q = torch.randn(41, 4, 16)
    k, v = (torch.randn(41, 2, 16) for _ in range(2))
    masks = []
    for backend in BACKENDS:
        with tilefold.use_backend(backend):
            torch.manual_seed(5)
            _, _, S = tilefold.varlen_attention(q, k, v, cu, cu, 23, 23, dropout_p=0.3, return_attn_probs=True)
            masks.append(torch.signbit(S))
    assert torch.equal(masks[0], masks[1])
    torch.manual_seed(5)
    seed, offset = rng_seed_offset(_dropout_key(q.device, 0.3))
    want = ~_mirror_keep(seed, offset, 4, 4, 23, 23, 0.3)
    lens = (cu[1:] - cu[:-1]).tolist()
    for b, n in enumerate(lens):
        assert torch.equal(masks[0][b, :, :n, :n], want[b, :, :n, :n]), b
        assert not masks[0][b, :, n:].any() and not masks[0][b, :, :, n:].any()
    # two sequences of equal length draw different masks
    assert not torch.equal(want[0, :, :7, :7], want[2, :, :7, :7])


@pytest.mark.parametrize("backend", BACKENDS)
def test_p_zero_is_bitwise_the_plain_path(backend):
    with tilefold.use_backend(backend):
        q, k, v = (torch.randn(2, 33, 2, 32, requires_grad=True) for _ in range(3))
        a = tilefold.attention(q, k, v, causal=True, dropout_p=0.0)
        b = tilefold.attention(q, k, v, causal=True)
        assert torch.equal(a, b)
        ga = torch.autograd.grad(a.sum(), (q, k, v))
        gb = torch.autograd.grad(b.sum(), (q, k, v))
        assert all(torch.equal(x, y) for x, y in zip(ga, gb))
        _, _, S = tilefold.attention(q, k, v, causal=True, return_attn_probs=True)
        assert not torch.signbit(S).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_p_close_to_one_is_finite(backend):
    with tilefold.use_backend(backend):
        q, k, v = (torch.randn(1, 20, 2, 16, requires_grad=True) for _ in range(3))
        out = tilefold.attention(q, k, v, dropout_p=0.999)
        g = torch.autograd.grad(out.sum(), (q, k, v))
        assert torch.isfinite(out).all() and all(torch.isfinite(x).all() for x in g)


def test_keep_scale_is_the_masks_keep_probability():
    """Kept values are scaled by 1 / (1 - p) for the p the mask has (the threshold / 65536), so the output's expectation
    is the output without dropout also near p = 1: with uniform probabilities (q = 0) and v = 1 every output is
    (kept keys / N) x scale, mean 1. p = 0.99999 rounds to 65535/65536 (keep 1.5e-5, not 1e-5): 1 / (1 - p) gave a
    mean of ~1.5. 16 x 1024 rows x 4096 keys: ~1000 kept, 5 sigma ~ 0.16. The kernels take the scale from
    dropout_args."""
    from tilefold.ops.common.philox import dropout_args, keep_scale
    for p in (0.1, 0.5, 0.9999, 0.99999):
        assert keep_scale(p) == 65536 / (65536 - dropout_threshold(p))
        assert dropout_args(p, 1, 2)[4] == keep_scale(p)
    assert keep_scale(0.0) == 1.0 and abs(keep_scale(0.1) * 0.9 - 1) < 1e-5
    torch.manual_seed(1)
    q = torch.zeros(1, 1024, 16, 16)
    k = torch.randn(1, 4096, 16, 16)
    v = torch.ones(1, 4096, 16, 16)
    with tilefold.use_backend("torch"):
        out = tilefold.attention(q, k, v, dropout_p=0.99999)
    assert abs(out.double().mean().item() - 1.0) < 0.16


def test_fraction_and_no_structure():
    """Drop fraction within 0.01 of p over a large tile; per-row and per-column fractions within 6 sigma."""
    p = 0.37
    keep = dropout_keep_torch(0x1234_5678_9ABC_DEF0, 77, torch.tensor(5), torch.arange(1024).view(-1, 1),
                              torch.arange(1024).view(1, -1), dropout_threshold(p))
    drop = 1.0 - keep.double()
    assert abs(drop.mean().item() - p) < 0.01
    sigma = math.sqrt(p * (1 - p) / 1024)
    assert (drop.mean(0) - p).abs().max().item() < 6 * sigma
    assert (drop.mean(1) - p).abs().max().item() < 6 * sigma
    # elements that share a Philox call (columns j, j ^ 1, j ^ 8 and rows r, r ^ 8) are not correlated
    pairs = [(drop[:, ::2], drop[:, 1::2]),
             (drop.view(1024, -1, 16)[:, :, :8], drop.view(1024, -1, 16)[:, :, 8:]),
             (drop.view(-1, 16, 1024)[:, :8], drop.view(-1, 16, 1024)[:, 8:])]
    for a, b in pairs:
        c = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
        assert abs(c) < 0.02


@triton.jit
def _keep_tile_kernel(Out, seed_lo, seed_hi, offset, bh, thr, stride,
                      BM: tl.constexpr, BN: tl.constexpr, KEY_MAJOR: tl.constexpr):
    r0 = tl.program_id(0) * BM
    c0 = tl.program_id(1) * BN
    if KEY_MAJOR:
        # the dK/dV orientation: rows of the tile are keys (columns of the mask)
        keep = dropout_keep(seed_lo, seed_hi, offset, bh, r0, tl.arange(0, BM)[None, :], c0,
                            tl.arange(0, BN)[:, None], thr)
        ptrs = Out + (r0 + tl.arange(0, BM))[None, :] * stride + (c0 + tl.arange(0, BN))[:, None]
    else:
        keep = dropout_keep(seed_lo, seed_hi, offset, bh, r0, tl.arange(0, BM)[:, None], c0,
                            tl.arange(0, BN)[None, :], thr)
        ptrs = Out + (r0 + tl.arange(0, BM))[:, None] * stride + (c0 + tl.arange(0, BN))[None, :]
    tl.store(ptrs, keep.to(tl.int32))


@pytest.mark.parametrize("tile", [(16, 16, False), (32, 64, False), (64, 16, True), (16, 32, True)],
                         ids=["16x16", "32x64", "64x16-keymajor", "16x32-keymajor"])
def test_kernel_mask_is_the_torch_mask_for_any_tile(tile):
    """The Triton generator, at several tile shapes and in both orientations, equals the torch mirror
    element for element: the mask depends on (seed, offset, bh, row, column) only."""
    BM, BN, key_major = tile
    M, N = 64, 128
    seed, offset, bh, p = 0xDEAD_BEEF_0123_4567, 12345, 7, 0.31
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    out = torch.full((M, N), -1, dtype=torch.int32, device=dev)
    _keep_tile_kernel[(M // BM, N // BN)](out, as_int32(seed), as_int32(seed >> 32), as_int32(offset), bh,
                                         dropout_threshold(p), out.stride(0), BM=BM, BN=BN, KEY_MAJOR=key_major)
    ref = dropout_keep_torch(seed, offset, torch.tensor(bh), torch.arange(M).view(-1, 1),
                             torch.arange(N).view(1, -1), dropout_threshold(p))
    assert torch.equal(out.cpu().bool(), ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_varlen_dropout_padded_probs(backend):
    cu_q = torch.tensor([0, 5, 5, 21], dtype=torch.int32)
    cu_k = torch.tensor([0, 9, 10, 30], dtype=torch.int32)
    with tilefold.use_backend(backend):
        q = torch.randn(21, 4, 16, requires_grad=True)
        k = torch.randn(30, 2, 16, requires_grad=True)
        v = torch.randn(30, 2, 16, requires_grad=True)
        torch.manual_seed(4)
        out, lse, S = tilefold.varlen_attention(q, k, v, cu_q, cu_k, 16, 20, causal=True, dropout_p=0.3,
                                                return_attn_probs=True)
        torch.manual_seed(4)
        out2 = tilefold.varlen_attention(q, k, v, cu_q, cu_k, 16, 20, causal=True, dropout_p=0.3)
        g = torch.autograd.grad(out2, (q, k, v), torch.ones_like(out2))
    assert S.shape == (3, 4, 16, 20)
    assert (S[1] == 0).all() and not torch.signbit(S[1]).any()
    assert (S[0, :, 5:] == 0).all() and (S[0, :, :, 9:] == 0).all()
    outs, grads = [], []
    for b in range(3):
        qs, qe, ks, ke = int(cu_q[b]), int(cu_q[b + 1]), int(cu_k[b]), int(cu_k[b + 1])
        keep = ~torch.signbit(S[b:b + 1, :, :qe - qs, :ke - ks])
        o, _ = attention_ref(q[None, qs:qe], k[None, ks:ke], v[None, ks:ke], causal=True, dropout_p=0.3, keep=keep)
        outs.append(o[0])
    ref = torch.cat(outs)
    assert _err(out, ref) < 1e-5
    rg = torch.autograd.grad(ref, (q, k, v), torch.ones_like(ref))
    for a, r in zip(g, rg):
        assert _err(a, r) < 1e-4


@pytest.mark.gpu
def test_no_quadratic_memory_gpu():
    """Without return_attn_probs, peak memory of fwd+bwd grows linearly in seqlen (no M x N buffer)."""
    peaks = []
    for S in (4096, 8192):
        q, k, v = (torch.randn(1, S, 8, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        out = tilefold.attention(q, k, v, dropout_p=0.1, causal=True)
        out.backward(torch.randn_like(out))
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated() - base)
        del q, k, v, out
    # an M x N fp32 buffer at 8192 would be 8 heads * 256 MB; linear growth doubles the peak at most (+slack)
    assert peaks[1] <= 2.2 * peaks[0]
    assert peaks[1] < 8 * 8192 * 8192 // 4


def _dropout_kernels():
    from tilefold.ops.attention import backward, backward_sm90, forward, forward_sm90
    ks = [forward.attention_fwd_kernel, backward.attention_bwd_dkdv_kernel, backward.attention_bwd_dq_kernel]
    if forward_sm90.HAVE_GLUON:
        ks += [forward_sm90.attention_fwd_sm90_ws_kernel, backward_sm90.attention_bwd_dkdv_sm90_kernel,
               backward_sm90.attention_bwd_dq_sm90_kernel, backward_sm90.attention_bwd_dkdv_sm90_hd256_kernel]
    return ks


def test_rng_arguments_are_never_specialized():
    """Triton makes an int argument equal to 1 a constant; torch.manual_seed(1) (seed_lo = 1), a generator's second
    call (offset 1) and p = 1/65536 (threshold 1) give such values, and the kernels call .to() on them (a compile
    error on the GPU, call 49). Every kernel that takes the dropout integers must leave them unspecialized."""
    from tilefold.ops.common.philox import RNG_ARGS
    for kern in _dropout_kernels():
        if hasattr(kern, "params"):  # JITFunction
            names = {p.name for p in kern.params if p.do_not_specialize}
        else:  # the interpreter's wrapper keeps the decorator's arguments
            names = set(kern.kwargs.get("do_not_specialize") or ())
        assert set(RNG_ARGS) <= names, kern


def test_dropout_key_is_drawn_on_the_device_by_the_generator():
    """The key is three int32 words drawn on q's device from torch's generator (so capture and compile work, and the
    host never reads the generator): reproducible with manual_seed, new words on the next call, none for p = 0."""
    torch.manual_seed(3)
    a = _dropout_key(torch.device("cpu"), 0.1)
    b = _dropout_key(torch.device("cpu"), 0.1)
    torch.manual_seed(3)
    assert torch.equal(_dropout_key(torch.device("cpu"), 0.5), a)
    assert a.dtype == torch.int32 and a.shape == (3,) and not torch.equal(a, b)
    assert _dropout_key(torch.device("cpu"), 0.0) is None


@pytest.mark.gpu
@pytest.mark.parametrize("state", [(1, 0, 0, 0.2), (0, 0, 1, 0.2), (0, 1, 0, 0.2), (5, 0, 3, 1 / 65536)],
                         ids=["seed1", "offset1", "seedhi1", "threshold1"])
@pytest.mark.parametrize("D", [128, 96], ids=["hd128", "hd96"])
def test_rng_values_equal_to_one_gpu(state, D, monkeypatch):
    """Key words / thresholds equal to 1 on every kernel (hd128 batch 2 takes the Hopper Gluon kernels on an sm_90
    GPU — checked —, hd96 the Triton ones): the mask is the torch mirror's (decoded from S_dmask), out and gradients
    follow it. The words are loaded (RNG_PTR); the threshold is an integer argument Triton must not specialize."""
    from tilefold.ops.attention import backward_sm90, config, forward_sm90, interface
    lo, hi, offset, p = state
    gluon = D == 128 and forward_sm90.HAVE_GLUON and torch.cuda.get_device_capability()[0] == 9
    taken = []
    for mod, name in ((forward_sm90, "attention_fwd_sm90"), (backward_sm90, "attention_dkdv_sm90"),
                      (backward_sm90, "attention_dq_sm90")):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _r=real, _n=name, **kw: taken.append(_n) or _r(*a, **kw))
    if gluon:
        monkeypatch.setattr(config, "FWD_SM90", "1")
        monkeypatch.setattr(config, "BWD_SM90", "1")
    words = torch.tensor([lo, hi, offset], dtype=torch.int32, device="cuda")
    monkeypatch.setattr(interface, "draw_rng_words", lambda device: words.clone())
    seed = (hi << 32) | lo
    torch.manual_seed(0)
    q = torch.randn(2, 256, 4, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    k = torch.randn(2, 384, 2, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)

    def call(**kw):
        return tilefold.attention(q, k, v, dropout_p=p, causal=True, **kw)
    out, lse, S = call(return_attn_probs=True)
    out2 = call()
    assert torch.equal(out, out2)
    do = torch.randn_like(out)
    g = torch.autograd.grad(out2, (q, k, v), do)
    bh = torch.arange(2 * 4, device="cuda").view(2, 4, 1, 1)
    rows = torch.arange(256, device="cuda").view(-1, 1)
    cols = torch.arange(384, device="cuda").view(1, -1)
    keep_ref = dropout_keep_torch(seed, offset, bh, rows, cols, dropout_threshold(p))
    visible = cols <= rows + 128  # causal, bottom-right aligned
    keep = ~torch.signbit(S)
    assert torch.equal(keep[..., visible], keep_ref.expand_as(keep)[..., visible])
    ref, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, causal=True)
    low, _ = attention_ref(q, k, v, dropout_p=p, keep=keep, causal=True, compute_dtype=torch.bfloat16)
    _check(out, ref, low)
    rg = torch.autograd.grad(ref, (q, k, v), do.double())
    lg = torch.autograd.grad(low, (q, k, v), do)
    for a, r, lo in zip(g, rg, lg):
        _check(a, r, lo)
    if gluon:
        assert set(taken) == {"attention_fwd_sm90", "attention_dkdv_sm90", "attention_dq_sm90"}, taken


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("varlen", [False, True], ids=["dense", "varlen"])
@pytest.mark.parametrize("at_use", [None, True, False], ids=["policy", "at_use", "at_start"])
def test_key_words_are_the_integer_key(backend, varlen, at_use, monkeypatch):
    """The kernels' two ways to take the Philox key -- integer arguments (seed, offset) or three int32 words loaded
    from a tensor (RNG_PTR, what public calls use) -- give bitwise the same out, lse and gradients for the same key,
    and S's signs are the torch mirror's mask of the integer key; the torch path reads the words on the device
    (0-dim tensors), bitwise as with the integers. The kernels take the words loaded at their start (RNG_PTR) or
    loaded where each mask is made (the pointer in the seed slot): both ways here."""
    from tilefold.ops.attention import function
    from tilefold.ops.common import philox_torch
    monkeypatch.setattr(philox_torch, "KEY_AT_USE", at_use)
    seed, offset = (0x1234_5678 << 32) | 0x9ABC_DEF0, 0xFEDC_BA98
    words = torch.tensor([as_int32(seed), as_int32(seed >> 32), as_int32(offset)], dtype=torch.int32)
    torch.manual_seed(0)
    if varlen:
        cu = torch.tensor([0, 9, 9, 30], dtype=torch.int32)
        q = torch.randn(30, 4, 16, requires_grad=True)
        k, v = (torch.randn(30, 2, 16, requires_grad=True) for _ in range(2))
        meta, B, M, N = (cu, cu, 21, 21), 3, 21, 21
    else:
        q = torch.randn(2, 24, 4, 16, requires_grad=True)
        k, v = (torch.randn(2, 33, 2, 16, requires_grad=True) for _ in range(2))
        meta, B, M, N = (None, None, 24, 33), 2, 24, 33
    res = []
    with tilefold.use_backend(backend):
        for key in ((seed, offset, None), (0, 0, words)):
            out, lse = function.attention_forward(q, k, v, *meta, 0.25, 7, 0, 0.0, 0, 0.3, *key)
            res.append((out, lse) + torch.autograd.grad((out * out).sum(), (q, k, v)))
        S = function.attention_probs_forward(q, k, v, *meta, res[1][1], 0.25, 7, 0, 0.0, 0.3, words)
    for a, b in zip(*res):
        assert torch.equal(a, b)
    visible = (S != 0) | torch.signbit(S)  # masked and padding positions are +0.0
    drop = torch.signbit(S)
    assert drop.any() and (visible & ~drop).any()
    assert torch.equal(drop[visible], ~_mirror_keep(seed, offset, B, 4, M, N, 0.3)[visible])


def test_refused_split_dropout_leaves_the_generator_alone():
    q, k, v = (torch.randn(1, 16, 2, 16) for _ in range(3))
    state = torch.get_rng_state()
    with pytest.raises(NotImplementedError, match="split-KV"):
        tilefold.attention(q, k, v, dropout_p=0.1, num_splits=2)
    assert torch.equal(torch.get_rng_state(), state)


def test_vmap_randomness():
    """vmap over dropout calls (the key is drawn inside the mapped function, so torch's vmap randomness rule applies):
    "different" draws a mask per element, "same" one for all; the default "error" refuses, as for torch's own
    random ops"""
    q, k, v = (torch.randn(1, 1, 24, 2, 16).expand(3, -1, -1, -1, -1) for _ in range(3))
    f = lambda q, k, v: tilefold.attention(q, k, v, dropout_p=0.3)  # noqa: E731
    with tilefold.use_backend("torch"):
        diff = torch.func.vmap(f, randomness="different")(q, k, v)
        same = torch.func.vmap(f, randomness="same")(q, k, v)
        with pytest.raises(RuntimeError, match="randomness"):
            torch.func.vmap(f)(q, k, v)
    assert not torch.equal(diff[0], diff[1]) and torch.equal(same[0], same[1]) and torch.equal(same[0], same[2])
