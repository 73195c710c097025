"""End to end: a small MobileNetV2 (width 0.25, 16x16 input, random weights and BN statistics,
90 % pruned to keep the Verilator build short) in RTL equals the golden simulator on every
output, and runs at the manifest's cycles per image."""
from dataclasses import replace

import numpy as np
import pytest

from hashiflex.ir.build import program_from_qmodel, random_qmodel
from hashiflex.models.mobilenetv2 import MobileNetV2Config
from hashiflex.quant.config import QuantConfig
from hashiflex.rtl import generate_rtl
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.verify import verify_build

CFG = MobileNetV2Config(width_mult=0.25, last_channel=32, input_size=16)


@pytest.fixture(scope="module")
def prog():
    q = random_qmodel(CFG, QuantConfig(exp_bits=3, prune=0.9), seed=0, calib_images=8)
    return program_from_qmodel(q)


def test_mobilenetv2_rtl_equals_golden(prog, tmp_path):
    man = generate_rtl(prog, tmp_path / "rtl")
    images = np.random.default_rng(3).integers(0, 256, (4, 1, 16, 16), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=prog)
    assert res["mismatches"] == 0, res["first_mismatch"]
    assert [o.port for o in man.outputs] == ["feat"]  # the int8 classifier is the NPU's
    assert res["cycles_per_image"] == man.expected_cycles_per_image
    assert man.expected_cycles_per_image == 18 * 18  # the stem's padded 16x16 traversal
    assert len(man.skip_fifos) == sum(op.kind == "add" for op in prog.ops)
    nonzero = sum(int(np.count_nonzero(prog.arrays[op.weight])) for op in prog.ops if op.kind == "conv")
    assert man.adders > 0.8 * nonzero  # few channels are constant: the trees are really exercised
    gold = GoldenSimulator(prog).run(images)[prog.output]
    assert gold.abs().sum() > 0


def test_mobilenetv2_parallel_early_layers(prog, tmp_path):
    """P = 2 from the stem on: the 16x16 layers take two pixels per cycle until the first stride-2
    depthwise, the pipeline needs half the cycles per image, and the RTL still equals the golden.
    Run on the first blocks (up to features.3, a residual at 8x8) to keep the build short."""
    cut = [op.name for op in prog.ops].index("features.3.add") + 1
    head = replace(prog.with_ops(prog.ops[:cut]), output=prog.ops[cut - 1].output)
    full = generate_rtl(prog, tmp_path / "full", parallelism=2)
    assert full.expected_cycles_per_image == 17 * 9  # from 324 at P = 1 (with lanes the top padding row is skipped)
    man = generate_rtl(head, tmp_path / "rtl", parallelism=2)
    ps = {m.op: m.P for m in man.modules}
    assert ps["features.0"] == 2 and ps["features.1.add"] == 2 and ps["features.2.conv.1"] == 1
    assert man.expected_cycles_per_image == 17 * 9
    images = np.random.default_rng(4).integers(0, 256, (4, 1, 16, 16), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=head)
    assert res["mismatches"] == 0, res["first_mismatch"]
    assert res["cycles_per_image"] == man.expected_cycles_per_image
