#!/usr/bin/env bash
# Device call 80 (2026-12-04, eighth session), ~1 minute: dropout under CUDA graph capture (scripts/dropout_graph_check.py).
set -o pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout 120 python3 scripts/dropout_graph_check.py 2>&1 | grep -v Warn | tail -5
