"""Shared checks for the merge / decode tests: FlashAttention's 2x rule against an fp64 reference."""
import torch


def _diff(a, ref):
    a = a.double()
    ref = ref.double()
    both_inf = torch.isinf(a) & torch.isinf(ref) & (torch.sign(a) == torch.sign(ref))
    d = (a - ref).abs()
    return torch.where(both_inf, torch.zeros_like(d), d)


def max_err(a, ref):
    d = _diff(a, ref)
    return float(d.max()) if d.numel() else 0.0


def assert_2x(name, out, ref64, base):
    """max|out - ref64| <= 2 max|base - ref64| + 1e-5 (no NaN anywhere)."""
    assert not torch.isnan(out).any(), f"{name}: NaN in output"
    e, eb = max_err(out, ref64), max_err(base, ref64)
    assert e <= 2 * eb + 1e-5, f"{name}: error {e:.3g} > 2 x baseline {eb:.3g} + 1e-5"


def random_partition(draw_or_rng, N, max_parts):
    """Sorted cut points 0 = c0 <= ... <= cK = N (empty ranges allowed)."""
    import random

    rng = draw_or_rng if isinstance(draw_or_rng, random.Random) else random.Random(draw_or_rng)
    k = rng.randint(1, max_parts)
    cuts = sorted(rng.randint(0, N) for _ in range(k - 1))
    return [0] + cuts + [N]


def tree_merge(rng, states, merge2):
    """Merge a list of states with ``merge2`` in a random order and a random binary-tree shape."""
    states = list(states)
    rng.shuffle(states)
    while len(states) > 1:
        i = rng.randrange(len(states) - 1)
        a, b = states[i], states[i + 1]
        if rng.random() < 0.5:
            a, b = b, a
        states[i:i + 2] = [merge2(a, b)]
    return states[0]
