"""`hashiflex verify`: run the generated RTL in Verilator and compare it with the golden simulator."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .common import check_count, load_split


def check_manifest(build) -> None:
    """The RTL manifest passes its schema (rtl.manifest) and names files that exist, unedited,
    before anything is built."""
    from ..verify import harness

    base = Path(build)
    redo = f"re-run 'hashiflex compile --out {base}'"
    rtl_dir, m = harness.find_rtl(base)
    absent = [f for f in m.files if not (rtl_dir / f).is_file()]
    if absent:
        raise UserError(f"RTL files missing from {rtl_dir}: {', '.join(absent[:3])}; {redo}")
    if not m.sha256:
        raise UserError(f"{rtl_dir / 'manifest.json'} has no file checksums (an older hashiflex wrote it); {redo}")
    harness.check_files(rtl_dir, sorted(m.sha256), m)   # every generated file present and unedited


def _verify_with_image(args, prog, images: np.ndarray, ray=None) -> dict:
    """The chip with a given NPU image; verify_chip refuses a build without an NPU and an image that
    does not fit it before Verilator runs."""
    from ..finetune.image import read_image
    from ..verify import verify_chip

    image = read_image(args.npu_image)
    flat = {"auto": None, "flat": True, "blocks": False}[args.build_mode]
    r = verify_chip(args.build, [(image, images)], prog, args.stall_in, args.stall_out, args.seed, args.jobs,
                    flat=flat, ray=ray)
    r["npu_image"] = {"file": str(args.npu_image), "classes": image.n}
    return r


def parse_images(value: str) -> int | None:
    """--images: a positive count or 'all' (None)."""
    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise UserError(f"--images takes a positive count or 'all' (got {value!r})") from None
    check_count(n, "--images")
    return n


def _images(args, prog, limit: int | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    """(uint8 images, labels or None, a description): --dataset, else Fashion-MNIST's test split for
    28x28 one-channel builds, else seeded random images."""
    from ..ir.build import random_images

    shape = tuple(prog.tensors[prog.input].shape)
    spec = args.dataset or ("fashion-mnist" if shape == (1, 28, 28) else None)
    if spec == "fashion-mnist" and shape == (1, 28, 28):
        x, y = load_split("test", args.data, limit)
        return x, y, "Fashion-MNIST test images"
    if spec is not None:
        from ..finetune.datasets import load_dataset
        ds = load_dataset(spec, shape, args.data)
        if len(ds.xte) == 0:
            raise UserError(f"--dataset {spec} has no test images")
        return ds.xte[:limit], ds.yte[:limit], f"{spec} test images"
    return random_images(shape, limit or 100, seed=args.seed), None, "random images"


def _top1(r: dict, labels: np.ndarray | None) -> None:
    """The chip's own top-1 on labelled images, from the logits it produced."""
    if "phases" not in r:
        return
    pred = np.concatenate([np.asarray(ph.pop("top1"), dtype=np.int64) for ph in r["phases"]])
    if labels is not None:
        r["top1"] = round(float((pred == labels[:len(pred)]).mean()), 6)


def run(args):
    from ..ir import serialize
    from ..verify import harness, verify_build
    from ..verify.layers import verify_layers

    limit = parse_images(args.images)
    if args.jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {args.jobs})")
    for opt, v in (("--stall-in", args.stall_in), ("--stall-out", args.stall_out)):
        if not 0 <= v < 100:
            raise UserError(f"{opt} is a percentage in [0, 100) (got {v})")
    if args.per_layer and (args.npu_image or args.build_mode != "auto"):
        raise UserError("--per-layer checks the layer modules alone: drop --npu-image and --build-mode")
    if args.per_layer and args.ray:
        raise UserError("--ray shards the images of a whole-design run; --per-layer runs here: drop one of them")
    flat = {"auto": None, "flat": True, "blocks": False}[args.build_mode]
    harness.verilator()  # missing Verilator: say how to install it before reading anything
    if Path(args.build).is_file():
        raise UserError(f"BUILD {args.build} is a file: give the folder written by 'hashiflex compile --out BUILD'")
    prog = serialize.load(args.build)
    check_manifest(args.build)
    from ..verify.verilator import writable_cache
    writable_cache()
    images, labels, source = _images(args, prog, limit)
    images = np.ascontiguousarray(images)
    ray = None
    if args.ray:
        from ..cluster import connect
        ray = connect(args.ray)
    if args.per_layer:
        r = verify_layers(args.build, images, prog, args.jobs, args.stall_in, args.stall_out, args.seed)
    elif args.npu_image is None:
        r = verify_build(args.build, images, prog, args.stall_in, args.stall_out, args.seed, args.jobs, flat=flat,
                         ray=ray)
    else:
        r = _verify_with_image(args, prog, images, ray)
    _top1(r, labels)
    r["image_source"] = source
    if "npu_image" in r:
        source += f" with NPU image {args.npu_image} ({r['npu_image']['classes']} classes)"
    verdict = "bit-exact" if r["mismatches"] == 0 else f"{r['mismatches']} MISMATCHING images"
    if args.per_layer:
        const = f", {len(r['constant_layers'])} with an input-independent output" if r["constant_layers"] else ""
        summary = (f"{r['layers']} of {r['layers_in_build']} layer modules alone in Verilator {r['verilator_version']},"
                   f" {r['images']} {source} each: {r['layers_mismatching']} layers mismatching ({verdict}){const}; "
                   f"build {r['build_seconds']:.0f} s, peak {r['build_peak_mb']:.0f} MB per model")
        return r, summary
    top1 = f"; top-1 {100 * r['top1']:.2f} %" if "top1" in r else ""
    distinct = r["ports"][next(iter(r["ports"]))]["distinct_outputs"]
    summary = (f"{r['images']} {source} through the RTL in Verilator {r['verilator_version']} ({r['build_mode']}): "
               f"{verdict} against the golden simulator, {distinct} distinct outputs{top1}; "
               f"{r['cycles_per_image']:.1f} cycles per image (manifest {r['expected_cycles_per_image']}), "
               f"latency {r['latency_cycles']} cycles; build {r['build_seconds']:.0f} s, "
               f"simulation {r['sim_images_per_s']} images/s on {r['sim_processes']} processes")
    return r, summary
