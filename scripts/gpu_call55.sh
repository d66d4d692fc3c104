#!/usr/bin/env bash
# Device call 55 (2026-12-04, sixth session), ~5 minutes: decode where call 47 left it below cuDNN — ncu of one call of
# each provider (grid, registers, DRAM bytes, SM-active spread) and the b16 sweep of scripts/decode_tune.py. (The
# fifth session's planned test re-runs moved to gpu_call56.sh.)
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
echo "== decode ncu"
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for c in "cudnn 16 8192" "tilefold 16 8192" "cudnn 4 32768" "tilefold 4 32768" "cudnn 16 32768" "tilefold 16 32768"; do
  f="$OUT/ncu_decode_${c// /_}.txt"
  timeout 40 $NCU --clock-control none --profile-from-start off --section SpeedOfLight --section LaunchStats \
    --section Occupancy --metrics dram__bytes_read.sum,sm__cycles_active.min,sm__cycles_active.avg,sm__cycles_active.max,gpu__time_duration.sum \
    python3 scripts/decode_ncu.py $c > "$f" 2>&1; echo "ncu $c rc=$?"
  grep -E "^  [a-zA-Z_].*\(|Duration|DRAM Throughput|Grid Size|Block Size|Registers Per|Shared Memory Config|Dynamic Shared|Waves Per SM|Achieved Occupancy|dram__bytes_read|sm__cycles_active|gpu__time" "$f" | cut -c1-150
done
echo "== decode b16 sweep"
timeout ${TUNE_S:-200} python3 scripts/decode_tune.py b16 > "$OUT/decode_tune_b16.jsonl" 2> "$OUT/decode_tune_b16.err"
echo "rc=$?"; cut -c1-220 "$OUT/decode_tune_b16.jsonl"; grep -v -i warn "$OUT/decode_tune_b16.err" | tail -5
ls "$OUT"
