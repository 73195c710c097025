"""ONNX import: torch.onnx exports (both exporters) rebuild to the same float network; files and
ops we cannot take are one line naming the ONNX node."""
from __future__ import annotations

import warnings

import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from hashiflex.errors import UserError
from hashiflex.models.graph import GraphNet
from hashiflex.models.onnx_import import import_onnx
from hashiflex.models.zoo import resnet8, vgg_small


def export(model: nn.Module, path, dynamo: bool) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(1, 1, 28, 28),), str(path), dynamo=dynamo, verbose=False)


@pytest.mark.parametrize("factory", [resnet8, vgg_small])
@pytest.mark.parametrize("dynamo", [False, True])
def test_exports_rebuild_the_same_network(tmp_path, factory, dynamo):
    torch.manual_seed(0)
    model = factory(4).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    export(model, tmp_path / "m.onnx", dynamo)
    spec, state = import_onnx(str(tmp_path / "m.onnx"))
    net = GraphNet(spec).eval()
    net.load_state_dict(state)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():   # float32 kernels in another order (BN folded by the exporter)
        assert torch.allclose(net(x), model(x), rtol=1e-4, atol=1e-5)
    ops = [n.op for n in spec.nodes]
    assert ops.count("add") == (3 if factory is resnet8 else 0)
    assert ops.count("maxpool") == (2 if factory is vgg_small else 0)


def _model(nodes, inits, opset=17, out_dims=(1, 3)):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_dims))], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _conv_init():
    return [helper.make_tensor("w", TensorProto.FLOAT, [2, 1, 3, 3], [0.1] * 18)]


@pytest.mark.parametrize("case,word", [
    ("sigmoid", "'sig_node'"), ("asym_pads", "asymmetric"), ("opset", "opset"), ("garbage", "not a valid ONNX"),
])
def test_refusals_name_the_node(tmp_path, case, word):
    p = tmp_path / "m.onnx"
    if case == "garbage":
        p.write_bytes(b"\x08\x07garbage")
    else:
        conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[1, 1, 1, 1])
        if case == "asym_pads":
            conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv0", pads=[0, 0, 1, 1])
        nodes = [conv, helper.make_node("Sigmoid" if case == "sigmoid" else "Relu", ["c"], ["y"], name="sig_node")]
        onnx.save(_model(nodes, _conv_init(), opset=11 if case == "opset" else 17, out_dims=(1, 2, 8, 8)), p)
    with pytest.raises(UserError) as e:
        import_onnx(str(p))
    assert word in str(e.value) and "\n" not in str(e.value)
