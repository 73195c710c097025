"""`hashiflex train`: FP32 MobileNetV2 on Fashion-MNIST, written as an fp32 checkpoint."""
from __future__ import annotations

import time
from dataclasses import asdict

import torch

from .. import checkpoint
from ..data import find_data_dir
from ..errors import UserError
from ..models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from ..train.loop import TrainSettings, accuracy, predict, train
from .common import check_count, check_epochs, check_finite, check_lr, load_split, output_file, resolve_device


def run(args):
    check_epochs(args.epochs)
    check_lr(args.lr)
    for opt, v in (("--batch-size", args.batch_size), ("--last-channel", args.last_channel),
                   ("--limit", args.limit), ("--test-limit", args.test_limit)):
        check_count(v, opt)
    cfg = MobileNetV2Config(num_classes=10, in_channels=1, width_mult=args.width, first_stride=args.first_stride,
                            input_size=28, last_channel=args.last_channel)
    try:
        cfg.validate()
    except ValueError as e:
        raise UserError(f"--width: {e}" if "width" in str(e) else str(e)) from None
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             device=resolve_device(args.device))
    out = output_file(args.out)
    data_dir = find_data_dir(args.data)
    xtr, ytr = load_split("train", args.data, args.limit)
    xte, yte = load_split("test", args.data, args.test_limit)

    t0 = time.time()
    torch.manual_seed(args.seed)  # weight init; train() reseeds for batches and augmentation
    model = MobileNetV2(cfg)
    train(model, xtr, ytr, settings, desc="train")
    seconds = time.time() - t0
    check_finite(model.state_dict(), "training")
    acc = accuracy(predict(model, xte), yte)
    meta = {"command": "hashiflex train", "settings": asdict(settings), "test_accuracy": acc,
            "train_images": len(xtr), "test_images": len(xte), "train_seconds": round(seconds, 1),
            "data": str(data_dir)}
    checkpoint.save(out, "fp32", cfg.to_dict(), model.state_dict(), meta=meta)
    params = sum(p.numel() for p in model.parameters())
    result = {"checkpoint": str(out), "kind": "fp32", "accuracy": acc, "images": len(xte),
              "train_images": len(xtr), "epochs": args.epochs, "parameters": params, "seconds": round(seconds, 1)}
    summary = (f"wrote {out}: FP32 MobileNetV2 (width {cfg.width_mult}, {params:,} parameters), "
               f"test accuracy {acc:.4f} on {len(xte)} images after {args.epochs:g} epochs on {len(xtr)} images "
               f"({seconds:.0f} s)")
    return result, summary
