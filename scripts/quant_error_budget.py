"""Where a Po2 model's accuracy goes: test accuracy with each quantizer switched off in turn.

Usage: python scripts/quant_error_budget.py [CHECKPOINT] [--data DIR] [--limit N]

The model was trained for its quantizers, so switching one off shows how much the model leans on
it, not an exact split of the gap to FP32. Runs in float32 (fast); the quantized row is the same
model the golden simulator runs, up to float32 rounding.
"""
from __future__ import annotations

import argparse
from contextlib import contextmanager

import torch

import hashiflex.quant.modules as qm
from hashiflex.data.fashion_mnist import load_fashion_mnist
from hashiflex.quant.qat import load_qmodel
from hashiflex.train.loop import accuracy, predict


@contextmanager
def float_activations():
    """Every requantization is skipped; ReLU6 stays a clamp to [0, 6]."""
    orig = qm.QModule._output
    qm.QModule._output = lambda self, y: torch.clamp(y, 0.0, 6.0) if self.relu6 else y
    try:
        yield
    finally:
        qm.QModule._output = orig


@contextmanager
def float_weights():
    """Hardened weights keep their folded float values (no Po2 rounding, masks still apply)."""
    orig = qm.po2_quantize
    qm.po2_quantize = lambda w, e_max, levels: w.detach()
    try:
        yield
    finally:
        qm.po2_quantize = orig


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?", default="default-po2")
    ap.add_argument("--data")
    ap.add_argument("--limit", type=int)
    a = ap.parse_args()
    x, y = load_fashion_mnist("test", a.data, limit=a.limit)
    q, _ = load_qmodel(a.checkpoint)
    rows = [("quantized (as deployed)", accuracy(predict(q, x), y))]
    with float_activations():
        rows.append(("float activations, Po2 weights", accuracy(predict(q, x), y)))
    with float_weights():
        rows.append(("8-bit activations, float weights", accuracy(predict(q, x), y)))
    print(f"{a.checkpoint}, {len(y)} test images")
    for name, acc in rows:
        print(f"  {name:<34} {100 * acc:6.2f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
