"""Shared adder graphs in the RTL (docs/adder_graph.md): with `share` on (the default) and off, the
Verilog built by Verilator equals the golden simulator exactly; sharing changes adders only, never
the schedule; generation is deterministic. These fail (never skip) when Verilator is missing."""
import json

import numpy as np
import pytest

from hashiflex.cli import main
from hashiflex.ir.adder_graph import evaluate_graph, layer_matrix, with_constants
from hashiflex.ir.sharing import hardware_constants, layer_graph
from hashiflex.rtl import generate_rtl
from hashiflex.verify import verify_build
from rtl_progs import ProgBuilder, assert_lint_clean
from test_rtl_random import random_program

SAME = ("expected_cycles_per_image", "register_bits", "ports", "outputs", "parallelism", "skip_fifos")


def wide_program():
    """Layers wide enough for sharing to pay: a full 3x3 stem, pointwise expand / project around a
    depthwise (not shared), a residual add, the pool and a Po2 classifier."""
    b = ProgBuilder((2, 5, 5), seed=40)
    x = b.conv("input", 8, k=3, clamp=(0, 127), prune=0.2)
    y = b.conv(x, 12, k=1, pad=0, prune=0.2)
    y = b.conv(y, depthwise=True, k=3, clamp=(-60, 60))
    y = b.conv(y, 8, k=1, pad=0, clamp=(-64, 63), prune=0.2)
    z = b.pool(b.add(x, y, align_a=1, shift=1))
    b.linear(z, 5, prune=0.2)
    return b.program()


def build_and_check(prog, d, share, parallelism=1, n_images=2, seed=0, stall=0):
    """Generate with `share`, lint with -Wall, simulate in Verilator and compare with the golden."""
    man = generate_rtl(prog, d / "rtl", parallelism, share=share)
    assert_lint_clean(d / "rtl", man)
    images = np.random.default_rng(seed).integers(0, 256, (n_images, *prog.tensors["input"].shape), dtype=np.uint8)
    res = verify_build(d, images, prog=prog, stall_in=stall, stall_out=stall, seed=seed)
    assert res["images"] == n_images and res["mismatches"] == 0, res["first_mismatch"]
    if not stall:
        want = man.expected_cycles_per_image
        assert res["cycles_per_image"] == want
    return man


def check_pair(on, off):
    """Sharing changes the adders only; the naive figures of a shared build are the unshared build's."""
    assert on.shared is True and off.shared is False
    assert all(getattr(on, k) == getattr(off, k) for k in SAME)
    assert (on.adders_naive, on.adder_bits_naive) == (off.adders, off.adder_bits)
    assert (off.adders_naive, off.adder_bits_naive) == (off.adders, off.adder_bits)
    assert on.adders <= off.adders
    for a, b in zip(on.modules, off.modules):
        assert a.shared == (a.kind == "linear" or a.kind == "conv" and a.groups == 1)
        assert not b.shared and a.adders_naive == b.adders and a.cycles_per_image == b.cycles_per_image


@pytest.mark.parametrize("seed, p", [(1, 1), (4, 2)])
def test_random_programs_share_on_and_off(seed, p, tmp_path):
    prog = random_program(seed)
    on = build_and_check(prog, tmp_path / "on", True, p, seed=seed)
    off = build_and_check(prog, tmp_path / "off", False, p, seed=seed)
    check_pair(on, off)


def test_wide_layers_share_with_lanes_and_stalls(tmp_path):
    prog = wide_program()
    on = build_and_check(prog, tmp_path / "on", True, parallelism=2, n_images=3, seed=5, stall=25)
    off = generate_rtl(prog, tmp_path / "off", 2, share=False)
    check_pair(on, off)
    shared = [m for m in on.modules if m.shared]
    assert [m.op for m in shared] == ["conv0", "conv1", "conv3", "fc6"]
    assert sum(m.adders for m in shared) < 0.85 * sum(m.adders_naive for m in shared)
    assert sum(m.adder_bits for m in shared) < 0.9 * sum(m.adder_bits_naive for m in shared)
    assert all(m.adder_depth <= m.adder_depth_naive + 1 for m in shared)
    assert [m.P for m in on.modules][:4] == [2, 2, 2, 2]
    # one solve per layer, instantiated by both lanes: the same adders twice
    assert all(m.adders % 2 == 0 for m in shared if m.kind == "conv")


def test_share_is_deterministic(tmp_path):
    prog = wide_program()
    m1 = generate_rtl(prog, tmp_path / "a", 2)
    m2 = generate_rtl(prog, tmp_path / "b", 2)
    assert m1 == m2
    for f in m1.files + ["manifest.json"]:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_layer_graph_includes_bias_constants():
    m = np.array([[4, 0, -1], [0, 2, 1]], dtype=np.int64)
    aug, odd = with_constants(m, [12, -3, 0][:2])
    assert odd == [3] and aug.tolist() == [[4, 0, -1, 4], [0, 2, 1, -1]]  # 12 = 3 << 2, -3 = -(3 << 0)
    _, odd = with_constants(m, [2 ** 70, 5])
    assert odd == [1, 5]
    prog = wide_program()
    op = prog.ops[1]
    consts, dropped = hardware_constants(prog, op)
    assert consts == [int(v) + (1 << (op.shift - 1) if op.shift > 0 else 0) for v in prog.arrays[op.bias]]
    lg = layer_graph(prog, op)
    keep = ~np.array(dropped, dtype=bool)
    w = layer_matrix(prog, op)[0]
    x = np.random.default_rng(0).integers(-50, 50, size=(4, w.shape[1]))
    xs = np.concatenate([x, np.tile(np.array(lg.constants, dtype=np.int64), (4, 1))], axis=1)
    assert np.array_equal(evaluate_graph(lg.graph, xs)[:, keep], (x @ w.T + np.array(consts))[:, keep])


def test_compile_share_and_no_share(tmp_path, tiny_po2, capfd):
    res = {}
    for flag in ("--share", "--no-share"):
        d = tmp_path / flag
        assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(d), flag, "--json"]) == 0
        res[flag] = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
        man = json.loads((d / "rtl" / "manifest.json").read_text())
        assert man["shared"] is (flag == "--share") and res[flag]["adders"] == man["adders"]
    on, off = res["--share"], res["--no-share"]
    assert on["shared"] and not off["shared"]
    assert on["adders"] < off["adders"] == on["adders_naive"] and on["adder_bits"] < off["adder_bits"]
    assert on["expected_cycles_per_image"] == off["expected_cycles_per_image"]
