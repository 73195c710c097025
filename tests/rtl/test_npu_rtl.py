"""The NPU in RTL: hardened pipeline + NPU (hf_chip) in Verilator equals the golden simulator
exactly, for two different weight images loaded one after the other through the load port into
the SAME Verilator binary, and the hardened files do not depend on the weights. These fail (never
skip) when Verilator is missing."""
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hashiflex.errors import UserError
from hashiflex.finetune.image import NPUImage, apply_image, image_from_program
from hashiflex.rtl import generate_rtl
from hashiflex.rtl.npu import DRAIN, NPUConfig, plan_npu
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.verify import harness, verify_build
from hashiflex.verify.chip import load_file, verify_chip
from rtl_progs import ProgBuilder

CFG = NPUConfig(lanes=4, batch=2, capacity=5)


def _prog(channels=10, classes=3, seed=21):
    b = ProgBuilder((2, 8, 8), seed=seed)
    x = b.conv("input", 6, k=3, stride=2)
    y = b.conv(x, depthwise=True, k=3, clamp=(-40, 40))
    z = b.add(x, y, align_a=0, align_b=1, shift=1, clamp=(-100, 100))
    z = b.conv(z, channels, k=1, pad=0, clamp=(0, 200))
    b.linear(b.pool(z), classes, mode="int8")
    return b.program()


def _random_image(n, k, seed):
    rng = np.random.default_rng(seed)
    return NPUImage(rng.integers(-128, 128, (n, k)).astype(np.int8), rng.integers(-2 ** 31, 2 ** 31, n),
                    rng.integers(1, 2 ** 16, n), 7, 0, {"name": f"random-{seed}"})


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 2, 8, 8), dtype=np.uint8)


@pytest.fixture(scope="module")
def chip(tmp_path_factory):
    prog = _prog()
    d = tmp_path_factory.mktemp("chip")
    man = generate_rtl(prog, d / "rtl", npu=CFG)
    return prog, d, man


def test_chip_is_lint_clean(chip):
    _, d, man = chip
    r = subprocess.run([harness.verilator(), "--quiet", "--lint-only", "-Wall", "--top-module", "hf_chip",
                        *[str(d / "rtl" / f) for f in man.npu.files]], capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr), r.stdout + r.stderr


def test_reload_two_images_in_one_binary_equals_golden(chip):
    prog, d, man = chip
    a = image_from_program(prog)                      # the IR's own head: 3 classes
    b = _random_image(5, 10, seed=3)                  # another head, 5 classes (= capacity), extreme values
    xa, xb = _images(7, 1), _images(6, 2)
    res = verify_chip(d, [(a, xa), (b, xb), (a, xa[:3])], prog)
    assert res["mismatches"] == 0 and res["mismatched_values"] == 0, res["first_mismatch"]
    assert [p["classes"] for p in res["phases"]] == [3, 5, 3]
    assert all(p["mismatches"] == 0 for p in res["phases"])
    # the two heads really give different integer logits (and argmaxes) on the same images
    ga = GoldenSimulator(apply_image(prog, a)).run(xb)[prog.output].numpy()
    gb = GoldenSimulator(apply_image(prog, b)).run(xb)[prog.output].numpy()
    assert ga.shape == (6, 3) and gb.shape == (6, 5) and np.abs(gb).max() > 2 ** 40
    assert (gb != gb[0]).any() and (ga != ga[0]).any()  # the features reach the logits
    # same binary again, reloading in the other order, with input bubbles and output back-pressure
    again = verify_chip(d, [(b, xa), (a, xb)], prog, stall_in=30, stall_out=40, seed=5)
    assert again["build_reused"] and again["mismatches"] == 0, again["first_mismatch"]
    # negative control: run image B but compare with image A's golden logits -> they differ
    bin_ = Path(again["binary"])
    sim = harness.simulate(bin_, man.npu, xa, load=load_file(man.npu, [(b, len(xa))]))
    ga_xa = GoldenSimulator(apply_image(prog, a)).run(xa)[prog.output].numpy().astype(np.int64)
    assert not np.array_equal(sim["outputs"]["logits"][:, :3], ga_xa)


def test_hardened_files_do_not_depend_on_the_weights(tmp_path):
    prog = _prog()
    other = apply_image(prog, _random_image(3, 10, seed=9))       # same shape, other weights
    more = apply_image(prog, _random_image(5, 10, seed=10))       # more classes
    m1 = generate_rtl(prog, tmp_path / "a", npu=CFG)
    m2 = generate_rtl(other, tmp_path / "b", npu=CFG)
    m3 = generate_rtl(more, tmp_path / "c", npu=CFG)
    files = m1.npu.files
    assert "hf_npu.v" in files and "hf_chip.v" in files and "hf_top.v" in files
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() == \
            (tmp_path / "c" / f).read_bytes(), f
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert m3.npu.out_features == 5 and m1.npu.out_features == 3
    # without an NPU the build is the plain pipeline, file for file
    m0 = generate_rtl(prog, tmp_path / "p")
    assert m0.npu is None and m0.files == m1.files
    for f in m0.files:
        assert (tmp_path / "p" / f).read_bytes() == (tmp_path / "a" / f).read_bytes(), f


def test_manifest_npu_entry_and_timing_formula(chip):
    _, _, man = chip
    n = man.npu
    assert (n.lanes, n.batch, n.in_features, n.out_features, n.capacity) == (4, 2, 10, 3, 5)
    assert n.weight_bits == 8 and n.words_per_row == 3 and n.memory_words == 15
    assert n.memory_bits == 5 * 3 * 4 * 8 and n.multipliers == 8
    assert n.cycles_per_image == 3 * 3 / 2 and n.cycles_per_batch == 3 * 3 + DRAIN
    assert n.keeps_pace is (n.cycles_per_image_with_drain <= man.expected_cycles_per_image)
    assert n.top == "hf_chip" and n.outputs[0].channels == 5
    names = {p.name for p in n.ports}
    assert {"w_we", "w_addr", "w_data", "b_we", "b_addr", "b_bias", "b_scale", "n_we", "n_data",
            "logits_valid", "logits_ready", "logits_data", "in_valid", "npu_idle"} <= names


def test_npu_bound_throughput_is_the_formula(tmp_path):
    """L = 1, B = 2, 7 outputs x 40 inputs: the NPU is the bottleneck, one pass of 7*40 + DRAIN
    cycles per two images, measured exactly in Verilator (25 images: 1 + 12 full batches)."""
    b = ProgBuilder((1, 8, 8), seed=8)
    b.linear(b.pool(b.conv("input", 40, k=3, stride=2)), 7, mode="int8")
    prog = b.program()
    man = generate_rtl(prog, tmp_path / "rtl", npu=NPUConfig(lanes=1, batch=2))
    n = man.npu
    assert not n.keeps_pace and n.cycles_per_image == 7 * 40 / 2
    res = verify_build(tmp_path, _images(25, 4)[:, :1], prog=prog, jobs=1)  # auto: the chip, its own head
    assert res["target"] == "chip" and res["mismatches"] == 0, res["first_mismatch"]
    assert res["expected_cycles_per_image"] == (7 * 40 + DRAIN) / 2
    assert abs(res["cycles_per_image"] - res["expected_cycles_per_image"]) <= 0.01 * res["expected_cycles_per_image"]


def test_auto_lanes_pick_the_smallest_power_of_two_that_keeps_pace():
    prog = _prog(channels=40, classes=7)
    for pipeline in (500.0, 60.0, 9.0, 1.0):
        g = plan_npu(prog, NPUConfig(batch=1), pipeline)
        ok = lambda L: (7 * -(-40 // L) + DRAIN) <= pipeline
        assert ok(g.lanes) or g.lanes == 64
        assert g.lanes == 1 or not ok(g.lanes // 2)
    assert plan_npu(prog, NPUConfig(batch=4), 60.0).lanes < plan_npu(prog, NPUConfig(batch=1), 60.0).lanes
    with pytest.raises(UserError, match="capacity"):
        plan_npu(prog, NPUConfig(capacity=3), 60.0)


def test_too_many_classes_is_refused_before_anything_runs(chip, tmp_path):
    prog, d, _ = chip
    with pytest.raises(UserError, match="at most 5"):
        verify_chip(d, [(_random_image(6, 10, seed=1), _images(2, 0))], prog)
    with pytest.raises(UserError, match="takes 10 features"):
        verify_chip(d, [(_random_image(2, 9, seed=1), _images(2, 0))], prog)


def test_missing_verilator_is_a_user_error(chip, monkeypatch):
    prog, d, _ = chip
    from hashiflex.verify import verilator as vl
    monkeypatch.setattr(vl, "locate", lambda override, path: None)
    with pytest.raises(UserError, match="verilator not found"):
        verify_chip(d, [(image_from_program(prog), _images(1, 0))], prog)


def test_verify_command_loads_an_npu_image(chip, tmp_path, capfd):
    """`hashiflex verify BUILD --npu-image FILE`: the chip runs with that head, bit-exact; a file
    that is not an image, or an image that does not fit, is one line and exit 2."""
    import json

    from hashiflex.cli import main
    from hashiflex.finetune.image import write_image
    from hashiflex.ir import serialize

    prog, d, _ = chip
    if not (d / "model.ir.json").is_file():
        serialize.save(prog, d)
    img = write_image(tmp_path / "r.npuimg", _random_image(4, 10, seed=9))
    assert main(["verify", str(d), "--npu-image", str(img), "--images", "5", "--json"]) == 0
    r = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert r["mismatches"] == 0 and r["images"] == 5 and r["npu_image"]["classes"] == 4
    bad = tmp_path / "bad.npuimg"
    bad.write_bytes(b"not an image")
    wide = write_image(tmp_path / "w.npuimg", _random_image(6, 10, seed=2))
    for f, word in ((bad, "NPU image"), (wide, "at most 5"), (tmp_path / "none.npuimg", "not found")):
        assert main(["verify", str(d), "--npu-image", str(f), "--images", "2"]) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0], err
