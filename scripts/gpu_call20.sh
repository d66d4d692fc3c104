#!/usr/bin/env bash
# Device call 20 (2026-12-03, third session), ~7 minutes on a fresh H200:
#  1. scripts/decode_tune.py: host cost per call and its parts, combine modes (fold unrolled or not), decode
#     configs incl. K/V through tensor descriptors, split counts -- beside cuDNN;
#  2. GPU tier: the decode tests (default, then descriptors forced), test_varlen / test_eager_path /
#     test_compile (not yet run on the GPU since the one-loop dK/dV default).
# <= 8 files under $OUT.
set -o pipefail
OUT=${OUT:-$PWD/gpu_out}; mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv,noheader
echo "== decode tune"
for ps in host:60 combine:110 cfg:150 splits:110; do  # one process each: a failure loses one part only
  part=${ps%%:*}
  timeout ${ps##*:} python3 scripts/decode_tune.py $part >> "$OUT/decode_tune.jsonl" 2>> "$OUT/decode_tune.err"
  echo "$part rc=$?"
done
cat "$OUT/decode_tune.jsonl" | cut -c1-400; grep -v -i warn "$OUT/decode_tune.err" | head -45
echo "== decode tests, descriptors forced"
TILEFOLD_DECODE_TMA=1 timeout 90 python3 -m pytest -m gpu -q -n 8 -p no:cacheprovider -W ignore tests/ops/decode \
  > "$OUT/gpu_tier_decode_tma.log" 2>&1; echo "rc=$?"; tail -3 "$OUT/gpu_tier_decode_tma.log"
A=tests/ops/attention
TIER_S=${TIER_S:-150} NPROC=15 bash scripts/gpu_tier.sh tests/ops/decode $A/test_varlen.py $A/test_eager_path.py \
  $A/test_compile.py 2>&1 | tail -8
