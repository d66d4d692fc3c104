"""tilefold.nn.GatedLinearAttention: modes agree, a padding mask equals running each row alone, one-token
decoding steps with the carried state equal the full forward, gradients reach every parameter."""
import pytest
import torch

from tilefold.nn import GatedLinearAttention
from tilefold.ops.common.dispatch import use_backend

MODES = ["chunk", "fused_chunk", "fused_recurrent"]


def rel(a, b):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    assert torch.isfinite(a).all()
    return ((a - b).norm() / b.norm()).item()


def _layer(mode="chunk", device="cpu", dtype=torch.float32, seed=0, **kw):
    torch.manual_seed(seed)
    m = GatedLinearAttention(hidden_size=64, num_heads=2, mode=mode, **kw).to(device=device, dtype=dtype)
    with torch.no_grad():  # a non-trivial norm weight so it is exercised
        m.g_norm_weight.uniform_(0.5, 1.5)
    return m


def test_modes_agree_and_grads():
    x = torch.randn(2, 70, 64)
    outs, grads = {}, {}
    with use_backend("triton"):
        for mode in MODES:
            m = _layer(mode)
            xi = x.clone().requires_grad_()
            y, state = m(xi)
            assert state is None
            y.square().mean().backward()
            outs[mode] = y
            grads[mode] = [xi.grad] + [p.grad for p in m.parameters()]
            assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads[mode])
    for mode in MODES[1:]:
        assert rel(outs[mode], outs["chunk"]) <= 1e-4
        for a, b in zip(grads[mode], grads["chunk"]):
            assert rel(a, b) <= 1e-4


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_padding_mask_equals_rows_alone(backend):
    m = _layer("chunk")
    T = 24
    x = torch.randn(3, T, 64)
    mask = torch.zeros(3, T, dtype=torch.long)
    mask[0, :20] = 1  # right padding
    mask[1, T - 7:] = 1  # left padding
    # row 2: no token at all (its state passes through)
    h0 = torch.randn(3, 2, 16, 32)
    with use_backend(backend):
        y, state = m(x, attention_mask=mask, past_state=h0, use_cache=True)
        for b in range(3):
            keep = mask[b].bool()
            assert (y[b, ~keep] == 0).all()
            if keep.any():
                yb, sb = m(x[b:b + 1, keep], past_state=h0[b:b + 1], use_cache=True)
                assert rel(y[b, keep], yb[0]) <= 1e-5
                assert rel(state[b], sb[0]) <= 1e-5
            else:
                assert torch.equal(state[b], h0[b])


@pytest.mark.parametrize("mode", MODES)
def test_decode_steps_equal_full_forward(mode):
    m = _layer(mode)
    x = torch.randn(2, 40, 64)
    with use_backend("triton"):
        y, state = m(x, use_cache=True)
        # prefill 25 tokens, then one token at a time with the carried state
        yp, s = m(x[:, :25], use_cache=True)
        steps = [yp]
        for t in range(25, 40):
            yt, s = m(x[:, t:t + 1], past_state=s, use_cache=True)
            steps.append(yt)
    assert rel(torch.cat(steps, 1), y) <= 1e-5
    assert rel(s, state) <= 1e-5


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        GatedLinearAttention(64, 2, mode="parallel")
    with pytest.raises(ValueError, match="num_heads"):
        GatedLinearAttention(64, 3)
    m = _layer()
    with pytest.raises(ValueError, match=r"x: expected shape \[B, T, 64\], got \(2, 5, 32\)"):
        m(torch.randn(2, 5, 32))
    with pytest.raises(ValueError, match="attention_mask"):
        m(torch.randn(2, 5, 64), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="attention_mask: expected only 0/1"):
        m(torch.randn(2, 5, 64), attention_mask=torch.full((2, 5), 2))
    with pytest.raises(ValueError, match="past_state"):
        m(torch.randn(2, 5, 64), past_state=torch.zeros(2, 2, 32, 16))
    with pytest.raises(ValueError, match="past_state: expected dtype torch.float32"):
        m(torch.randn(2, 5, 64), past_state=torch.zeros(2, 2, 16, 32, dtype=torch.float64))
    with pytest.raises(ValueError, match="x: expected dtype torch.float32"):
        m(torch.randn(2, 5, 64, dtype=torch.float64))
    # configurations that constructed and then failed or gave NaN at the first forward (API review)
    for kw, name in [(dict(num_heads=2.0), "num_heads"), (dict(norm_eps=-1), "norm_eps"),
                     (dict(gate_logit_normalizer=0), "gate_logit_normalizer"), (dict(expand_k=0), "expand_k"),
                     (dict(hidden_size=0), "hidden_size"), (dict(hidden_size=1024, num_heads=1), "num_heads")]:
        args = dict(hidden_size=64, num_heads=2)
        args.update(kw)
        with pytest.raises(ValueError, match=name):
            GatedLinearAttention(**args)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
def test_gpu_bf16_layer(mode):
    torch.manual_seed(1)
    m32 = GatedLinearAttention(512, 4, mode=mode).cuda()
    m16 = GatedLinearAttention(512, 4, mode=mode).cuda().to(torch.bfloat16)
    m16.load_state_dict({k: v.to(torch.bfloat16) for k, v in m32.state_dict().items()})
    x = torch.randn(2, 777, 512, device="cuda")
    mask = torch.ones(2, 777, dtype=torch.long, device="cuda")
    mask[1, 500:] = 0
    y32, _ = m32(x, attention_mask=mask)
    x16 = x.bfloat16().requires_grad_()
    y16, _ = m16(x16, attention_mask=mask)
    y16.float().square().mean().backward()
    assert rel(y16, y32) <= 2e-2  # bf16 weights and activations through five projections, not the op alone
    assert all(torch.isfinite(p.grad).all() for p in m16.parameters())


def _layer_ref(m, x, dtype):
    """The layer written out from its own parameters in ``dtype``: projections, logsigmoid gates / normalizer (clamped
    from below by clamp_min), the plain recurrence, per-head RMSNorm x weight, x silu(W_g x), W_o."""
    import torch.nn.functional as F
    from tilefold.ops.gla.naive import naive_recurrent_gla
    B, T, _ = x.shape
    H, Dk, Dv = m.num_heads, m.head_k_dim, m.head_v_dim
    W = {n: p.detach().to(dtype) for n, p in m.named_parameters()}
    x = x.to(dtype)
    q, k, v = (x @ W[f"{n}_proj.weight"].T for n in "qkv")
    gk = (x @ W["gk_proj.0.weight"].T) @ W["gk_proj.1.weight"].T + W["gk_proj.1.bias"]
    g = F.logsigmoid(gk) / m.gate_logit_normalizer
    if m.clamp_min is not None:
        g = g.clamp(min=m.clamp_min)
    o, _ = naive_recurrent_gla(q.view(B, T, H, Dk), k.view(B, T, H, Dk), v.view(B, T, H, Dv), g.view(B, T, H, Dk),
                               dtype=dtype)
    o = o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + m.norm_eps) * W["g_norm_weight"]
    o = o * F.silu(x @ W["g_proj.weight"].T).view(B, T, H, Dv)
    return o.reshape(B, T, -1) @ W["o_proj.weight"].T


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("kw", [{}, dict(clamp_min=-0.05, gate_logit_normalizer=4)], ids=["default", "clamp_min"])
def test_layer_against_its_written_out_reference(backend, kw):
    """values, not only agreement between modes: the layer against the same computation written out from its
    parameters in fp64 (2x rule vs the written-out computation in fp32); clamp_min=-0.05 binds for most gates"""
    m = _layer(**kw)
    x = torch.randn(2, 37, 64)
    ref64, ref32 = _layer_ref(m, x, torch.float64), _layer_ref(m, x, torch.float32)
    if kw:
        g = torch.nn.functional.logsigmoid(m.gk_proj(x)) / m.gate_logit_normalizer
        assert (g < -0.05).float().mean() > 0.3  # the clamp changes the result
    with use_backend(backend), torch.no_grad():
        out, _ = m(x)
    err, base = (out.double() - ref64).abs().max().item(), (ref32.double() - ref64).abs().max().item()
    assert err <= 2 * base + 1e-6, (err, base)
