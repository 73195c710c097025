"""verify_build: the pipeline (hf_top) or, with an NPU, the chip in Verilator against the golden
simulator, image by image, by exact integer equality (docs/verification.md)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..rtl.readback import check_program
from ..finetune.image import image_from_program
from .chip import verify_chip
from .harness import (build, build_fields, check_images, cycles_per_image, distinct_rows, find_rtl, flat_mode,
                      sim_fields, simulate_sharded)
from .verilator import find_verilator

__all__ = ["verify_build"]


def verify_build(build_dir, images_u8: np.ndarray, prog=None, stall_in: int = 0, stall_out: int = 0,
                 seed: int = 1, jobs: int = 2, target: str = "auto", flat: bool | None = None, ray=None) -> dict:
    """Stream images through the RTL in build_dir and compare every output with the golden
    simulator. `prog` defaults to the IR saved in build_dir; stall_in/stall_out (percent) add
    random bubbles on the input and back-pressure on the outputs. `target`: "pipeline" (hf_top),
    "chip" (hf_chip with the NPU, loaded with the program's own classifier) or "auto" (the chip
    when the build has an NPU). `jobs`: parallel block builds and simulator processes (image
    shards); `flat`: one Verilated model of the whole top level (True), block by block (False), or
    flat only below FLAT_MAX_ADDERS adders (None). `ray`: a connected ray module (hashiflex.cluster):
    the image shards run as Ray tasks, the simulator binary built here and shipped to them."""
    from ..sim.golden import GoldenSimulator

    if jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {jobs})")
    find_verilator()
    rtl_dir, manifest = find_rtl(build_dir)
    images = check_images(images_u8, manifest)
    if prog is None:
        from ..ir import serialize
        prog = serialize.load(Path(build_dir))
    check_program(manifest, prog, rtl_dir / "manifest.json")
    if target == "chip" or (target == "auto" and manifest.npu is not None):
        return verify_chip(build_dir, [(image_from_program(prog), images)], prog, stall_in, stall_out, seed, jobs,
                           flat=flat, ray=ray)
    flat = flat_mode(manifest, flat)
    b = build(rtl_dir, manifest, Path(build_dir) / ("verilator-flat" if flat else "verilator"), jobs, flat)
    sim = simulate_sharded(b.binary, manifest, images, jobs, stall_in=stall_in, stall_out=stall_out, seed=seed,
                           ray=ray)
    gold = GoldenSimulator(prog).run(images, keep_all=True)
    n = len(images)
    bad_images = np.zeros(n, dtype=bool)
    bad_values, ports, first = 0, {}, None
    for o in manifest.outputs:
        g = gold[o.tensor].numpy().astype(np.int64)
        want = (g.transpose(0, 2, 3, 1) if g.ndim == 4 else g).reshape(n, -1)  # beats in raster order
        got = sim["outputs"][o.port]
        if o.lanes > 1:  # drop the lanes past each row's end, which must carry zeros
            _, h, w = o.shape
            nb = o.beats // h
            full = got.reshape(n, h, nb * o.lanes, o.channels)
            tail = full[:, :, w:, :]
            got = full[:, :, :w, :].reshape(n, -1)
            bad_images |= (tail != 0).reshape(n, -1).any(axis=1)
            bad_values += int((tail != 0).sum())
        diff = want != got
        bad_images |= diff.any(axis=1)
        bad_values += int(diff.sum())
        ports[o.port] = {"tensor": o.tensor, "mismatched_values": int(diff.sum()),
                            "distinct_outputs": distinct_rows(got)}
        if first is None and diff.any():
            i, k = map(int, np.argwhere(diff)[0])
            first = {"port": o.port, "image": i, "beat": k // o.channels, "channel": k % o.channels,
                     "rtl": int(got[i, k]), "golden": int(want[i, k])}
    return {"images": n, "mismatches": int(bad_images.sum()), "mismatched_values": bad_values,
            "first_mismatch": first, "ports": ports, "cycles_per_image": cycles_per_image(sim),
            "latency_cycles": sim["latency"], "expected_cycles_per_image": manifest.expected_cycles_per_image,
            "total_cycles": sim["total_cycles"], **build_fields(b), **sim_fields(sim, n)}
