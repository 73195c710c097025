"""`hashiflex eval`: test accuracy of an fp32 or po2 checkpoint, with torch or the golden simulator."""
from __future__ import annotations

import time

import torch

from .. import checkpoint
from ..errors import UserError
from ..train.loop import accuracy, predict
from .common import check_count, check_fashion_fits, dataset_splits, fp32_model, model_config


def _golden(name: str, x, y) -> dict:
    try:
        from ..sim.golden import evaluate_checkpoint
    except ImportError as e:
        raise UserError(f"golden engine not available ({' '.join(str(e).split())})") from None
    return dict(evaluate_checkpoint(name, x, y))


def _compare(name: str, x, y) -> dict:
    """Golden simulator and quantized torch model on the same images: integer logits compared exactly."""
    import numpy as np

    from ..ir.build import program_from_qmodel
    from ..quant.qat import load_qmodel
    from ..sim.golden import GoldenSimulator

    q, _ = load_qmodel(name)
    prog = program_from_qmodel(q)
    gold = GoldenSimulator(prog).logits(x)
    scaled = predict(q, x, dtype=torch.float64) * 2.0 ** prog.tensors[prog.output].frac
    if not torch.equal(scaled, torch.round(scaled)):
        raise UserError("the quantized model produced non-integer logits: its float64 evaluation is not exact")
    ours = scaled.to(torch.int64).numpy()
    acc_g, acc_t = float((gold.argmax(1) == y).mean()), float((ours.argmax(1) == y).mean())
    return {"accuracy": acc_g, "accuracy_golden": acc_g, "accuracy_torch": acc_t, "images": int(len(x)),
            "mismatches": int((gold != ours).any(axis=1).sum()),
            "prediction_mismatches": int((gold.argmax(1) != ours.argmax(1)).sum()),
            "logits_identical": bool(np.array_equal(gold, ours))}


def run(args):
    check_count(args.limit, "--images")
    blob = checkpoint.load(args.checkpoint)
    kind = blob["kind"]
    cfg = model_config(blob)
    if args.dataset in (None, "fashion-mnist"):
        check_fashion_fits(cfg, blob["path"])
    if args.engine in ("golden", "compare"):
        if kind != "po2":
            raise UserError(f"the golden engine runs quantized checkpoints and {blob['path']} is FP32: "
                            f"quantize it first ('hashiflex quantize') or use --engine torch")
        [(x, y)] = dataset_splits(args.dataset, {"test": args.limit}, args.data, cfg, blob["path"])
        t0 = time.time()
        result = _golden(args.checkpoint, x, y) if args.engine == "golden" else _compare(args.checkpoint, x, y)
    else:
        if kind == "fp32":
            model, dtype = fp32_model(blob), torch.float32
        else:
            from ..quant.qat import load_qmodel
            model, _ = load_qmodel(args.checkpoint)
            dtype = torch.float64  # float64 makes the quantized model's arithmetic exact
        [(x, y)] = dataset_splits(args.dataset, {"test": args.limit}, args.data, cfg, blob["path"])
        t0 = time.time()
        logits = predict(model, x, dtype=dtype)
        acc = accuracy(logits, y)
        result = {"accuracy": acc, "images": len(x), "correct": int(round(acc * len(x)))}
    result.update(checkpoint=args.checkpoint, path=blob["path"], kind=kind, engine=args.engine,
                  seconds=round(time.time() - t0, 2))
    summary = (f"{args.checkpoint} ({kind}, {args.engine} engine): test accuracy {result['accuracy']:.4f} "
               f"on {result['images']} images")
    if args.engine == "compare":
        summary += (f"; torch {result['accuracy_torch']:.4f}; images with differing integer logits: "
                    f"{result['mismatches']}")
    return result, summary
