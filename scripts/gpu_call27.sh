#!/usr/bin/env bash
# Device call 27 (2026-12-03, fourth session): the warp-specialized Gluon sm_90 forward (ping-pong and not):
# a smoke run (a deadlock stops here), its GPU tests, then its speed beside forward.py's kernel and SDPA.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout 90 python3 - <<'PY' 2>&1 | tail -5
import torch, tilefold
from tilefold.ops.attention import config as cfg, forward_sm90 as sm90
for pp in (True, False):
    sm90.PINGPONG = pp
    for causal in (False, True):
        q, k, v = (torch.randn(2, 3000, 8, 128, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        cfg.FWD_SM90 = "1"; a = tilefold.attention(q, k, v, causal=causal)
        cfg.FWD_SM90 = "0"; b = tilefold.attention(q, k, v, causal=causal)
        torch.cuda.synchronize(); print("smoke pp", pp, "causal", causal, "maxdiff", (a.float() - b.float()).abs().max().item())
PY
rc=$?; echo "smoke rc=$rc"; [ $rc -ne 0 ] && exit 1
timeout 150 python3 -m pytest -m gpu -q -n 8 -p no:cacheprovider -W ignore -rfE --tb=short tests/ops/attention/test_forward_sm90.py \
  > "$OUT/gpu_tier_fwd_sm90.log" 2>&1; echo "rc=$?"; grep -E "FAILED|ERROR|passed|failed|Error" "$OUT/gpu_tier_fwd_sm90.log" | head -12 | cut -c1-300
timeout 240 python3 scripts/fwd_sm90_bench.py --out "$OUT/fwd_sm90.jsonl" > "$OUT/bench.log" 2>&1
python3 -c "
import json
for l in open('$OUT/fwd_sm90.jsonl'):
    r=json.loads(l); print(r['provider'][:26].ljust(26), r['hd'], r['seqlen'], 'c' if r['causal'] else 'n', round(r.get('tflops',0)), r.get('error','')[:80])
"
