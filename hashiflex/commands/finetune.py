"""`hashiflex finetune`: train a new NPU head on a build's chip features; write its weight image."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import check_count, check_epochs, check_lr, output_file


def run(args):
    from ..finetune.datasets import load_dataset, select_classes
    from ..finetune.head import HeadSettings, finetune_head
    from ..finetune.image import check_fits, classifier_op, write_image
    from ..ir import serialize
    from ..rtl.readback import build_npu

    check_epochs(args.epochs)
    check_lr(args.lr)
    for opt, v in (("--limit", args.limit), ("--test-limit", args.test_limit)):
        check_count(v, opt)
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0 (got {args.seed})")
    if args.classes is not None and len(args.classes) < 2:
        raise UserError("--classes needs at least 2 classes")
    out = output_file(args.out)
    prog = serialize.load(args.build)
    classifier_op(prog)
    npu = build_npu(args.build)
    n = len(args.classes) if args.classes else None
    if n is not None and n > npu.capacity:
        raise UserError(f"--classes has {n} classes but the NPU of {args.build} holds at most {npu.capacity}: "
                        f"use at most {npu.capacity} or recompile with 'hashiflex compile --npu-capacity {n}'")
    ds = load_dataset(args.dataset, tuple(prog.tensors[prog.input].shape), args.data)
    if n is None and len(ds.classes) > npu.capacity:
        raise UserError(f"{args.dataset} has {len(ds.classes)} classes but the NPU of {args.build} holds at most "
                        f"{npu.capacity}: pick some with --classes or recompile with --npu-capacity")
    ds = select_classes(ds, args.classes, args.limit, args.test_limit)
    s = HeadSettings(epochs=args.epochs, lr=args.lr, seed=args.seed)
    meta = {"created_by": "hashiflex finetune", "source_build": str(Path(args.build))}
    image, r = finetune_head(prog, ds, s, meta)
    check_fits(image, npu, "the fine-tuned head")
    write_image(out, image)
    result = dict(r, image=str(out), capacity=npu.capacity, in_features=image.k, out_features=image.n,
                  build=str(args.build))
    summary = (f"wrote {out}: NPU head for {len(ds.classes)} {args.dataset} classes, test accuracy "
               f"{r['test_accuracy']:.4f} on {r['test_images']} images (golden simulator, integer logits), "
               f"trained on {r['train_images']} images ({r['seconds']:.0f} s)")
    return result, summary
