"""The RTL manifest as typed objects (hashiflex.rtl.manifest): written and read back identically,
and every damaged field refused on read with one line (the file, the field, what to do)."""
from __future__ import annotations

import json

import pytest

from hashiflex.cli import main
from hashiflex.errors import UserError
from hashiflex.rtl import generate_rtl
from hashiflex.rtl.manifest import VERSION, Manifest
from hashiflex.rtl.readback import derived_errors, program_errors, read_manifest
from hashiflex.rtl.npu import NPUConfig
from mutations import KINDS, mutations
from rtl_progs import ProgBuilder


def small_chip():
    b = ProgBuilder((2, 6, 6), seed=7)
    x = b.conv("input", 4, k=3, clamp=(0, 127))
    y = b.conv(x, 4, k=1, pad=0, clamp=(-64, 63))
    z = b.pool(b.add(x, y))
    b.linear(z, 3, mode="int8")
    return b.program()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("man")
    man = generate_rtl(small_chip(), d, 1, npu=NPUConfig(lanes=2))
    return d, man


def test_written_and_read_back_identically(built):
    d, man = built
    text = (d / "manifest.json").read_text()
    back = read_manifest(d / "manifest.json")
    assert back == man and back.to_json() == text and man.npu is not None
    assert back.module(man.modules[0].op) == man.modules[0] and back.module("nope") is None


MANIFEST_KINDS = {k: v for k, v in KINDS.items() if k != "list"}


def test_every_damaged_field_is_refused(built):
    """Each leaf and container of a real manifest, mutated seven ways: every mutation that changes
    the file is refused, by the schema, by what the generator derives, or by the IR beside it
    (the seal covers even the free-text handshake description), always as a one-line UserError."""
    d, _ = built
    good = json.loads((d / "manifest.json").read_text())
    prog = small_chip()
    refused, accepted = 0, []
    for path, kind, bad in mutations(good, MANIFEST_KINDS):
        try:
            man = Manifest.parse(bad, "B/rtl/manifest.json")
            errs = derived_errors(man) + program_errors(man, prog)
        except UserError as e:
            msg = str(e)
            assert "\n" not in msg and msg.startswith("B/rtl/manifest.json") and "re-run" in msg, msg
            errs = [msg]
        if errs:
            refused += 1
        else:
            accepted.append((path, kind))
    assert refused > 3000 and accepted == [], (refused, accepted)   # sealed: even the free-text handshake


@pytest.mark.parametrize("edit, says", [
    (lambda m: m.update(version=VERSION + 1), "upgrade hashiflex"),
    (lambda m: m.update(version="1"), "manifest version '1'"),
    (lambda m: m.update(format="other"), "not a hashiflex RTL manifest"),
    (lambda m: m["modules"][0].update(adders="7"), "modules.0.adders"),
    (lambda m: m["modules"][0].update(extra=1), "modules.0.extra"),
    (lambda m: m.update(adders=m["adders"] + 1), "adders / adder_bits are not the sums"),
    (lambda m: m["npu"].update(capacity=1), "exceeds its capacity"),
    (lambda m: m["npu"].update(lanes=3), "npu geometry"),
    (lambda m: m["input"].update(width=m["input"]["width"] + 1), "is not lanes x channels x bits"),
    (lambda m: m["sha256"].pop("hf_top.v"), "sha256 lacks hf_top.v"),
    (lambda m: m.update(expected_cycles_per_image=float("nan")), "expected_cycles_per_image"),
    (lambda m: m["modules"][0].update(adder_depth=m["modules"][0]["adder_depth"] + 1), "edited after hashiflex wrote it"),
    (lambda m: m.update(handshake="anything"), "edited after hashiflex wrote it"),
    (lambda m: m.pop("seal"), "no seal"),
])
def test_damage_is_named(built, edit, says):
    d, _ = built
    bad = json.loads((d / "manifest.json").read_text())
    edit(bad)
    with pytest.raises(UserError, match=says.replace("(", r"\(")):
        Manifest.parse(bad, "m.json")


def test_cli_refuses_a_damaged_manifest(tmp_path, capfd):
    b = tmp_path / "B"
    prog = small_chip()
    from hashiflex.ir import serialize
    (b / "rtl").mkdir(parents=True)
    serialize.save(prog, b)
    generate_rtl(prog, b / "rtl", 1, npu=NPUConfig(lanes=2))
    m = json.loads((b / "rtl" / "manifest.json").read_text())
    m["modules"][1]["register_bits"] = -5
    (b / "rtl" / "manifest.json").write_text(json.dumps(m))
    for cmd in (["estimate", str(b)], ["verify", str(b), "--images", "1"]):
        capfd.readouterr()
        assert main(cmd) == 2
        err = capfd.readouterr().err.strip()
        assert err.count("\n") == 0 and "modules.1.register_bits" in err and "re-run 'hashiflex compile" in err, err
