"""The NPU weight-image format: round trip, validation (one-line UserErrors, nothing loaded),
atomic writes, and the `hashiflex npu-image` command."""
import hashlib
import json
import struct

from types import SimpleNamespace

import numpy as np
import pytest

from hashiflex.cli import main
from hashiflex.errors import UserError
from hashiflex.finetune.image import (HEADER, NPUImage, apply_image, check_fits, image_from_program, parse,
                                      read_image, write_image)
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.sim.reference import run_reference
from rtl_progs import ProgBuilder

NPU = SimpleNamespace(in_features=6, capacity=4)   # the fields check_fits reads of an NPUEntry


def _prog():
    b = ProgBuilder((1, 6, 6), seed=4)
    b.linear(b.pool(b.conv("input", 6, k=3, stride=2)), 3, mode="int8")
    return b.program()


def _image(n=3, k=6, seed=0):
    rng = np.random.default_rng(seed)
    return NPUImage(rng.integers(-128, 128, (n, k)).astype(np.int8), rng.integers(-2 ** 31, 2 ** 31, n),
                    rng.integers(1, 2 ** 16, n), 11, 5, {"classes": ["a", "b", "c"][:n], "note": "test"})


def _same(a: NPUImage, b: NPUImage):
    assert np.array_equal(a.weight, b.weight) and a.weight.dtype == b.weight.dtype == np.int8
    assert np.array_equal(a.bias, b.bias) and np.array_equal(a.scale_mult, b.scale_mult)
    assert (a.scale_shift, a.in_frac, a.meta) == (b.scale_shift, b.in_frac, b.meta)


def test_round_trip_is_exact_and_deterministic(tmp_path):
    img = _image()
    p = write_image(tmp_path / "h.npuimg", img)
    _same(read_image(p), img)
    assert img.to_bytes() == _image().to_bytes() == p.read_bytes()
    assert [f.name for f in tmp_path.iterdir()] == ["h.npuimg"]  # no temporary left behind
    raw = p.read_bytes()
    assert raw[:8] == b"HFNPUIMG" and hashlib.sha256(raw[:-32]).digest() == raw[-32:]
    _, version, n, k, shift, frac, mlen = HEADER.unpack_from(raw)
    assert (version, n, k, shift, frac) == (1, 3, 6, 11, 5)
    assert len(raw) == HEADER.size + mlen + n * k + 8 * n + 32


def test_program_head_round_trip_and_apply(tmp_path):
    prog = _prog()
    img = image_from_program(prog)
    _same(read_image(write_image(tmp_path / "p.npuimg", img)), img)
    again = apply_image(prog, img)
    assert np.array_equal(again.arrays[prog.ops[-1].weight], prog.arrays[prog.ops[-1].weight])
    other = apply_image(prog, _image(n=2, seed=3))
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 6, 6), dtype=np.uint8)
    gold = GoldenSimulator(other).run(x, keep_all=True)
    feat = gold[prog.ops[-1].input].numpy().astype(np.int64)
    logits = gold[other.output].numpy().astype(np.int64)
    assert logits.shape == (4, 2) and np.array_equal(logits, _image(n=2, seed=3).integer_logits(feat))
    assert np.array_equal(run_reference(other, x)[other.output], logits)


def _rewrite(raw: bytes, **fields) -> bytes:
    """Change header fields and recompute the checksum (a well-formed file with other values)."""
    vals = list(HEADER.unpack_from(raw))
    for i, name in enumerate(("magic", "version", "n", "k", "shift", "frac", "mlen")):
        vals[i] = fields.get(name, vals[i])
    body = HEADER.pack(*vals) + raw[HEADER.size:-32]
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize("damage, message", [
    (lambda r: r[:-40], "truncated"),
    (lambda r: r[:20], "bad magic or too short"),
    (lambda r: r + b"\0", "longer than its header says"),
    (lambda r: r[:HEADER.size + 5] + bytes([r[HEADER.size + 5] ^ 1]) + r[HEADER.size + 6:], "checksum mismatch"),
    (lambda r: b"NOTANIMG" + r[8:], "bad magic"),
    (lambda r: _rewrite(r, version=2), "version 2"),
    (lambda r: _rewrite(r, n=4), "truncated"),
    (lambda r: _rewrite(r, k=0), "at least 1"),
    (lambda r: b"", "bad magic or too short"),
])
def test_damaged_images_are_one_line_user_errors(tmp_path, damage, message):
    raw = _image().to_bytes()
    p = tmp_path / "bad.npuimg"
    p.write_bytes(damage(raw))
    with pytest.raises(UserError, match=message) as e:
        read_image(p)
    assert "\n" not in str(e.value) and ("hashiflex" in str(e.value))


def test_value_checks():
    img = _image()
    with pytest.raises(UserError, match="int32"):
        NPUImage(img.weight, img.bias + 2 ** 31, img.scale_mult, 0, 0).validate()
    with pytest.raises(UserError, match="scale multipliers"):
        NPUImage(img.weight, img.bias, img.scale_mult * 0, 0, 0).to_bytes()
    with pytest.raises(UserError, match="int8"):
        NPUImage(img.weight.astype(np.int16), img.bias, img.scale_mult, 0, 0).validate()
    with pytest.raises(UserError, match="biases"):
        NPUImage(img.weight, img.bias[:2], img.scale_mult, 0, 0).validate()
    # a corrupt scale inside a well-formed file (checksum recomputed) is still refused
    raw = bytearray(img.to_bytes())
    raw[-32 - 4:-32] = struct.pack("<I", 70000)
    body = bytes(raw[:-32])
    with pytest.raises(UserError, match="scale multipliers"):
        parse(body + hashlib.sha256(body).digest())


def test_image_must_fit_the_build():
    check_fits(_image(n=4), NPU)
    with pytest.raises(UserError, match="at most 4.*--npu-capacity 5"):
        check_fits(_image(n=5), NPU)
    with pytest.raises(UserError, match="has 7 inputs but this build's NPU takes 6"):
        check_fits(_image(k=7), NPU)
    with pytest.raises(UserError, match="inputs"):
        apply_image(_prog(), _image(k=5))


def test_missing_folder_and_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        write_image(tmp_path / "nope" / "h.npuimg", _image())
    with pytest.raises(UserError, match="not found"):
        read_image(tmp_path / "missing.npuimg")


def test_cli_writes_and_checks_images(tmp_path, capfd):
    out = tmp_path / "head.npuimg"
    assert main(["npu-image", "--checkpoint", "small-po2", "--out", str(out), "--json"]) == 0
    r = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert r["classes"] == 10 and r["in_features"] == 128 and r["bytes"] == out.stat().st_size
    img = read_image(out)
    from hashiflex.ir.build import program_from_checkpoint
    _same(img, image_from_program(program_from_checkpoint("small-po2"), img.meta))
    assert main(["npu-image", "--check", str(out), "--json"]) == 0
    assert json.loads(capfd.readouterr().out.strip().splitlines()[-1])["valid"] is True


@pytest.mark.parametrize("argv, message", [
    (["npu-image", "--check", "BAD"], "corrupt"),
    (["npu-image", "--check", "MISSING"], "not found"),
    (["npu-image", "--out", "OUT", "--checkpoint", "small-po2", "--build", "B"], "not both"),
    (["npu-image"], "--out IMAGE"),
    (["npu-image", "--out", "NODIR/x.npuimg", "--checkpoint", "small-po2"], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capfd, argv, message):
    bad = tmp_path / "bad.npuimg"
    raw = bytearray(_image().to_bytes())
    raw[HEADER.size + 3] ^= 0xFF
    bad.write_bytes(bytes(raw))
    subs = {"BAD": str(bad), "MISSING": str(tmp_path / "missing"), "OUT": str(tmp_path / "o.npuimg"),
            "B": str(tmp_path), "NODIR/x.npuimg": str(tmp_path / "nodir" / "x.npuimg")}
    assert main([subs.get(a, a) for a in argv]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hashiflex: error:") and message in err[0], err
    assert not (tmp_path / "o.npuimg").exists()


@pytest.mark.parametrize("cmd", ["npu-image", "finetune"])
def test_help_has_description_and_example(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"hashiflex {cmd} " in out.split("example:")[1] and "--json" in out


def test_compile_help_states_the_npu_defaults(capsys):
    assert main(["compile", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "--npu-lanes" in out and "smallest power of two" in out and "(default 1)" in out
    assert "--npu-capacity" in out
