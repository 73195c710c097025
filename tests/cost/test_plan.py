"""Plans (hashiflex.rtl.plan): the balancer's per-layer formats, generated exactly or refused.
A planned build's cycles per image are the plan's, the manifest's and Verilator's; its adders the
plan's; its area within 1 % (the NPU as counted in the manifest vs as sized by the model)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from hashiflex.cli import main
from hashiflex.cost.balance import generated_design
from hashiflex.errors import UserError
from hashiflex.ir.sharing import solve_adder_graphs
from hashiflex.rtl import generate_rtl
from hashiflex.rtl.npu import NPUConfig
from hashiflex.rtl.plan import formats_of, read_plan, write_plan
from hashiflex.verify import verify_build
from rtl_progs import ProgBuilder


def chain():
    """Stride 1 and 2 convs, a residual add and an int8 classifier: P = 1, 2, 4 are all valid."""
    b = ProgBuilder((2, 12, 12), seed=3)
    x = b.conv("input", 4, k=3, clamp=(0, 127))
    y = b.conv(x, 4, k=1, pad=0, clamp=(0, 127))
    z = b.conv(b.add(x, y, align_a=1, align_b=0, shift=1, clamp=(0, 127)), 6, k=3, stride=2, clamp=(0, 127))
    b.linear(b.pool(z), 3, mode="int8")
    return b.program()


def test_planned_design_is_generated_and_measured_exactly(tmp_path):
    prog = chain()
    graphs = solve_adder_graphs(prog)
    slow, _ = generated_design(prog, 1.0, area_mm2=1e9, graphs=graphs)   # the fastest at any area
    p1, _ = generated_design(prog, 1.0, target_ips=1.0, graphs=graphs)    # the smallest
    assert slow["images_per_s"] > p1["images_per_s"]
    target = 1.5 * p1["images_per_s"]
    d, plan = generated_design(prog, 1.0, target_ips=target, graphs=graphs)
    assert d["images_per_s"] >= target and plan.predicted.cycles_per_image == d["cycles_per_image"]
    write_plan(plan, tmp_path / "plan.json")
    back = read_plan(tmp_path / "plan.json")
    assert back == plan
    formats = formats_of(prog, back)
    assert max(g for g, _ in formats.values()) > 1
    man = generate_rtl(prog, tmp_path / "rtl", formats=formats, npu=NPUConfig(back.npu.lanes, back.npu.batch),
                       graphs=graphs)
    assert man.formats() == formats
    assert man.expected_cycles_per_image == plan.predicted.cycles_per_image
    assert (man.adders, man.adder_bits) == (plan.predicted.adders, plan.predicted.adder_bits)
    images = np.random.default_rng(0).integers(0, 256, (6, 2, 12, 12), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=prog, stall_in=20, stall_out=20)
    assert res["mismatches"] == 0
    clean = verify_build(tmp_path, images, prog=prog)
    assert clean["mismatches"] == 0 and clean["cycles_per_image"] == man.npu.chip_cycles_per_image
    assert clean["cycles_per_image"] == max(plan.predicted.cycles_per_image, man.npu.cycles_per_image_with_drain)


def _plan_obj(prog):
    return generated_design(prog, 1.0, target_ips=1.0)[1]


@pytest.mark.parametrize("edit, says", [
    (lambda d: d["layers"][1].update(rows=2), "2 rows per beat (V > 1) is generated for the first conv only"),
    (lambda d: d["layers"][2].update(lanes=3), "width converters are generated in front of convs and max pools only"),
    (lambda d: [d["layers"][0].update(lanes=2), d["layers"][1].update(lanes=3)], "one divides the other"),
    (lambda d: d["layers"].pop(), "not this network's hardware layers"),
    (lambda d: d.update(npu=None), "NPU does not match"),
])
def test_unsupported_plans_are_refused(tmp_path, edit, says):
    prog = chain()
    d = json.loads(_plan_obj(prog).to_json())
    edit(d)
    (tmp_path / "p.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match=says.replace("(", r"\(").replace(")", r"\)")):
        formats_of(prog, read_plan(tmp_path / "p.json"))


@pytest.mark.parametrize("edit, says", [
    (lambda d: d.update(version=2), "plan version 2"),
    (lambda d: d["layers"][0].update(lanes="4"), "layers.0.lanes"),
    (lambda d: d.update(clock_ghz=float("inf")), "clock_ghz"),
    (lambda d: d["predicted"].pop("adders"), "predicted.adders"),
    (lambda d: d.update(extra=1), "extra"),
    (lambda d: d.update(pipeline_levels=0), "pipeline_levels"),
])
def test_damaged_plan_files_are_refused(tmp_path, edit, says):
    d = json.loads(_plan_obj(chain()).to_json())
    edit(d)
    (tmp_path / "p.json").write_text(json.dumps(d))
    with pytest.raises(UserError, match=says):
        read_plan(tmp_path / "p.json")


def test_cli_target_plan_and_estimate(tmp_path, tiny_po2, capfd):
    """compile --target-ips plans for the generator and keeps the plan; estimate prices the build at
    the plan's clock and checks the prediction; estimate --write-plan + compile --plan give the
    same RTL; unsupported or mixed options are one line, exit 2."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(a), "--target-ips", "3e6",
                 "--clock-ghz", "1.0", "--json"]) == 0
    comp = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert comp["clock_ghz"] == 1.0 and comp["plan_predicted"]["images_per_s"] >= 3e6
    assert main(["estimate", str(a), "--json"]) == 0
    est = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    c = est["plan_check"]
    assert est["clock_ghz"] == 1.0 and est["images_per_s"] >= 3e6 and c["cycles_equal"]
    assert c["adders_rel"] == 0 and abs(c["area_rel"]) < 0.01
    assert main(["estimate", str(a), "--target-ips", "3e6", "--clock-ghz", "1.0", "--write-plan",
                 str(tmp_path / "p.json")]) == 0
    capfd.readouterr()
    assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(b), "--plan", str(tmp_path / "p.json")]) == 0
    for f in sorted((a / "rtl").iterdir()):
        assert f.read_bytes() == (b / "rtl" / f.name).read_bytes(), f.name
    assert (a / "plan.json").read_bytes() == (b / "plan.json").read_bytes()
    # a clock above the unpipelined trees' fmax: the plan pipelines every conv with one K, exactly
    fast = tmp_path / "fast"
    fmax = est["clock_fmax_ghz"]
    assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(fast), "--target-ips", "3e6",
                 "--clock-ghz", f"{1.15 * fmax:.3f}", "--json"]) == 0
    capfd.readouterr()
    plan = read_plan(fast / "plan.json")
    assert plan.pipeline_levels is not None
    assert main(["estimate", str(fast), "--json"]) == 0
    est2 = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    c2 = est2["plan_check"]
    assert est2["pipeline_levels"] == plan.pipeline_levels and est2["clock_fmax_ghz"] >= plan.clock_ghz
    assert c2["cycles_equal"] and c2["adders_rel"] == 0 and abs(c2["area_rel"]) < 1e-9
    capfd.readouterr()
    (a / "plan.json").write_bytes((fast / "plan.json").read_bytes())   # another build's plan
    assert main(["estimate", str(a)]) == 2
    assert "is not the plan" in capfd.readouterr().err
    (a / "plan.json").write_bytes((b / "plan.json").read_bytes())
    for argv, says in (
            (["--target-ips", "1e12"], "no design the RTL generates reaches"),
            (["--target-ips", "1e6", "--clock-ghz", "15"], "cannot meet"),
            (["--plan", str(tmp_path / "p.json"), "--parallelism", "2"], "drop"),
            (["--target-ips", "1e6", "--no-rtl"], "drop --no-rtl"),
            (["--clock-ghz", "1.0"], "--clock-ghz applies to --target-ips"),
            (["--plan", str(tmp_path / "missing.json")], "not found")):
        assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(tmp_path / "c"), *argv]) == 2
        err = capfd.readouterr().err.strip()
        assert err.count("\n") == 0 and says in err, (argv, err)
        assert not (tmp_path / "c").exists()
