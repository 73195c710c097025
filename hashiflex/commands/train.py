"""`hashiflex train`: an FP32 network (MobileNetV2, a user's factory or an imported graph) on
Fashion-MNIST, written as an fp32 checkpoint."""
from __future__ import annotations

import time
from dataclasses import asdict

import torch
from torch import nn

from .. import checkpoint
from ..data import find_data_dir
from ..errors import UserError
from ..models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from ..models.capture import capture, load_factory
from ..models.graph import GraphNet
from ..train.loop import TrainSettings, accuracy, predict, to_model_input, train
from .common import (check_count, check_epochs, check_finite, check_lr, dataset_splits, fp32_model,
                     output_file, parse_input_shape, resolve_device)


MOBILENET_OPTIONS = (("--width", "width", 0.5), ("--first-stride", "first_stride", 1),
                     ("--last-channel", "last_channel", 1280))


def _architecture(args) -> tuple[dict, nn.Module, str]:
    """(model_config, initialised float model, description): MobileNetV2 from its options, a
    user's factory (--model, captured by torch.fx), or an fp32 checkpoint's graph and weights
    (--init, e.g. from 'hashiflex import')."""
    given = [opt for opt, dest, _ in MOBILENET_OPTIONS if getattr(args, dest) is not None]
    if args.model and args.init:
        raise UserError("give --model or --init, not both")
    if (args.model or args.init) and given:
        raise UserError(f"{given[0]} shapes MobileNetV2 only; it does not apply with --model/--init")
    torch.manual_seed(args.seed)  # weight init; train() reseeds for batches and augmentation
    if args.init:
        blob = checkpoint.load(args.init)
        if blob["kind"] != "fp32":
            raise UserError(f"--init {blob['path']} is quantized: pass an FP32 checkpoint")
        return blob["model_config"], fp32_model(blob), f"network from {blob['path']}"
    if args.model:
        shape = parse_input_shape(args.input_shape)
        spec, state = capture(load_factory(args.model), to_model_input(torch.zeros((2, *shape), dtype=torch.uint8)))
        model = GraphNet(spec)
        model.load_state_dict(state)
        return {"graph": spec.to_dict()}, model, f"{args.model}"
    width, first_stride, last_channel = (d if getattr(args, k) is None else getattr(args, k)
                                         for _, k, d in MOBILENET_OPTIONS)
    cfg = MobileNetV2Config(num_classes=10, in_channels=1, width_mult=width, first_stride=first_stride,
                            input_size=28, last_channel=last_channel)
    try:
        cfg.validate()
    except ValueError as e:
        raise UserError(f"--width: {e}" if "width" in str(e) else str(e)) from None
    return cfg.to_dict(), MobileNetV2(cfg), f"MobileNetV2 (width {cfg.width_mult})"


def run(args):
    check_epochs(args.epochs)
    check_lr(args.lr)
    for opt, v in (("--batch-size", args.batch_size), ("--last-channel", args.last_channel or 1),
                   ("--limit", args.limit), ("--test-limit", args.test_limit)):
        check_count(v, opt)
    model_cfg, model, what = _architecture(args)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                             device=resolve_device(args.device))
    out = output_file(args.out)
    data_dir = find_data_dir(args.data) if args.dataset in (None, "fashion-mnist") else args.dataset
    (xtr, ytr), (xte, yte) = dataset_splits(args.dataset, {"train": args.limit, "test": args.test_limit}, args.data,
                                            model_cfg, "the model")

    t0 = time.time()
    train(model, xtr, ytr, settings, desc="train")
    seconds = time.time() - t0
    check_finite(model.state_dict(), "training")
    acc = accuracy(predict(model, xte), yte)
    meta = {"command": "hashiflex train", "settings": asdict(settings), "test_accuracy": acc,
            "train_images": len(xtr), "test_images": len(xte), "train_seconds": round(seconds, 1),
            "data": str(data_dir)}
    checkpoint.save(out, "fp32", model_cfg, model.state_dict(), meta=meta)
    params = sum(p.numel() for p in model.parameters())
    result = {"checkpoint": str(out), "kind": "fp32", "accuracy": acc, "images": len(xte),
              "train_images": len(xtr), "epochs": args.epochs, "parameters": params, "seconds": round(seconds, 1)}
    summary = (f"wrote {out}: FP32 {what} ({params:,} parameters), "
               f"test accuracy {acc:.4f} on {len(xte)} images after {args.epochs:g} epochs on {len(xtr)} images "
               f"({seconds:.0f} s)")
    return result, summary
