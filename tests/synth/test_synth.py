"""`hashiflex synth`: modules on ASAP7 cells (Yosys) timed by OpenSTA; the figures recomputed from
the netlist's cells and the liberty areas; cache; bad input in one line (docs/robustness.md).
Yosys and OpenSTA must be installed (scripts/setup.sh): a missing tool fails these tests."""
from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from robustness_common import assert_error, run
from hashiflex.cli import main
from hashiflex.synth import flow, liberty
from hashiflex.synth.run import cache_dir

SMALL = ["hf_l02*"]          # the tiny build's smallest conv modules: seconds each


@pytest.fixture(scope="module")
def build(tmp_path_factory, tiny_po2):
    d = tmp_path_factory.mktemp("synth_build")
    assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(d)]) == 0
    return d


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HASHIFLEX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def synth_json(build, capfd, *extra) -> dict:
    rc, out, err = run(["synth", build, "--module", *SMALL, "--json", *extra], capfd, bad=False)
    assert rc == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_tools_are_installed():
    assert flow.yosys_exe() and flow.sta_exe()


def test_synth_figures_are_the_netlists(build, capfd):
    d = synth_json(build, capfd)
    lib = liberty.load()
    assert d["modules"], d
    for m in d["modules"]:
        net = gzip.decompress((cache_dir() / f"{m['cached_key']}.v.gz").read_bytes()).decode()
        cells = re.findall(r"^\s+([A-Za-z]\w*)\s+(?:\\\S+|[A-Za-z_]\w*)\s*\($", net, flags=re.M)
        assert set(cells) <= set(lib.cells), set(cells) - set(lib.cells)   # only library cells
        assert len(cells) == m["cells"]
        area = sum(lib.area_of(c) for c in cells)
        assert area == pytest.approx(m["area_um2"], rel=1e-9)            # the sum of the cells' own areas
        assert sum(lib.cells[c].sequential for c in cells) == m["flip_flops"] > 0
        assert m["worst_path_ps"] > 50 and m["start"] and m["end"]       # a real register-to-register path
        assert m["model_area_um2"] > 0
    assert d["fmax_ghz"] == pytest.approx(1e3 / max(m["worst_path_ps"] for m in d["modules"]))
    assert d["area_um2"] == pytest.approx(sum(m["area_um2"] for m in d["modules"]))


def test_synth_is_cached_and_a_damaged_entry_is_redone(build, capfd, cache):
    first = synth_json(build, capfd)
    again = synth_json(build, capfd)
    assert [m["synth_s"] for m in again["modules"]] == [m["synth_s"] for m in first["modules"]]   # from cache
    key = first["modules"][0]["cached_key"]
    p = cache / "synth" / f"{key}.json"
    p.write_text(p.read_text().replace('"cells":', '"cells": -1, "x":', 1))     # fails the schema
    redo = synth_json(build, capfd)
    assert redo["modules"][0]["area_um2"] == first["modules"][0]["area_um2"]
    assert json.loads(p.read_text())["cells"] == first["modules"][0]["cells"]   # rewritten whole
    assert not [f for f in (cache / "synth").iterdir() if f.name.startswith(".")]


def sta_report(start: str, end: str, last: float, arrival: float, edge: float, setup: float) -> str:
    """An OpenSTA `report_checks` path as the Debian build prints it: a flip-flop, one gate."""
    return f"""Startpoint: {start} (rising edge-triggered flip-flop clocked by clk)
Endpoint: {end} (rising edge-triggered flip-flop clocked by clk)
  Delay    Time   Description
   0.00    0.00 ^ a/CLK (DFFHQNx1_ASAP7_75t_R)
  42.43   42.43 ^ a/QN (DFFHQNx1_ASAP7_75t_R)
 {last:6.2f} {arrival:7.2f} v b/Y (XOR2xp5_ASAP7_75t_R)
        {arrival:7.2f}   data arrival time

{edge:7.2f} {edge:7.2f}   clock clk (rise edge)
 {-setup:6.2f} {edge - setup:7.2f}   library setup time
"""


def test_sta_report_parse():
    rep = sta_report("w0_2_$_DFFE_PP__Q_3", "u_ofifo.mem[0]_$_DFFE_PP__Q_40", 60.44, 102.87, 1000.0, 19.55)
    p = flow.parse_sta(rep, "m")
    assert (p.start, p.end) == ("w0_2[3]", "u_ofifo.mem[0][40]")
    assert p.arrival_ps == 102.87 and p.setup_ps == 19.55 and p.period_ps == pytest.approx(122.42)
    assert p.worst_arc == "b/Y (XOR2xp5_ASAP7_75t_R)" and p.launch_ps == 42.43 and p.stages == 2
    assert flow.parse_sta("No paths found.", "m") is None


# --- bad input: one line, exit 2, nothing half-written in the cache -----------------------------

def _only_seq(tmp_path) -> Path:
    src = Path(liberty.__file__).parent / "asap7" / liberty.SHIPPED[2]
    dst = tmp_path / "seq.lib.gz"
    shutil.copy(src, dst)
    return dst


@pytest.mark.parametrize("case", ["jobs0", "no_rtl", "missing_lib", "damaged_lib", "not_lib", "no_inverter",
                                  "no_flop", "no_sta", "no_yosys", "no_module", "edited", "timeout", "clock"])
def test_synth_bad_input(case, build, tmp_path, capfd, monkeypatch, cache):
    args = ["synth", build, "--module", *SMALL]
    words: tuple = ()
    if case == "jobs0":
        args += ["--jobs", "0"]; words = ("--jobs",)
    elif case == "no_rtl":
        d = tmp_path / "ir_only"
        d.mkdir()
        args[1] = d; words = ("no RTL", "compile")
    elif case == "missing_lib":
        args += ["--liberty", tmp_path / "nope.lib"]; words = ("not found",)
    elif case == "damaged_lib":
        f = tmp_path / "bad.lib.gz"
        f.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
        args += ["--liberty", f]; words = ("cannot read liberty",)
    elif case == "not_lib":
        f = tmp_path / "x.lib"
        f.write_text("module m; endmodule\n")
        args += ["--liberty", f]; words = ("not a liberty",)
    elif case == "no_inverter":
        args += ["--liberty", _only_seq(tmp_path)]; words = ("inverter",)
    elif case == "no_flop":
        simple = Path(liberty.__file__).parent / "asap7" / liberty.SHIPPED[0]
        args += ["--liberty", simple, Path(liberty.__file__).parent / "asap7" / liberty.SHIPPED[1]]
        words = ("flip-flop",)
    elif case == "no_sta":
        monkeypatch.setenv("HASHIFLEX_STA", str(tmp_path / "no-sta")); words = ("HASHIFLEX_STA",)
    elif case == "no_yosys":
        monkeypatch.setenv("HASHIFLEX_YOSYS", "no-such-yosys"); words = ("HASHIFLEX_YOSYS",)
    elif case == "no_module":
        args[3:] = ["nothing_like_this"]; words = ("matches no module",)
    elif case == "edited":
        rtl = Path(build) / "rtl"
        f = next(rtl.glob("hf_l02*.v"))
        keep = f.read_bytes()
        f.write_bytes(keep.replace(b"generated", b"edited", 1))
        try:
            assert_error(run(args, capfd), "checksum", "compile")
        finally:
            f.write_bytes(keep)
        return
    elif case == "timeout":
        args += ["--timeout", "0.01", "--no-cache"]; words = ("did not finish", "--timeout")
    elif case == "clock":
        args += ["--clock-ghz", "-1"]; words = ("--clock-ghz",)
    assert_error(run(args, capfd), *words)
    assert not (cache / "synth").exists() or not any((cache / "synth").iterdir())


def test_multicycle_report_parse():
    rep = sta_report("sq_3_$_DFFE_PP__Q_4", "u_ofifo.mem[1]_$_DFFE_PP__Q_26", 984.70, 1027.13, 2000.0, 21.35)
    p = flow.parse_sta(rep, "m", 1000.0)
    assert p.cycles == 2 and p.period_ps == pytest.approx((1027.13 + 21.35) / 2)
    one = sta_report("sq_3_$_DFFE_PP__Q_4", "u_ofifo.mem[1]_$_DFFE_PP__Q_26", 984.70, 1027.13, 1000.0, 21.35)
    single = flow.parse_sta(one, "m", 1000.0)
    assert single.cycles == 1 and flow.worst_of(rep + flow.SPLIT + "\n" + one, "m", 1000.0) == single


def test_pool_scaling_is_timed_as_a_multicycle_path(tmp_path):
    """A global pool over 4 beats registers its sums and scales them over two cycles
    (rtl.layers.pool_module); synth's OpenSTA run is told so, and the module allows a shorter period."""
    from hashiflex.rtl import generate_rtl
    from hashiflex.synth.run import Job, synth_module
    from rtl_progs import ProgBuilder

    b = ProgBuilder((4, 2, 2), seed=1)
    b.pool("input")
    man = generate_rtl(b.program(), tmp_path, 1)
    m = man.modules[0]
    assert m.kind == "avgpool" and m.multicycle == 2
    files = (tmp_path / "hf_prims.v", tmp_path / m.file)
    lib = liberty.load()
    single, _ = synth_module(Job(m.name, files, 1000.0), lib)
    multi, _ = synth_module(Job(m.name, files, 1000.0, m.multicycle), lib)
    assert multi.area_um2 == single.area_um2                  # the same netlist, timed differently
    assert multi.path.period_ps <= single.path.period_ps
    if single.path.start.startswith("sq_"):
        assert multi.path.period_ps < single.path.period_ps


def test_hierarchical_mapping_is_close_to_flat(build, capfd):
    """--hierarchical maps each adder shape once: the same cells' areas summed over the hierarchy,
    within 15 % of the flat mapping's area, and a real worst path."""
    flat = synth_json(build, capfd)
    hier = synth_json(build, capfd, "--hierarchical")
    assert hier["mapping"].startswith("hierarchical") and flat["mapping"] == "flat"
    lib = liberty.load()
    for f, h in zip(flat["modules"], hier["modules"]):
        assert h["cached_key"] != f["cached_key"]
        with open(cache_dir() / f"{h['cached_key']}.json") as fh:
            by_type = json.load(fh)["cells_by_type"]
        assert sum(lib.area_of(c) * n for c, n in by_type.items()) == pytest.approx(h["area_um2"], rel=1e-9)
        assert abs(h["area_um2"] / f["area_um2"] - 1) <= 0.15, (h["area_um2"], f["area_um2"])
        assert h["worst_path_ps"] > 50 and f["flip_flops"] <= h["flip_flops"] <= 1.1 * f["flip_flops"]
