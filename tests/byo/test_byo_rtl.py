"""Bring your own model, the whole flow in Verilator: a ResNet-8-style CNN (ReLU after the adds, 1x1
projection shortcuts) and a VGG-style CNN (max pools), each from a Python factory and from its
torch.onnx export: import -> train (short) -> quantize -> eval --engine compare -> compile ->
verify --images 50 (0 mismatches, measured cycles == manifest) -> estimate. Small widths keep the
Verilator builds to seconds; the BUILD path is relative, as a user types it. Fails, not skips,
without Verilator."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from hashiflex.models.zoo import ResNet8, VGGSmall
from robustness_common import assert_ok, run

QUICK = ["--epochs", "0.25", "--batch-size", "32", "--limit", "96", "--test-limit", "16"]
NETS = {"resnet8": lambda: ResNet8(width=2), "vgg": lambda: VGGSmall(width=2)}
FACTORY_MODULE = "def resnet8():\n    from hashiflex.models.zoo import ResNet8\n    return ResNet8(width=2)\n\n\n" \
                 "def vgg():\n    from hashiflex.models.zoo import VGGSmall\n    return VGGSmall(width=2)\n"


def _json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("source", ["factory", "onnx"])
@pytest.mark.parametrize("net", sorted(NETS))
def test_own_network_through_the_whole_flow(net, source, tmp_path, fmnist_dir, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = str(fmnist_dir)
    if source == "onnx":
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(NETS[net]().eval(), (torch.zeros(1, 1, 28, 28),), "net.onnx", dynamo=False)
        src = ["net.onnx"]
    else:
        (tmp_path / "nets.py").write_text(FACTORY_MODULE)
        src = ["--model", f"nets.py:{net}"]
    assert_ok(run(["import", *src, "--out", "f.pt"], capfd, bad=False))
    assert_ok(run(["train", "--init", "f.pt", "--out", "t.pt", "--data", d, *QUICK], capfd, bad=False))
    assert_ok(run(["quantize", "--checkpoint", "t.pt", "--out", "q.pt", "--data", d, *QUICK], capfd, bad=False))
    r = _json(assert_ok(run(["eval", "--checkpoint", "q.pt", "--engine", "compare", "--data", d, "--json"], capfd,
                            bad=False)))
    assert r["mismatches"] == 0 and r["logits_identical"] and r["images"] == 64
    c = _json(assert_ok(run(["compile", "--checkpoint", "q.pt", "--out", "b", "--json"], capfd, bad=False)))
    ops = [o["kind"] for o in json.loads((tmp_path / "b" / "model.ir.json").read_text())["ops"]]
    if net == "vgg":
        assert ops.count("maxpool") == 2
    else:
        assert ops.count("add") == 3
    v = _json(assert_ok(run(["verify", "b", "--images", "50", "--data", d, "--json"], capfd, bad=False)))
    assert v["mismatches"] == 0 and v["images"] == 50
    assert v["cycles_per_image"] == v["expected_cycles_per_image"]
    e = _json(assert_ok(run(["estimate", "b", "--json"], capfd, bad=False)))
    assert e["cycles_per_image"] == v["cycles_per_image"] and c["adders"] > 0
