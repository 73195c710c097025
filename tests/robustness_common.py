"""Shared helpers and fixtures of the robustness tests (tests/commands/test_robustness_*.py).

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


GOOD_FILES = {"train": ["f.pt"], "quantize": ["q.pt"],
              "sweep": ["points", "points/e3_p0_s1.json", "sweep.csv", "sweep.png"],
              "compile": ["model.graphs.npz", "model.ir.json", "model.ir.npz"]}


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
                "latency_cycles": 1, "build_seconds": 0.0, "sim_images_per_s": 1.0, "verilator_version": "stub",
                "build_mode": "blocks", "ports": {"out": {"distinct_outputs": len(images)}}, "sim_processes": 1}

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


