#!/usr/bin/env bash
# 2026-12-03: host overhead after the eager (non-custom-op) path, ncu of the dK/dV kernel causal vs not
# (why causal dK/dV takes 0.63-0.72x the non-causal time for half the work), GPU smoke of the paths touched.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 150 python3 scripts/host_profile.py > "$OUT/host_profile.log" 2>&1; echo "host_profile rc=$?"
grep -v Warn "$OUT/host_profile.log" | head -20
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for c in 0 1; do
  timeout 120 $NCU --clock-control none -k regex:attention_bwd_dkdv --launch-skip 1 --launch-count 1 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section Occupancy \
    --section LaunchStats --section SchedulerStats --metrics lts__t_sector_hit_rate.pct,dram__bytes_read.sum,lts__t_bytes.sum \
    python3 scripts/ncu_bwd.py 8192 $c > "$OUT/ncu_dkdv_c$c.txt" 2>&1; echo "ncu c=$c rc=$?"
done
grep -E "Duration|Hit Rate|DRAM Throughput|L2 Cache Throughput|Memory Throughput|Compute \(SM\)|Stall|dram__bytes|lts__t_sector_hit|Registers|Local|Warp Cycles Per Issued|Issued Warp" "$OUT"/ncu_dkdv_c*.txt | head -60
TIER_S=${TIER_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/attention/test_compile.py tests/ops/attention/test_eager_path.py \
  tests/ops/attention/test_backward.py 2>&1 | tail -4
