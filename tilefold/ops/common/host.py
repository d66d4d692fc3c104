"""Host-side integer helpers for the launchers. ``triton.cdiv`` and ``triton.next_power_of_2`` are
constexpr functions: called from Python each goes through Triton's argument unwrapping (~8 us per call on a
2-core x86, several times that on the GPU machine's host), and a launcher made six of them per call."""


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    """The smallest power of two >= n (n >= 1); 0 for n = 0, as triton.next_power_of_2."""
    if type(n) is int:
        return 1 << (n - 1).bit_length() if n > 0 else 0
    # numpy integers (no bit_length) and torch SymInts (bit_length would specialize them while tracing):
    # Triton's bit-or cascade, which both support
    n -= 1
    n |= n >> 1
    n |= n >> 2
    n |= n >> 4
    n |= n >> 8
    n |= n >> 16
    n |= n >> 32
    return n + 1
