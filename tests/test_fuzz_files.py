"""Fuzzing every file format hashiflex reads back (docs/robustness.md, "Files we wrote"): Hypothesis
takes a valid file of each format, mutates it (a field deleted, retyped, NaN / Infinity, negative,
huge, out of range; bytes flipped, inserted, cut; non-UTF-8) and runs the reader. Each case must be
read back unchanged or refused with one line (UserError); never a traceback, never a different
answer (image folders: a well-formed result). 7 fuzzers x 130 = 910 generated cases per run."""
from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashiflex.errors import UserError
from hashiflex.finetune.image import NPUImage, parse
from hashiflex.ir import serialize
from hashiflex.rtl import generate_rtl
from hashiflex.rtl.plan import plan_from, read_plan, write_plan
from hashiflex.rtl.readback import read_manifest
from mutations import leaves
from rtl_progs import ProgBuilder

FUZZ = settings(max_examples=130, deadline=None, suppress_health_check=list(HealthCheck))

VALUES = st.sampled_from([None, "12", -1, 0, 10 ** 30, -(10 ** 30), 0.5, True, [1, 2], {}, {"a": 1},
                          float("nan"), float("inf"), -float("inf"), "\u00e9", ""])


def _refused_in_one_line(fn):
    """fn() -> value, or the UserError's message (asserted to be one line)."""
    try:
        return True, fn()
    except UserError as e:
        assert "\n" not in str(e).strip(), str(e)
        return False, str(e)


def _byte_mutation(data, good: bytes, hows: list[str]) -> tuple[str, bytes]:
    """(how, mutated bytes): a byte flipped, bytes inserted or appended, or the file cut; other
    `hows` are returned with the bytes unchanged for the caller to handle."""
    raw = bytearray(good)
    how = data.draw(st.sampled_from(hows))
    i = data.draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        raw[i] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        raw = raw[:i]
    elif how == "insert":
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=8))
    elif how == "append":
        raw += data.draw(st.binary(min_size=1, max_size=8))
    return how, bytes(raw)


def _json_mutation(draw, good):
    """A mutated text of a JSON document: a value replaced or deleted, or the text cut or given a
    non-UTF-8 byte."""
    how = draw(st.sampled_from(["value", "value", "value", "delete", "cut", "bytes"]))
    text = json.dumps(good, indent=1, sort_keys=True)
    if how == "cut":
        return text.encode()[: draw(st.integers(0, len(text) - 1))]
    if how == "bytes":
        raw = bytearray(text.encode())
        raw.insert(draw(st.integers(0, len(raw))), draw(st.sampled_from([0xff, 0xc3, 0x80, 0x00])))
        return bytes(raw)
    paths = [p for p in leaves(good) if p]
    path = draw(st.sampled_from(paths))
    bad = json.loads(text)
    obj = bad
    for k in path[:-1]:
        obj = obj[k]
    if how == "delete" and not isinstance(path[-1], int):
        del obj[path[-1]]
    else:
        obj[path[-1]] = draw(VALUES)
    return json.dumps(bad, indent=1, sort_keys=True, allow_nan=True).encode()


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A small build: IR, RTL with an NPU-less pipeline, and a plan."""
    d = tmp_path_factory.mktemp("fuzz")
    b = ProgBuilder((2, 6, 6), seed=9)
    x = b.conv("input", 3, k=3, clamp=(0, 127))
    b.linear(b.pool(b.conv(x, 4, k=1, pad=0)), 3)
    prog = b.program()
    serialize.save(prog, d)
    generate_rtl(prog, d / "rtl")
    figures = {"cycles_per_image": 64, "images_per_s": 1e6, "area_mm2": 0.01, "energy_pj_per_image": 10.0,
               "adders": 100, "adder_bits": 1000}
    write_plan(plan_from({op.name: (1, 1) for op in prog.ops}, None, 1.0, None, figures), d / "plan.json")
    return d


@FUZZ
@given(data=st.data())
def test_fuzz_plan(build, tmp_path_factory, data):
    good = json.loads((build / "plan.json").read_text())
    f = tmp_path_factory.mktemp("p") / "plan.json"
    f.write_bytes(_json_mutation(data.draw, good))
    ok, got = _refused_in_one_line(lambda: read_plan(f))
    if ok:   # a plan is an input users may edit: an accepted one is generated exactly or refused
        from hashiflex.rtl.plan import formats_of
        ok2, formats = _refused_in_one_line(lambda: formats_of(serialize.load(build), got))
        assert not ok2 or formats == got.formats()


@FUZZ
@given(data=st.data())
def test_fuzz_manifest(build, tmp_path_factory, data):
    good = json.loads((build / "rtl" / "manifest.json").read_text())
    f = tmp_path_factory.mktemp("m") / "manifest.json"
    f.write_bytes(_json_mutation(data.draw, good))
    ok, got = _refused_in_one_line(lambda: read_manifest(f, "re-run"))
    if ok:   # sealed (Manifest.seal): only the unchanged text is accepted
        assert got == read_manifest(build / "rtl" / "manifest.json")


@FUZZ
@given(data=st.data())
def test_fuzz_ir(build, tmp_path_factory, data):
    good = json.loads((build / "model.ir.json").read_text())
    d = tmp_path_factory.mktemp("ir")
    (d / "model.ir.npz").write_bytes((build / "model.ir.npz").read_bytes())
    (d / "model.ir.json").write_bytes(_json_mutation(data.draw, good))
    ok, got = _refused_in_one_line(lambda: serialize.load(d))
    if ok:   # accepted: it computes exactly what the original computes (an inactive clamp may differ)
        from hashiflex.sim.reference import run_reference
        want = serialize.load(build)
        x = np.random.default_rng(3).integers(0, 256, (4, *want.tensors[want.input].shape), dtype=np.uint8)
        a, b = run_reference(got, x), run_reference(want, x)
        assert got.output == want.output and np.array_equal(a[got.output], b[want.output])


def _image_bytes() -> bytes:
    rng = np.random.default_rng(0)
    return NPUImage(rng.integers(-128, 128, (3, 5)).astype(np.int8), rng.integers(-1000, 1000, 3),
                    rng.integers(1, 100, 3), 4, 8, {"classes": ["a", "b", "c"]}).to_bytes()


@FUZZ
@given(data=st.data())
def test_fuzz_npu_image(data):
    _, raw = _byte_mutation(data, _image_bytes(), ["flip", "cut", "insert", "append"])
    ok, got = _refused_in_one_line(lambda: parse(raw))
    assert not ok, "a changed NPU image was accepted"   # the SHA-256 covers every byte


def _idx(dims: tuple, body: bytes) -> bytes:
    return bytes([0, 0, 8, len(dims)]) + struct.pack(">" + "I" * len(dims), *dims) + body


@FUZZ
@given(data=st.data())
def test_fuzz_idx_files(tmp_path_factory, data):
    """Fashion-MNIST idx.gz files: headers edited (counts, sizes, type, dims), payloads cut, label
    values out of range, the gzip stream damaged."""
    from hashiflex.data.fashion_mnist import FILES, load_fashion_mnist

    rng = np.random.default_rng(1)
    n = 6
    imgs, lbls = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)
    parts = {"img": [(n, 28, 28), imgs.tobytes()], "lbl": [(n,), lbls.tobytes()]}
    which = data.draw(st.sampled_from(["img", "lbl"]))
    dims, body = parts[which]
    how = data.draw(st.sampled_from(["dim", "cut", "label", "gzip", "magic"]))
    raw = None
    if how == "dim":
        k = data.draw(st.integers(0, len(dims) - 1))
        dims = tuple(data.draw(st.sampled_from([0, 1, 5, 7, 27, 29, 56, 2 ** 31])) if j == k else v
                     for j, v in enumerate(dims))
    elif how == "cut":
        body = body[: data.draw(st.integers(0, len(body) - 1))]
    elif how == "label":
        which, dims = "lbl", (n,)
        bad = bytearray(lbls.tobytes())
        bad[data.draw(st.integers(0, n - 1))] = data.draw(st.integers(10, 255))
        body = bytes(bad)
    elif how == "magic":
        raw = gzip.compress(bytes([0, 0, data.draw(st.sampled_from([0x09, 0x0d])), len(dims)]) +
                            _idx(dims, body)[4:])
    parts[which] = [dims, body]
    d = tmp_path_factory.mktemp("idx")
    for name, blob in zip(FILES["train"], (_idx((n, 28, 28), imgs.tobytes()), _idx((n,), lbls.tobytes()))):
        (d / name).write_bytes(gzip.compress(blob))     # a valid train split: the folder is found
    img_f, lbl_f = FILES["test"]
    for key, name in (("img", img_f), ("lbl", lbl_f)):
        blob = gzip.compress(_idx(*parts[key]))
        if key == which and raw is not None:
            blob = raw
        if key == which and how == "gzip":
            cut = bytearray(blob)
            i = data.draw(st.integers(0, len(cut) - 1))
            cut[i] ^= 0xff
            blob = bytes(cut)
        (d / name).write_bytes(blob)
    ok, got = _refused_in_one_line(lambda: load_fashion_mnist("test", str(d)))
    assert ok or "not found" not in got, got     # the mutated file itself was read
    if ok:
        x, y = got
        assert x.shape == (n, 1, 28, 28) and np.array_equal(x[:, 0], imgs) and np.array_equal(y, lbls), how



@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory):
    """A small graph checkpoint (a ResNet-8-style network of width 2) and its state_dict."""
    import torch

    from hashiflex import checkpoint
    from hashiflex.models.capture import capture
    from hashiflex.models.zoo import resnet8

    torch.manual_seed(0)
    spec, state = capture(resnet8(2), torch.zeros(1, 1, 28, 28))
    p = tmp_path_factory.mktemp("ckpt") / "g.pt"
    checkpoint.save(p, "fp32", {"graph": spec.to_dict()}, state)
    return p, state


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint(ckpt_file, tmp_path_factory, data):
    """Checkpoints: bytes flipped, inserted or cut anywhere in the torch zip; a weight changed
    without the checksum; values no trained network has (negative variance, integer weights)
    with a matching checksum; the recorded graph edited. Each is loaded exactly or refused."""
    import torch

    from hashiflex import checkpoint
    from hashiflex.commands.common import fp32_model

    good, state = ckpt_file
    p = tmp_path_factory.mktemp("c") / "m.pt"
    how, raw = _byte_mutation(data, good.read_bytes(), ["flip", "flip", "cut", "insert", "weight", "sane", "graph"])
    if how in ("flip", "cut", "insert"):
        p.write_bytes(raw)
    else:
        blob = torch.load(good, weights_only=True)
        sd = blob["state_dict"]
        key = data.draw(st.sampled_from(sorted(k for k, v in sd.items() if v.is_floating_point())))
        if how == "weight":                 # one value changed, the stored checksum kept
            sd[key].view(-1)[0] += 1.0
        elif how == "sane":                 # what no trained network has, checksum recomputed
            if key.endswith("running_var"):
                sd[key].view(-1)[0] = -1.0
            else:
                sd[key] = sd[key].to(torch.int64)
            blob["checksum"] = checkpoint.checksum(blob)
        else:
            g = blob["model_config"]["graph"]
            path = data.draw(st.sampled_from([q for q in leaves(g) if q]))
            obj = g
            for k in path[:-1]:
                obj = obj[k]
            obj[path[-1]] = data.draw(VALUES)
        torch.save(blob, p)
    import warnings

    with warnings.catch_warnings():   # a warning would be a second stderr line
        warnings.simplefilter("error")
        ok, got = _refused_in_one_line(lambda: fp32_model(checkpoint.load(str(p))))
    if ok:
        assert how in ("flip", "insert", "graph"), how   # the checksum covers weights and settings
        sd = got.state_dict()   # only bytes torch never reads, or a value set to what it was
        assert sd.keys() == state.keys() and all(torch.equal(sd[k], state[k]) for k in sd)


@FUZZ
@given(data=st.data())
def test_fuzz_image_folder(tmp_path_factory, data):
    """Image folders: a PNG's bytes flipped, cut or inserted (headers, sizes, CRCs, the zlib
    stream), or a non-image with an image suffix. Each load returns well-formed images of the
    asked size, or is refused in one line; never a traceback. (Images are outside data: a BMP has
    no checksum, so a changed pixel can load; the promise here is the shape and the refusal.)"""
    from PIL import Image

    from hashiflex.data.folder import load_image_folder

    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (d / c).mkdir()
        Image.fromarray(rng.integers(0, 256, (20, 24), dtype=np.uint8)).save(d / c / "x.png")
    victim = d / data.draw(st.sampled_from(["a", "b"])) / "x.png"
    how, raw = _byte_mutation(data, victim.read_bytes(), ["flip", "flip", "cut", "insert", "text"])
    victim.write_bytes(b"not an image at all\n" if how == "text" else raw)
    size, channels = data.draw(st.sampled_from([(28, 1), (8, 3)]))
    ok, got = _refused_in_one_line(lambda: load_image_folder(str(d), size, channels))
    if ok:
        x, y, names = got
        assert x.dtype == np.uint8 and x.shape == (2, channels, size, size) and list(y) == [0, 1]
