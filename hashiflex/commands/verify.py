"""`hashiflex verify`: run the generated RTL in Verilator and compare it with the golden simulator."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .common import check_count, load_split


def check_manifest(build) -> None:
    """The RTL manifest is readable and names files that exist, before anything is built."""
    from ..verify import harness

    base = Path(build)
    redo = f"re-run 'hashiflex compile --out {base}'"
    try:
        rtl_dir, m = harness.find_rtl(base)
    except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{base}/rtl/manifest.json is not valid JSON ({type(e).__name__}); {redo}") from None
    if not isinstance(m, dict) or m.get("format") != "hashiflex-rtl":
        raise UserError(f"{rtl_dir / 'manifest.json'} is not a hashiflex RTL manifest; {redo}")
    missing = [k for k in ("top", "files", "input", "outputs", "expected_cycles_per_image") if k not in m]
    if missing:
        raise UserError(f"{rtl_dir / 'manifest.json'} lacks {', '.join(missing)}; {redo}")
    files = m["files"] if isinstance(m["files"], list) else []
    absent = [str(f) for f in files if not (isinstance(f, str) and (rtl_dir / f).is_file())]
    if absent or not files:
        raise UserError(f"RTL files missing from {rtl_dir}: {', '.join(absent[:3]) or 'all'}; {redo}")


def _verify_with_image(args, prog, images: np.ndarray) -> dict:
    """The chip with a given NPU image; verify_chip refuses a build without an NPU and an image that
    does not fit it before Verilator runs."""
    from ..finetune.image import read_image
    from ..verify import verify_chip

    image = read_image(args.npu_image)
    r = verify_chip(args.build, [(image, images)], prog, args.stall_in, args.stall_out, args.seed)
    r["npu_image"] = {"file": str(args.npu_image), "classes": image.n}
    return r


def run(args):
    from ..ir import serialize
    from ..ir.build import random_images
    from ..verify import harness, verify_build

    check_count(args.images, "--images")
    for opt, v in (("--stall-in", args.stall_in), ("--stall-out", args.stall_out)):
        if not 0 <= v < 100:
            raise UserError(f"{opt} is a percentage in [0, 100) (got {v})")
    harness.verilator()  # missing Verilator: say how to install it before reading anything
    if Path(args.build).is_file():
        raise UserError(f"BUILD {args.build} is a file: give the folder written by 'hashiflex compile --out BUILD'")
    prog = serialize.load(args.build)
    check_manifest(args.build)
    shape = prog.tensors[prog.input].shape
    if tuple(shape) == (1, 28, 28):
        images, _ = load_split("test", args.data, args.images)
        source = "Fashion-MNIST test images"
    else:  # a random-weight --arch build has no dataset of its shape
        images = random_images(tuple(shape), args.images, seed=args.seed)
        source = "random images"
    if args.npu_image is None:
        r = verify_build(args.build, np.ascontiguousarray(images), prog, args.stall_in, args.stall_out, args.seed)
    else:
        r = _verify_with_image(args, prog, np.ascontiguousarray(images))
    r["image_source"] = source
    if "npu_image" in r:
        source += f" with NPU image {args.npu_image} ({r['npu_image']['classes']} classes)"
    verdict = "bit-exact" if r["mismatches"] == 0 else f"{r['mismatches']} MISMATCHING images"
    summary = (f"{r['images']} {source} through the RTL in Verilator: {verdict} against the golden simulator; "
               f"{r['cycles_per_image']:.1f} cycles per image (manifest {r['expected_cycles_per_image']}), "
               f"latency {r['latency_cycles']} cycles; build {r['build_seconds']:.0f} s, "
               f"simulation {r['sim_images_per_s']} images/s")
    return r, summary
