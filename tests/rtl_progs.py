"""Hand-built IR Programs with random Po2 weights for RTL tests, plus the RTL check itself.

Building the IR directly (rather than quantizing a torch net) lets a test pick any kernel,
stride, padding, requantize shift (including left shifts) and clamp range, and is fast."""
from __future__ import annotations

import subprocess

import numpy as np

from hashiflex.ir.builder import ProgBuilder  # noqa: F401  (tests import it from here)
from hashiflex.ir.spec import Program
from hashiflex.rtl import generate_rtl
from hashiflex.verify import harness, verify_build


def mobilenet_block_prog() -> Program:
    """expand 1x1 -> depthwise 3x3 -> project 1x1 -> add with the block input, then a second add
    whose skip is the first add's output: two identity skips (the adds are add4 and add6)."""
    b = ProgBuilder((3, 8, 8), seed=5)
    x = b.conv("input", 4, k=3, clamp=(0, 127))
    y = b.conv(x, 8, k=1, pad=0)
    y = b.conv(y, depthwise=True, k=3)
    y = b.conv(y, 4, k=1, pad=0, clamp=(-64, 63))
    z = b.add(x, y, align_a=1, align_b=0, shift=1)
    z2 = b.conv(z, depthwise=True, k=3, clamp=(-50, 60))
    b.add(z2, z, align_a=0, align_b=2, shift=2, clamp=(-20, 100))
    return b.program()


def assert_counts_match_manifest(prog: Program, man, p: int) -> list:
    """The cost model's replay from the IR alone (out FIFO depths, adders and adder bits, register
    bits, cycles of every module at first-layer P = p) equals the manifest generate_rtl wrote;
    returns [(op, manifest module, counted network, lane copies)] for further checks."""
    from hashiflex.cost import counts, design, storage
    from hashiflex.rtl.generate import plan_lanes
    from hashiflex.rtl.schedule import hw_ops

    lanes, _ = plan_lanes(prog, p)
    depths = design.out_depths(prog, {op.name: (lanes[prog.op_inputs(op)[0]], 1) for op in hw_ops(prog)})
    assert depths == {m.op: m.out_fifo_depth for m in man.modules if m.out_fifo_depth}
    out = []
    for op, m in zip(hw_ops(prog), man.modules):
        g = lanes[prog.op_inputs(op)[0]]
        net = counts.adder_network(prog, op, g)
        k = storage.copies(prog, op, g, 1)
        assert (net.adders * k, net.adder_bits * k) == (m.adders, m.adder_bits), op.name
        assert storage.storage(prog, op, g, 1, trim=False, out_depth=depths.get(op.name, 2)).total_bits == \
            m.register_bits, op.name
        assert storage.cycles(prog, op, g, 1) == m.cycles_per_image, op.name
        out.append((op, m, net, k))
    return out


def assert_lint_clean(rtl_dir, man) -> None:
    """Verilator -Wall on the generated files: no warning at all."""
    lint = subprocess.run([harness.verilator(), "--quiet", "--lint-only", "-Wall", "--top-module", man.top,
                           *[str(rtl_dir / f) for f in man.files]], capture_output=True, text=True)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr), lint.stdout + lint.stderr


def rtl_check(prog: Program, tmp_path, n_images=3, seed=0, stall_in=0, stall_out=0, exact_cycles=True,
              parallelism=1, formats=None, cycles_slack=0.0) -> dict:
    """Generate (a first-layer P, or per-layer `formats`), lint with -Wall, build, simulate; assert
    no warning, RTL == golden and the cycle figure."""
    man = generate_rtl(prog, tmp_path / "rtl", parallelism, formats=formats)
    assert_lint_clean(tmp_path / "rtl", man)
    images = np.random.default_rng(seed).integers(0, 256, (n_images, *prog.tensors["input"].shape), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=prog, stall_in=stall_in, stall_out=stall_out, seed=seed)
    assert res["images"] == n_images
    assert res["mismatches"] == 0, res["first_mismatch"]
    if exact_cycles and not stall_in and not stall_out and n_images > 1:
        assert abs(res["cycles_per_image"] - man.expected_cycles_per_image) <= cycles_slack * man.expected_cycles_per_image
    return {"manifest": man, "result": res}
