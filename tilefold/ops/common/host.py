"""Host-side integer helpers for the launchers. ``triton.cdiv`` and ``triton.next_power_of_2`` are
constexpr functions: called from Python each goes through Triton's argument unwrapping (~8 us per call on a
2-core x86, several times that on the GPU machine's host), and a launcher made six of them per call."""
import os

_ENV_DATA = getattr(os.environ, "_data", None) if os.name == "posix" else None


def env_get(name: str, default: str) -> str:
    """``os.environ.get(name, default)`` without its str -> bytes key encoding and mapping-protocol layers: on POSIX
    CPython os.environ keeps the variables as bytes in ``os.environ._data`` (kept in step with every os.environ
    assignment). The decode path reads five switches per call, ~2-3 us of host time each on the GPU machine's host
    through os.environ.get (call 91's profile)."""
    if _ENV_DATA is None:
        return os.environ.get(name, default)
    key = _ENV_KEYS.get(name)
    if key is None:
        key = _ENV_KEYS[name] = os.fsencode(name)  # as os.environ encodes (surrogateescape)
    v = _ENV_DATA.get(key)
    return default if v is None else os.fsdecode(v)  # as os.environ decodes


_ENV_KEYS: dict = {}


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


# CUDA's limit on grid axes 1 and 2 (axis 0 takes 2^31 - 1)
GRID_YZ_MAX = 65535


def rows_grid(batch: int, per: int, limit: int | None = None):
    """Grid axes 1 and 2 (Y, Z) for ``batch · per`` rows (batch × heads programs): Y · Z == batch · per with Y = per · d
    for the largest divisor d of batch that keeps Y <= limit; a kernel's row is then program_id(1) + program_id(2) · Y
    (``masks.grid_row``). Up to ``limit`` rows this is (batch · per, 1): one axis, the launch order unchanged. None where
    no such split exists (per > limit, or batch / d > limit: e.g. a prime batch above the limit)."""
    limit = GRID_YZ_MAX if limit is None else limit
    if per < 1 or batch < 1:
        return (max(batch * per, 0), 1)
    if batch * per <= limit:
        return (batch * per, 1)
    d = min(batch, limit // per)
    while d >= 1 and batch % d:
        d -= 1
    if d < 1 or batch // d > limit:
        return None
    return (per * d, batch // d)


def visible_keys(seqlen_q: int, seqlen_k: int, win_left: int) -> int:
    """The most keys that the rows of one sequence can see: seqlen_k, or with a left window the seqlen_q + win_left
    keys ending at the last row (rows bottom-right aligned). For the split count and the tiles; the split kernels
    share out each row block's actual visible range."""
    return seqlen_k if win_left < 0 else min(seqlen_k, seqlen_q + win_left)
