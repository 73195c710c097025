"""Produce the committed checkpoints (seeds and settings recorded here).

Usage: python scripts/make_default_models.py fp32|po2|small-fp32|small-po2 [--data DIR]
fp32/po2 write default-fp32.pt / default-po2.pt. small-* write small-fp32.pt / small-po2.pt: the
same recipe on a width-reduced network (width 0.25, first stride 2, 128 last channels) that keeps
every layer type and builds in Verilator in minutes, for end-to-end RTL checks.
Settings go into each checkpoint's meta.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace

import torch

from hashiflex import checkpoint
from hashiflex.data import load_fashion_mnist
from hashiflex.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from hashiflex.train.loop import TrainSettings, accuracy, predict, train

MODEL = MobileNetV2Config(num_classes=10, in_channels=1, width_mult=0.5, first_stride=1, input_size=28)
SMALL = MobileNetV2Config(num_classes=10, in_channels=1, width_mult=0.25, first_stride=2, input_size=28,
                          last_channel=128)
# Random erasing (train/loop.py) and 24 epochs: on a quiet 2-core machine about 55 min.
FP32 = TrainSettings(epochs=24, batch_size=128, lr=0.1, weight_decay=4e-5, label_smoothing=0.1, seed=0, erase=0.5)
# The committed small-* checkpoints (RTL checks only) keep the session-1 recipe: 8 FP32 epochs, then
# 2 QAT epochs without distillation.
SMALL_FP32 = TrainSettings(epochs=8, batch_size=128, lr=0.1, weight_decay=4e-5, label_smoothing=0.1, seed=0)
SMALL_QAT = {"epochs": 2.0, "distill": 0.0}
# default-po2 = QATSettings() (6 epochs, distillation 0.5, seed 1). The committed file was written
# by `hashiflex quantize --out` with OMP_NUM_THREADS=1, which runs the same quantize_from_fp32 with
# the same settings (its meta says so: "command" instead of "script"); about 45 min on one thread.


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("stage", choices=["fp32", "po2", "small-fp32", "small-po2"])
    ap.add_argument("--data")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))  # 1 when two stages share the machine
    xtr, ytr = load_fashion_mnist("train", a.data)
    xte, yte = load_fashion_mnist("test", a.data)
    t0 = time.time()
    prefix = "small" if a.stage.startswith("small") else "default"
    cfg = SMALL if prefix == "small" else MODEL
    if a.stage.endswith("fp32"):
        model = MobileNetV2(cfg)
        recipe = SMALL_FP32 if prefix == "small" else FP32
        train(model, xtr, ytr, recipe, desc="fp32")
        acc = accuracy(predict(model, xte), yte)
        meta = {"script": f"scripts/make_default_models.py {a.stage}", "settings": vars(recipe),
                "test_accuracy": acc, "train_seconds": round(time.time() - t0, 1)}
        checkpoint.save(checkpoint.BUILTIN_DIR / f"{prefix}-fp32.pt", "fp32", cfg.to_dict(),
                        model.state_dict(), meta=meta)
        print(f"{prefix}-fp32: test accuracy {acc:.4f}")
    else:
        from hashiflex.quant.qat import QATSettings, quantize_from_fp32
        from hashiflex.sim.golden import golden_accuracy
        s = QATSettings()  # default-po2 is `hashiflex quantize` with its defaults
        if prefix == "small":
            s = replace(s, train=replace(s.train, **SMALL_QAT))
        result = quantize_from_fp32(str(checkpoint.BUILTIN_DIR / f"{prefix}-fp32.pt"), xtr, ytr, xte, yte, s,
                                    evaluate=golden_accuracy)
        result.save(checkpoint.BUILTIN_DIR / f"{prefix}-po2.pt",
                    extra_meta={"script": f"scripts/make_default_models.py {a.stage}"})
        print(f"{prefix}-po2: test accuracy {result.accuracy:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
