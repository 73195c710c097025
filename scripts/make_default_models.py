"""Produce the committed checkpoints default-fp32 and default-po2 (seeds and settings recorded here).

Usage: python scripts/make_default_models.py fp32|po2 [--data DIR]
Each stage writes hashiflex/checkpoints/default-<stage>.pt; settings go into the checkpoint's meta.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from hashiflex import checkpoint
from hashiflex.data import load_fashion_mnist
from hashiflex.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from hashiflex.train.loop import TrainSettings, accuracy, predict, train

MODEL = MobileNetV2Config(num_classes=10, in_channels=1, width_mult=0.5, first_stride=1, input_size=28)
FP32 = TrainSettings(epochs=8, batch_size=128, lr=0.1, weight_decay=4e-5, label_smoothing=0.1, seed=0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["fp32", "po2"])
    ap.add_argument("--data")
    a = ap.parse_args()
    torch.set_num_threads(2)
    xtr, ytr = load_fashion_mnist("train", a.data)
    xte, yte = load_fashion_mnist("test", a.data)
    t0 = time.time()
    if a.stage == "fp32":
        model = MobileNetV2(MODEL)
        train(model, xtr, ytr, FP32, desc="fp32")
        acc = accuracy(predict(model, xte), yte)
        meta = {"script": "scripts/make_default_models.py fp32", "settings": vars(FP32),
                "test_accuracy": acc, "train_seconds": round(time.time() - t0, 1)}
        checkpoint.save(checkpoint.BUILTIN_DIR / "default-fp32.pt", "fp32", MODEL.to_dict(),
                        model.state_dict(), meta=meta)
        print(f"default-fp32: test accuracy {acc:.4f}")
    else:
        from hashiflex.quant.qat import QATSettings, quantize_from_fp32
        from hashiflex.sim.golden import golden_accuracy
        s = QATSettings()
        result = quantize_from_fp32("default-fp32", xtr, ytr, xte, yte, s, evaluate=golden_accuracy)
        result.save(checkpoint.BUILTIN_DIR / "default-po2.pt",
                    extra_meta={"script": "scripts/make_default_models.py po2"})
        print(f"default-po2: test accuracy {result.accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
