#!/usr/bin/env bash
# Next device call (prepared 2026-12-04 after the session's device time ran out): the opt-in Gluon kernels at
# head dim 256 (dK/dV with the head-dim split, dQ; tests + backward time beside the Triton kernels and FA2; a
# hang shows as the smoke's timeout), the case left unfinished in call 34, then the attention GPU tier. ~9 min.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== hd256 smoke"
TILEFOLD_BWD_SM90_HD256=1 timeout 60 python3 -c "
import torch, tilefold
from tilefold.ops.attention import config as cfg
q, k, v = (torch.randn(1, 1000, 4, 256, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
out = tilefold.attention(q, k, v, causal=True); do = torch.randn_like(out)
g = torch.autograd.grad(out, (q, k, v), do, retain_graph=True); cfg.BWD_SM90 = '0'
t = torch.autograd.grad(out, (q, k, v), do)
print([((a.float() - b.float()).abs().max().item(), b.float().abs().max().item()) for a, b in zip(g, t)])
" 2>&1 | tail -3
echo "== hd256 tests + leftovers"
TIER_S=130 NPROC=15 bash scripts/gpu_tier.sh "tests/ops/attention/test_backward_sm90.py::test_sm90_hd256" \
  "tests/ops/attention/test_backward_sm90.py::test_sm90_hd256_dropout_and_determinism" \
  "tests/ops/attention/test_dropout.py::test_decoded_mask_reproduces_out_and_grads_gpu[gqa-causal-fp32]" \
  $(cat scripts/gpu_call33_todo.txt) 2>&1 | tail -10
cp "$OUT/gpu_tier.log" "$OUT/gpu_tier_hd256.log"
echo "== hd256 bench (gluon: both hd256 kernels; gluon-dkdv: the dK/dV one with the Triton dQ)"
TILEFOLD_BWD_SM90_HD256=1 timeout 100 python3 scripts/bwd_sm90_bench.py --dims 256 --out "$OUT/bwd_hd256.jsonl" 2>&1 | tail -5
echo "== backward_sm90 + dropout + compile tiers (the review-pass refactors of 2026-12-04 were not GPU-run)"
TIER_S=230 NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_backward_sm90.py tests/ops/attention/test_dropout.py \
  tests/ops/attention/test_compile.py 2>&1 | tail -10
ls "$OUT"
