"""Bad input raises ValueError naming the argument, the expected and the actual value."""
import pytest
import torch

from gla_helpers import MODES, make_inputs


def _args():
    q, k, v, g, h0 = make_inputs(2, 8, 2, 16, 32)
    return dict(q=q, k=k, v=v, g=g), h0


CASES = {
    "q-ndim": (lambda a, h0: a.update(q=a["q"][0]), {}, ["q", "4-D", "(8, 2, 16)"]),
    "k-shape": (lambda a, h0: a.update(k=a["k"][:, :4]), {}, ["k", "(2, 8, 2, 16)", "(2, 4, 2, 16)"]),
    "g-shape": (lambda a, h0: a.update(g=a["g"][..., :8]), {}, ["g", "(2, 8, 2, 16)", "(2, 8, 2, 8)"]),
    "v-shape": (lambda a, h0: a.update(v=a["v"][:, :, :1]), {}, ["v", "(2, 8, 1, 32)"]),
    "k-dtype": (lambda a, h0: a.update(k=a["k"].double()), {}, ["k", "torch.float32", "torch.float64"]),
    "q-dtype": (lambda a, h0: a.update(q=a["q"].int(), k=a["k"].int(), v=a["v"].int()), {}, ["q", "torch.int32"]),
    "K-too-big": (lambda a, h0: a.update(q=torch.randn(2, 8, 2, 300), k=torch.randn(2, 8, 2, 300),
                                         g=-torch.rand(2, 8, 2, 300)), {}, ["K, V <= 256", "K=300"]),
    "h0-shape": (lambda a, h0: None, {"initial_state": torch.randn(2, 2, 32, 16)}, ["initial_state", "(2, 2, 16, 32)", "(2, 2, 32, 16)"]),
    "h0-dtype": (lambda a, h0: None, {"initial_state": torch.randn(2, 2, 16, 32).double()}, ["initial_state", "torch.float32", "torch.float64"]),
    "cu-batch": (lambda a, h0: None, {"cu_seqlens": torch.tensor([0, 8], dtype=torch.int32)}, ["batch size 1", "2"]),
    "scale": (lambda a, h0: None, {"scale": "x"}, ["scale", "'x'"]),
    "final-state-str": (lambda a, h0: None, {"output_final_state": "no"}, ["output_final_state", "'no'"]),
    "scale-nan": (lambda a, h0: None, {"scale": float("nan")}, ["scale", "nan"]),
    "scale-inf": (lambda a, h0: None, {"scale": float("inf")}, ["scale", "inf"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_names_argument(case):
    change, extra, words = CASES[case]
    a, h0 = _args()
    change(a, h0)
    with pytest.raises(ValueError) as e:
        MODES["chunk"](a["q"], a["k"], a["v"], a["g"], **extra)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


@pytest.mark.parametrize("cu,words", [
    ([0, 3, 2, 8], ["non-decreasing", "[0, 3, 2, 8]"]),
    ([1, 8], ["start at 0", "T=8", "1"]),
    ([0, 5], ["end at T=8", "5"]),
    ([[0, 8]], ["1-D", "(1, 2)"]),
])
def test_bad_cu_seqlens(cu, words):
    q, k, v, g, _ = make_inputs(1, 8, 2, 16, 32)
    for fn in MODES.values():
        with pytest.raises(ValueError) as e:
            fn(q, k, v, g, cu_seqlens=torch.tensor(cu, dtype=torch.int32))
        assert "cu_seqlens" in str(e.value)
        for w in words:
            assert w in str(e.value), (w, str(e.value))
    with pytest.raises(ValueError, match="cu_seqlens: expected dtype torch.int32"):
        MODES["chunk"](q, k, v, g, cu_seqlens=torch.tensor([0.0, 8.0]))
    strided = torch.tensor([0, 9, 3, 9, 8, 9], dtype=torch.int32)[::2]  # [0, 3, 8], stride 2: the kernels read stride 1
    for fn in MODES.values():
        with pytest.raises(ValueError, match="cu_seqlens: expected a contiguous tensor, got stride 2"):
            fn(q, k, v, g, cu_seqlens=strided)


@pytest.mark.parametrize("mode", list(MODES))
def test_triton_double_backward_raises(mode):
    """The kernels' backward is not differentiable: a second derivative through it was silently 0 (a gradient penalty
    contributed nothing); it now raises at the second backward, and the first-order gradient is unchanged."""
    from tilefold.ops.common.dispatch import interpreter_enabled, use_backend
    fn = MODES[mode]
    if not interpreter_enabled() and not torch.cuda.is_available():
        pytest.skip("the Triton path needs TRITON_INTERPRET=1 or CUDA")
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    q, k, v = (torch.randn(1, 6, 2, 8, device=dev) for _ in range(3))
    g = -torch.rand(1, 6, 2, 8, device=dev)
    with use_backend("triton"):
        a = q.clone().requires_grad_()
        ga, = torch.autograd.grad(fn(a, k, v, g)[0].square().sum(), a, create_graph=True)
        ga0, = torch.autograd.grad(fn(a, k, v, g)[0].square().sum(), a)
        assert torch.equal(ga.detach(), ga0)
        with pytest.raises(RuntimeError, match="double backward"):
            torch.autograd.grad(ga.square().sum() + a.sum(), a)
