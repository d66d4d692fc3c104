import math

import pytest
import torch

import tilefold
from tilefold.compat import flash_attn_interface as fa
from tilefold.ops.attention.naive import attention_ref, visible_mask

DEV = "cuda" if torch.cuda.is_available() else "cpu"


def _probs_ref(q, k, causal, window_size, softcap):
    D = q.shape[-1]
    g = q.shape[2] // k.shape[2]
    s = torch.einsum("bmhd,bnhd->bhmn", q.double(), k.double().repeat_interleave(g, dim=2)) / math.sqrt(D)
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    s = s.masked_fill(~visible_mask(q.shape[1], k.shape[1], causal, window_size, device=q.device), float("-inf"))
    return torch.softmax(s, -1).nan_to_num(0.0)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_qkvpacked_matches_attention_and_grads(causal):
    qkv = torch.randn(2, 37, 3, 2, 32, device=DEV, requires_grad=True)
    out = fa.flash_attn_qkvpacked_func(qkv, causal=causal)
    ref, _ = attention_ref(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], causal=causal)
    assert (out - ref).abs().max() < 1e-5
    do = torch.randn_like(out)
    (g,) = torch.autograd.grad(out, qkv, do)
    (rg,) = torch.autograd.grad(ref, qkv, do.double())
    assert (g - rg).abs().max() < 1e-4


@pytest.mark.parametrize("backend", ["torch", "triton"] if DEV == "cpu" else ["triton"])
def test_kvpacked_gqa_and_probs(backend):
    """S's values against fp64 softmax, on each backend (the torch path builds S from lse, the kernels recompute it)"""
    q = torch.randn(1, 9, 4, 16, device=DEV)
    kv = torch.randn(1, 21, 2, 2, 16, device=DEV)
    with tilefold.use_backend(backend):
        out, lse, S = fa.flash_attn_kvpacked_func(q, kv, causal=True, window_size=(5, -1), softcap=2.0,
                                                  return_attn_probs=True)
    ref, rlse = attention_ref(q, kv[:, :, 0], kv[:, :, 1], causal=True, window_size=(5, -1), softcap=2.0)
    assert (out - ref).abs().max() < 1e-5
    assert (lse - rlse).abs().max() < 1e-5
    P = _probs_ref(q, kv[:, :, 0], True, (5, -1), 2.0)
    assert S.shape == (1, 4, 9, 21) and S.dtype == torch.float32
    assert (S - P).abs().max() < 1e-5
    assert not torch.signbit(S).any()


def test_varlen_packed_variants():
    cu = torch.tensor([0, 3, 3, 11], dtype=torch.int32, device=DEV)
    qkv = torch.randn(11, 3, 2, 16, device=DEV)
    out = fa.flash_attn_varlen_qkvpacked_func(qkv, cu, 8, causal=True)
    ref = tilefold.varlen_attention(qkv[:, 0], qkv[:, 1], qkv[:, 2], cu, cu, 8, 8, causal=True)
    assert torch.equal(out, ref)
    out2, lse2, S = fa.flash_attn_varlen_kvpacked_func(qkv[:, 0], qkv[:, 1:], cu, cu, 8, 8, causal=True,
                                                       return_attn_probs=True)
    assert torch.equal(out2, ref)
    assert S.shape == (3, 2, 8, 8) and lse2.shape == (2, 11)
    assert (S[1] == 0).all()  # empty sequence: all padding
    assert torch.allclose(S[2].sum(-1), torch.ones(2, 8, device=DEV), atol=1e-5)


def test_unsupported_arguments_say_so():
    q = torch.randn(1, 4, 2, 16, device=DEV)
    with pytest.raises(ValueError, match="alibi_slopes"):  # ALiBi is supported (tests/ops/attention/test_alibi.py)
        fa.flash_attn_func(q, q, q, alibi_slopes=torch.ones(3, device=DEV))
    with pytest.raises(ValueError, match="dropout_p"):
        fa.flash_attn_func(q, q, q, dropout_p=1.5)
    with pytest.raises(ValueError, match="qkv"):
        fa.flash_attn_qkvpacked_func(q)
    for fn, args in [(fa.flash_attn_qkvpacked_func, ([1, 2],)), (fa.flash_attn_kvpacked_func, (q, [1, 2])),
                     (fa.flash_attn_varlen_qkvpacked_func, ([1], None, 1)),
                     (fa.flash_attn_varlen_kvpacked_func, (q[0], [1, 2], None, None, 1, 1))]:
        with pytest.raises(ValueError, match="kv: expected shape .* got list"):
            fn(*args)


def test_flash_attn_readings_of_arguments():
    """flash_attn's readings: any negative window edge is unbounded, softcap <= 0 is off, a strided last dimension
    is copied (maybe_contiguous) -- each equal to the canonical call, gradients included; the caller's tensors are
    left as they were."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 9, 2, 16, generator=g).to(DEV) for _ in range(3))
    base = fa.flash_attn_func(q, k, v, causal=True, window_size=(3, -1))
    assert torch.equal(fa.flash_attn_func(q, k, v, causal=True, window_size=(3, -7)), base)
    assert torch.equal(fa.flash_attn_func(q, k, v, causal=True, window_size=(3, -1), softcap=-2.0), base)
    full = fa.flash_attn_func(q, k, v)
    assert torch.equal(fa.flash_attn_func(q, k, v, window_size=(-5, -2)), full)
    # head dim strided: (b, s, h, 2d)[..., ::2] and a transposed copy of the same values
    qs = torch.randn(2, 9, 2, 32, generator=g).to(DEV)[..., ::2].requires_grad_()
    qt = qs.detach().clone().transpose(1, 3).contiguous().transpose(1, 3).requires_grad_()
    before = qs.detach().clone()
    for x in (qs, qt):
        assert x.stride(-1) != 1
        out = fa.flash_attn_func(x, k, v, causal=True)
        ref = fa.flash_attn_func(x.detach().contiguous(), k, v, causal=True)
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
        (gx,) = torch.autograd.grad(out.sum(), x)
        xc = x.detach().contiguous().requires_grad_()
        (gr,) = torch.autograd.grad(fa.flash_attn_func(xc, k, v, causal=True).sum(), xc)
        assert torch.equal(gx, gr)
    assert torch.equal(qs.detach(), before)
    # varlen too
    cu = torch.tensor([0, 4, 9], dtype=torch.int32, device=DEV)
    qv = torch.randn(9, 2, 32, generator=g).to(DEV)[..., ::2]
    kv_, vv = (torch.randn(9, 2, 16, generator=g).to(DEV) for _ in range(2))
    a = fa.flash_attn_varlen_func(qv, kv_, vv, cu, cu, 5, 5, causal=True, window_size=(-3, 1), softcap=-1.0)
    b = fa.flash_attn_varlen_func(qv.contiguous(), kv_, vv, cu, cu, 5, 5, causal=True)
    assert torch.equal(a, b)
    # what stays refused: non-integer windows, NaN softcap
    for bad in (dict(window_size=(1.5, -1)), dict(softcap=float("nan")), dict(window_size=(1, 2, 3))):
        with pytest.raises(ValueError):
            fa.flash_attn_func(q, k, v, **bad)


@pytest.mark.parametrize("flag", ["causal", "deterministic", "return_attn_probs"])
def test_flags_must_be_bools(flag):
    """a string such as "no" would have been read as True (found: causal="no" gave the causal result)"""
    q = torch.randn(1, 4, 1, 8, device=DEV)
    for bad in ("no", 1, None):
        with pytest.raises(ValueError, match=flag):
            fa.flash_attn_func(q, q, q, **{flag: bad})
    np = pytest.importorskip("numpy")
    assert torch.equal(fa.flash_attn_func(q, q, q, **{flag: np.bool_(False)}), fa.flash_attn_func(q, q, q))
    for fn in (tilefold.attention, lambda *a, **kw: tilefold.partial_attention(
            *a, q_start=0, k_start=0, seqlen_q_total=4, seqlen_k_total=4, **kw)):
        if flag == "causal" or fn is tilefold.attention:
            with pytest.raises(ValueError, match=flag):
                fn(q, q, q, **{flag: "no"})
    with pytest.raises(ValueError, match="return_lse"):
        tilefold.attention(q, q, q, return_lse="yes")
