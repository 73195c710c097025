"""The 7nm cost model: counts equal the generator's, cycles equal the manifest's (which Verilator
measures exactly, tests/rtl/test_rtl_mobilenet.py), the balancer meets its targets, and the CLI."""
import json

import numpy as np
import pytest

from hashiflex.cli import main
from hashiflex.cost import balance, design, model, storage, tech
from hashiflex.cost import npu as npu_cost
from hashiflex.ir import serialize
from hashiflex.ir.build import program_from_qmodel, random_qmodel
from hashiflex.ir.sharing import solve_adder_graphs
from hashiflex.models.mobilenetv2 import MobileNetV2Config
from hashiflex.quant.config import QuantConfig
from hashiflex.rtl import generate_rtl
from hashiflex.rtl.schedule import hw_ops
from rtl_progs import ProgBuilder, assert_counts_match_manifest


def _residual_prog():
    b = ProgBuilder((2, 6, 7), seed=31)
    x = b.conv("input", 3, k=3, clamp=(0, 127))
    y = b.conv(x, 6, k=1, pad=0)
    y = b.conv(y, depthwise=True, k=3)
    y = b.conv(y, 3, k=1, pad=0, clamp=(-64, 63))
    z = b.add(x, y, align_a=1, shift=1)
    z = b.pool(z)
    b.linear(z, 3)
    return b.program()


def _stride_prog():
    b = ProgBuilder((1, 10, 10), seed=30)
    x = b.conv("input", 3, k=3, stride=2, pad=1)
    x = b.conv(x, depthwise=True, k=3, stride=1)
    x = b.conv(x, depthwise=True, k=3, stride=2)
    b.conv(x, depthwise=True, k=3, stride=2)
    return b.program()


@pytest.fixture(scope="module")
def small_mbv2():
    cfg = MobileNetV2Config(width_mult=0.25, last_channel=32, input_size=16)
    return program_from_qmodel(random_qmodel(cfg, QuantConfig(exp_bits=3, prune=0.9), seed=0, calib_images=8))


@pytest.mark.parametrize("make,ps", [(_residual_prog, (1, 2)), (_stride_prog, (1, 2))])
def test_counts_equal_the_generator(tmp_path, make, ps):
    """Adders, adder bits and depth of the naive trees, register bits and cycles of every module,
    replayed from the IR alone, equal what generate_rtl writes in the manifest."""
    prog = make()
    for p in ps:
        man = generate_rtl(prog, tmp_path / str(p), p, share=False)
        for op, m, net, _ in assert_counts_match_manifest(prog, man, p):
            if m.adder_depth is not None:
                assert net.depth == m.adder_depth, op.name


def test_model_cycles_equal_manifest_at_two_parallelisms(small_mbv2, tmp_path):
    """The model's cycles per image equal the manifest's expected_cycles_per_image (Verilator-
    measured: 324 at P = 1 and 153 at P = 2, tests/rtl/test_rtl_mobilenet.py), from the manifest and
    from the IR alone, exactly."""
    for p, expected in ((1, 324), (2, 153)):
        man = generate_rtl(small_mbv2, tmp_path / str(p), p)
        assert man.expected_cycles_per_image == expected
        with_rtl = design.as_generated(small_mbv2, man)
        ir_only = design.as_generated(small_mbv2, None, parallelism=p)
        for r in (with_rtl, ir_only):
            assert r["cycles_per_image"] == expected
            assert r["rtl_parallelism"] == p
        assert with_rtl["adders"] == man.adders and with_rtl["adder_bits"] == man.adder_bits
        assert ir_only["adders"] == man.adders_naive
        # the IR-only build with the sharing pass's graphs counts what the generator emits, exactly
        graphs = solve_adder_graphs(small_mbv2)
        ir_graphs = design.as_generated(small_mbv2, None, parallelism=p, graphs=graphs)
        assert (ir_graphs["adders"], ir_graphs["adder_bits"]) == (man.adders, man.adder_bits)
        assert ir_graphs["source"] == "ir+graphs" and ir_graphs["clock_fmax_ghz"] == with_rtl["clock_fmax_ghz"]
        assert with_rtl["images_per_s"] == pytest.approx(with_rtl["clock_ghz"] * 1e9 / expected)


def test_balancer_meets_targets_and_front_is_pareto(small_mbv2):
    b = balance.Balancer(small_mbv2)
    base = design.as_generated(small_mbv2, None)
    assert b.design_for(base["cycles_per_image"])["area_mm2"] == pytest.approx(base["area_mm2"], rel=0.02)
    for cycles in (200, 100, 60):
        d = b.design_for(cycles)
        assert d["cycles_per_image"] <= cycles
        assert d["npu"]["cycles_per_image"] <= cycles    # the NPU keeps pace
    front = b.front(points=8)
    ips = [d["images_per_s"] for d in front]
    area = [d["area_mm2"] for d in front]
    assert ips == sorted(ips) and area == sorted(area) and len(front) >= 3
    rtl = b.rtl_front()
    assert rtl[0]["parallelism"] == 1 and rtl[0]["cycles_per_image"] == 324
    assert all(d["rtl_parallelism"] == d["parallelism"] for d in rtl)


def test_npu_sizing_follows_the_contract():
    # L lanes x B batch; cycles per image = (N * ceil(K / L) + drain) / B
    assert npu_cost.npu_cycles(1000, 1280, 1280, 4) == pytest.approx((1000 + tech.DEFAULT_NPU_DRAIN) / 4)
    L = npu_cost.size_npu(1000, 1280, 250.0)
    assert L.cycles <= 250 and L.g * L.v >= 1000 * 1280 / 250 / 1.01
    small = npu_cost.npu_estimate(10, 64, 8, 1)
    big = npu_cost.npu_estimate(10, 64, 64, 4)
    assert big.area_um2 > small.area_um2 and big.cycles < small.cycles


def test_area_model_units():
    # an FF array below the SRAM size, an SRAM macro above it
    a_ff, _, s_ff = model.array_cost(10, 32, 0)
    a_sram, _, s_sram = model.array_cost(1024, 64, 0)
    assert not s_ff and a_ff == pytest.approx(320 * tech.a_mem_ff_bit(10))
    assert s_sram and a_sram < 1024 * 64 * tech.A_REG_BIT
    assert model.stage_delay_ns(4, 16) == pytest.approx(tech.T_REG + 16 * tech.T_FA + 4 * tech.T_LEVEL + tech.T_REQUANT)
    per = model.levels_per_stage(1.0, 16)   # the most levels a 1 ns stage holds, and no more
    assert model.stage_delay_ns(per, 16) <= 1.0 < model.stage_delay_ns(per + 1, 16)


def test_estimate_cli_ir_only_json_and_targets(tmp_path, capsys):
    prog = _residual_prog()
    serialize.save(prog, tmp_path)
    assert main(["estimate", str(tmp_path), "--json"]) == 0
    d = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("images_per_s", "area_mm2", "energy_pj_per_image", "clock_ghz", "adders", "adder_bits", "layers"):
        assert key in d
    assert d["source"] == "ir" and d["adders"] == sum(L["adders"] for L in d["layers"])
    assert main(["estimate", str(tmp_path), "--target-ips", str(2 * d["images_per_s"]), "--json"]) == 0
    t = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert t["target_met"] and t["images_per_s"] >= 2 * d["images_per_s"] and t["front"] and t["rtl_front"]
    assert main(["estimate", str(tmp_path), "--area-mm2", str(1.5 * d["area_mm2"])]) == 0
    out = capsys.readouterr().out
    assert "Pareto front" in out and "| layer |" in out


@pytest.mark.parametrize("opts,msg", [(["--clock-ghz", "-1"], "--clock-ghz"),
                                      (["--target-ips", "1e6", "--area-mm2", "2"], "not both"),
                                      (["--target-ips", "nan"], "--target-ips"),
                                      (["--clock-ghz", "15"], "cannot meet")])
def test_estimate_bad_options(tmp_path, capsys, opts, msg):
    serialize.save(_residual_prog(), tmp_path)
    assert main(["estimate", str(tmp_path), *opts]) == 2
    err = capsys.readouterr().err.strip()
    assert msg in err and len(err.splitlines()) == 1


def test_estimate_missing_build(tmp_path, capsys):
    assert main(["estimate", str(tmp_path / "nope")]) == 2
    assert "compile" in capsys.readouterr().err


def test_window_trim_counts_only_live_taps():
    prog = _stride_prog()
    op = hw_ops(prog)[1]
    full = storage.storage(prog, op, 1, 1, trim=False).total_bits
    trimmed = storage.storage(prog, op, 1, 1).total_bits
    used = storage.used_taps(prog, op)
    assert trimmed <= full and (trimmed < full) == (not used.all())
    assert np.array_equal(storage.live_outputs(prog, op).shape, (prog.tensors[op.output].shape[0],))


def test_npu_from_manifest_matches_contract(small_mbv2, tmp_path):
    """With the manifest's "npu" entry the model uses its counts; its cycles follow the contract
    N * ceil(K / L) / B (+ the drain between passes)."""
    from hashiflex.rtl.npu import NPUConfig

    man = generate_rtl(small_mbv2, tmp_path, 1, npu=NPUConfig(lanes=4, batch=2))
    n = man.npu
    r = design.as_generated(small_mbv2, man)
    assert r["npu"]["from_manifest"] and (r["npu"]["lanes"], r["npu"]["batch"]) == (4, 2)
    expect = npu_cost.npu_cycles(n.out_features, n.in_features, 4, 2, n.drain_cycles)
    assert r["npu"]["cycles_per_image"] == pytest.approx(expect)
    assert n.out_features * -(-n.in_features // 4) / 2 == pytest.approx(n.cycles_per_image)
    mine = npu_cost.npu_estimate(n.out_features, n.in_features, 4, 2)
    assert mine.cycles == pytest.approx(expect)


def test_estimate_help_has_description_and_example(capsys):
    assert main(["estimate", "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out and "hashiflex estimate " in out.split("example:")[1] and "--json" in out
