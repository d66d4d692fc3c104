#!/usr/bin/env bash
# GLA on the device: the GPU test tier, the benchmark, and a small config sweep; logs/JSON under $OUT.
#   PYTHONUNBUFFERED=1 bash scripts/gpu_gla.sh [tests|bench|sweep|all ...]
# fla-core travels as a wheel in .whl (git-ignored; carry it).
set -o pipefail
OUT=${OUT:-/tmp/gla_out}
mkdir -p "$OUT"
STAGES=${*:-all}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD || echo "fla wheel install failed"
else
  export PYTHONPATH=$PWD
fi
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,memory.used,temperature.gpu --format=csv,noheader
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
python3 -c "import fla; print('fla', fla.__version__)" 2>&1 | tail -1
has() { [[ " $STAGES " == *" $1 "* || " $STAGES " == *" all "* ]]; }
if has bench; then
  echo "== bench"
  GLA_BENCH_PARTIAL="$OUT/gla-partial.json" timeout ${BENCH_S:-240} python3 -m tilefold bench gla --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" \
    | tee "$OUT/gla-bench.log" | tail -45
fi
if has tests; then
  echo "== GPU tests"
  NN=$([ -f tests/nn/test_gla.py ] && echo tests/nn/test_gla.py)
  timeout ${TESTS_S:-280} python3 -m pytest -m gpu tests/ops/gla $NN -q -n 8 -rf --tb=line -p no:cacheprovider \
    -W ignore 2>&1 | tee "$OUT/gla-gpu-tests.log" | tail -40
fi
if has sweep; then
  echo "== profile + sweep"
  timeout ${SWEEP_S:-50} python3 - <<'PY' 2>&1 | tee "$OUT/gla-sweep.log"
import torch, triton.testing, torch.nn.functional as F
from torch.profiler import profile, ProfilerActivity
from tilefold.gla import chunk_gla, fused_chunk_gla, fused_recurrent_gla
from tilefold.ops.gla import chunk as C, fused_recurrent as R
B, T, H, K, V = 8, 4096, 16, 128, 128
q, k, v = (torch.randn(B, T, H, d, device="cuda", dtype=torch.bfloat16, requires_grad=True) for d in (K, K, V))
g = (F.logsigmoid(torch.randn(B, T, H, K, device="cuda")) / 16).bfloat16().requires_grad_()
do = torch.randn(B, T, H, V, device="cuda", dtype=torch.bfloat16)
def ms(fn):
    return triton.testing.do_bench(fn, warmup=10, rep=40, return_mode="median")
def fb(fn):
    def f():
        fn(q, k, v, g)[0].backward(do)
    return f
fns = [("chunk", chunk_gla), ("fused_chunk", fused_chunk_gla), ("fused_recurrent", fused_recurrent_gla)]
try:
    from fla.ops.gla import chunk_gla as fla_chunk
    fns.append(("fla_chunk", fla_chunk))
except Exception as e:
    print("no fla", e)
for name, fn in fns:
    fb(fn)(); torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fb(fn)(); torch.cuda.synchronize()
    print("== profile", name)
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=12, max_name_column_width=60))
base = dict(C.CFG)
def tryc(name, key, vals, fn, mode):
    for val in vals:
        C.CFG.update(base); C.CFG[key] = val
        try:
            t = ms((lambda: fn(q, k, v, g)) if mode == "fwd" else fb(fn))
            print(f"{name:12s} {key:9s} {str(val):10s} {mode:7s} {t:8.3f} ms", flush=True)
        except Exception as e:
            print(f"{name} {key} {val} failed: {type(e).__name__}: {str(e)[:200]}", flush=True)
    C.CFG.update(base)
tryc("chunk", "fwd_o", [(128, 8), (128, 4), (64, 4)], chunk_gla, "fwd")
tryc("fused_chunk", "fused", [(64, 4), (64, 8), (128, 8)], fused_chunk_gla, "fwd")
tryc("chunk", "bwd_dqkv", [(64, 4), (64, 8), (128, 8)], chunk_gla, "fwd+bwd")
for st, w in [(2048, 2), (1024, 1), (1024, 2), (2048, 4)]:
    R.CFG.update(state=st, warps=w)
    print(f"fused_rec    state={st} warps={w} fwd {ms(lambda: fused_recurrent_gla(q, k, v, g)):8.3f} ms "
          f"fwd+bwd {ms(fb(fused_recurrent_gla)):8.3f} ms", flush=True)
PY
fi
ls -la "$OUT"
