"""Small validators for the public boundary. Each raises ValueError naming the argument, what was
expected and what was given. Kernels assume valid input."""
from __future__ import annotations

import math
import numbers

import torch

from .host import GRID_YZ_MAX, rows_grid

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
MAX_HEADDIM = 256


def _validate_tensor(name, t, ndim, dtypes=FLOAT_DTYPES):
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dims, got shape {tuple(t.shape)}")
    if dtypes is not None and t.dtype not in dtypes:
        raise ValueError(f"{name}: expected dtype in {[str(d) for d in dtypes]}, got {t.dtype}")


def _validate_same(names, tensors, what):
    first = getattr(tensors[0], what)
    for n, t in zip(names[1:], tensors[1:]):
        if getattr(t, what) != first:
            raise ValueError(f"{n}: expected {what} {first} (as {names[0]}), got {getattr(t, what)}")


def _validate_last_contiguous(name, t):
    if t.numel() > 0 and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise ValueError(f"{name}: expected the last dimension contiguous (stride 1), got strides {t.stride()}")


# The exact-type tests first: isinstance against the numbers ABCs costs ~0.5 us per call (~2 us on the GPU machine's
# host), and a decode call makes several (host-latency bound at small batch).
def _is_int(x) -> bool:
    """An integer (Python or numpy), not a bool."""
    t = type(x)
    if t is int:
        return True
    return t is not bool and isinstance(x, numbers.Integral)


def _is_real(x) -> bool:
    """A real number (Python or numpy), not a bool."""
    t = type(x)
    if t is float or t is int:
        return True
    return t is not bool and isinstance(x, numbers.Real)


def _finite(x) -> bool:
    """math.isfinite by comparisons: torch.compile (dynamic=True) refuses math.isfinite on the arguments it traces."""
    return x == x and x != math.inf and x != -math.inf


def _validate_bool(name, x) -> bool:
    """A flag: a bool (or a numpy bool). Anything else -- a string such as "no", 0 / 1, None -- is refused: it would
    be read by truth value ("no" meaning True)."""
    if isinstance(x, bool) or (type(x).__module__ == "numpy" and type(x).__name__ in ("bool_", "bool")):
        return bool(x)
    raise ValueError(f"{name}: expected a bool, got {x!r}")


def _validate_int(name, x, lo=0) -> int:
    """An integer >= lo (Python or numpy, not a bool), returned as a Python int."""
    if not _is_int(x) or x < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {x!r}")
    return int(x)


def _validate_qkv(q, k, v, ndim, names=("q", "k", "v")):
    """q and the keys / values of one attention call: tensors of ``ndim`` dims, float dtypes, last dim contiguous,
    one dtype and device, k and v of one shape, k's head dim q's, heads_k dividing heads. ``names``: how the errors
    call them (a KV cache's k_cache / v_cache)."""
    for n, t in zip(names, (q, k, v)):
        _validate_tensor(n, t, ndim)
        _validate_last_contiguous(n, t)
    _validate_same(names, (q, k, v), "dtype")
    _validate_same(names, (q, k, v), "device")
    nq, nk, nv = names
    if k.shape != v.shape:
        raise ValueError(f"{nv}: expected shape {tuple(k.shape)} (as {nk}), got {tuple(v.shape)}")
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"{nk}: expected head dim {q.shape[-1]} (as {nq}), got {k.shape[-1]}")
    H, HK = q.shape[-2], k.shape[-2]
    if HK < 1 or H % HK != 0:
        raise ValueError(f"{nk}: expected heads_k dividing heads={H}, got heads_k={HK}")


def _validate_positive(name, x) -> float:
    """A finite real number > 0 (Python or numpy, not a bool), returned as a float."""
    if not _is_real(x) or not _finite(x) or x <= 0:
        raise ValueError(f"{name}: expected a finite number > 0, got {x!r}")
    return float(x)


def _validate_window(window_size):
    if type(window_size) is tuple and len(window_size) == 2:  # the common case, without the generic checks below
        left, right = window_size
        if type(left) is int and type(right) is int and left >= -1 and right >= -1:
            return min(left, WINDOW_MAX), min(right, WINDOW_MAX)
    if not (isinstance(window_size, (tuple, list)) and len(window_size) == 2
            and all(_is_int(w) for w in window_size)):
        raise ValueError(f"window_size: expected a pair of ints (left, right), got {window_size!r}")
    left, right = (int(w) for w in window_size)
    if left < -1 or right < -1:
        raise ValueError(f"window_size: expected values >= -1 (-1 = unbounded), got {tuple(window_size)}")
    # the kernels add window edges to positions in int32: a bound past any reachable distance (positions are
    # int32, TMA coordinates too) is clamped to WINDOW_MAX, which sees the same keys and cannot wrap around
    return min(left, WINDOW_MAX), min(right, WINDOW_MAX)


WINDOW_MAX = 1 << 30


def _validate_softcap(softcap):
    if not _is_real(softcap) or not _finite(softcap) or softcap < 0:
        raise ValueError(f"softcap: expected a finite number >= 0, got {softcap!r}")
    return float(softcap)


def _validate_scale(softmax_scale, D):
    if softmax_scale is None:
        return 1.0 / math.sqrt(D)
    if not _is_real(softmax_scale) or not _finite(softmax_scale):
        raise ValueError(f"softmax_scale: expected a finite number or None, got {softmax_scale!r}")
    return float(softmax_scale)


def _is_fake(t) -> bool:
    try:
        from torch._subclasses.fake_tensor import is_fake
    except ImportError:  # pragma: no cover - older torch
        return False
    return is_fake(t)


def _validate_cu_seqlens(name, cu, total, max_seqlen, max_name, device):
    """cu_seqlens: int32 (batch+1,), starts at 0, non-decreasing, last == total (any total when ``total`` is None: a
    paged cache's lengths); max_seqlen >= every length. The value checks read the tensor on the host: skipped while
    torch.compile traces and while a CUDA graph captures on the current stream (a host read there fails the capture;
    the values must then be valid, as flash_attn never checks them). Returns the longest length (None when the values
    were not read)."""
    if not isinstance(cu, torch.Tensor):
        raise ValueError(f"{name}: expected an int32 torch.Tensor, got {type(cu).__name__}")
    if cu.dtype != torch.int32:
        raise ValueError(f"{name}: expected dtype torch.int32, got {cu.dtype}")
    if cu.dim() != 1 or cu.numel() < 1:
        raise ValueError(f"{name}: expected shape (batch + 1,), got {tuple(cu.shape)}")
    if cu.device != device:
        raise ValueError(f"{name}: expected device {device} (as q), got {cu.device}")
    if cu.numel() > 1 and cu.stride(0) != 1:  # the kernels read cu[b] at stride 1
        raise ValueError(f"{name}: expected a contiguous tensor, got stride {cu.stride(0)}")
    if not _is_int(max_seqlen) or max_seqlen < 0:
        raise ValueError(f"{max_name}: expected an int >= 0, got {max_seqlen!r}")
    if torch.compiler.is_compiling() or cu.device.type == "meta" or _is_fake(cu):
        return None  # no values to read (traced, meta, or FakeTensorMode outside a compile)
    if cu.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
        return None  # a graph being captured: the values exist only at replay
    vals = cu.tolist()
    if vals[0] != 0:
        raise ValueError(f"{name}: expected first value 0, got {vals[0]}")
    lens = [b - a for a, b in zip(vals[:-1], vals[1:])]
    if any(n < 0 for n in lens):
        raise ValueError(f"{name}: expected non-decreasing values, got {vals}")
    if total is not None and vals[-1] != total:
        raise ValueError(f"{name}: expected last value == total tokens {total}, got {vals[-1]}")
    longest = max(lens, default=0)
    if longest > max_seqlen:
        raise ValueError(f"{max_name}: expected >= the longest sequence ({longest}), got {max_seqlen}")
    return longest


def _validate_grid_rows(name, batch, heads, device):
    """The CUDA kernels launch batch x heads programs over grid axes 1 and 2 (65535 each, ``host.rows_grid``): any
    batch and head count up to 65535 each fits, larger ones where batch has a divisor that splits them (the CPU paths
    have no limit)."""
    if device.type == "cuda" and rows_grid(batch, heads) is None:
        raise ValueError(f"{name}: batch x heads = {batch} x {heads} does not fit the CUDA grid the kernels launch "
                         f"(batch x heads programs over two axes of at most {GRID_YZ_MAX}); split the batch into calls "
                         f"of at most {GRID_YZ_MAX} sequences")


MAX_SPLITS = 128


def _validate_num_splits(num_splits):
    """num_splits: an int in [0, MAX_SPLITS] (0 = choose by occupancy, 1 = no split; FA2 has the same cap)."""
    if not _is_int(num_splits) or not 0 <= num_splits <= MAX_SPLITS:
        raise ValueError(f"num_splits: expected an int in [0, {MAX_SPLITS}] (0 = choose by occupancy, 1 = no split), "
                         f"got {num_splits!r}")
    return int(num_splits)


def _alibi(alibi_slopes, B, H, device):
    """alibi_slopes as the kernels read them: fp32 (B, H) with unit column stride (a (H,) tensor broadcast over the
    batch with row stride 0), detached (flash_attn's slopes carry no gradient); None without ALiBi."""
    if alibi_slopes is None:
        return None
    if not isinstance(alibi_slopes, torch.Tensor) or alibi_slopes.dtype != torch.float32 or \
            tuple(alibi_slopes.shape) not in ((H,), (B, H)):
        got = (f"{alibi_slopes.dtype} of shape {tuple(alibi_slopes.shape)}" if isinstance(alibi_slopes, torch.Tensor)
               else type(alibi_slopes).__name__)
        raise ValueError(f"alibi_slopes: expected a float32 tensor of shape ({H},) or ({B}, {H}), got {got}")
    if alibi_slopes.device != device:
        raise ValueError(f"alibi_slopes: expected device {device} (as q), got {alibi_slopes.device}")
    t = alibi_slopes.detach().contiguous()
    return t.expand(B, H) if t.dim() == 1 else t
