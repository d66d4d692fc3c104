#!/usr/bin/env bash
# Device call (2026-12-03, second session), ~5 minutes: the dK/dV kernel's EVEN_M (rows unbounded when
# the query length is a multiple of the tile) x one/three loops (scripts/dkdv_even_m_bench.py), then
# the issue-2 headline shapes (`bench attention --quick`: hd128 8k/16k beside cuDNN and FA2).
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,memory.used --format=csv,noheader
timeout 260 python3 scripts/dkdv_even_m_bench.py > "$OUT/dkdv_even_m.jsonl" 2> "$OUT/dkdv_even_m.err"
cat "$OUT/dkdv_even_m.jsonl"; grep -v -i warn "$OUT/dkdv_even_m.err" | tail -5
echo "== attention bench --quick"
timeout 200 python3 -m tilefold bench attention --quick --no-plot --providers tilefold,sdpa-cudnn,sdpa-flash \
  --out "$OUT" 2>&1 | tr '\r' '\n' | grep -v "it/s\]$" | tail -30
ls "$OUT"
