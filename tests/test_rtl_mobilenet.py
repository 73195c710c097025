"""End to end: a small MobileNetV2 (width 0.25, 16x16 input, random weights and BN statistics,
90 % pruned to keep the Verilator build short) in RTL equals the golden simulator on every
output, and runs at the manifest's cycles per image."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from hashiflex.ir.build import program_from_qmodel
from hashiflex.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from hashiflex.quant.config import QuantConfig
from hashiflex.quant.convert import QMobileNetV2, calibrate
from hashiflex.quant.prune import apply_masks
from hashiflex.rtl import generate_rtl
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.verify import verify_build

CFG = MobileNetV2Config(width_mult=0.25, last_channel=32, input_size=16)


@pytest.fixture(scope="module")
def prog():
    torch.manual_seed(0)
    fp32 = MobileNetV2(CFG)
    with torch.no_grad():  # random BN statistics, as hashiflex.ir.build.random_qmodel: live activations
        for m in fp32.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.running_mean.normal_(0.0, 0.1)
    qc = QuantConfig(exp_bits=3, prune=0.9)
    q = QMobileNetV2(fp32, qc)
    apply_masks([m for _, m in q.hardened_convs()], qc.prune, qc.prune_scope)
    calibrate(q, [torch.randint(0, 256, (8, 1, 16, 16)).float() / 256])
    return program_from_qmodel(q.eval())


def test_mobilenetv2_rtl_equals_golden(prog, tmp_path):
    man = generate_rtl(prog, tmp_path / "rtl")
    images = np.random.default_rng(3).integers(0, 256, (4, 1, 16, 16), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=prog)
    assert res["mismatches"] == 0, res["first_mismatch"]
    assert [o["port"] for o in man["outputs"]] == ["feat"]  # the int8 classifier is the NPU's
    assert abs(res["cycles_per_image"] - man["expected_cycles_per_image"]) <= 0.02 * man["expected_cycles_per_image"]
    assert man["expected_cycles_per_image"] == 18 * 18  # the stem's padded 16x16 traversal
    assert len(man["skip_fifos"]) == sum(op.kind == "add" for op in prog.ops)
    nonzero = sum(int(np.count_nonzero(prog.arrays[op.weight])) for op in prog.ops if op.kind == "conv")
    assert man["adders"] > 0.8 * nonzero  # few channels are constant: the trees are really exercised
    gold = GoldenSimulator(prog).run(images)[prog.output]
    assert gold.abs().sum() > 0


def test_mobilenetv2_parallel_early_layers(prog, tmp_path):
    """P = 2 from the stem on: the 16x16 layers take two pixels per cycle until the first stride-2
    depthwise, the pipeline needs half the cycles per image, and the RTL still equals the golden.
    Run on the first blocks (up to features.3, a residual at 8x8) to keep the build short."""
    cut = [op.name for op in prog.ops].index("features.3.add") + 1
    head = replace(prog.with_ops(prog.ops[:cut]), output=prog.ops[cut - 1].output)
    full = generate_rtl(prog, tmp_path / "full", parallelism=2)
    assert full["expected_cycles_per_image"] == 18 * 9  # from 324 at P = 1
    man = generate_rtl(head, tmp_path / "rtl", parallelism=2)
    ps = {m["op"]: m["P"] for m in man["modules"]}
    assert ps["features.0"] == 2 and ps["features.1.add"] == 2 and ps["features.2.conv.1"] == 1
    assert man["expected_cycles_per_image"] == 18 * 9
    images = np.random.default_rng(4).integers(0, 256, (4, 1, 16, 16), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=head)
    assert res["mismatches"] == 0, res["first_mismatch"]
    assert abs(res["cycles_per_image"] - man["expected_cycles_per_image"]) <= 0.02 * man["expected_cycles_per_image"]
