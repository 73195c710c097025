"""`hashiflex verify`: run the generated RTL in Verilator and compare it with the golden simulator."""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .common import check_count, load_split


def run(args):
    from ..ir import serialize
    from ..ir.build import random_images
    from ..verify import verify_build

    check_count(args.images, "--images")
    for opt, v in (("--stall-in", args.stall_in), ("--stall-out", args.stall_out)):
        if not 0 <= v < 100:
            raise UserError(f"{opt} is a percentage in [0, 100) (got {v})")
    prog = serialize.load(args.build)
    shape = prog.tensors[prog.input].shape
    if tuple(shape) == (1, 28, 28):
        images, _ = load_split("test", args.data, args.images)
        source = "Fashion-MNIST test images"
    else:  # a random-weight --arch build has no dataset of its shape
        images = random_images(tuple(shape), args.images, seed=args.seed)
        source = "random images"
    r = verify_build(args.build, np.ascontiguousarray(images), prog, args.stall_in, args.stall_out, args.seed)
    r["image_source"] = source
    verdict = "bit-exact" if r["mismatches"] == 0 else f"{r['mismatches']} MISMATCHING images"
    summary = (f"{r['images']} {source} through the RTL in Verilator: {verdict} against the golden simulator; "
               f"{r['cycles_per_image']:.1f} cycles per image (manifest {r['expected_cycles_per_image']}), "
               f"latency {r['latency_cycles']} cycles; build {r['build_seconds']:.0f} s, "
               f"simulation {r['sim_images_per_s']} images/s")
    return r, summary
