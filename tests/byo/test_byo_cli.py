"""The CLI with your own model: import (ONNX, a factory) -> train --init -> quantize -> eval
--engine compare, on the tiny synthetic Fashion-MNIST and on digits; the one-line refusals.
(The Verilator half of the flow: tests/byo/test_byo_rtl.py.)"""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from hashiflex import checkpoint
from hashiflex.models.zoo import resnet8
from robustness_common import assert_error, assert_ok, run, tree

QUICK = ["--epochs", "0.25", "--batch-size", "32", "--limit", "64", "--test-limit", "16"]


def _json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def r8_onnx(tmp_path_factory):
    p = tmp_path_factory.mktemp("onnx") / "r8.onnx"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(resnet8(4).eval(), (torch.zeros(1, 1, 28, 28),), str(p), dynamo=False)
    return p


def test_onnx_and_factory_through_quantize_and_compare(tmp_path, r8_onnx, fmnist_dir, capfd):
    d = str(fmnist_dir)
    for name, src in (("onnx", [r8_onnx]), ("factory", ["--model", "hashiflex.models.zoo:vgg_small"])):
        f, t, q = tmp_path / f"{name}.pt", tmp_path / f"{name}-t.pt", tmp_path / f"{name}-q.pt"
        r = _json(assert_ok(run(["import", *src, "--out", f, "--json"], capfd, bad=False)))
        assert r["classes"] == 10 and r["input_shape"] == [1, 28, 28]
        assert "graph" in checkpoint.load(str(f))["model_config"]
        assert_ok(run(["train", "--init", f, "--out", t, "--data", d, *QUICK], capfd, bad=False))
        assert_ok(run(["quantize", "--checkpoint", t, "--out", q, "--data", d, *QUICK], capfd, bad=False))
        r = _json(assert_ok(run(["eval", "--checkpoint", q, "--engine", "compare", "--data", d, "--json"], capfd,
                                bad=False)))
        assert r["mismatches"] == 0 and r["images"] == 64 and r["logits_identical"]


def test_digits_dataset_follows_the_model(tmp_path, capfd):
    f, q = tmp_path / "d.pt", tmp_path / "dq.pt"
    assert_ok(run(["train", "--model", "hashiflex.models.zoo:vgg_small", "--dataset", "digits", "--out", f,
                   *QUICK], capfd, bad=False))
    assert_ok(run(["quantize", "--checkpoint", f, "--dataset", "digits", "--out", q, *QUICK], capfd, bad=False))
    r = _json(assert_ok(run(["eval", "--checkpoint", q, "--dataset", "digits", "--engine", "compare", "--json"],
                            capfd, bad=False)))
    assert r["images"] == 359 and r["mismatches"] == 0


NOT_A_MODULE = "def build():\n    return 3\n"


def _write(tmp_path, text: str, name: str = "net.py"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _sigmoid_factory(tmp_path):
    return str(_write(tmp_path, "from torch import nn\n"
                      "def build():\n"
                      "    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Sigmoid(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),\n"
                      "                         nn.Linear(4, 10))\n", "sig.py")) + ":build"


@pytest.mark.parametrize("case", ["sigmoid", "no_factory", "not_module", "both", "width_with_model", "classes"])
def test_refusals(tmp_path, capfd, fmnist_dir, case):
    out = tmp_path / "o"
    out.mkdir()
    argv, words = {
        "sigmoid": (["import", "--model", _sigmoid_factory(tmp_path), "--out", out / "x.pt"], ["Sigmoid", "node"]),
        "no_factory": (["import", "--model", "hashiflex.models.zoo:nope", "--out", out / "x.pt"], ["nope"]),
        "not_module": (["import", "--model", str(_write(tmp_path, NOT_A_MODULE)) + ":build", "--out", out / "x.pt"],
                       ["nn.Module"]),
        "both": (["import", "--out", out / "x.pt"], ["exactly one"]),
        "width_with_model": (["train", "--model", "hashiflex.models.zoo:resnet8", "--width", "0.5", "--out",
                              out / "x.pt"], ["--width"]),
        "classes": (["train", "--model", "hashiflex.models.zoo:resnet8", "--dataset", f"folder:{tmp_path / 'imgs'}",
                     "--out", out / "x.pt"], ["classes"]),
    }[case]
    if case == "classes":   # a folder data set of 2 classes for a 10-class model
        from PIL import Image
        for c in ("a", "b"):
            (tmp_path / "imgs" / c).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (28, 28), 40 * i).save(tmp_path / "imgs" / c / f"{i}.png")
    assert_error(run(argv, capfd), *words)
    assert tree(out) == []


RGB_NET = ("from torch import nn\n"
           "def build():\n"
           "    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),\n"
           "                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))\n")


def test_shape_channels_and_classes_come_from_the_model(tmp_path, capfd, monkeypatch):
    """A 3-channel 16x16 two-class CNN on an image folder: train --model --input-shape ->
    quantize -> eval compare -> compile -> verify (Verilator) -> finetune, all on --dataset
    folder:PATH; nothing assumes Fashion-MNIST's 1x28x28 and 10 classes."""
    import numpy as np
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    for c, col in (("red", 0), ("green", 1)):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(20):
            a = rng.integers(0, 60, (16, 16, 3), dtype=np.uint8)
            a[..., col] += 150
            Image.fromarray(a).save(tmp_path / "imgs" / c / f"{i}.png")
    (tmp_path / "net.py").write_text(RGB_NET)
    ds = ["--dataset", "folder:imgs"]
    assert_ok(run(["train", "--model", "net.py:build", "--input-shape", "3,16,16", *ds, "--out", "f.pt",
                   "--epochs", "3"], capfd, bad=False))
    assert_ok(run(["quantize", "--checkpoint", "f.pt", *ds, "--out", "q.pt", "--epochs", "1"], capfd, bad=False))
    r = _json(assert_ok(run(["eval", "--checkpoint", "q.pt", *ds, "--engine", "compare", "--json"], capfd,
                            bad=False)))
    assert r["images"] == 8 and r["mismatches"] == 0
    assert_ok(run(["compile", "--checkpoint", "q.pt", "--out", "b"], capfd, bad=False))
    v = _json(assert_ok(run(["verify", "b", *ds, "--json"], capfd, bad=False)))
    assert v["mismatches"] == 0 and v["images"] == 8 and v["cycles_per_image"] == v["expected_cycles_per_image"]
    f = _json(assert_ok(run(["finetune", "b", *ds, "--out", "h.npuimg", "--json"], capfd, bad=False)))
    assert f["classes"] == ["green", "red"] and f["test_images"] == 8
    assert_error(run(["eval", "--checkpoint", "q.pt", "--images", "4"], capfd), "3x16x16", "--dataset")
