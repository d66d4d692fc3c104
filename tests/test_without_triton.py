"""Triton ships Linux wheels only: on other machines tilefold installs without it (pyproject's marker) and must
import and run its torch implementation on CPU tensors. Checked in a subprocess whose import system refuses every
``triton`` module (as an absent package, or a broken one: find_spec raising); a CUDA call or a forced Triton backend
then says why it cannot run."""
import subprocess
import sys
import textwrap

_BLOCK = """
import sys
class _NoTriton:
    def find_spec(self, name, path=None, target=None):
        if name == "triton" or name.startswith("triton."):
            raise ImportError("no triton here: " + name)
        return None
sys.meta_path.insert(0, _NoTriton())
"""

_SCRIPT = """
import torch
import tilefold
from tilefold.ops.common.dispatch import HAVE_TRITON
assert not HAVE_TRITON
assert not any(m == "triton" or m.startswith("triton.") for m in sys.modules)
from tilefold.compat.flash_attn_interface import flash_attn_func
from tilefold.ops.attention.naive import attention_ref
g = torch.Generator().manual_seed(0)
q, k, v = (torch.randn(2, n, h, 16, generator=g, requires_grad=True) for n, h in ((33, 4), (40, 2), (40, 2)))
o, lse = tilefold.attention(q, k, v, causal=True, return_lse=True)
ref_o, ref_l = attention_ref(q.detach(), k.detach(), v.detach(), causal=True)
assert (o - ref_o).abs().max() < 1e-5 and (lse - ref_l).abs().max() < 1e-5
o.square().sum().backward()
assert q.grad is not None and torch.isfinite(q.grad).all()
od, _, S = tilefold.attention(q, k, v, dropout_p=0.2, return_attn_probs=True)
od.sum().backward()
for ns in (0, 3):
    assert (tilefold.attention(q, k, v, causal=True, num_splits=ns) - o).abs().max() < 1e-5
po, pl = tilefold.partial_attention(q, k, v, q_start=0, k_start=0, seqlen_q_total=33, seqlen_k_total=40, causal=True)
assert (po - o).abs().max() < 1e-5
assert (tilefold.merge_state(o, lse, o, lse)[0] - o).abs().max() < 1e-5
assert (flash_attn_func(q, k, v, causal=True) - o).abs().max() < 1e-5
kc, vc = torch.zeros_like(k).detach(), torch.zeros_like(v).detach()
kc[:, :30], vc[:, :30] = k[:, :30].detach(), v[:, :30].detach()
ko = tilefold.attention_with_kvcache(q.detach(), kc, vc, k[:, 30:].detach(), v[:, 30:].detach(), cache_seqlens=30,
                                     causal=True)
assert (ko - o).abs().max() < 1e-5 and torch.equal(kc, k.detach())
cu = torch.tensor([0, 10, 33], dtype=torch.int32)
tilefold.varlen_attention(q[0], k[0, :33], v[0, :33], cu, cu, 23, 23, causal=True)
from tilefold.gla import chunk_gla, fused_chunk_gla, fused_recurrent_gla
x = [torch.randn(1, 20, 2, 8, generator=g) for _ in range(3)]
gate = -torch.rand(1, 20, 2, 8, generator=g)
outs = [fn(*x, gate)[0] for fn in (chunk_gla, fused_chunk_gla, fused_recurrent_gla)]
assert all((a - outs[0]).abs().max() < 1e-4 for a in outs)
tilefold.nn.GatedLinearAttention(32, num_heads=2)(torch.randn(1, 5, 32))
try:
    with tilefold.use_backend("triton"):
        tilefold.attention(q, k, v)
    raise SystemExit("a forced Triton backend ran without Triton")
except RuntimeError as e:
    assert "Triton" in str(e), e
print("OK")
"""


def test_cpu_path_without_triton():
    code = _BLOCK + textwrap.dedent(_SCRIPT)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in __import__("os").environ.items() if k != "TRITON_INTERPRET"})
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout[-2000:] + r.stderr[-4000:]


def test_cli_info_without_triton():
    code = _BLOCK + "import runpy\nsys.argv = ['tilefold', 'info']\nrunpy.run_module('tilefold', run_name='__main__')\n"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "tilefold.attention available" in r.stdout, r.stdout[-2000:] + r.stderr[-4000:]
