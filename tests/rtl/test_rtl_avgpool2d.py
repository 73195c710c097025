"""Windowed average pools whose window is not a power of two (IR op `avgpool2d`; rtl/pool.py: the
conv's walk, per channel an adder tree over the window taps, then the global pool's constant
multiply and requantize) in RTL: Verilator output equals the golden simulator exactly (rtl_check:
lint-clean, exact, measured cycles per image == the manifest's), with and without stalls, signed
and unsigned inputs, at one and several lanes and through width converters; the cost model's
replay from the IR equals the manifest. These fail (never skip) when Verilator is missing."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hashiflex import quantize_model
from hashiflex.cost import design
from hashiflex.errors import UserError
from hashiflex.ir.build import program_from_qmodel
from hashiflex.rtl import generate_rtl
from hashiflex.sim.reference import run_reference
from hashiflex.train.loop import to_model_input
from hashiflex.verify.layers import verify_layers
from rtl_progs import ProgBuilder, assert_counts_match_manifest, rtl_check

# adders of one 3x3 output channel: 8 sum the 9 taps; mult = QAvgPool.constants(9) = 116508 (shift
# 20) has 6 canonical signed digits, which with the rounding constant 2^19 take 6 more
ADDERS_3X3 = 8 + 6
DEPTH_3X3 = 4 + 3    # ceil(log2 9) levels, then ceil(log2 7)


def _avg(man):
    return [m for m in man.modules if m.kind == "avgpool2d"]


def _counts_match(prog, tmp_path, p: int = 1) -> None:
    """The cost model's replay equals the manifest of the unshared build (convs' naive trees)."""
    assert_counts_match_manifest(prog, generate_rtl(prog, tmp_path / f"unshared{p}", p, share=False), p)


def _stem(b: ProgBuilder, signed: bool) -> str:
    """A 3x3 conv whose output is unsigned [0, 127], or signed [-100, 100] and negative somewhere."""
    return b.conv("input", 3, k=3, clamp=(-100, 100), bias=2000) if signed else b.conv("input", 3, k=3, clamp=(0, 127))


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize("stride, pad, out_hw, traversal", [(1, 1, (11, 10), [13, 12]), (2, 0, (5, 4), [11, 10]),
                                                             (3, 0, (3, 3), [11, 10])], ids=["s1p1", "s2", "s3"])
def test_avgpool_3x3(tmp_path, stride, pad, out_hw, traversal, signed):
    """3x3 windows at stride 1 (padding 1: zeros counted, the divisor stays 9), 2 and 3 over an 11x10
    map: exact without and with stalls, cycles == the walk's, 14 adders per channel, the counts
    equal the cost model's."""
    b = ProgBuilder((2, 11, 10), seed=20 + stride)
    x = _stem(b, signed)
    b.avgpool(x, 3, stride=stride, pad=pad)
    prog = b.program()
    assert prog.tensors[prog.output].shape == (3, *out_hw)
    images = np.random.default_rng(0).integers(0, 256, (4, 2, 11, 10), dtype=np.uint8)
    vals = run_reference(prog, images)[prog.output]
    assert (vals < 0).any() == signed and (vals > 0).any()
    man = rtl_check(prog, tmp_path, n_images=4)["manifest"]
    (m,) = _avg(man)
    assert (m.adders, m.adder_depth, m.traversal, m.mult, m.shift) == (3 * ADDERS_3X3, DEPTH_3X3, traversal, 116508, 20)
    assert m.cycles_per_image == traversal[0] * traversal[1]
    _counts_match(prog, tmp_path)
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=5, stall_in=30, stall_out=40)


def test_avgpool_2x3_on_the_chip_input(tmp_path):
    """The uint8 input pooled over 2x3 windows (6 pixels, mult 87381 = 9 digits: 5 + 9 adders per
    channel) at stride (2, 3), then 3x3/2 with padding 1."""
    b = ProgBuilder((3, 10, 12), seed=4)
    x = b.avgpool("input", (2, 3), stride=(2, 3))
    b.avgpool(x, 3, stride=2, pad=1)
    prog = b.program()
    assert [prog.tensors[op.output].shape for op in prog.ops] == [(3, 5, 4), (3, 3, 2)]
    man = rtl_check(prog, tmp_path, n_images=4)["manifest"]
    assert [(m.adders, m.adder_depth) for m in _avg(man)] == [(3 * (5 + 9), 3 + 4), (3 * ADDERS_3X3, DEPTH_3X3)]
    assert man.expected_cycles_per_image == 120    # the input's 10 x 12 walk
    assert_counts_match_manifest(prog, man, 1)     # no conv: nothing shared


def _network(seed=5):
    b = ProgBuilder((3, 12, 12), seed=seed)
    x = b.conv("input", 6, k=3, clamp=(0, 127))
    x = b.avgpool(x, 3, stride=2, pad=1)                  # 12 -> 6
    x = b.conv(x, 8, k=3, clamp=(-80, 80))
    b.pool(x, clamp=(-128, 127))
    return b.program()


def test_conv_avgpool2d_conv_global_pool_network_with_and_without_stalls(tmp_path):
    """conv -> 3x3/2 average pool -> conv -> global average pool: exact, cycles == manifest (the
    stem's 14 x 14 traversal), and again with random input bubbles and output back-pressure; each
    layer alone (verify_layers) too."""
    prog = _network()
    out = rtl_check(prog, tmp_path, n_images=4)
    man = out["manifest"]
    assert man.expected_cycles_per_image == 14 * 14 and out["result"]["cycles_per_image"] == 196
    (m,) = _avg(man)
    assert m.adders == 6 * ADDERS_3X3 and m.traversal == [13, 13]
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=7, stall_in=30, stall_out=40)
    images = np.random.default_rng(3).integers(0, 256, (3, 3, 12, 12), dtype=np.uint8)
    r = verify_layers(tmp_path, images, prog, jobs=1)
    assert r["mismatches"] == 0 and r["layers"] == 4
    pooled = next(x for x in r["per_layer"] if x["op"] == m.op)
    assert pooled["cycles_per_image"] == pooled["expected_cycles_per_image"] == 169


def test_avgpool2d_with_lanes_and_width_converters(tmp_path):
    """P = 4 from a stride-1 stem: the 3x3/1/pad 1 pool takes 4 lanes and gives 4 (one window-sum
    and scaling network per lane), the 3x3/2 pool takes 4 and gives 2; then a plan that narrows
    4 -> 2 lanes in front of the first pool and widens 2 -> 6 in front of a 3x3/3 pool (which gives
    2)."""
    b = ProgBuilder((2, 12, 12), seed=6)
    x = _stem(b, True)
    x = b.avgpool(x, 3, stride=1, pad=1)
    b.avgpool(x, 3, stride=2)                             # 12 -> 5
    prog = b.program()
    man = rtl_check(prog, tmp_path, n_images=4, parallelism=4)["manifest"]
    assert [(m.lanes_in, m.lanes_out, m.P, m.adders) for m in _avg(man)] == \
        [(4, 4, 4, 4 * 3 * ADDERS_3X3), (4, 2, 2, 2 * 3 * ADDERS_3X3)]
    _counts_match(prog, tmp_path, 4)
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=3, stall_in=25, stall_out=25, parallelism=4)

    b = ProgBuilder((2, 12, 12), seed=7)
    x = _stem(b, False)
    x = b.avgpool(x, 3, stride=1, pad=1)
    x = b.conv(x, 4, k=1, pad=0, clamp=(0, 127))
    b.avgpool(x, 3, stride=3)                             # 12 -> 4
    prog = b.program()
    formats = dict(zip([op.name for op in prog.ops], [(4, 1), (2, 1), (2, 1), (6, 1)]))
    man = rtl_check(prog, tmp_path / "plan", n_images=3, formats=formats)["manifest"]
    assert [(m.lanes_src, m.lanes_in, m.lanes_out) for m in _avg(man)] == [(4, 2, 2), (2, 6, 2)]
    assert man.formats() == formats
    rtl_check(prog, tmp_path / "plan_stall", n_images=3, seed=2, stall_in=25, stall_out=25, formats=formats)


@pytest.mark.parametrize("p", [1, 2, 4])
def test_cost_model_counts_the_generators_adders(tmp_path, p):
    """Adders, adder bits, register bits and cycles of every module, replayed from the IR, equal the
    manifest's at P = 1, 2, 4; the depth is the manifest's; `estimate` totals them."""
    b = ProgBuilder((2, 12, 12), seed=8)
    x = _stem(b, True)
    x = b.avgpool(x, 3, stride=1, pad=1)
    x = b.avgpool(x, (2, 3), stride=2)
    b.pool(x)
    prog = b.program()
    man = generate_rtl(prog, tmp_path / "rtl", p, share=False)
    for op, m, net, k in assert_counts_match_manifest(prog, man, p):
        if m.kind == "avgpool2d":
            assert net.depth == m.adder_depth and net.outputs == 3 and k == m.P, op.name
    r = design.as_generated(prog, man)
    assert r["adders"] == man.adders and r["cycles_per_image"] == man.expected_cycles_per_image
    assert [L["kind"] for L in r["layers"][1:3]] == ["avgpool3x3", "avgpool2x3/s2"]


def test_quantized_network_with_3x3_average_pools_in_rtl(tmp_path):
    """quantize_model on conv -> ReLU -> AvgPool2d(3, 1, 1) -> conv -> AvgPool2d(3) (a signed input)
    -> global pool -> Linear: the lowered program's chip is exact in Verilator."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
            self.p1, self.p2, self.fc = nn.AvgPool2d(3, 1, 1), nn.AvgPool2d(3), nn.Linear(4, 3)

        def forward(self, x):
            x = self.p2(self.c2(self.p1(F.relu(self.c1(x)))))
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    torch.manual_seed(0)
    x = torch.randint(0, 256, (8, 1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    prog = program_from_qmodel(quantize_model(Net().eval(), to_model_input(x)))
    pools = [op for op in prog.ops if op.kind == "avgpool2d"]
    assert [prog.tensors[op.input].lo < 0 for op in pools] == [False, True]
    man = rtl_check(prog, tmp_path, n_images=4)["manifest"]
    assert [m.op for m in _avg(man)] == [op.name for op in pools]


def test_manifest_checks_the_avgpool2d_fields(tmp_path):
    """An avgpool2d module entry has the walk's fields, mult, shift and adder_depth, and no conv- or
    max-pool-only field; read back, it matches the program (rtl.readback)."""
    from hashiflex.rtl.manifest import Manifest
    from hashiflex.rtl.readback import program_errors, read_manifest

    prog = _network()
    generate_rtl(prog, tmp_path, 2)
    man = read_manifest(tmp_path / "manifest.json")
    assert program_errors(man, prog) == [] and _avg(man)[0].copies() == _avg(man)[0].P == 1
    good = json.loads((tmp_path / "manifest.json").read_text())
    i = next(k for k, m in enumerate(good["modules"]) if m["kind"] == "avgpool2d")
    for edit, says in ((lambda m: m.pop("mult"), "fields mult missing or not allowed"),
                       (lambda m: m.update(comparators=3), "fields comparators missing or not allowed"),
                       (lambda m: m.update(groups=6), "fields groups missing or not allowed"),
                       (lambda m: m.update(pipeline_stages=1), "only convs are pipelined")):
        bad = json.loads(json.dumps(good))
        edit(bad["modules"][i])
        with pytest.raises(UserError, match=f"modules.{i}: .*{says}"):
            Manifest.parse(bad, "m.json")
