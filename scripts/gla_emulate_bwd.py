"""Torch emulation of chunk_gla's backward rounding (whole-chunk path), to estimate the bf16 accuracy
of a backward variant without a GPU (the interpreter cannot run bf16). Every dot is computed in fp64
from operands rounded as the kernel rounds them (bf16, tf32 = 10-bit mantissa round-to-nearest-away,
fp32), states stored as the variant stores them; outputs rounded to the output dtype; compared with
the fp64 recurrence's autograd gradients (tests/ops/gla/gla_helpers.reference), RMS-relative.

    python scripts/gla_emulate_bwd.py [B,T,H,K,V] [gate divisor: g = logsigmoid(randn)/div]

Rows: v4 (tf32 backward dots, fp32 states), v5 (bf16 operands, dg from the rounded operands:
chunk_bwd.py), and v5 without the consistent dg (q*dq - k*dk from the outputs: what bf16 alone gives).
"""
import sys, torch, torch.nn.functional as F
ROOT = __import__("os").path.join(__import__("os").path.dirname(__import__("os").path.abspath(__file__)), "..")
sys.path.insert(0, ROOT); sys.path.insert(0, ROOT + "/tests/ops/gla")
from gla_helpers import make_inputs, reference, rms_rel

def rb(x):  # bf16 rounding
    return x.to(torch.bfloat16).to(torch.float64)
def rt(x):  # tf32 rounding (rna)
    y = x.to(torch.float32).contiguous().view(torch.int32)
    y = ((y + 0x1000) & ~0x1fff)
    return y.view(torch.float32).to(torch.float64)
def r32(x):
    return x.to(torch.float32).to(torch.float64)
def rid(x):
    return x
R = {"b": rb, "t": rt, "f": r32, "x": rid}

def emul(q, k, v, g, h0, do, dht, scale, cfg, BT=64):
    """cfg: dict site->rounding letter. sites: fkd (fwd state kd), dhq (bwd_dh qe), h, dh (states
    as operands in dqkv), qn, kn, kd, A, dA, out (dq/dk output: 'b' = written bf16)."""
    c = lambda s: R[cfg.get(s, "x")]
    B, T, H, K = q.shape; V = v.shape[-1]
    NT = (T + BT - 1) // BT; Tp = NT * BT
    pad = lambda x: F.pad(x.double(), (0, 0, 0, 0, 0, Tp - T))
    q, k, v, g, do = (pad(x).transpose(1, 2).reshape(B, H, NT, BT, -1) for x in (q, k, v, g, do))
    g = g.clamp(min=-30.0)
    gc = r32(g.cumsum(3))
    gl = gc[:, :, :, -1]  # [B,H,NT,K]
    g0 = gc[:, :, :, 0]
    # forward states h[c] = state at chunk start
    hs = []
    hh = h0.double()
    for i in range(NT):
        hs.append(c("hs")(r32(hh)))
        kd = c("fkd")(k[:, :, i] * torch.exp(gl[:, :, i, None] - gc[:, :, i]))
        hh = hh * torch.exp(gl[:, :, i])[..., None] + kd.transpose(-1, -2) @ v[:, :, i]
    ht = r32(hh)
    h = torch.stack(hs, 2)
    # dh[c] = grad of state at end of chunk c
    dhs = [None] * NT
    dd = dht.double()
    for i in reversed(range(NT)):
        dhs[i] = c("hs")(r32(dd))
        qe = c("dhq")(q[:, :, i] * torch.exp(gc[:, :, i]) * scale)
        dd = dd * torch.exp(gl[:, :, i])[..., None] + qe.transpose(-1, -2) @ c("do")(do[:, :, i])
    dh0 = dd
    dh = torch.stack(dhs, 2)
    # dqkv full path, rereferenced; v5 folds exp(g0)/exp(gl-g0) into h/dh
    causal = torch.ones(BT, BT, dtype=torch.bool).tril()
    qs = q * scale
    qn = c("qn")(qs * torch.exp(gc - g0[:, :, :, None]))
    kn = c("kn")(k * torch.exp(g0[:, :, :, None] - gc))
    kd = c("kd")(k * torch.exp(gl[:, :, :, None] - gc))
    A = c("A")((qn @ kn.transpose(-1, -2)).masked_fill(~causal, 0))
    dA = c("dA")((do @ v.transpose(-1, -2)).masked_fill(~causal, 0))
    if cfg.get("fold"):
        hp = c("h")(h * torch.exp(g0)[..., None]); dhp = c("dh")(dh * torch.exp(gl - g0)[..., None])
        dq = (do @ hp.transpose(-1, -2) + dA @ kn) * torch.exp(gc - g0[:, :, :, None]) * scale
        dk = (v @ dhp.transpose(-1, -2) + dA.transpose(-1, -2) @ qn) * torch.exp(g0[:, :, :, None] - gc)
    else:
        hq, dhq = c("h")(h), c("dh")(dh)
        dq = ((do @ hq.transpose(-1, -2)) * torch.exp(gc) + (dA @ kn) * torch.exp(gc - g0[:, :, :, None])) * scale
        dk = (v @ dhq.transpose(-1, -2)) * torch.exp(gl[:, :, :, None] - gc) + (dA.transpose(-1, -2) @ qn) * torch.exp(g0[:, :, :, None] - gc)
    if cfg.get("cons"):
        # dg from the rounded operands and the pre-scale accumulators (kernel v5): pairs cancel exactly
        accq = (do @ h.transpose(-1, -2)) * torch.exp(g0)[:, :, :, None, :] + dA @ kn
        acck = (v @ dh.transpose(-1, -2)) * torch.exp(gl - g0)[:, :, :, None, :] + dA.transpose(-1, -2) @ qn
        dq = accq * torch.exp(gc - g0[:, :, :, None]) * scale
        dk = acck * torch.exp(g0[:, :, :, None] - gc)
        xc = r32(qn * accq - kn * acck)
        acckh = (v @ dh.transpose(-1, -2)) * torch.exp(gl - g0)[:, :, :, None, :]
        cc_cons = r32(torch.exp(gl) * (h * dh).sum(-1) + (kn * acckh).sum(3))
    dv = A.transpose(-1, -2) @ do + kd @ c("dh")(dh)
    dq, dk = r32(dq), r32(dk)
    # dg per chunk
    x = xc if cfg.get("cons") else q * dq - k * dk
    dgc = x.flip(3).cumsum(3).flip(3)
    hend = torch.cat([h[:, :, 1:], ht[:, :, None]], 2)
    cc = (hend * dh).sum(-1)  # [B,H,NT,K]
    if cfg.get("cons") == 2:
        cc = cc_cons
    dg = dgc + cc[:, :, :, None]
    dg = dg.masked_fill(g < -30.0, 0)  # never here
    unpad = lambda x: x.reshape(B, H, Tp, -1)[:, :, :T].transpose(1, 2)
    outr = c("out")
    return dict(dq=outr(unpad(dq)), dk=outr(unpad(dk)), dv=rb(unpad(dv)), dg=rb(unpad(dg)), dh0=dh0)

if __name__ == "__main__":
    torch.manual_seed(5)
    shape = tuple(int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "2,1000,4,128,128").split(","))
    div = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
    q, k, v, g, h0 = make_inputs(*shape, dtype=torch.bfloat16)
    g = (F.logsigmoid(torch.randn(g.shape)) / div).to(torch.bfloat16)
    do, dht = torch.randn_like(v), torch.randn_like(h0)
    ref = reference(q, k, v, g, h0, do, dht)
    R_ = dict(dq=ref[2], dk=ref[3], dv=ref[4], dg=ref[5], dh0=ref[6])
    scale = shape[3] ** -0.5
    T = "t"
    B_ = dict(fold=0, fkd="b", dhq="b", hs="b", h="x", dh="x", qn="b", kn="b", kd="b", A="b", dA="b", out="b")
    cfgs = {
        "exact (fp64, outputs rounded)": dict(out="b"),
        "v4 (tf32 dots, fp32 states)": dict(fkd="b", dhq=T, h=T, dh=T, qn=T, kn=T, kd=T, A=T, dA=T, out="b"),
        "v5 / v5b (bf16, consistent dg)": dict(B_, cons=2),
        "bf16 without consistent dg": dict(B_),
    }
    for name, cfg in cfgs.items():
        out = emul(q, k, v, g, h0, do, dht, scale, cfg)
        print(f"{name:28s}", " ".join(f"{n}={rms_rel(out[n], R_[n]):.2e}" for n in ("dq", "dk", "dv", "dg", "dh0")), flush=True)
