#!/usr/bin/env bash
# Reproduce README's accuracy table: QAT variants of default-fp32 and the sweep.
# Usage: bash scripts/reproduce_accuracy.sh [OUT_DIR]   (about 2 h 30 min on 2 cores: two 6-epoch QAT runs
# (default-po2's recipe and 2-bit, 45-50 min each), two 4-epoch runs (25-30 min each) and the sweep)
set -euo pipefail
out=${1:-out/accuracy}
mkdir -p "$out"
run() { echo "+ $*" >&2; "$@"; }
run hashiflex eval --checkpoint default-fp32 --json | tail -n 1 > "$out/fp32.json"
run hashiflex eval --checkpoint default-po2 --engine compare --json | tail -n 1 > "$out/po2-e3.json"
run hashiflex quantize --out "$out/po2-e3-6ep.pt" --json | tail -n 1 > "$out/po2-e3-6ep.json"
run hashiflex quantize --exp-bits 2 --out "$out/po2-e2.pt" --json | tail -n 1 > "$out/po2-e2.json"
run hashiflex quantize --epochs 4 --exp-bits 2 --weight-scale channel --out "$out/po2-e2c.pt" --json | tail -n 1 > "$out/po2-e2c.json"
run hashiflex quantize --epochs 4 --exp-bits 3 --prune 0.5 --out "$out/po2-e3-p50.pt" --json | tail -n 1 > "$out/po2-e3-p50.json"
# README's sweep table (about 20 minutes): 0.25 QAT epochs per point, 5000 test images
run hashiflex sweep --out "$out" --test-limit 5000 --json | tail -n 1 > "$out/sweep.json"
cat "$out"/*.json
