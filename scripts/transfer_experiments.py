"""Transfer experiments for head-only (NPU) fine-tuning; writes OUT/transfer.md and OUT/transfer.json.

(a) Fashion-MNIST, the default model's architecture (--arch-a default, 1280 features) or the SMALL
    one of scripts/make_default_models.py (--arch-a small: width 0.25, first stride 2, 128 last
    channels): a backbone trained (FP32, then
    Po2 QAT) on classes 0-4 only, its head then re-trained alone on all 10 classes (the backbone's
    integer features from the golden simulator; int8 head), versus full retraining of the whole
    network (FP32, then Po2 QAT) on all 10 classes with the same epochs and settings.
(b) sklearn digits (8x8 upscaled to 28x28): the committed default-po2 backbone with a new head,
    versus full retraining of the same architecture (FP32 from scratch, then Po2 QAT) on digits.
Every accuracy is the golden simulator's (integer logits) on the test split.

Usage: python scripts/transfer_experiments.py --out results/transfer [--data DIR] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
from make_default_models import MODEL, SMALL  # noqa: E402

from hashiflex import checkpoint  # noqa: E402
from hashiflex.data import load_fashion_mnist  # noqa: E402
from hashiflex.finetune.datasets import Dataset, load_dataset  # noqa: E402
from hashiflex.finetune.head import HeadSettings, finetune_head  # noqa: E402
from hashiflex.ir.build import program_from_checkpoint, program_from_qmodel  # noqa: E402
from hashiflex.models.mobilenetv2 import MobileNetV2  # noqa: E402
from hashiflex.quant.qat import QATSettings, quantize_from_fp32  # noqa: E402
from hashiflex.sim.golden import golden_accuracy  # noqa: E402
from hashiflex.train.loop import TrainSettings, train  # noqa: E402


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_po2(cfg, xtr, ytr, xte, yte, fp32: TrainSettings, qat_epochs: float, tmp: Path, tag: str):
    """FP32 from scratch, then Po2 QAT (QATSettings with `qat_epochs` and no distillation, the recipe the
    published transfer figures were measured with); golden test accuracy."""
    t0 = time.time()
    torch.manual_seed(fp32.seed)
    model = MobileNetV2(cfg)
    train(model, xtr, ytr, fp32, desc=f"{tag} fp32")
    path = tmp / f"{tag}-fp32.pt"
    checkpoint.save(path, "fp32", cfg.to_dict(), model.state_dict(), meta={"script": "transfer_experiments"})
    base = QATSettings()
    s = replace(base, train=replace(base.train, epochs=qat_epochs, augment=fp32.augment, distill=0.0))
    r = quantize_from_fp32(str(path), xtr, ytr, xte, yte, s, evaluate=golden_accuracy)
    return r, time.time() - t0


def head_only(prog, ds: Dataset, hs: HeadSettings) -> dict:
    _, r = finetune_head(prog, ds, hs)
    return r


def experiment_a(a, tmp: Path) -> dict:
    xtr, ytr = load_fashion_mnist("train", a.data, a.limit)
    xte, yte = load_fashion_mnist("test", a.data, a.test_limit)
    five_tr, five_te = ytr < 5, yte < 5
    fp32 = TrainSettings(epochs=a.fp32_epochs, batch_size=128, lr=0.1, weight_decay=4e-5, label_smoothing=0.1,
                         seed=a.seed, erase=0.5)
    log("(a) backbone: FP32 + Po2 QAT on Fashion-MNIST classes 0-4")
    cfg_a = SMALL if a.arch_a == "small" else MODEL
    back, t_back = train_po2(cfg_a, xtr[five_tr], ytr[five_tr], xte[five_te], yte[five_te], fp32, a.qat_epochs, tmp,
                             "a-backbone")
    prog = program_from_qmodel(back.model)
    names = [str(i) for i in range(10)]
    ds = Dataset(xtr, ytr, xte, yte, names, "fashion-mnist")
    log("(a) head-only fine-tuning on all 10 classes")
    t0 = time.time()
    head = head_only(prog, ds, HeadSettings(epochs=a.head_epochs, seed=a.seed))
    t_head = time.time() - t0
    log("(a) full retraining on all 10 classes")
    full, t_full = train_po2(cfg_a, xtr, ytr, xte, yte, fp32, a.qat_epochs, tmp, "a-full")
    return {"backbone_5class_accuracy": back.accuracy, "backbone_seconds": round(t_back, 1),
            "head_only_accuracy": head["test_accuracy"], "head_only_train_accuracy": head["train_accuracy"],
            "head_only_seconds": round(t_head, 1), "full_retrain_accuracy": full.accuracy,
            "full_retrain_seconds": round(t_full, 1), "train_images_5class": int(five_tr.sum()),
            "train_images": int(len(xtr)), "test_images": int(len(xte)), "fp32_settings": asdict(fp32),
            "qat_epochs": a.qat_epochs, "head_epochs": a.head_epochs, "architecture": cfg_a.to_dict()}


def experiment_b(a, tmp: Path) -> dict:
    ds = load_dataset("digits", (1, 28, 28))
    if a.quick:
        ds = replace(ds, xtr=ds.xtr[:200], ytr=ds.ytr[:200])
    log("(b) head-only fine-tuning of default-po2 on digits")
    t0 = time.time()
    head = head_only(program_from_checkpoint("default-po2"), ds, HeadSettings(epochs=a.head_epochs, seed=a.seed))
    t_head = time.time() - t0
    log("(b) full retraining on digits")
    fp32 = TrainSettings(epochs=a.digits_epochs, batch_size=64, lr=0.05, weight_decay=4e-5, label_smoothing=0.1,
                         seed=a.seed, augment=False)
    full, t_full = train_po2(MODEL, ds.xtr, ds.ytr, ds.xte, ds.yte, fp32, a.digits_qat_epochs, tmp, "b-full")
    return {"head_only_accuracy": head["test_accuracy"], "head_only_train_accuracy": head["train_accuracy"],
            "head_only_seconds": round(t_head, 1), "full_retrain_accuracy": full.accuracy,
            "full_retrain_seconds": round(t_full, 1), "train_images": int(len(ds.xtr)),
            "test_images": int(len(ds.xte)), "fp32_settings": asdict(fp32), "qat_epochs": a.digits_qat_epochs,
            "head_epochs": a.head_epochs, "architecture": MODEL.to_dict(), "backbone": "default-po2"}


def table(res: dict) -> str:
    ra, rb = res.get("a"), res.get("b")
    rows = ["| experiment | method | test accuracy (golden) | train images | seconds |", "|---|---|---|---|---|"]
    if ra:
        arch = "SMALL" if ra["architecture"]["width_mult"] < 0.5 else "default"
        rows += [f"| (a) Fashion-MNIST, {arch} arch | backbone on classes 0-4 (5-class test) | "
                 f"{100 * ra['backbone_5class_accuracy']:.2f} % | {ra['train_images_5class']} | {ra['backbone_seconds']} |",
                 f"| (a) | head-only fine-tune, all 10 classes | {100 * ra['head_only_accuracy']:.2f} % | "
                 f"{ra['train_images']} | {ra['head_only_seconds']} |",
                 f"| (a) | full retraining, all 10 classes | {100 * ra['full_retrain_accuracy']:.2f} % | "
                 f"{ra['train_images']} | {ra['full_retrain_seconds']} |"]
    if rb:
        rows += [f"| (b) digits (8x8 upscaled to 28x28) | default-po2 backbone, head-only | "
                 f"{100 * rb['head_only_accuracy']:.2f} % | {rb['train_images']} | {rb['head_only_seconds']} |",
                 f"| (b) | full retraining (default arch, from scratch) | {100 * rb['full_retrain_accuracy']:.2f} % | "
                 f"{rb['train_images']} | {rb['full_retrain_seconds']} |"]
    gaps = []
    if ra:
        gaps.append(f"(a) head-only minus full retraining: {100 * (ra['head_only_accuracy'] - ra['full_retrain_accuracy']):+.2f} "
                    f"points (target: within 3)")
    if rb:
        gaps.append(f"(b) head-only minus full retraining: {100 * (rb['head_only_accuracy'] - rb['full_retrain_accuracy']):+.2f} points")
    s = res["settings"]
    return ("# Head-only (NPU) fine-tuning vs full retraining\n\n" + "\n".join(rows) + "\n\n" +
            "\n".join(f"- {g}" for g in gaps) +
            f"\n- settings: seed {s['seed']}; (a) FP32 {s['fp32_epochs']} epochs + Po2 QAT {s['qat_epochs']} epochs for "
            f"both the backbone and the full retraining; (b) FP32 {s['digits_epochs']} + QAT {s['digits_qat_epochs']} "
            f"epochs; heads {s['head_epochs']} epochs; total {res['seconds']:.0f} s on {torch.get_num_threads()} threads"
            f"{' (QUICK run: reduced data)' if s['quick'] else ''}\n- command: `{res['command']}`\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--data")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp32-epochs", type=float, default=2.0)
    ap.add_argument("--qat-epochs", type=float, default=0.5)
    ap.add_argument("--head-epochs", type=float, default=30.0)
    ap.add_argument("--digits-epochs", type=float, default=15.0)
    ap.add_argument("--digits-qat-epochs", type=float, default=3.0)
    ap.add_argument("--only", choices=["a", "b"])
    ap.add_argument("--arch-a", choices=["small", "default"], default="default",
                    help="architecture of experiment (a): SMALL (128 features) or the default model's (1280)")
    ap.add_argument("--quick", action="store_true", help="a few hundred images: checks the script runs")
    a = ap.parse_args()
    a.limit, a.test_limit = (600, 200) if a.quick else (None, None)
    if a.quick:
        a.fp32_epochs, a.qat_epochs, a.digits_epochs, a.digits_qat_epochs = 0.2, 0.1, 0.5, 0.2
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    np.random.seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    res = {"settings": {k: v for k, v in vars(a).items() if k not in ("out",)},
           "command": "python " + " ".join(sys.argv)}
    with tempfile.TemporaryDirectory(prefix="hf-transfer-") as tmp:
        if a.only in (None, "a"):
            res["a"] = experiment_a(a, Path(tmp))
        if a.only in (None, "b"):
            res["b"] = experiment_b(a, Path(tmp))
    res["seconds"] = round(time.time() - t0, 1)
    checkpoint.atomic_write(out / "transfer.json", lambda p: Path(p).write_text(json.dumps(res, indent=1, sort_keys=True)))
    md = table(res)
    checkpoint.atomic_write(out / "transfer.md", lambda p: Path(p).write_text(md))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
