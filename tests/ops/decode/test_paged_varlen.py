"""varlen_attention(..., block_table=) and the compat flash_attn_varlen_func(block_table=): packed query sequences
against a paged KV pool, each sequence's keys the first cu_seqlens_k lengths of its pages; against a reference
written out per sequence in fp64 (2x rule), on both backends (the kernels under the interpreter on CPU)."""
import pytest
import torch

import tilefold
from tilefold.compat.flash_attn_interface import flash_attn_varlen_func
from tilefold.ops.attention.naive import attention_ref

BACKENDS = ["torch", "triton"]


@pytest.fixture(autouse=True)
def in_place(request, monkeypatch):
    """the kernels read the pages in place in the CPU tests (kvcache.PAGED_GATHER_MAX_BYTES = 0): under the interpreter
    there are no descriptors, so the shipped policy would gather the forward kernel's calls first;
    test_gather_first_policy runs that policy. GPU tests choose their policy themselves."""
    from tilefold.ops.decode import kvcache
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr(kvcache, "PAGED_GATHER_MAX_BYTES", 0)


def _cu(lens, device="cpu"):
    return torch.tensor([0] + list(torch.tensor(lens).cumsum(0).tolist()), dtype=torch.int32, device=device)


def _pool(B, nb, page, HK, D, n_spare, dtype, seed, device="cpu"):
    """A page pool with each sequence's nb pages at shuffled places among n_spare extra pages; returns (pool_k,
    pool_v with other page / row / head strides than K's, block_table int32 (B, nb))."""
    g = torch.Generator().manual_seed(seed)
    n_pages = B * nb + n_spare
    table = torch.randperm(n_pages, generator=g)[:B * nb].reshape(B, nb).to(torch.int32)
    pool_k = torch.randn(n_pages, page, HK, D, generator=g).to(dtype).to(device)
    pool_v = torch.randn(n_pages, page, HK, D, generator=g).to(dtype).to(device)
    wide = torch.zeros(n_pages, HK, page + 3, D, dtype=dtype, device=device)  # pages 3 rows apart, heads outermost
    wide[:, :, :page] = pool_v.transpose(1, 2)
    return pool_k, wide.transpose(1, 2)[:, :page], table.to(device)


def _reference(q, pool_k, pool_v, table, lens_q, lens_k, compute_dtype=torch.float64, slopes=None, **mask):
    """(out, lse (H, total_q)): sequence b's q rows against the first lens_k[b] keys of its pages, by the definition
    (``slopes``: (batch, heads) ALiBi slopes, sequence b's row)"""
    page = pool_k.shape[1]
    outs, lses = [], []
    q0 = 0
    for b, (m, n) in enumerate(zip(lens_q, lens_k)):
        keys = torch.arange(n, device=q.device)
        rows = table[b].long()[keys // page], keys % page
        kb, vb = pool_k[rows][None], pool_v[rows][None]
        sb = None if slopes is None else slopes[b:b + 1]
        o, l = attention_ref(q[None, q0:q0 + m], kb, vb, compute_dtype=compute_dtype, alibi_slopes=sb, **mask)
        outs.append(o[0])
        lses.append(l[0])
        q0 += m
    return torch.cat(outs), torch.cat(lses, dim=-1)


def _err(a, b):
    return (a.double() - b.double()).abs().max().item() if a.numel() else 0.0


CASES = {  # (lens_q, lens_k, H, HK, D, page, pages per sequence, mask)
    # max_seqlen_q * G <= 256: the decode kernel reads the pages in place
    "decode_page5_gqa_causal": ([1, 2, 1], [0, 17, 45], 8, 2, 32, 5, 9, dict(causal=True)),
    "decode_page1_window_softcap": ([3, 0, 2], [12, 3, 30], 4, 2, 16, 1, 30, dict(causal=True, window_size=(7, 0),
                                                                                  softcap=5.0)),
    "decode_page16_mqa_nomask": ([4, 1], [40, 64], 4, 1, 24, 16, 4, {}),
    # 70 x 4 = 280 packed rows: the forward kernel reads the pages
    "prefill_page16_causal": ([70, 3], [80, 96], 4, 1, 16, 16, 6, dict(causal=True)),
    "prefill_page7_window": ([65, 66], [66, 20], 4, 1, 16, 7, 10, dict(window_size=(20, 3))),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("splits", [1, 3, 0])
def test_against_reference(backend, dtype, name, splits):
    lens_q, lens_k, H, HK, D, page, nb, mask = CASES[name]
    B = len(lens_q)
    torch.manual_seed(21)
    q = torch.randn(sum(lens_q), H, D, dtype=dtype)
    pool_k, pool_v, table = _pool(B, nb, page, HK, D, 3, dtype, seed=len(name))
    before = (q.clone(), pool_k.clone(), pool_v.clone(), table.clone())
    ref, rlse = _reference(q, pool_k, pool_v, table, lens_q, lens_k, **mask)
    low, _ = _reference(q, pool_k, pool_v, table, lens_q, lens_k, compute_dtype=dtype, **mask)
    with tilefold.use_backend(backend):
        out, lse = tilefold.varlen_attention(q, pool_k, pool_v, _cu(lens_q), _cu(lens_k), max(lens_q), max(lens_k),
                                             block_table=table, num_splits=splits, return_lse=True, **mask)
    assert out.shape == q.shape and out.dtype == dtype and lse.shape == (H, q.shape[0])
    assert _err(out, ref) <= 2 * _err(low, ref) + 1e-5
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse)) and _err(lse[fin], rlse[fin]) <= 1e-4
    for t, t0 in zip((q, pool_k, pool_v, table), before):
        assert torch.equal(t, t0)  # nothing of the caller's is written


@pytest.mark.parametrize("cap", [0, None], ids=["in_place", "shipped_policy"])
def test_kernels_read_pages_in_place(monkeypatch, cap):
    """the kernels go through the block table (no gathered copy): the decode kernel always, the forward kernel (more
    than 256 packed rows) where it reads the pool through descriptors or the copy would pass PAGED_GATHER_MAX_BYTES
    (under the interpreter no descriptors: the shipped cap gathers); the torch path gathers"""
    from tilefold.ops.decode import kvcache
    if cap is None:
        monkeypatch.undo()
    calls = []
    real = kvcache._gather_pages
    monkeypatch.setattr(kvcache, "_gather_pages", lambda c, t: calls.append(1) or real(c, t))
    torch.manual_seed(22)
    pool_k, pool_v = torch.randn(6, 8, 2, 16), torch.randn(6, 8, 2, 16)
    table = torch.tensor([[4, 0], [2, 5]], dtype=torch.int32)
    for M, backend, gathered in ((1, "triton", 0), (70, "triton", 0 if cap == 0 else 2), (1, "torch", 2)):
        calls.clear()  # 70 x 4 rows > 256
        with tilefold.use_backend(backend):
            tilefold.varlen_attention(torch.randn(2 * M, 8, 16), pool_k, pool_v, _cu([M, M]), _cu([10, 16]), M, 16,
                                      block_table=table)
        assert len(calls) == gathered, (M, backend)


def _poison_past_lengths(pool_k, pool_v, table, lens_k):
    """rows no sequence owns (past each length, spare pages) set to NaN in K and Inf in V: a kernel that lets one of
    them into a score or the accumulator returns NaN"""
    page = pool_k.shape[1]
    owned = torch.zeros(pool_k.shape[:2], dtype=torch.bool, device=pool_k.device)
    for b, n in enumerate(lens_k):
        keys = torch.arange(n, device=pool_k.device)
        owned[table[b].long()[keys // page], keys % page] = True
    pool_k[~owned] = float("nan")
    pool_v[~owned] = float("inf")


@pytest.fixture
def forward_launches(monkeypatch):
    """the forward kernel's launches (their USE_TMA / PAGED / BLOCK_N), with ``force_descriptors()`` making the
    interpreter take the descriptor loads a Hopper GPU takes (16 x 16 tiles)"""
    from tilefold.ops.attention import config as C, forward as F

    class Launches(list):
        pass
    seen = Launches()
    kern = F.attention_fwd_kernel

    class Spy:
        def __getitem__(self, grid):
            launch = kern[grid]

            def call(*a, **kw):
                seen.append({n: kw[n] for n in ("USE_TMA", "PAGED", "BLOCK_N")})
                return launch(*a, **kw)
            return call

    monkeypatch.setattr(F, "attention_fwd_kernel", Spy())

    def force_descriptors():
        monkeypatch.setattr(F, "tma_ok", lambda k, v: True)
        monkeypatch.setattr(F, "ensure_allocator", lambda: None)
        monkeypatch.setattr(C, "fwd_config", lambda *a, **kw: C.KernelConfig(16, 16, 4, 1, use_tma=True))
    seen.force_descriptors = force_descriptors
    return seen


@pytest.mark.parametrize("mask", [dict(causal=True), dict(window_size=(20, 3), softcap=5.0), {}],
                         ids=["causal", "window_softcap", "full"])
@pytest.mark.parametrize("splits", [1, 3])
@pytest.mark.parametrize("page,v_layout,tma", [(32, "contiguous", True), (16, "contiguous", True),
                                               (32, "strided", False), (24, "contiguous", False)],
                         ids=["page32", "page16", "v_page_stride", "page24"])
def test_forward_kernel_descriptors_over_the_pool(forward_launches, mask, splits, page, v_layout, tma):
    """more than 256 packed rows on a GPU with descriptors: each key tile is one box of one page (pages holding whole
    tiles, a pool's pages consecutive rows), else pointer loads. The rows past each length are NaN / Inf in the pool
    (the boxes read them, unlike the pointer loads): the result is the reference's all the same"""
    forward_launches.force_descriptors()
    torch.manual_seed(27)
    lens_q, lens_k, H, HK, D = [70, 3, 0], [95, 40, 7], 8, 2, 16  # 70 x 4 packed rows: the forward kernel
    nb = -(-max(lens_k) // page)
    pool_k, pool_v, table = _pool(3, nb, page, HK, D, 2, torch.float32, seed=page)
    if v_layout == "contiguous":
        pool_v = pool_v.contiguous()
    _poison_past_lengths(pool_k, pool_v, table, lens_k)
    q = torch.randn(sum(lens_q), H, D)
    ref, rlse = _reference(q, pool_k, pool_v, table, lens_q, lens_k, **mask)
    with tilefold.use_backend("triton"):
        out, lse = tilefold.varlen_attention(q, pool_k, pool_v, _cu(lens_q), _cu(lens_k), max(lens_q), max(lens_k),
                                             block_table=table, num_splits=splits, return_lse=True, **mask)
    assert forward_launches and all(c["PAGED"] and c["USE_TMA"] == tma for c in forward_launches)
    assert _err(out, ref) < 1e-5
    fin = torch.isfinite(rlse)
    assert torch.equal(fin, torch.isfinite(lse)) and _err(lse[fin], rlse[fin]) < 1e-5


@pytest.mark.parametrize("M", [1, 70], ids=["decode_kernel", "forward_kernel"])
def test_lengths_past_the_table_and_bad_entries_never_read_outside(M):
    """the host checks cu_seqlens_k against the table's capacity and a CPU table's entries; past those checks (a
    caller of the inner function, or a CUDA table) the kernels clamp: a length past max_blocks x page_size attends to
    the capacity, and an entry outside the pool reads a clamped page -- never the next table row or outside the pool"""
    from tilefold.ops.decode import kvcache
    torch.manual_seed(23)
    pool_k, pool_v = torch.randn(4, 4, 1, 16), torch.randn(4, 4, 1, 16)
    q = torch.randn(M, 4, 16)
    table = torch.tensor([[7, -5], [1, 3]], dtype=torch.int32)  # row 0 clamps to pages 3 and 0; row 1 follows it
    cu_k = torch.tensor([0, 11, 11], dtype=torch.int32)  # sequence 0 claims 11 keys of a capacity of 8
    with tilefold.use_backend("triton"):
        out, lse = kvcache.paged_varlen(q, pool_k, pool_v, _cu([M, 0]), cu_k, M, 11, table, 16 ** -0.5, (-1, -1),
                                        0.0, 1)
    keys = torch.cat((pool_k[3], pool_k[0]))[None]
    vals = torch.cat((pool_v[3], pool_v[0]))[None]
    want, _ = attention_ref(q[None], keys, vals)
    assert _err(out, want[0]) < 1e-5


def test_descriptors_clamp_bad_table_entries(forward_launches):
    """the descriptor path clamps a CUDA table's entries into the pool as the pointer path does (an entry past the
    pool or negative reads a real page), and each key head reads its own columns of the pool's rows (HK = 2)"""
    from tilefold.ops.decode import kvcache
    forward_launches.force_descriptors()
    torch.manual_seed(29)
    pool_k, pool_v = torch.randn(4, 16, 2, 16), torch.randn(4, 16, 2, 16)
    q = torch.randn(70, 8, 16)  # 70 x 4 packed rows
    table = torch.tensor([[7, -5, 1], [1, 3, 2]], dtype=torch.int32)  # row 0 clamps to pages 3, 0, 1
    with tilefold.use_backend("triton"):
        out, lse = kvcache.paged_varlen(q, pool_k, pool_v, _cu([70, 0]), _cu([40, 0]), 70, 40, table, 16 ** -0.5,
                                        (-1, 0), 0.0, 1)
    assert forward_launches and all(c["USE_TMA"] for c in forward_launches)
    keys = torch.cat((pool_k[3], pool_k[0], pool_k[1]))[None, :40]
    vals = torch.cat((pool_v[3], pool_v[0], pool_v[1]))[None, :40]
    want, _ = attention_ref(q[None], keys, vals, causal=True)
    assert _err(out, want[0]) < 1e-5


def test_gathered_copy_spans_the_pages_max_seqlen_k_reaches(monkeypatch):
    """the gather-first policy copies the pages max_seqlen_k reaches, not the table's whole width"""
    from tilefold.ops.decode import kvcache
    monkeypatch.undo()
    widths = []
    real = kvcache._gather_pages
    monkeypatch.setattr(kvcache, "_gather_pages", lambda c, t: widths.append(t.shape[1]) or real(c, t))
    torch.manual_seed(30)
    pool_k, pool_v = torch.randn(40, 8, 1, 16), torch.randn(40, 8, 1, 16)
    table = torch.randperm(40)[:36].reshape(2, 18).to(torch.int32)  # capacity 144 keys, 20 used at most
    q = torch.randn(140, 4, 16)
    with tilefold.use_backend("triton"):
        out = tilefold.varlen_attention(q, pool_k, pool_v, _cu([70, 70]), _cu([20, 9]), 70, 20, block_table=table,
                                        causal=True)
    assert widths == [3, 3]
    ref, _ = _reference(q, pool_k, pool_v, table, [70, 70], [20, 9], causal=True)
    assert _err(out, ref) < 1e-5


def test_compat_flash_attn_varlen_func():
    """flash_attn_varlen_func(block_table=) is varlen_attention(block_table=), causal bottom-right per sequence"""
    torch.manual_seed(24)
    pool_k, pool_v, table = _pool(2, 3, 8, 2, 16, 2, torch.float32, seed=5)
    q = torch.randn(5, 4, 16)
    args = (q, pool_k, pool_v, _cu([2, 3]), _cu([20, 9]), 3, 20)
    want = tilefold.varlen_attention(*args, causal=True, block_table=table)
    got = flash_attn_varlen_func(*args, causal=True, block_table=table)
    assert torch.equal(got, want)
    ref, rlse = _reference(q, pool_k, pool_v, table, [2, 3], [20, 9], causal=True)
    assert _err(got, ref) < 1e-5
    # return_attn_probs without dropout: (out, lse, an empty tensor), as flash_attn (the usual way to get lse)
    out, lse, S = flash_attn_varlen_func(*args, causal=True, block_table=table, return_attn_probs=True)
    assert torch.equal(out, want) and S.numel() == 0 and _err(lse, rlse) < 1e-5


def _args():
    torch.manual_seed(25)
    return dict(q=torch.randn(3, 4, 16), k=torch.randn(6, 5, 2, 16), v=torch.randn(6, 5, 2, 16),
                cu_seqlens_q=_cu([1, 2]), cu_seqlens_k=_cu([7, 10]), max_seqlen_q=2, max_seqlen_k=10,
                block_table=torch.tensor([[0, 3], [1, 2]], dtype=torch.int32))


def _call(args, **extra):
    pos = [args.pop(n) for n in ("q", "k", "v", "cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k")]
    return tilefold.varlen_attention(*pos, **args, **extra)


@pytest.mark.parametrize("bad, msg", [
    (dict(block_table=torch.tensor([[0, 3]], dtype=torch.int32)), "block_table: expected an int32 tensor of shape"),
    (dict(block_table=torch.tensor([[0, 3], [1, 2]])), "block_table: expected an int32 tensor of shape"),
    (dict(block_table=torch.zeros(2, 0, dtype=torch.int32)), "max_blocks >= 1"),
    (dict(block_table=torch.tensor([[0, 6], [1, 2]], dtype=torch.int32)), "block_table: expected values in \\[0, 6\\)"),
    (dict(cu_seqlens_k=_cu([7, 11]), max_seqlen_k=11), "capacity max_blocks x page_size = 10"),
    (dict(cu_seqlens_k=_cu([7, 10]), max_seqlen_k=9), "max_seqlen_k: expected >= the longest"),
    (dict(cu_seqlens_k=torch.tensor([1, 7, 10], dtype=torch.int32)), "cu_seqlens_k: expected first value 0"),
    (dict(cu_seqlens_k=_cu([7])), "cu_seqlens_k: expected 3 values"),
    (dict(k=torch.randn(30, 2, 16)), "k: expected 4 dims"),
    (dict(k=torch.randn(6, 5, 2, 8), v=torch.randn(6, 5, 2, 8)), "k: expected head dim 16"),
    (dict(k=torch.randn(6, 5, 3, 16), v=torch.randn(6, 5, 3, 16)), "heads_k dividing"),
    (dict(v=torch.randn(6, 4, 2, 16)), "v: expected shape"),
    (dict(k=torch.randn(6, 0, 2, 16), v=torch.randn(6, 0, 2, 16)), "page size 0"),
    (dict(k=torch.randn(0, 5, 2, 16), v=torch.randn(0, 5, 2, 16)), "at least one page"),
])
def test_bad_input_raises(bad, msg):
    args = _args()
    args.update(bad)
    with pytest.raises(ValueError, match=msg):
        _call(args)


@pytest.mark.parametrize("extra", [dict(dropout_p=0.1), dict(return_attn_probs=True), "grad"])
def test_inference_only(extra):
    """no dropout, probabilities or gradient with a block table: refused, not silently dropped"""
    args = _args()
    if extra == "grad":
        args["q"].requires_grad_(True)
        extra = {}
    with pytest.raises(NotImplementedError, match="inference path"):
        _call(args, **extra)
    args = _args()
    args["q"].requires_grad_(True)
    with torch.no_grad():  # under no_grad a tensor that requires grad is fine
        _call(args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("name", [n for n in CASES if n.startswith("prefill")])
@pytest.mark.parametrize("splits", [1, 0])
def test_gather_first_policy(monkeypatch, dtype, name, splits):
    """the shipped policy on a forward-kernel call without descriptors: the pages gathered into one packed copy, each
    sequence's first lengths keys attended (seqused_k) -- the 2x rule as in place; above the cap, in place"""
    from tilefold.ops.decode import kvcache
    monkeypatch.undo()
    calls = []
    real = kvcache._gather_pages
    monkeypatch.setattr(kvcache, "_gather_pages", lambda c, t: calls.append(1) or real(c, t))
    lens_q, lens_k, H, HK, D, page, nb, mask = CASES[name]
    torch.manual_seed(28)
    q = torch.randn(sum(lens_q), H, D, dtype=dtype)
    pool_k, pool_v, table = _pool(len(lens_q), nb, page, HK, D, 3, dtype, seed=len(name))
    _poison_past_lengths(pool_k, pool_v, table, lens_k)
    ref, rlse = _reference(q, pool_k, pool_v, table, lens_q, lens_k, **mask)
    low, _ = _reference(q, pool_k, pool_v, table, lens_q, lens_k, compute_dtype=dtype, **mask)
    copy = 2 * len(lens_q) * nb * page * HK * D * pool_k.element_size()
    for cap, gathered in ((copy, 2), (copy - 1, 0)):
        monkeypatch.setattr(kvcache, "PAGED_GATHER_MAX_BYTES", cap)
        calls.clear()
        with tilefold.use_backend("triton"):
            out, lse = tilefold.varlen_attention(q, pool_k, pool_v, _cu(lens_q), _cu(lens_k), max(lens_q),
                                                 max(lens_k), block_table=table, num_splits=splits, return_lse=True,
                                                 **mask)
        assert len(calls) == gathered
        assert _err(out, ref) <= 2 * _err(low, ref) + 1e-5
        fin = torch.isfinite(rlse)
        assert torch.equal(fin, torch.isfinite(lse)) and _err(lse[fin], rlse[fin]) <= 1e-4


@pytest.mark.gpu
@pytest.mark.parametrize("policy", ["shipped", "in_place"])
@pytest.mark.parametrize("v_layout", ["strided", "contiguous"])
@pytest.mark.parametrize("page", [16, 256])
@pytest.mark.parametrize("lens_q", [[1, 1, 1, 1], [3, 1, 4, 2], [300, 1, 129, 64]], ids=["decode", "spec", "prefill"])
def test_against_reference_gpu(monkeypatch, page, lens_q, v_layout, policy):
    """bf16, 32 / 8 heads hd128, mixed lengths up to 4k keys in 256 shuffled pages' worth of pool, the rows no sequence
    owns NaN / Inf. Prefill: with page 256 and contiguous pools the forward kernel's descriptors over the pool (sm_90);
    otherwise the shipped policy gathers the pages first, "in_place" (no gather) the pointer loads"""
    from tilefold.ops.decode import kvcache
    if policy == "in_place":
        monkeypatch.setattr(kvcache, "PAGED_GATHER_MAX_BYTES", 0)
    dev = "cuda"
    torch.manual_seed(26)
    lens_k = [4000, 1, 2500, 700]
    B, H, HK, D = 4, 32, 8, 128
    nb = -(-max(lens_k) // page)
    pool_k, pool_v, table = _pool(B, nb, page, HK, D, 5, torch.bfloat16, seed=page, device=dev)
    if v_layout == "contiguous":
        pool_v = pool_v.contiguous()
    _poison_past_lengths(pool_k, pool_v, table, lens_k)
    q = torch.randn(sum(lens_q), H, D, dtype=torch.bfloat16, device=dev)
    ref, rlse = _reference(q, pool_k, pool_v, table, lens_q, lens_k, causal=True)
    low, _ = _reference(q, pool_k, pool_v, table, lens_q, lens_k, compute_dtype=torch.bfloat16, causal=True)
    out, lse = tilefold.varlen_attention(q, pool_k, pool_v, _cu(lens_q, dev), _cu(lens_k, dev), max(lens_q),
                                         max(lens_k), block_table=table, causal=True, num_splits=0, return_lse=True)
    assert _err(out, ref) <= 2 * _err(low, ref) + 1e-5
    fin = torch.isfinite(rlse)
    assert _err(lse[fin], rlse[fin]) <= 1e-3
