#!/usr/bin/env bash
# Reproduce README's accuracy table: QAT variants of default-fp32 and the sweep.
# Usage: bash scripts/reproduce_accuracy.sh [OUT_DIR]   (about 1 h 15 min on 2 cores: two 4-epoch QAT runs and the sweep)
set -euo pipefail
out=${1:-out/accuracy}
mkdir -p "$out"
run() { echo "+ $*" >&2; "$@"; }
run hashiflex eval --checkpoint default-fp32 --json | tail -n 1 > "$out/fp32.json"
run hashiflex eval --checkpoint default-po2 --engine compare --json | tail -n 1 > "$out/po2-e3.json"
run hashiflex quantize --exp-bits 2 --out "$out/po2-e2.pt" --json | tail -n 1 > "$out/po2-e2.json"
run hashiflex quantize --exp-bits 3 --prune 0.5 --out "$out/po2-e3-p50.pt" --json | tail -n 1 > "$out/po2-e3-p50.json"
# README's sweep table (about 20 minutes): 0.25 QAT epochs per point, 5000 test images
run hashiflex sweep --out "$out" --test-limit 5000 --json | tail -n 1 > "$out/sweep.json"
cat "$out"/*.json
