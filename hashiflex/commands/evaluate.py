"""`hashiflex eval`: test accuracy of an fp32 or po2 checkpoint, with torch or the golden simulator."""
from __future__ import annotations

import time

import torch

from .. import checkpoint
from ..errors import UserError
from ..train.loop import accuracy, predict
from .common import check_count, fp32_model, load_split, model_config


def _golden(name: str, x, y) -> dict:
    try:
        from ..sim.golden import evaluate_checkpoint
    except ImportError as e:
        raise UserError(f"golden engine not available ({' '.join(str(e).split())})") from None
    return dict(evaluate_checkpoint(name, x, y))


def run(args):
    check_count(args.limit, "--limit")
    blob = checkpoint.load(args.checkpoint)
    kind = blob["kind"]
    model_config(blob)
    if args.engine == "golden":
        if kind != "po2":
            raise UserError(f"the golden engine runs quantized checkpoints and {blob['path']} is FP32: "
                            f"quantize it first ('hashiflex quantize') or use --engine torch")
        x, y = load_split("test", args.data, args.limit)
        t0 = time.time()
        result = _golden(args.checkpoint, x, y)
    else:
        if kind == "fp32":
            model, dtype = fp32_model(blob), torch.float32
        else:
            from ..quant.qat import load_qmodel
            model, _ = load_qmodel(args.checkpoint)
            dtype = torch.float64  # float64 makes the quantized model's arithmetic exact
        x, y = load_split("test", args.data, args.limit)
        t0 = time.time()
        logits = predict(model, x, dtype=dtype)
        acc = accuracy(logits, y)
        result = {"accuracy": acc, "images": len(x), "correct": int(round(acc * len(x)))}
    result.update(checkpoint=args.checkpoint, path=blob["path"], kind=kind, engine=args.engine,
                  seconds=round(time.time() - t0, 2))
    summary = (f"{args.checkpoint} ({kind}, {args.engine} engine): test accuracy {result['accuracy']:.4f} "
               f"on {result['images']} images")
    return result, summary
