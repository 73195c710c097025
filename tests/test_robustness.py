"""Bad input, end to end through `hashiflex.cli.main`: every row of docs/robustness.md is a test here.

Each bad run must end with exit code 2 (130 for an interrupt) and exactly one stderr line that starts
with `hashiflex: error: ` and says what to do, no traceback, nothing on stdout, no partial or temporary
file left in the output folder; and the same command with good input run afterwards must succeed.
Everything runs in-process on the tiny fixtures of conftest.py (two cases also in a real process);
no Verilator build is started (`verify` reruns stop at a stub of the Verilator step).
"""
from __future__ import annotations

import errno
import gzip
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

ROOT = Path(__file__).resolve().parents[1]
QUICK_QAT = ["--epochs", "0", "--batch-size", "32", "--limit", "64", "--test-limit", "4"]


# --- helpers ------------------------------------------------------------------------------------

def run(argv, capfd, bad: bool = True) -> tuple[int, str, str]:
    """main(argv) in-process; on a bad run any warning is an error (it would be an extra stderr line)."""
    capfd.readouterr()
    with warnings.catch_warnings():
        if bad:
            warnings.simplefilter("error")
        code = main([str(a) for a in argv])
    c = capfd.readouterr()
    return code, c.out, c.err


def assert_error(res, *words: str, code: int = 2) -> str:
    rc, out, err = res
    assert rc == code, err
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("hashiflex: error: ") and len(lines[0]) > 30, err
    for w in words:
        assert w.lower() in err.lower(), f"{w!r} not in {err!r}"
    if os.environ.get("HASHIFLEX_ERROR_LOG"):  # collects the messages quoted in docs/robustness.md
        with open(os.environ["HASHIFLEX_ERROR_LOG"], "a") as f:
            f.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}\t{lines[0]}\n")
    return lines[0]


def assert_ok(res) -> str:
    rc, out, err = res
    assert rc == 0, err
    return out


def tree(d: Path) -> list[str]:
    """Every file and folder under d, relative, sorted (hidden temporaries included)."""
    return sorted(str(p.relative_to(d)) for p in Path(d).rglob("*"))


def snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(Path(d).rglob("*")) if p.is_file()}


def good(cmd: str, fp32: Path, po2: Path, data: Path, out: Path) -> list[str]:
    """A good command of each kind, small enough to rerun after every bad case."""
    return {
        "eval": ["eval", "--checkpoint", fp32, "--data", data, "--limit", "4"],
        "eval-po2": ["eval", "--checkpoint", po2, "--data", data, "--limit", "4"],
        "train": ["train", "--out", out / "f.pt", "--data", data, "--epochs", "0", "--width", "0.25",
                  "--last-channel", "64", "--first-stride", "2", "--limit", "8", "--test-limit", "4"],
        "quantize": ["quantize", "--checkpoint", fp32, "--out", out / "q.pt", "--data", data, *QUICK_QAT],
        "sweep": ["sweep", "--checkpoint", fp32, "--out", out, "--data", data, "--exp-bits-list", "3",
                  "--prune-list", "0", *QUICK_QAT],
        "compile": ["compile", "--checkpoint", po2, "--out", out, "--no-rtl"],
        "verify": ["verify", out, "--images", "2", "--data", data],
    }[cmd]


GOOD_FILES = {"train": ["f.pt"], "quantize": ["q.pt"], "sweep": ["sweep.csv", "sweep.png"],
              "compile": ["model.ir.json", "model.ir.npz"]}


@pytest.fixture
def env(tiny_fp32, tiny_po2, fmnist_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    return {"fp32": tiny_fp32, "po2": tiny_po2, "data": fmnist_dir, "tmp": tmp_path, "out": out}


def rerun_good(cmd: str, env: dict, capfd, out: Path | None = None) -> None:
    out = out or env["out"]
    assert_ok(run(good(cmd, env["fp32"], env["po2"], env["data"], out), capfd, bad=False))
    if cmd in GOOD_FILES:
        assert tree(out) == GOOD_FILES[cmd]


@pytest.fixture
def stub_verilator(monkeypatch):
    """Verilator 'present' and its build+simulation replaced by a stub that records the call: verify's
    own checks run for real, no C++ is compiled."""
    from hashiflex import verify
    from hashiflex.verify import harness

    calls = []

    def fake_verify_build(build_dir, images, prog=None, *a, **k):
        calls.append((Path(build_dir), images.shape))
        return {"images": len(images), "mismatches": 0, "cycles_per_image": 1.0, "expected_cycles_per_image": 1,
                "latency_cycles": 1, "build_seconds": 0.0, "sim_images_per_s": 1.0}

    monkeypatch.setattr(harness, "verilator", lambda: "/usr/bin/verilator")
    monkeypatch.setattr(verify, "verify_build", fake_verify_build)
    return calls


@pytest.fixture(scope="module")
def rtl_build(tmp_path_factory, tiny_po2) -> Path:
    d = tmp_path_factory.mktemp("rtl-build") / "build"
    assert main(["compile", "--checkpoint", str(tiny_po2), "--out", str(d)]) == 0
    return d


def copy_build(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --- checkpoints --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bad(tmp_path_factory, tiny_fp32, tiny_po2) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad-ckpts")
    rng = np.random.default_rng(0)
    raw, qraw = tiny_fp32.read_bytes(), tiny_po2.read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    (d / "truncated-po2.pt").write_bytes(qraw[: len(qraw) - 100])
    (d / "random.pt").write_bytes(rng.integers(0, 256, 8192, dtype=np.uint8).tobytes())
    (d / "empty.pt").write_bytes(b"")
    torch.save({"epoch": 3, "weights": torch.zeros(3)}, d / "foreign.pt")
    torch.save(torch.zeros(3), d / "tensor.pt")
    blob, qblob = checkpoint.load(str(tiny_fp32)), checkpoint.load(str(tiny_po2))
    sd, qsd, mc = blob["state_dict"], qblob["state_dict"], blob["model_config"]

    def save(name, state, kind="fp32", cfg=None, src=blob):
        checkpoint.save(d / name, kind, cfg or src["model_config"], state,
                        quant_config=src["quant_config"] if kind == "po2" else None)

    save("arch.pt", sd, cfg=dict(mc, width_mult=0.5))  # declares a wider net than its weights
    save("rgb.pt", sd, cfg=dict(mc, in_channels=3))
    for name, v in (("nan", float("nan")), ("inf", float("inf"))):
        s = {k: t.clone() for k, t in sd.items()}
        s["features.3.conv.1.0.weight"][0, 0, 1, 1] = v
        save(f"{name}.pt", s)
        key = next(k for k, t in qsd.items() if k.endswith(".weight") and t.is_floating_point() and t.numel() > 1)
        s = {k: t.clone() for k, t in qsd.items()}
        s[key].view(-1)[0] = -float("inf") if name == "inf" else v
        save(f"{name}-po2.pt", s, "po2", src=qblob)
    save("missing-keys.pt", {k: t for k, t in sd.items() if not k.startswith("features.2.")})
    save("extra-keys.pt", dict(sd, **{"features.99.weight": torch.zeros(2)}))
    save("missing-keys-po2.pt", {k: t for k, t in qsd.items() if not k.startswith("features.2.")}, "po2", src=qblob)
    save("extra-keys-po2.pt", dict(qsd, **{"head.extra": torch.zeros(2)}), "po2", src=qblob)
    return {p.stem: p for p in d.iterdir()}


CORRUPT = [
    ("truncated", "eval", ["truncated", "re-create"]),
    ("truncated-po2", "compile", ["truncated", "re-create"]),
    ("random", "eval", ["corrupt"]),
    ("random", "quantize", ["corrupt"]),
    ("empty", "eval", ["corrupt"]),
    ("foreign", "eval", ["not a hashiflex checkpoint"]),
    ("tensor", "compile", ["not a hashiflex checkpoint"]),
]


@pytest.mark.parametrize("name,cmd,words", CORRUPT, ids=[f"{n}-{c}" for n, c, _ in CORRUPT])
def test_corrupt_checkpoint(name, cmd, words, bad, env, capfd):
    argv = good(cmd, env["fp32"], env["po2"], env["data"], env["out"])
    argv[argv.index("--checkpoint") + 1] = bad[name]
    assert_error(run(argv, capfd), *words)
    assert tree(env["out"]) == []
    rerun_good(cmd, env, capfd)


def test_missing_checkpoint(env, capfd):
    assert_error(run(["eval", "--checkpoint", env["tmp"] / "nope.pt", "--data", env["data"]], capfd),
                 "not found", "default-po2")
    rerun_good("eval", env, capfd)


class Evil:
    """Unpickling this runs open(SENTINEL, 'w'): a stand-in for arbitrary code."""
    sentinel = ""

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.mark.parametrize("fmt", ["torch-zip", "raw-pickle"])
def test_malicious_pickle_is_not_executed(fmt, env, capfd):
    sentinel = env["tmp"] / "pwned"
    Evil.sentinel = str(sentinel)
    path = env["tmp"] / "evil.pt"
    blob = {"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "kind": "fp32", "state_dict": {},
            "payload": Evil()}
    if fmt == "torch-zip":
        torch.save(blob, path)
    else:
        path.write_bytes(pickle.dumps(blob, protocol=2))
    for argv in (["eval", "--checkpoint", path, "--data", env["data"]],
                 ["compile", "--checkpoint", path, "--out", env["out"]]):
        assert_error(run(argv, capfd), "corrupt or not a hashiflex checkpoint")
        assert not sentinel.exists()
    assert tree(env["out"]) == []
    # the payload is live: an unsafe load would have run it
    loaded = torch.load(path, weights_only=False) if fmt == "torch-zip" else pickle.loads(path.read_bytes())
    loaded["payload"].close()
    assert sentinel.exists()
    rerun_good("eval", env, capfd)


def test_malicious_pickle_in_a_real_process(env):
    sentinel = env["tmp"] / "pwned"
    Evil.sentinel = str(sentinel)
    path = env["tmp"] / "evil.pt"
    torch.save({"format": checkpoint.FORMAT, "payload": Evil()}, path)
    e = {k: v for k, v in os.environ.items() if k != "HASHIFLEX_DATA"} | {"OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "hashiflex", "eval", "--checkpoint", str(path), "--data",
                        str(env["data"])], capture_output=True, text=True, cwd=ROOT, env=e, timeout=120)
    assert_error((p.returncode, p.stdout, p.stderr), "corrupt")
    assert not sentinel.exists()


MISFIT = [
    ("arch", "eval", ["does not match", "size mismatch", "re-create it"]),
    ("arch", "quantize", ["does not match"]),
    ("rgb", "eval", ["3-channel", "1 channel"]),
    ("missing-keys", "eval", ["does not match", "missing key"]),
    ("extra-keys", "quantize", ["does not match", "unexpected key"]),
    ("missing-keys-po2", "compile", ["does not match", "missing key"]),
    ("extra-keys-po2", "eval-po2", ["does not match", "unexpected key"]),
]


@pytest.mark.parametrize("name,cmd,words", MISFIT, ids=[f"{n}-{c}" for n, c, _ in MISFIT])
def test_checkpoint_does_not_fit_architecture(name, cmd, words, bad, env, capfd):
    argv = good(cmd, env["fp32"], env["po2"], env["data"], env["out"])
    argv[argv.index("--checkpoint") + 1] = bad[name]
    assert_error(run(argv, capfd), *words)
    assert tree(env["out"]) == []
    rerun_good(cmd, env, capfd)


@pytest.mark.parametrize("name,cmd", [("nan", "eval"), ("inf", "quantize"), ("nan-po2", "compile"),
                                      ("inf-po2", "eval-po2")])
def test_nonfinite_weights(name, cmd, bad, env, capfd):
    argv = good(cmd, env["fp32"], env["po2"], env["data"], env["out"])
    argv[argv.index("--checkpoint") + 1] = bad[name]
    assert_error(run(argv, capfd), "NaN/inf", "use another checkpoint")
    assert tree(env["out"]) == []
    rerun_good(cmd, env, capfd)


@pytest.mark.parametrize("case", ["compile", "golden", "compare"])
def test_fp32_checkpoint_where_po2_is_needed(case, env, capfd):
    argv = (["compile", "--checkpoint", env["fp32"], "--out", env["out"]] if case == "compile" else
            ["eval", "--engine", case, "--checkpoint", env["fp32"], "--data", env["data"], "--limit", "2"])
    assert_error(run(argv, capfd), "FP32", "quantize")
    assert tree(env["out"]) == []
    rerun_good("compile" if case == "compile" else "eval", env, capfd)


@pytest.mark.parametrize("cmd", ["quantize", "sweep"])
def test_po2_checkpoint_where_fp32_is_needed(cmd, env, capfd):
    argv = good(cmd, env["fp32"], env["po2"], env["data"], env["out"])
    argv[argv.index("--checkpoint") + 1] = env["po2"]
    assert_error(run(argv, capfd), "already quantized", "FP32 checkpoint")
    assert tree(env["out"]) == []
    rerun_good(cmd, env, capfd)


# --- layers the hardware cannot build -----------------------------------------------------------

class _FunctionalGelu(torch.nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return torch.nn.functional.gelu(self.inner(x))


def _with_layer(po2: Path, kind: str, load_qmodel=None):
    if load_qmodel is None:
        from hashiflex.quant.qat import load_qmodel

    q, blob = load_qmodel(str(po2))
    first = q.features[0]
    q.features[0] = {"maxpool": lambda: torch.nn.Sequential(first, torch.nn.MaxPool2d(3, 1, 1)),
                     "gelu": lambda: torch.nn.Sequential(first, torch.nn.GELU()),
                     "functional-gelu": lambda: _FunctionalGelu(first)}[kind]()
    return q, blob


@pytest.mark.parametrize("kind,words", [("maxpool", ["features.0.1", "MaxPool2d"]),
                                        ("gelu", ["features.0.1", "GELU"]),
                                        ("functional-gelu", ["gelu"])], ids=["maxpool", "gelu", "functional-gelu"])
def test_unsupported_layer_in_lowering(kind, words, tiny_po2):
    from hashiflex.errors import UserError
    from hashiflex.ir.lower import lower

    q, _ = _with_layer(tiny_po2, kind)
    with pytest.raises(UserError) as e:
        lower(q, (1, 28, 28))
    for w in words:
        assert w in str(e.value)
    assert "\n" not in str(e.value)


def test_unsupported_layer_in_compile(env, capfd, monkeypatch):
    import hashiflex.quant.qat as qat

    real = qat.load_qmodel
    monkeypatch.setattr(qat, "load_qmodel", lambda name: _with_layer(Path(name), "maxpool", real))
    assert_error(run(["compile", "--checkpoint", env["po2"], "--out", env["out"]], capfd),
                 "unsupported layer features.0.1 (MaxPool2d)", "hashiflex lowers")
    assert tree(env["out"]) == []
    monkeypatch.setattr(qat, "load_qmodel", real)
    rerun_good("compile", env, capfd)


# --- option values ------------------------------------------------------------------------------

OPTIONS = {  # id: (command, option values replacing/adding to the good command, words in the error)
    "exp-bits-0": ("quantize", ["--exp-bits", "0"], ["--exp-bits", "1 to 8"]),
    "exp-bits-neg": ("quantize", ["--exp-bits", "-1"], ["--exp-bits", "1 to 8"]),
    "exp-bits-9": ("quantize", ["--exp-bits", "9"], ["--exp-bits", "1 to 8"]),
    "exp-bits-list-9": ("sweep", ["--exp-bits-list", "3,9"], ["--exp-bits", "1 to 8", "--exp-bits-list"]),
    "compile-arch-exp-bits-0": ("compile", ["--arch", "mobilenetv2-224", "--exp-bits", "0"], ["--exp-bits"]),
    "compile-exp-bits-without-arch": ("compile", ["--exp-bits", "3"], ["--arch"]),
    "prune-1": ("quantize", ["--prune", "1.0"], ["--prune", "[0, 1)"]),
    "prune-neg": ("quantize", ["--prune", "-0.1"], ["--prune", "[0, 1)"]),
    "prune-nan": ("quantize", ["--prune", "nan"], ["--prune", "[0, 1)"]),
    "prune-list-1": ("sweep", ["--prune-list", "0,1"], ["--prune", "--prune-list"]),
    "compile-arch-prune-1": ("compile", ["--arch", "mobilenetv2-224", "--prune", "1"], ["--prune"]),
    "act-bits-1": ("quantize", ["--act-bits", "1"], ["--act-bits", "2 to 16"]),
    "act-bits-17": ("quantize", ["--act-bits", "17"], ["--act-bits", "2 to 16"]),
    "act-bits-0-sweep": ("sweep", ["--act-bits", "0"], ["--act-bits"]),
    "epochs-neg-train": ("train", ["--epochs", "-1"], ["--epochs", ">= 0"]),
    "epochs-neg-quantize": ("quantize", ["--epochs", "-0.5"], ["--epochs", ">= 0"]),
    "epochs-nan": ("quantize", ["--epochs", "nan"], ["--epochs"]),
    "epochs-inf": ("train", ["--epochs", "inf"], ["--epochs"]),
    "lr-0": ("quantize", ["--lr", "0"], ["--lr", "> 0"]),
    "batch-size-0": ("train", ["--batch-size", "0"], ["--batch-size", "at least 1"]),
    "width-0": ("train", ["--width", "0"], ["--width"]),
    "images-0": ("verify", ["--images", "0"], ["--images", "at least 1"]),
    "images-neg": ("verify", ["--images", "-3"], ["--images", "at least 1"]),
    "stall-in-100": ("verify", ["--stall-in", "100"], ["--stall-in", "[0, 100)"]),
    "parallelism-0": ("compile", ["--parallelism", "0"], ["--parallelism", "at least 1"]),
    "parallelism-neg": ("compile", ["--parallelism", "-2"], ["--parallelism", "at least 1"]),
    "limit-0-eval": ("eval", ["--limit", "0"], ["--limit", "at least 1"]),
    "limit-neg-train": ("train", ["--limit", "-5"], ["--limit", "at least 1"]),
    "test-limit-0": ("quantize", ["--test-limit", "0"], ["--test-limit", "at least 1"]),
    "arch-unknown": ("compile", ["--arch", "resnet-9000"], ["--arch", "mobilenetv2-224"]),
    # argparse: type and choice errors, unknown options, missing arguments
    "exp-bits-text": ("quantize", ["--exp-bits", "three"], ["--exp-bits", "invalid int value", "--help"]),
    "epochs-text": ("train", ["--epochs", "abc"], ["--epochs", "invalid float value"]),
    "limit-text": ("eval", ["--limit", "ten"], ["--limit", "invalid int value"]),
    "parallelism-text": ("compile", ["--parallelism", "two"], ["--parallelism", "invalid int"]),
    "images-text": ("verify", ["--images", "many"], ["--images", "invalid int"]),
    "prune-text": ("quantize", ["--prune", "half"], ["--prune", "invalid float"]),
    "exp-bits-list-text": ("sweep", ["--exp-bits-list", "3,x"], ["--exp-bits-list", "comma-separated integers"]),
    "engine-choice": ("eval", ["--engine", "gpu"], ["--engine", "invalid choice"]),
    "unknown-option": ("eval", ["--bogus"], ["unrecognized arguments: --bogus"]),
}


def _with_options(argv: list, opts: list[str]) -> list:
    """Set each `--opt value` pair of opts in argv (a lone flag is appended)."""
    argv = list(argv)
    if len(opts) == 1:
        return argv + opts
    for opt, val in zip(opts[::2], opts[1::2]):
        if opt in argv:
            argv[argv.index(opt) + 1] = val
        else:
            argv += [opt, val]
    return argv


def _bad_option_run(case, env, capfd, rtl_build) -> None:
    cmd, opts, words = OPTIONS[case]
    out = rtl_build if cmd == "verify" else env["out"]
    argv = _with_options(good(cmd, env["fp32"], env["po2"], env["data"], out), opts)
    assert_error(run(argv, capfd), *words)
    assert tree(env["out"]) == []


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_bad_option_value(case, env, capfd, rtl_build, stub_verilator):
    _bad_option_run(case, env, capfd, rtl_build)
    assert stub_verilator == []


@pytest.mark.parametrize("cmd", sorted({c for c, _, _ in OPTIONS.values()}))
def test_good_rerun_after_bad_options(cmd, env, capfd, rtl_build, stub_verilator):
    """Every bad option value of `cmd`, one after another in the same folder, then the good command."""
    for case in sorted(c for c, (k, _, _) in OPTIONS.items() if k == cmd):
        _bad_option_run(case, env, capfd, rtl_build)
    assert stub_verilator == []
    rerun_good(cmd, env, capfd, rtl_build if cmd == "verify" else None)
    assert len(stub_verilator) == (cmd == "verify")


@pytest.mark.parametrize("argv,words", [([], ["required", "COMMAND"]), (["frobnicate"], ["invalid choice"]),
                                        (["train"], ["required", "--out"]), (["verify"], ["required", "BUILD"])],
                         ids=["no-command", "unknown-command", "train-without-out", "verify-without-build"])
def test_command_line_errors(argv, words, capfd):
    assert_error(run(argv, capfd), *words, "--help")
    assert_ok(run(["--help"], capfd, bad=False))


def test_every_help_has_an_example(capfd):
    top = assert_ok(run(["--help"], capfd, bad=False))
    assert "examples:" in top
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"train", "quantize", "eval", "sweep", "compile", "verify"} <= set(commands)
    for cmd in commands:
        text = assert_ok(run([cmd, "--help"], capfd, bad=False))
        assert "example:" in text and f"hashiflex {cmd}" in text.split("example:")[1], cmd


# --- data ---------------------------------------------------------------------------------------

def _damage_data(src: Path, dst: Path, how: str) -> Path:
    shutil.copytree(src, dst)
    f = dst / "t10k-images-idx3-ubyte.gz"
    if how == "not-gzip":
        f.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    elif how == "truncated-gzip":
        raw = f.read_bytes()
        f.write_bytes(raw[: len(raw) // 2])
    elif how == "wrong-magic":
        with gzip.open(f, "wb") as g:
            g.write(bytes([0, 0, 0x0D, 3]) + b"\0" * 100)
    elif how == "short-body":
        with gzip.open(f, "wb") as g:
            g.write(bytes([0, 0, 8, 3, 0, 0, 0, 64, 0, 0, 0, 28, 0, 0, 0, 28]) + b"\0" * 100)
    elif how == "count-mismatch":
        write_idx(dst / "t10k-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    elif how == "missing-file":
        f.unlink()
    return dst


BAD_DATA = [
    ("missing-dir", ["not found in", "--data DIR", "apt-get install dataset-fashion-mnist"]),
    ("missing-file", ["not found in", "--data DIR"]),
    ("not-gzip", ["cannot read", "re-install"]),
    ("truncated-gzip", ["cannot read", "re-install"]),
    ("wrong-magic", ["not a uint8 idx file", "re-install"]),
    ("short-body", ["truncated", "re-install"]),
    ("count-mismatch", ["64 images but 5 labels", "re-install"]),
]


@pytest.mark.parametrize("how,words", BAD_DATA, ids=[h for h, _ in BAD_DATA])
def test_bad_data(how, words, env, capfd):
    data = env["tmp"] / "nodata" if how == "missing-dir" else _damage_data(env["data"], env["tmp"] / "d", how)
    argv = good("eval", env["fp32"], env["po2"], data, env["out"])
    argv.remove("--limit"), argv.remove("4")
    assert_error(run(argv, capfd), *words)
    rerun_good("eval", env, capfd)


def test_bad_data_for_training_writes_nothing(env, capfd):
    data = _damage_data(env["data"], env["tmp"] / "d", "wrong-magic")
    argv = good("quantize", env["fp32"], env["po2"], data, env["out"])
    assert_error(run(argv, capfd), "not a uint8 idx file")
    assert tree(env["out"]) == []
    rerun_good("quantize", env, capfd)


# --- verify: Verilator and the build folder -----------------------------------------------------

def _path_without_verilator() -> str:
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not os.path.exists(os.path.join(p, "verilator")))


def test_missing_verilator(env, capfd, monkeypatch, rtl_build):
    build = copy_build(rtl_build, env["tmp"] / "b")
    before = snapshot(build)
    monkeypatch.setenv("PATH", _path_without_verilator())
    assert_error(run(["verify", build, "--images", "2", "--data", env["data"]], capfd),
                 "verilator not found", "apt-get install verilator")
    assert snapshot(build) == before  # failed before building: no verilator/ work folder
    monkeypatch.undo()
    if shutil.which("verilator"):  # Verilator back on PATH: verify gets past the check to the build
        from hashiflex import verify
        monkeypatch.setattr(verify, "verify_build", lambda *a, **k: (_ for _ in ()).throw(SystemError("reached")))
        with pytest.raises(SystemError, match="reached"):
            main(["verify", str(build), "--images", "2", "--data", str(env["data"])])


def test_missing_verilator_in_a_real_process(env, rtl_build):
    e = {k: v for k, v in os.environ.items() if k != "HASHIFLEX_DATA"}
    e.update(PATH=_path_without_verilator(), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-m", "hashiflex", "verify", str(rtl_build), "--images", "1", "--data",
                        str(env["data"])], capture_output=True, text=True, cwd=ROOT, env=e, timeout=120)
    assert_error((p.returncode, p.stdout, p.stderr), "apt-get install verilator")
    assert not (rtl_build / "verilator").exists()


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
