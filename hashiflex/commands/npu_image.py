"""`hashiflex npu-image`: write the NPU weight image of a classifier, or check one (docs/npu.md)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError


def _summary(img) -> dict:
    return {"classes": img.n, "in_features": img.k, "scale_shift": img.scale_shift, "in_frac": img.in_frac,
            "bias_range": [int(img.bias.min()), int(img.bias.max())],
            "scale_range": [int(img.scale_mult.min()), int(img.scale_mult.max())], "meta": img.meta}


def _build_npu(build: str) -> dict:
    from ..verify.harness import find_rtl

    _, manifest = find_rtl(build)
    if "npu" not in manifest:
        raise UserError(f"{build} has no NPU: recompile it with 'hashiflex compile' from a checkpoint with an int8 "
                        f"classifier")
    return manifest["npu"]


def run(args):
    from ..finetune.image import check_fits, image_from_program, read_image, write_image

    if args.check:
        if args.out or args.checkpoint:
            raise UserError("--check reads an image: it takes no --out or --checkpoint")
        img = read_image(args.check)
        result = dict(_summary(img), image=args.check, valid=True)
        fits = ""
        if args.build:
            npu = _build_npu(args.build)
            check_fits(img, npu, f"NPU image {args.check}")
            result["fits_build"] = args.build
            fits = f", fits the NPU of {args.build} (capacity {npu['capacity']})"
        return result, f"{args.check}: valid NPU image, {img.n} classes x {img.k} inputs{fits}"
    if not args.out:
        raise UserError("give --out IMAGE to write an image, or --check IMAGE to validate one")
    if args.build and args.checkpoint:
        raise UserError("give --checkpoint or --build, not both")
    if args.build:
        from ..ir import serialize

        prog = serialize.load(args.build)
        source = {"source_build": str(args.build)}
    else:
        from ..ir.build import program_from_checkpoint

        prog = program_from_checkpoint(args.checkpoint or "default-po2")
        source = {"source_checkpoint": args.checkpoint or "default-po2"}
    meta = dict(source, created_by="hashiflex npu-image", classes=prog.meta.get("classes"))
    meta = {k: v for k, v in meta.items() if v is not None}
    img = image_from_program(prog, meta)
    if args.build:
        from ..verify.harness import find_rtl

        try:
            _, manifest = find_rtl(args.build)
        except UserError:
            manifest = {}
        if "npu" in manifest:
            check_fits(img, manifest["npu"])
    out = write_image(Path(args.out), img)
    result = dict(_summary(img), image=str(out), bytes=out.stat().st_size)
    return result, f"wrote {out}: NPU image, {img.n} classes x {img.k} inputs ({result['bytes']:,} bytes)"
