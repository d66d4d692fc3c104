"""The fold in Triton, written once: the online-softmax step over a tile, the finalize, and ⊕ of two
(o, lse) states. Inside kernels the running state is (m, l, acc) in fp32 with m in log2 units (the
scale carries log2(e)); at boundaries lse is the natural log. Empty rows stay (0, -inf) without NaN.
"""
import triton
import triton.language as tl

LN2 = tl.constexpr(0.6931471805599453)
LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _tanh(x):
    """tanh to a few ulps everywhere (fp32): the odd Taylor series through x^11 below |x| = 0.375 (truncation
    < 3e-8 relative), 1 - 2 / (e^{2|x|} + 1) with x's sign above (overflow-safe: e^{2|x|} = inf gives 1).
    The exponential form alone loses the small scores: its absolute error ~1 ulp of 1 becomes, times the
    softcap, an exponent error ~softcap·ulp — ~20x torch's at softcap 30 (fp32 dV 16 ulps vs torch's 1)."""
    ax = tl.abs(x)
    x2 = x * x
    p = -1382.0 / 155925.0
    p = p * x2 + 62.0 / 2835.0
    p = p * x2 - 17.0 / 315.0
    p = p * x2 + 2.0 / 15.0
    p = p * x2 - 1.0 / 3.0
    small = x + x * (x2 * p)
    big = 1.0 - 2.0 / (tl.math.exp2(ax * (2.0 * LOG2E)) + 1.0)
    return tl.where(ax < 0.375, small, tl.where(x < 0, -big, big))


@triton.jit
def score_transform(qk, qk_scale, softcap_pre, softcap_post, HAS_SOFTCAP: tl.constexpr):
    """Raw q·k products -> scores in log2 units. With softcap: softcap·tanh(scale·qk / softcap)·log2(e)
    (softcap_pre = scale / softcap, softcap_post = softcap·log2(e)); also returns tanh for the
    backward's derivative (1 - t²). Without softcap: qk·scale·log2(e), and t is unused."""
    if HAS_SOFTCAP:
        t = _tanh(qk * softcap_pre)
        s = t * softcap_post
    else:
        t = qk
        s = qk * qk_scale
    return s, t


@triton.jit
def fold_step(acc, l_i, m_i, s, v, GUARD_EMPTY: tl.constexpr):
    """(m, l, acc) ⊕ tile: ``s`` are the tile's scores in log2 units (masked entries -inf), ``v`` the
    tile's values. Returns the new (acc, l, m) and the tile's probabilities ``p`` (relative to the new
    m, fp32) for callers that need them (dropout, returned probabilities).
    The keys are the last axis of ``s`` (rows [R, N], or batched [W, R, N] with (m, l) [W, R], acc [W, R, D]).
    GUARD_EMPTY: the tile may hold rows with every entry masked (so m can stay -inf)."""
    m_new = tl.maximum(m_i, tl.max(s, -1))
    if GUARD_EMPTY:
        m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    else:
        m_use = m_new
    alpha = tl.math.exp2(m_i - m_use)
    p = tl.math.exp2(s - tl.expand_dims(m_use, -1))
    l_i = l_i * alpha + tl.sum(p, -1)
    acc = acc * tl.expand_dims(alpha, -1)
    return acc, l_i, m_new, p


@triton.jit
def finalize(acc, l_i, m_i):
    """(m, l, acc) -> (o, lse): o = acc / l (0 for empty rows), lse natural log (-inf for empty rows)."""
    empty = l_i == 0.0
    l_safe = tl.where(empty, 1.0, l_i)
    o = acc / l_safe[:, None]
    lse = tl.where(empty, float("-inf"), (m_i + tl.math.log2(l_safe)) * LN2)
    return o, lse


@triton.jit
def merge_state(o_a, lse_a, o_b, lse_b):
    """(o_a, lse_a) ⊕ (o_b, lse_b) for row blocks (o: [R, D] fp32, lse: [R] natural log fp32).
    Two empty states give (0, -inf)."""
    m = tl.maximum(lse_a, lse_b)
    m = tl.where(m == float("-inf"), 0.0, m)
    ea = tl.exp(lse_a - m)
    eb = tl.exp(lse_b - m)
    s = ea + eb
    empty = s == 0.0
    s_safe = tl.where(empty, 1.0, s)
    lse = tl.where(empty, float("-inf"), m + tl.log(s_safe))
    o = o_a * (ea / s_safe)[:, None] + o_b * (eb / s_safe)[:, None]
    return o, lse
