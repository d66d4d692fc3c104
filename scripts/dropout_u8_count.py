"""Offline (no GPU) estimate for the uint8-threshold dropout lever of benchmarks/NOTES.md: compile the Gluon forward
(hd128, bf16, non-causal, sm_90) without dropout, with the shipped mask (16-bit values, 8 elements per Philox call) and
with an 8-bit variant (16 elements per call: the group {r, r^8} x {j, j^1, j^8, j^9, j^16, j^17, j^24, j^25}, one byte
each, p quantized to 1/256) and count SASS instructions by kind. The variant is defined here only; the library is
unchanged. Usage: python scripts/dropout_u8_count.py"""
import collections
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from triton.experimental import gluon  # noqa: E402
from triton.experimental.gluon import language as gl  # noqa: E402

from tilefold.ops.attention import forward_sm90 as F  # noqa: E402
from tilefold.ops.common.philox import philox_4x32_gl  # noqa: E402
import compile_gluon_fwd as C  # noqa: E402


@gluon.jit
def dropout_keep_gl_u8(seed_lo, seed_hi, offset, bh, rows, col_base, cols, threshold):
    """8-bit variant (threshold read as a byte value 0..255): counter (ckey, rkey, bh, offset) with the row key
    = row without bit 3 and the column key = column without bits 0, 3 and 4; byte e = 8·(row bit 3) + 4·(column
    bit 4) + 2·(column bit 3) + (column bit 0) of the 128 output bits (word e >> 2, byte e & 3)."""
    k0 = seed_lo.to(gl.uint32, bitcast=True)
    k1 = seed_hi.to(gl.uint32, bitcast=True)
    rkey = (((rows >> 4) << 3) | (rows & 7)).to(gl.uint32)
    ckey = (((cols >> 5) << 2) | ((cols >> 1) & 3)).to(gl.uint32) + (col_base >> 3)
    zero = (rkey * 0) + (ckey * 0)
    c1 = rkey + zero
    c3 = ckey + zero
    c0 = zero + bh.to(gl.uint32)
    c2 = zero + offset.to(gl.uint32, bitcast=True)
    r0, r1, r2, r3 = philox_4x32_gl(c0, c1, c2, c3, k0, k1, 7)
    c4 = (cols >> 4) & 1
    rsel = (rows >> 3) & 1
    w01 = gl.where((c4 + rsel * 0) != 0, r1, r0)
    w23 = gl.where((c4 + rsel * 0) != 0, r3, r2)
    w = gl.where((rsel + c4 * 0) != 0, w23, w01)
    # byte b = 2·(column bit 3) + (column bit 0) moved to the top: compare the top byte against threshold << 24
    sh = (24 - 8 * (2 * ((cols >> 3) & 1) + (cols & 1))).to(gl.uint32) + rows.to(gl.uint32) * 0
    u = w << sh
    return u >= (threshold.to(gl.uint32) << 24)


def counts(sass):
    ops = collections.Counter()
    for line in sass.splitlines():
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)", line)
        if m:
            ops[m.group(1)] += 1
    return ops


VARIANTS = {"p0": ("p=0", False, None), "u16": ("16-bit (shipped)", True, None),
            "u8": ("8-bit variant", True, dropout_keep_gl_u8)}

if len(sys.argv) > 1:  # one variant per process: a compiled kernel's dependency hashes are memoized per process
    name, dropout, fn = VARIANTS[sys.argv[1]]
    if fn is not None:
        F.dropout_keep_gl = fn
    k, sass, res = C.compile_fwd(128, ws=True, dropout=dropout)
    ops = counts(sass)
    spills = len(re.findall(r"\b(?:LDL|STL)\b", sass))
    regs = re.search(r"REG:(\d+)", res).group(1)
    wide = sum(1 for line in sass.splitlines() if "IMAD.WIDE" in line)
    print(f"{name:18s} IMAD.WIDE {wide:4d}  total {sum(ops.values()):6d}  IMAD* {sum(v for o, v in ops.items() if o.startswith('IMAD')):5d}"
          f"  LOP3 {ops['LOP3']:5d}  ISETP {ops['ISETP']:4d}  FSEL {ops['FSEL']:4d}  SHF {ops['SHF']:4d}"
          f"  PRMT {ops['PRMT']:4d}  spills {spills}  regs {regs}")
else:
    import subprocess
    for v in VARIANTS:
        subprocess.run([sys.executable, __file__, v], check=True)
