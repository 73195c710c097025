"""`hashiflex quantize`: Po2 QAT (and pruning) from an FP32 checkpoint, written as a po2 checkpoint."""
from __future__ import annotations

from dataclasses import replace

from .. import checkpoint
from ..errors import UserError
from ..quant.config import QuantConfig
from ..sim.golden import golden_accuracy
from ..quant.qat import QATSettings, quantize_from_fp32
from .common import (check_count, check_epochs, check_finite, check_lr, dataset_splits, fp32_model, output_file,
                     resolve_device)


def check_training_options(args) -> None:
    check_epochs(args.epochs)
    check_lr(args.lr)
    for opt, v in (("--batch-size", args.batch_size), ("--limit", args.limit), ("--test-limit", args.test_limit)):
        check_count(v, opt)
    if args.distill is not None and not 0.0 <= args.distill <= 1.0:
        raise UserError(f"--distill must be in [0, 1] (got {args.distill}); 0 turns distillation off")
    if args.temperature is not None and not (args.temperature > 0 and args.temperature < 1e3):
        raise UserError(f"--temperature must be a positive number below 1000 (got {args.temperature}); try 2")


def qat_settings(args, exp_bits: int, prune: float) -> QATSettings:
    """QATSettings from the options; an option left out keeps the QATSettings default."""
    qc = QuantConfig(exp_bits=exp_bits, act_bits=args.act_bits, prune=prune, prune_scope=args.prune_scope,
                     classifier=args.classifier, weight_scale=args.weight_scale).validate()
    base = QATSettings()
    given = {k: v for k, v in (("epochs", args.epochs), ("lr", args.lr), ("batch_size", args.batch_size),
                               ("seed", args.seed), ("distill", args.distill),
                               ("temperature", args.temperature)) if v is not None}
    given["device"] = resolve_device(getattr(args, "device", None))
    return replace(base, quant=qc, train=replace(base.train, **given))


def load_fp32_source(name: str) -> dict:
    """Load and check the FP32 source before any data is read or time spent."""
    blob = checkpoint.load(name)
    if blob["kind"] != "fp32":
        raise UserError(f"{blob['path']} is already quantized: pass an FP32 checkpoint to --checkpoint")
    fp32_model(blob)
    return blob


def run(args):
    check_training_options(args)
    s = qat_settings(args, args.exp_bits, args.prune)
    out = output_file(args.out, inputs=[args.checkpoint])
    cfg = load_fp32_source(args.checkpoint)["model_config"]
    (xtr, ytr), (xte, yte) = dataset_splits(args.dataset, {"train": args.limit, "test": args.test_limit}, args.data,
                                            cfg, args.checkpoint)
    r = quantize_from_fp32(args.checkpoint, xtr, ytr, xte, yte, s, evaluate=golden_accuracy)
    check_finite(r.model.state_dict(), "QAT")
    r.save(out, extra_meta={"command": "hashiflex quantize", "train_images": len(xtr), "test_images": len(xte)})
    q = s.quant
    result = {"checkpoint": str(out), "kind": "po2", "source": r.source, "accuracy": r.accuracy,
              "images": len(xte), "sparsity": r.sparsity, "train_images": len(xtr), "epochs": s.train.epochs,
              "seconds": round(r.seconds, 1), **q.to_dict()}
    summary = (f"wrote {out}: Po2 model ({q.exp_bits}-bit exponents, {q.act_bits}-bit activations, "
               f"{q.classifier} classifier), test accuracy {r.accuracy:.4f} on {len(xte)} images, "
               f"{r.sparsity:.1%} of hardened weights zero ({r.seconds:.0f} s)")
    return result, summary
