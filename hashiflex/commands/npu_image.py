"""`hashiflex npu-image`: write the NPU weight image of a classifier, or check one (docs/npu.md)."""
from __future__ import annotations


from ..errors import UserError
from ..rtl.readback import build_npu, find_manifest
from .common import output_file


def _summary(img) -> dict:
    return {"classes": img.n, "in_features": img.k, "scale_shift": img.scale_shift, "in_frac": img.in_frac,
            "bias_range": [int(img.bias.min()), int(img.bias.max())],
            "scale_range": [int(img.scale_mult.min()), int(img.scale_mult.max())], "meta": img.meta}


def run(args):
    from ..finetune.image import check_fits, image_from_program, read_image, write_image

    if args.check:
        if args.out or args.checkpoint:
            raise UserError("--check reads an image: it takes no --out or --checkpoint")
        img = read_image(args.check)
        result = dict(_summary(img), image=args.check, valid=True)
        fits = ""
        if args.build:
            npu = build_npu(args.build)
            check_fits(img, npu, f"NPU image {args.check}")
            result["fits_build"] = args.build
            fits = f", fits the NPU of {args.build} (capacity {npu.capacity})"
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
        found = find_manifest(args.build)   # an IR-only build has none; a bad manifest is an error
        if found is not None and found[1].npu is not None:
            check_fits(img, found[1].npu)
    out = write_image(output_file(args.out, inputs=[args.checkpoint]), img)
    result = dict(_summary(img), image=str(out), bytes=out.stat().st_size)
    return result, f"wrote {out}: NPU image, {img.n} classes x {img.k} inputs ({result['bytes']:,} bytes)"
