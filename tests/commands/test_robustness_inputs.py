"""Bad input, part 1: checkpoints, unsupported layers, option values, data (docs/robustness.md)."""
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

from robustness_common import *  # noqa: F401,F403  helpers and fixtures shared by both files


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
    ("rgb", "eval", ["3x28x28", "1x28x28"]),
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
    "limit-0-eval": ("eval", ["--limit", "0"], ["--images", "at least 1"]),
    "images-0-eval": ("eval", ["--images", "0"], ["--images", "at least 1"]),
    "limit-neg-train": ("train", ["--limit", "-5"], ["--limit", "at least 1"]),
    "test-limit-0": ("quantize", ["--test-limit", "0"], ["--test-limit", "at least 1"]),
    "arch-unknown": ("compile", ["--arch", "resnet-9000"], ["--arch", "mobilenetv2-224"]),
    # argparse: type and choice errors, unknown options, missing arguments
    "exp-bits-text": ("quantize", ["--exp-bits", "three"], ["--exp-bits", "invalid int value", "--help"]),
    "epochs-text": ("train", ["--epochs", "abc"], ["--epochs", "invalid float value"]),
    "limit-text": ("eval", ["--limit", "ten"], ["--limit", "invalid int value"]),
    "parallelism-text": ("compile", ["--parallelism", "two"], ["--parallelism", "invalid int"]),
    "images-text": ("verify", ["--images", "many"], ["--images", "positive count or 'all'"]),
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


