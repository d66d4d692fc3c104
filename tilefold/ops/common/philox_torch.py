"""The host side of the dropout randomness (``philox.py`` holds the Triton and Gluon generators and describes the
counters): Philox-4x32-7 in torch (int64 arithmetic on uint32 values, bit-identical to the kernels), the keep
threshold and scale, and the kernels' RNG arguments. No Triton import: the CPU path (``attention/cpu.py``) and the
fp64 reference use it on machines without Triton."""
import torch

_M0 = 0xD2511F53
_M1 = 0xCD9E8D57
_W0 = 0x9E3779B9
_W1 = 0xBB67AE85
ROUNDS = 7
# the kernels' dropout integer arguments, never specialized: Triton turns an int argument equal to 1 into a
# constant, and torch.manual_seed(1) gives seed_lo = 1, the generator's second call offset 1 (p = 1/65536 a
# threshold of 1) — a constant there would recompile the kernel, and the helpers below call .to() on them
RNG_ARGS = ("seed_lo", "seed_hi", "rng_offset", "drop_thr")


_MASK32 = 0xFFFFFFFF


def _mulhilo(a: torch.Tensor, m: int):
    ah, al = a >> 16, a & 0xFFFF
    mh, ml = m >> 16, m & 0xFFFF
    mid = ah * ml + al * mh
    low = (mid << 16) + al * ml
    hi = ah * mh + (low >> 32)
    return hi & _MASK32, low & _MASK32


def philox_4x32_torch(c0, c1, c2, c3, k0: int, k1: int, rounds: int = ROUNDS):
    for _ in range(rounds):
        hi0, lo0 = _mulhilo(c0, _M0)
        hi1, lo1 = _mulhilo(c2, _M1)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
    return c0, c1, c2, c3


def dropout_keep_torch(seed: int, offset: int, bh: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
                       threshold: int) -> torch.Tensor:
    """keep[..., r, j] for broadcastable int64 tensors bh (..., 1, 1), rows (M, 1), cols (1, N)."""
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    rkey = ((rows >> 4) << 3) | (rows & 7)
    ckey = ((cols >> 4) << 2) | ((cols >> 1) & 3)
    c0, c1, c3 = torch.broadcast_tensors(bh, rkey, ckey)
    c2 = torch.zeros_like(c0) + (offset & _MASK32)  # offset: an int or a 0-dim tensor (rng_seed_offset)
    r = philox_4x32_torch(c0, c1, c2, c3, k0, k1)
    e = ((rows >> 3) & 1) * 4 + ((cols >> 3) & 1) * 2 + (cols & 1)
    e = torch.broadcast_to(e, c0.shape)
    word = torch.stack(r, -1).gather(-1, (e >> 1).unsqueeze(-1)).squeeze(-1)
    u16 = torch.where((e & 1) == 0, word & 0xFFFF, word >> 16)
    return u16 >= threshold


def dropout_threshold(p: float) -> int:
    return min(int(round(p * 65536.0)), 65535) if p > 0 else 0


def keep_scale(p: float) -> float:
    """The kept values' scale 1 / (1 - p) for the drop probability the mask has, threshold / 65536 (p rounded to the
    1/65536 grid): the output's expectation over masks is then exactly the output without dropout, also near p = 1
    (0.9999 rounds to 65529/65536: 1 / (1 - 0.9999) would overshoot by 7%)."""
    return 65536.0 / (65536 - dropout_threshold(p))


# Where a kernel loads the device key words (measured in calls 89-90, scripts/dropout_rng_ab.py, bf16 hd128 8k, TFLOP/s
# int key -> words at the kernel start -> words at each use): at the start (RNG_PTR) costs 0.2-1.3% except on the causal
# Gluon backward (-7.9%: spills in the causal dK/dV); at each use (philox.key_words inside dropout_keep) costs 2.6-8.9%
# except there (-0.7%). None: each launcher's measured choice (``rng_ptr``'s at_use); True / False force one mode
# everywhere (the A/B).
KEY_AT_USE = None


def key_at_use(default: bool) -> bool:
    return default if KEY_AT_USE is None else KEY_AT_USE


def dropout_args(dropout_p: float, seed: int, offset: int, rng=None) -> tuple:
    """The dropout kernel arguments every attention kernel takes, in order: the Philox key (seed low / high 32 bits
    and the offset, as int32 bit patterns; or, with ``rng``, the device words of ``draw_rng_words`` in the seed
    slot and zeros), the 16-bit keep threshold and the kept values' scale (``keep_scale``). With ``rng`` the launch
    sets RNG_PTR = ``rng_ptr(rng, at_use)``."""
    if rng is not None:
        return (rng, 0, 0, dropout_threshold(dropout_p), keep_scale(dropout_p))
    return (as_int32(seed), as_int32(seed >> 32), as_int32(offset), dropout_threshold(dropout_p),
            keep_scale(dropout_p))


def rng_ptr(rng, at_use: bool = False) -> bool:
    """The RNG_PTR constexpr of a launch: the key words (``rng``) loaded once at the kernel's start, unless the
    launcher's measured choice ``at_use`` (or KEY_AT_USE) has them loaded where each mask is made."""
    return rng is not None and not key_at_use(at_use)


def draw_rng_words(device) -> torch.Tensor:
    """The Philox key of one dropout call as three int32 words (seed low, seed high, offset), drawn by a kernel from
    torch's default generator of ``device`` into a tensor on it (the public calls' key: it works under CUDA graph
    capture and torch.compile, where the host cannot read the generator; ``attention.interface._dropout_key``). The
    kernels load the words (RNG_PTR); the torch path reads them through ``rng_seed_offset``."""
    return torch.randint(-2 ** 31, 2 ** 31, (3,), dtype=torch.int32, device=device)


def rng_seed_offset(rng: torch.Tensor):
    """(seed, offset) of ``draw_rng_words``' words as 0-dim int64 tensors on their device (no host read, so it works
    under graph capture): ``dropout_keep_torch`` takes them in place of the integers."""
    w = rng.to(torch.int64) & _MASK32
    return w[0] | (w[1] << 32), w[2]


def as_int32(x: int) -> int:
    """A uint32 value as the signed int32 with the same bits (kernel arguments stay i32)."""
    x &= _MASK32
    return x - (1 << 32) if x >= (1 << 31) else x
