"""`hashiflex compile` / `verify` on good and bad input: one-line errors with exit code 2."""
import json

import pytest

from hashiflex.cli import main
from test_cli import _assert_one_line_error


@pytest.fixture(scope="module")
def build(tmp_path_factory, tiny_po2):
    d = tmp_path_factory.mktemp("build")
    assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(d), "--no-rtl", "--json"]) == 0
    return d


def test_compile_writes_ir_and_rtl(tmp_path, tiny_po2, capfd):
    assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(tmp_path), "--json"]) == 0
    res = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert (tmp_path / "model.ir.json").is_file() and (tmp_path / "rtl" / "manifest.json").is_file()
    assert res["adders"] > 0 and res["expected_cycles_per_image"] > 0 and res["max_acc_bits"] > 8


def _corrupt_npz(d):
    (d / "model.ir.npz").write_bytes(b"not a zip file")


def _bump_version(d):
    js = d / "model.ir.json"
    doc = json.loads(js.read_text())
    doc["version"] = 999
    js.write_text(json.dumps(doc))


@pytest.mark.parametrize("damage", [_corrupt_npz, _bump_version])
def test_verify_damaged_ir_is_one_line_error(damage, build, tmp_path, capfd):
    d = tmp_path / "b"
    d.mkdir()
    for f in build.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    damage(d)
    code = main(["verify", str(d), "--images", "1"])
    c = capfd.readouterr()
    _assert_one_line_error(code, c.out, c.err)


@pytest.mark.parametrize("argv", [
    ["compile", "--checkpoint", "FP32", "--out", "OUT"],                 # FP32 checkpoint, not po2
    ["compile", "--arch", "resnet-9000", "--out", "OUT"],
    ["compile", "--arch", "mobilenetv2-224", "--exp-bits", "9", "--out", "OUT"],
    ["compile", "--arch", "mobilenetv2-224", "--prune", "1.0", "--out", "OUT"],
    ["compile", "--parallelism", "0", "--out", "OUT"],
    ["verify", "MISSING", "--images", "1"],
    ["verify", "BUILD", "--images", "0"],
    ["verify", "BUILD", "--stall-in", "100"],
])
def test_bad_build_options(argv, build, tiny_fp32, tmp_path, capfd):
    sub = {"FP32": str(tiny_fp32), "OUT": str(tmp_path / "out"), "MISSING": str(tmp_path / "nothing"),
           "BUILD": str(build)}
    code = main([sub.get(a, a) for a in argv])
    c = capfd.readouterr()
    _assert_one_line_error(code, c.out, c.err)
    assert not (tmp_path / "out" / "model.ir.json").exists()
