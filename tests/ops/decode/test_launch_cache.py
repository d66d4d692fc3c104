"""The decode host path: cached plans, launches through the compiled kernel (LaunchCache) and per-stream
scratch (partial states, the fused combine's self-resetting counters). Every call must see its own
tensors (not the first call's pointers), a pointer with another alignment must not reuse a kernel
specialized for 16-byte alignment, the counters must be zero again after every call (many calls in a
row, another stream), and a captured CUDA graph must replay correctly."""
import pytest
import torch

from decode_helpers import assert_2x
from tilefold.ops.attention.naive import attention_ref
from tilefold.ops.common import launch as L
from tilefold.ops.decode import kernel as K
from tilefold.ops.decode import split_kv_attention

pytestmark = pytest.mark.gpu


def _tf(q, k, v, S=0, window=(-1, -1)):
    return split_kv_attention(q, k, v, num_splits=S, softmax_scale=q.shape[-1] ** -0.5, window=window,
                              softcap=0.0)


def _data(B, M, N, H, HK, D, seed, dtype=torch.bfloat16):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return [torch.randn(B, n, h, D, device="cuda", dtype=dtype, generator=g) for n, h in ((M, H), (N, HK), (N, HK))]


def _check(o, l, q, k, v, window=(-1, -1)):
    causal = window == (-1, 0)
    ref_o, ref_l = attention_ref(q, k, v, causal=causal, window_size=window)
    base_o, base_l = attention_ref(q, k, v, causal=causal, window_size=window, compute_dtype=q.dtype)
    assert_2x("out", o, ref_o, base_o)
    assert_2x("lse", l, ref_l, base_l)


@pytest.mark.parametrize("mode", ["fused", "kernel"])
def test_new_tensors_every_call(mode, monkeypatch):
    """Same shapes, fresh data each call: the direct launches take this call's pointers."""
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", mode)
    K.clear_plans()
    before = K._DECODE.fast_launches
    for seed in range(4):
        q, k, v = _data(1, 1, 20000 + 7, 32, 8, 128, seed)
        o, l = _tf(q, k, v, S=13)
        _check(o, l, q, k, v)
    assert K._DECODE.fast_launches - before == 3  # the first call compiles / binds, the rest go direct
    if mode == "kernel":
        assert K._COMBINE.fast_launches > 0


def test_misaligned_pointer_is_another_kernel():
    """k and v as views one element into a buffer (2-byte, not 16-byte aligned): must not take the
    kernel compiled for aligned pointers, and must still be right."""
    K.clear_plans()
    q, k, v = _data(1, 1, 4096, 16, 4, 64, 5)
    o, l = _tf(q, k, v, S=4)
    _check(o, l, q, k, v)
    kb = torch.empty(k.numel() + 8, device="cuda", dtype=k.dtype)
    vb = torch.empty_like(kb)
    k2 = kb[1:1 + k.numel()].view(k.shape)
    v2 = vb[1:1 + v.numel()].view(v.shape)
    k2.copy_(torch.randn_like(k))
    v2.copy_(torch.randn_like(v))
    assert k2.data_ptr() % 16 != 0 and k2.stride() == k.stride()
    o2, l2 = _tf(q, k2, v2, S=4)
    _check(o2, l2, q, k2, v2)
    assert len(K._PLANS) == 2


def test_counters_reset_many_calls_and_streams(monkeypatch):
    """The fused combine's counters are reused scratch: 20 calls in a row on one stream, then on a side
    stream, all equal to the two-launch combine."""
    q, k, v = _data(2, 1, 8192 + 3, 32, 8, 128, 9)
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "kernel")
    o_k, l_k = _tf(q, k, v, S=7)
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "fused")
    outs = [_tf(q, k, v, S=7) for _ in range(20)]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        outs += [_tf(q, k, v, S=7) for _ in range(5)]
    torch.cuda.current_stream().wait_stream(side)
    for o, l in outs:
        torch.testing.assert_close(o.float(), o_k.float(), rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(l, l_k, rtol=1e-5, atol=1e-5)
        assert torch.equal(o, outs[0][0]) and torch.equal(l, outs[0][1])
    for key, buf in L._SCRATCH.items():
        if key[0] == "decode_cnt":
            assert int(buf.abs().sum()) == 0, key


def test_cuda_graph_replay(monkeypatch):
    """Capture a fused decode call, then replay it on new inputs copied into the captured tensors."""
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "fused")
    q, k, v = _data(1, 1, 8192, 32, 8, 128, 21)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        _tf(q, k, v, S=9)  # warm-up / compile outside the capture
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        o, l = _tf(q, k, v, S=9)
    for seed in (22, 23):
        q2, k2, v2 = _data(1, 1, 8192, 32, 8, 128, seed)
        q.copy_(q2)
        k.copy_(k2)
        v.copy_(v2)
        graph.replay()
        torch.cuda.synchronize()
        _check(o, l, q2, k2, v2)


def test_options_and_strides_change_between_calls(monkeypatch):
    """Same shapes, then another window / softcap / a K-V view with other strides: never a stale plan."""
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "fused")
    K.clear_plans()
    q, k, v = _data(2, 1, 9000, 32, 8, 128, 3)
    for window in [(-1, -1), [-1, 0], (500, 0), (-1, -1)]:
        o, l = _tf(q, k, v, S=5, window=tuple(window) if window[1] == -1 else window)
        _check(o, l, q, k, v, window=tuple(window))
    big_k, big_v = (torch.randn(2, 12000, 8, 128, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    ks, vs = big_k[:, 1000:10000], big_v[:, 1000:10000]  # same shape as k, v; other batch stride
    o, l = _tf(q, ks, vs, S=5)
    _check(o, l, q, ks, vs)
    o1, l1 = split_kv_attention(q, k, v, num_splits=5, softmax_scale=0.05, window=(-1, -1), softcap=3.0)
    r_o, r_l = attention_ref(q, k, v, softmax_scale=0.05, softcap=3.0)
    b_o, b_l = attention_ref(q, k, v, softmax_scale=0.05, softcap=3.0, compute_dtype=q.dtype)
    assert_2x("out", o1, r_o, b_o)
    assert_2x("lse", l1, r_l, b_l)


def test_two_threads_one_stream_two_launch_combine(monkeypatch):
    """Two host threads on the default stream, split kernel + combine kernel each: the partial states of
    one thread's split launch are never overwritten by the other's before its combine reads them."""
    import threading
    monkeypatch.setenv("TILEFOLD_DECODE_COMBINE", "kernel")
    K.clear_plans()
    data = [_data(1, 1, 30000, 32, 8, 128, s) for s in (11, 12)]
    refs = [attention_ref(*d) for d in data]
    errors = []

    def work(i):
        try:
            for _ in range(30):
                o, l = _tf(*data[i], S=9)
                if (o.double() - refs[i][0]).abs().max().item() > 0.05:
                    errors.append(i)
        except Exception as ex:  # noqa: BLE001
            errors.append(repr(ex))

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    torch.cuda.synchronize()
    assert not errors
