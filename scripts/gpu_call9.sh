#!/usr/bin/env bash
# Device call (session 3, last): GLA v5 backward and split-D hd256 on the GPU.
#  1. fla-core's autotuned kernels tuned in a background process at the bench shape (Triton caches the
#     autotune results on disk; the bench process below reuses them). It overlaps the tests, so fla's
#     configs are picked on a shared GPU -- noted with the results.
#  2. GPU tier: GLA, nn, the split-D attention tests, and the attention tests the previous tier call left
#     unfinished.
#  3. python -m tilefold bench gla --quick beside fla and SDPA-flash (JSON + partial JSON).
#  4. hd256 backward sweep with the split-D candidates (8k, beside cuDNN/FA2).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
export PYTHONUNBUFFERED=1
(timeout ${FLA_WARM_S:-250} python3 - <<'PY'
import time, torch, torch.nn.functional as F
from fla.ops.gla import chunk_gla, fused_recurrent_gla
B, T, H, K = 8, 4096, 16, 128
for name, fn in (("chunk", lambda q, k, v, g: chunk_gla(q, k, v, g)[0]),
                 ("fused_recurrent", lambda q, k, v, g: fused_recurrent_gla(q, k, v, gk=g)[0])):
    t0 = time.time()
    q, k, v = (torch.randn(B, T, H, K, device="cuda", dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    g = (F.logsigmoid(torch.randn(B, T, H, K, device="cuda")) / 16).to(torch.bfloat16).requires_grad_()
    for _ in range(2):
        fn(q, k, v, g).backward(torch.randn_like(v))
    torch.cuda.synchronize()
    print(f"fla {name} tuned in {time.time() - t0:.0f}s", flush=True)
PY
) > "$OUT/fla_warm.log" 2>&1 &
WARM=$!
A=tests/ops/attention
TIER_S=${TIER_S:-210} NPROC=14 bash scripts/gpu_tier.sh tests/ops/gla tests/nn $A/test_split_d.py \
  "tests/ops/attention/test_dropout.py::test_decoded_mask_reproduces_out_and_grads_gpu[gqa-causal-fp32]" \
  "tests/ops/attention/test_dropout.py::test_no_quadratic_memory_gpu" \
  "tests/ops/attention/test_varlen.py::test_varlen_equals_per_sequence_gpu[full]" \
  "tests/ops/attention/test_varlen.py::test_varlen_equals_per_sequence_gpu[win16_16]" \
  "tests/ops/attention/test_varlen.py::test_varlen_gpu[long-win0_-1-d256-8x2-fp32]" \
  "tests/ops/attention/test_varlen.py::test_varlen_gpu[ones-causal-d256-4x1-fp32]" \
  "tests/ops/attention/test_varlen.py::test_varlen_gpu[ones-win16_16-d128-4x1-fp32]" \
  "tests/ops/attention/test_varlen.py::test_varlen_gpu_layouts[fp16-packed]" \
  "tests/ops/attention/test_varlen.py::test_varlen_gpu_layouts[fp32-padded]" \
  "tests/ops/decode/test_splitkv.py::test_decode_gpu[0-causal-200]" \
  "tests/ops/decode/test_splitkv.py::test_decode_gpu[1-causal-16]" \
  "tests/ops/decode/test_splitkv.py::test_decode_gpu[3-causal-16]" \
  tests/ops/attention/test_compile.py
wait $WARM; cat "$OUT/fla_warm.log" | tail -5
echo "== gla bench"
GLA_BENCH_MODES=${GLA_BENCH_MODES:-tilefold:chunk,fla:chunk,tilefold:fused_recurrent,fla:fused_recurrent,tilefold:fused_chunk} \
GLA_BENCH_PARTIAL="$OUT/gla-partial.json" timeout ${GLA_S:-150} python3 -m tilefold bench gla --quick --no-plot \
  --providers tilefold,fla,sdpa-flash --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -25
echo "== hd256 backward sweep"
SWEEP_BWD_ONLY=1 SWEEP_S=8192 SWEEP_D=256 timeout ${SW_S:-110} python3 scripts/gpu_attn_sweep.py --hd256 --no-checks --prewarm \
  > "$OUT/sweep256.log" 2>&1
grep -E '"bench"|prewarm' "$OUT/sweep256.log" | cut -c1-260
ls -la "$OUT"
