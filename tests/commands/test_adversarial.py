"""A hand-written adversarial pass (docs/robustness.md, "Adversarial pass"): bad models (ONNX
files, Python factories, graphs no hardware takes), damaged or implausible checkpoints, data sets
that do not fit the model, bad options. Every case must end with exit 2, one line on stderr that
names the problem, nothing on stdout and nothing written; the ids are the rows of the table."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from conftest import png_claiming
from hashiflex import checkpoint
from robustness_common import assert_error, run, tree

BAD_NETS = Path(__file__).with_name("bad_nets.py")   # one factory per case below


# --- ONNX files built node by node --------------------------------------------------------------

def _graph(nodes, inits, inputs=None, outputs=None, opset=17):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])]
    g = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _t(name, shape, value=0.1):
    return numpy_helper.from_array(np.full(shape, value, np.float32), name)


def _classifier(src="c"):
    """Conv output `src` (2 channels) -> global pool -> flatten -> Gemm to 10 classes."""
    return ([helper.make_node("GlobalAveragePool", [src], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transB=1)],
            [_t("fw", [10, 2]), _t("fb", [10])])


def _conv(**attrs):
    return helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", **attrs)


def _onnx(case: str):
    """(model or raw bytes) of each bad ONNX case."""
    head, head_inits = _classifier()
    w = [_t("w", [2, 1, 3, 3])]
    mk = lambda nodes, inits=(), **kw: _graph(nodes, [*w, *head_inits, *inits], **kw)  # noqa: E731
    relu = helper.make_node("Relu", ["c"], ["r"], name="relu0")
    head_r, _ = _classifier("r")
    return {
        "onnx-sigmoid": lambda: mk([_conv(pads=[1] * 4), helper.make_node("Sigmoid", ["c"], ["r"], name="sig"),
                                    *head_r]),
        "onnx-asym-pads": lambda: mk([_conv(pads=[0, 0, 1, 1]), *head]),
        "onnx-opset-11": lambda: mk([_conv(), *head], opset=11),
        "onnx-clip-range": lambda: mk([_conv(), helper.make_node("Clip", ["c", "lo", "hi"], ["r"], name="clip"),
                                       *head_r], [_t("lo", [], -1.0), _t("hi", [], 1.0)]),
        "onnx-auto-pad-same": lambda: mk([_conv(auto_pad="SAME_UPPER"), *head]),
        "onnx-gemm-transA": lambda: mk([_conv(), *head[:2],
                                        helper.make_node("Gemm", ["f", "fw", "fb"], ["y"], name="fc", transA=1)]),
        "onnx-two-outputs": lambda: mk([_conv(), relu, *head], outputs=[
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10]),
            helper.make_tensor_value_info("r", TensorProto.FLOAT, [1, 2, 26, 26])]),
        "onnx-dynamic-size": lambda: mk([_conv(), *head], inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "H", "W"])]),
        "onnx-no-classifier": lambda: mk([_conv(), helper.make_node("GlobalAveragePool", ["c"], ["p"], name="pool"),
                                          helper.make_node("Flatten", ["p"], ["y"], name="flat", axis=1)],
                                         outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])]),
        "onnx-maxpool-ceil": lambda: mk([_conv(), helper.make_node("MaxPool", ["c"], ["r"], name="mp", ceil_mode=1,
                                                                   kernel_shape=[2, 2], strides=[2, 2]), *head_r]),
        "onnx-avgpool-exclude-pad": lambda: mk([_conv(), helper.make_node(
            "AveragePool", ["c"], ["r"], name="ap", kernel_shape=[2, 2], pads=[1, 1, 1, 1], count_include_pad=0),
            *head_r]),
        "onnx-add-constant": lambda: mk([_conv(), helper.make_node("Add", ["c", "k"], ["r"], name="addk"), *head_r],
                                        [_t("k", [1, 2, 1, 1])]),
        "onnx-dilated": lambda: mk([_conv(dilations=[2, 2]), *head]),
        "onnx-concat": lambda: mk([_conv(), helper.make_node("Concat", ["c", "c"], ["r"], name="cat", axis=1),
                                   *head_r]),
        "onnx-resize": lambda: mk([_conv(), helper.make_node("Resize", ["c", "", "sc"], ["r"], name="up"), *head_r],
                                  [_t("sc", [4], 2.0)]),
        "onnx-weight-input": lambda: _graph([helper.make_node("Conv", ["x", "wx"], ["c"], name="conv0"), *head],
                                            head_inits, inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 28, 28]),
            helper.make_tensor_value_info("wx", TensorProto.FLOAT, [2, 1, 3, 3])]),
        "onnx-garbage": lambda: b"\x08\x07 this is not protobuf \xff\xfe",
        "onnx-empty": lambda: b"",
    }[case]()


ONNX_CASES = {   # id: words the one line must hold
    "onnx-sigmoid": ["'sig'", "Sigmoid"], "onnx-asym-pads": ["asymmetric"], "onnx-opset-11": ["opset 11"],
    "onnx-clip-range": ["Clip(-1.0, 1.0)"], "onnx-auto-pad-same": ["auto_pad"], "onnx-gemm-transA": ["transA"],
    "onnx-two-outputs": ["2 outputs"], "onnx-dynamic-size": ["fixed C, H and W"],
    "onnx-no-classifier": ["classifier"], "onnx-maxpool-ceil": ["ceil_mode"],
    "onnx-avgpool-exclude-pad": ["count"], "onnx-add-constant": ["constant"], "onnx-dilated": ["dilated"],
    "onnx-concat": ["Concat"], "onnx-resize": ["Resize"], "onnx-weight-input": ["2 inputs"],
    "onnx-garbage": ["not a valid ONNX"], "onnx-empty": ["not a valid ONNX"],
}


@pytest.mark.parametrize("case", sorted(ONNX_CASES))
def test_bad_onnx_files(case, tmp_path, capfd):
    src, out = tmp_path / "m.onnx", tmp_path / "out"
    out.mkdir()
    m = _onnx(case)
    if isinstance(m, bytes):
        src.write_bytes(m)
    else:
        onnx.save(m, src)
    assert_error(run(["import", src, "--out", out / "m.pt"], capfd), *ONNX_CASES[case])
    assert tree(out) == []


# --- Python factories ---------------------------------------------------------------------------

FACTORY_CASES = {   # id: (factory, command that refuses, words)
    "py-sigmoid": ("sigmoid", "import", ["Sigmoid", "node"]),
    "py-upsample": ("upsample", "import", ["Upsample"]),
    "py-dilated": ("dilated", "import", ["dilated"]),
    "py-leaky-relu": ("leaky", "import", ["LeakyReLU"]),
    "py-hardtanh-range": ("hardtanh", "import", ["Hardtanh"]),
    "py-reflect-padding": ("reflect", "import", ["padding_mode"]),
    "py-maxpool-ceil": ("ceil_pool", "import", ["ceil_mode"]),
    "py-concat": ("concat", "import", ["cat", "node"]),
    "py-two-outputs": ("two_outputs", "import", ["one tensor"]),
    "py-two-inputs": ("two_inputs", "import", ["more than one input"]),
    "py-control-flow": ("control_flow", "import", ["cannot capture"]),
    "py-parameter-op": ("parameter_op", "import", ["constant tensor"]),
    "py-adaptive-2": ("adaptive2", "import", ["output size 1"]),
    "py-rgb-on-gray": ("rgb", "import", ["cannot capture"]),
    "py-raises": ("raises", "import", ["weights file missing"]),
    "py-not-module": ("not_module", "import", ["nn.Module"]),
    "py-no-such-factory": ("nope", "import", ["no callable nope"]),
    "py-avgpool-divisor": ("avg_div", "import", ["AvgPool2d", "divisor_override"]),
    "py-bn-not-after-conv": ("bn_first", "quantize", ["BatchNorm2d", "directly follow"]),
    "py-hidden-linear": ("hidden_linear", "quantize", ["last layer"]),
    "py-flatten-feature-map": ("flatten_map", "quantize", ["pooled vector", "(2, 7, 7)"]),
    "py-five-classes": ("five_classes", "quantize", ["10 classes", "--dataset"]),
}


@pytest.mark.parametrize("case", sorted(FACTORY_CASES))
def test_bad_python_models(case, tmp_path, fmnist_dir, capfd):
    factory, cmd, words = FACTORY_CASES[case]
    out = tmp_path / "out"
    out.mkdir()
    ref = f"{BAD_NETS}:{factory}"
    if cmd == "import":
        assert_error(run(["import", "--model", ref, "--out", out / "m.pt"], capfd), *words)
    else:   # the capture is fine; the quantized form is not
        f = tmp_path / "f.pt"
        rc, _, err = run(["import", "--model", ref, "--out", f], capfd, bad=False)
        assert rc == 0, err
        assert_error(run(["quantize", "--checkpoint", f, "--out", out / "q.pt", "--data", fmnist_dir, "--epochs", "0",
                          "--limit", "8", "--test-limit", "4"], capfd), *words)
    assert tree(out) == []


# --- command lines ------------------------------------------------------------------------------

def _cli_cases(env):
    d = str(env["data"])
    return {
        "import-both-sources": (["import", env["onnx"], "--model", "x.py:f"], ["exactly one"]),
        "import-no-source": (["import"], ["exactly one"]),
        "import-no-colon": (["import", "--model", "bad_nets.py"], ["FILE.py:FACTORY"]),
        "import-missing-file": (["import", "--model", "nowhere/net.py:build"], ["not found"]),
        "import-missing-module": (["import", "--model", "no_such_pkg.nets:build"], ["loading it failed"]),
        "import-missing-onnx": (["import", env["tmp"] / "nope.onnx"], ["not found"]),
        "import-shape-junk": (["import", "--model", "hashiflex.models.zoo:resnet8", "--input-shape", "28x28"],
                              ["C,H,W"]),
        "import-shape-zero": (["import", "--model", "hashiflex.models.zoo:resnet8", "--input-shape", "0,28,28"],
                              ["C must be"]),
        "train-model-and-width": (["train", "--model", "hashiflex.models.zoo:resnet8", "--width", "0.5", "--data", d],
                                  ["--width", "MobileNetV2"]),
        "train-model-and-init": (["train", "--model", "hashiflex.models.zoo:resnet8", "--init", env["graph"],
                                  "--data", d], ["not both"]),
        "train-init-po2": (["train", "--init", env["po2"], "--data", d], ["quantized"]),
        "compile-fp32-graph": (["compile", "--checkpoint", env["graph"], "--out", env["out"] / "b"],
                               ["FP32", "quantize it first"]),
        "eval-unknown-dataset": (["eval", "--checkpoint", env["graph"], "--dataset", "cifar"], ["unknown --dataset"]),
        "eval-images-0": (["eval", "--checkpoint", env["graph"], "--images", "0", "--data", d], ["--images"]),
    }


CLI_IDS = ["import-both-sources", "import-no-source", "import-no-colon", "import-missing-file",
           "import-missing-module", "import-missing-onnx", "import-shape-junk", "import-shape-zero",
           "train-model-and-width", "train-model-and-init", "train-init-po2", "compile-fp32-graph",
           "eval-unknown-dataset", "eval-images-0"]


@pytest.fixture
def env(tmp_path, tiny_po2, fmnist_dir, capfd):
    from hashiflex.models.zoo import resnet8

    onnx_path, graph = tmp_path / "r8.onnx", tmp_path / "graph.pt"
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(resnet8(2).eval(), (torch.zeros(1, 1, 28, 28),), str(onnx_path), dynamo=False)
    # the factory keeps BatchNorm layers (the ONNX exporters fold them into the convs)
    assert run(["import", "--model", "hashiflex.models.zoo:resnet8", "--out", graph], capfd, bad=False)[0] == 0
    out = tmp_path / "out"
    out.mkdir()
    return {"onnx": onnx_path, "graph": graph, "po2": tiny_po2, "data": fmnist_dir, "tmp": tmp_path, "out": out}


@pytest.mark.parametrize("case", CLI_IDS)
def test_bad_command_lines(case, env, capfd):
    argv, words = _cli_cases(env)[case]
    if argv[0] in ("import", "train", "quantize"):
        argv = [*argv, "--out", env["out"] / "x.pt"]
    assert_error(run(argv, capfd), *words)
    assert tree(env["out"]) == []


# --- checkpoints that are damaged or hold what no trained network has ---------------------------

def _edit(src, dst, fn, reseal: bool):
    blob = torch.load(src, weights_only=True)
    fn(blob)
    if reseal:
        blob["checksum"] = checkpoint.checksum({k: v for k, v in blob.items() if k != "checksum"})
    torch.save(blob, dst)


def _first(sd, suffix):
    return next(k for k in sorted(sd) if k.endswith(suffix))


CKPT_CASES = {   # id: (edit, reseal, words)
    "ckpt-weight-byte-changed": (lambda b: b["state_dict"][_first(b["state_dict"], ".weight")].view(-1)
                                 .__setitem__(0, 0.5), False, ["corrupt", "checksum"]),
    "ckpt-graph-edited": (lambda b: b["model_config"]["graph"]["nodes"][0]["attrs"].__setitem__("stride", [2, 2]),
                          False, ["corrupt"]),
    "ckpt-meta-edited": (lambda b: b["meta"].__setitem__("test_accuracy", 0.99), False, ["corrupt"]),
    "ckpt-no-checksum": (lambda b: b.pop("checksum"), False, ["corrupt"]),
    "ckpt-negative-variance": (lambda b: b["state_dict"][_first(b["state_dict"], "running_var")].view(-1)
                               .__setitem__(0, -0.5), True, ["negative variances"]),
    "ckpt-integer-weights": (lambda b: b["state_dict"].__setitem__(
        _first(b["state_dict"], ".weight"), b["state_dict"][_first(b["state_dict"], ".weight")].to(torch.int64)),
        True, ["not a float tensor"]),
    "ckpt-version-true": (lambda b: b.__setitem__("version", True), True, ["version True"]),
    "ckpt-version-3": (lambda b: b.__setitem__("version", 3), True, ["version 3"]),
    "ckpt-graph-unknown-op": (lambda b: b["model_config"]["graph"]["nodes"][0].__setitem__("op", "sigmoid"), True,
                              ["bad model_config"]),
    "ckpt-graph-dangling-input": (lambda b: b["model_config"]["graph"]["nodes"][1].__setitem__("inputs", ["ghost"]),
                                  True, ["bad model_config", "ghost"]),
    "ckpt-graph-duplicate-name": (lambda b: b["model_config"]["graph"]["nodes"][1].__setitem__(
        "name", b["model_config"]["graph"]["nodes"][0]["name"]), True, ["bad model_config", "used twice"]),
    "ckpt-graph-extra-key": (lambda b: b["model_config"].__setitem__("width_mult", 1.0), True, ["bad model_config"]),
    "ckpt-graph-bad-stride": (lambda b: b["model_config"]["graph"]["nodes"][0]["attrs"].__setitem__("stride", [0, 1]),
                              True, ["bad model_config", "stride"]),
    "ckpt-meta-not-an-object": (lambda b: b.__setitem__("meta", ["accuracy", 0.99]), True, ["meta", "dictionary"]),
    "ckpt-unknown-field": (lambda b: b.__setitem__("trainer_state", {"step": 3}), True, ["trainer_state"]),
    "ckpt-graph-classes-mismatch": (lambda b: b["model_config"]["graph"].__setitem__("num_classes", 7), True,
                                    ["7 classes"]),
}


@pytest.mark.parametrize("case", sorted(CKPT_CASES))
def test_damaged_or_implausible_checkpoints(case, env, capfd):
    fn, reseal, words = CKPT_CASES[case]
    bad = env["tmp"] / "bad.pt"
    _edit(env["graph"], bad, fn, reseal)
    assert_error(run(["eval", "--checkpoint", bad, "--data", env["data"], "--images", "4"], capfd), *words)


# --- data sets that do not fit the model --------------------------------------------------------

def _folder(root, classes=("a", "b"), n=2, write=None):
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("L", (28, 28), 30 * i).save(root / c / f"{i}.png")
    if write:
        write(root)
    return root


def _float_tiff(root):
    from PIL import Image

    Image.fromarray(np.full((28, 28), 3.5, np.float32), "F").save(root / "a" / "f.tiff")


DATA_CASES = {   # id: (folder builder, words)
    "data-two-classes-for-ten": (lambda r: _folder(r), ["2 classes", "10"]),
    "data-empty-class": (lambda r: _folder(r, classes=[str(i) for i in range(10)],
                                           write=lambda q: (q / "9z").mkdir()), ["has no images"]),
    "data-bomb-png": (lambda r: _folder(r, classes=[str(i) for i in range(10)], write=lambda q: png_claiming(
        q / "0" / "z.png", 20000, 20000)), ["claims 20000x20000"]),
    "data-text-as-png": (lambda r: _folder(r, classes=[str(i) for i in range(10)], write=lambda q: (
        q / "3" / "notes.png").write_text("hello")), ["cannot read image"]),
    "data-float-pixels": (lambda r: _folder(r, classes=["a", *[str(i) for i in range(9)]], write=_float_tiff),
                          ["floating-point pixels"]),
    "data-missing-folder": (lambda r: r, ["does not exist"]),
}


@pytest.mark.parametrize("case", sorted(DATA_CASES))
def test_data_sets_that_do_not_fit(case, env, capfd):
    build, words = DATA_CASES[case]
    root = build(env["tmp"] / "imgs")
    assert_error(run(["eval", "--checkpoint", env["graph"], "--dataset", f"folder:{root}"], capfd), *words)


def test_checkpoint_with_an_odd_pickle_protocol_is_one_line_in_a_real_process(tmp_path):
    """A damaged pickle protocol byte makes torch print a UserWarning before failing: in a real
    process (no test-time warning filter) stderr must still be exactly one line."""
    import subprocess
    import sys

    raw = bytearray(checkpoint.resolve("small-fp32").read_bytes())
    i = raw.index(b"\x80\x02")
    raw[i + 1] = 67
    bad = tmp_path / "proto.pt"
    bad.write_bytes(bytes(raw))
    r = subprocess.run([sys.executable, "-m", "hashiflex.cli", "eval", "--checkpoint", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "corrupt" in r.stderr, r.stderr
