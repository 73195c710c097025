"""An ONNX CNN -> GraphSpec + weights (GraphNet names), for `hashiflex import MODEL.onnx`.

Float opset 13+ graphs of Conv, BatchNormalization, Relu, Clip(0, 6), Add, MaxPool, AveragePool,
GlobalAveragePool, ReduceMean over H and W, Flatten, Reshape to [N, features], Gemm, MatMul (+ a
bias Add), Identity and Dropout. Both torch.onnx exporters fold BatchNorm into the convs; other
exporters' BatchNormalization nodes are kept. Anything else is one UserError naming the ONNX node.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .graph import GraphSpec, Node

MIN_OPSET = 13


def _attrs(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Reader:
    def __init__(self, model, path: str):
        from onnx import numpy_helper

        self.path = path
        self.consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.nodes: list[Node] = []
        self.state: dict[str, torch.Tensor] = {}
        self.name_of: dict[str, str] = {}      # ONNX tensor -> spec node name (or "input")
        self.used: set[str] = {"input"}
        self.linear_of: dict[str, Node] = {}   # MatMul output -> its linear node (a bias Add may follow)

    def fail(self, node, what: str) -> UserError:
        label = node.name or node.output[0]
        return UserError(f"{self.path}: unsupported {what} at ONNX node {label!r} ({node.op_type}); hashiflex "
                         "imports Conv, BatchNormalization, Relu, Clip(0, 6), Add, MaxPool, AveragePool, "
                         "GlobalAveragePool, ReduceMean, Flatten, Reshape, Gemm and MatMul")

    def const(self, name: str, node) -> np.ndarray:
        if name not in self.consts:
            raise self.fail(node, f"non-constant parameter {name!r}")
        return self.consts[name]

    def fresh(self, node) -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", node.name or node.output[0]).strip("_")[:100] or node.op_type.lower()
        base = base if re.match(r"[A-Za-z_]", base) else f"n_{base}"
        name, k = base, 1
        while name in self.used:
            name, k = f"{base}_{k}", k + 1
        self.used.add(name)
        return name

    def source(self, tensor: str, node) -> str:
        if tensor not in self.name_of:
            raise self.fail(node, f"input {tensor!r} (a constant or a value no supported node computes)")
        return self.name_of[tensor]

    def add(self, node, op: str, ins: list[str], attrs: dict | None = None, params: dict | None = None) -> Node:
        n = Node(name=self.fresh(node), op=op, inputs=[self.source(i, node) for i in ins], attrs=attrs or {})
        self.nodes.append(n)
        self.name_of[node.output[0]] = n.name
        for k, v in (params or {}).items():
            self.state[f"layers.{n.name}.{k}"] = torch.from_numpy(np.array(v, dtype=np.float32))
        return n


def _pads(node, a: dict, r: _Reader) -> list[int]:
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        raise r.fail(node, "auto_pad SAME")
    p = list(a.get("pads", [0, 0, 0, 0]))
    if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
        raise r.fail(node, f"asymmetric padding {p}")
    return [int(p[0]), int(p[1])]


def _window(node, a: dict, r: _Reader) -> dict:
    if a.get("ceil_mode", 0) or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise r.fail(node, "ceil_mode or dilation")
    k = [int(v) for v in a["kernel_shape"]]
    return {"kernel": k, "stride": [int(v) for v in a.get("strides", [1, 1])], "padding": _pads(node, a, r)}


def _conv(r: _Reader, node, a: dict) -> None:
    w = r.const(node.input[1], node)
    if w.ndim != 4 or any(d != 1 for d in a.get("dilations", [1, 1])):
        raise r.fail(node, "non-2-D or dilated convolution")
    g = int(a.get("group", 1))
    bias = len(node.input) > 2 and node.input[2] != ""
    attrs = {"in_channels": int(w.shape[1]) * g, "out_channels": int(w.shape[0]), "kernel": [int(w.shape[2]), int(w.shape[3])],
             "stride": [int(v) for v in a.get("strides", [1, 1])], "padding": _pads(node, a, r), "groups": g, "bias": bias}
    params = {"weight": w, **({"bias": r.const(node.input[2], node)} if bias else {})}
    r.add(node, "conv", [node.input[0]], attrs, params)


def _clip(r: _Reader, node, a: dict) -> None:
    lo = a.get("min", float(r.const(node.input[1], node)) if len(node.input) > 1 and node.input[1] else None)
    hi = a.get("max", float(r.const(node.input[2], node)) if len(node.input) > 2 and node.input[2] else None)
    if lo == 0 and hi == 6:
        r.add(node, "relu6", [node.input[0]])
    elif lo == 0 and hi is None:
        r.add(node, "relu", [node.input[0]])
    else:
        raise r.fail(node, f"Clip({lo}, {hi}) (only ReLU6 = Clip(0, 6) and ReLU)")


def _linear(r: _Reader, node, w: np.ndarray, b: np.ndarray | None) -> Node:
    attrs = {"in_features": int(w.shape[1]), "out_features": int(w.shape[0]), "bias": b is not None}
    return r.add(node, "linear", [node.input[0]], attrs, {"weight": w, **({"bias": b} if b is not None else {})})


def _add(r: _Reader, node) -> None:
    x, y = node.input
    if x in r.consts or y in r.consts:   # MatMul + bias: fold the constant into the linear
        src, b = (y, r.consts[x]) if x in r.consts else (x, r.consts[y])
        lin = r.linear_of.get(src)
        if lin is None or lin.attrs["bias"]:
            raise r.fail(node, "Add of a constant that is not a MatMul's bias")
        i = r.nodes.index(lin)
        r.nodes[i] = Node(name=lin.name, op="linear", inputs=lin.inputs, attrs=dict(lin.attrs, bias=True))
        r.state[f"layers.{lin.name}.bias"] = torch.from_numpy(np.array(b.reshape(-1), dtype=np.float32))
        r.name_of[node.output[0]] = lin.name
        return
    r.add(node, "add", [x, y])


def _node(r: _Reader, node) -> None:
    a, t = _attrs(node), node.op_type
    if t == "Constant":
        from onnx import numpy_helper
        r.consts[node.output[0]] = numpy_helper.to_array(a["value"]) if "value" in a else np.asarray(
            a.get("value_float", a.get("value_floats", a.get("value_ints", a.get("value_int")))))
    elif t in ("Identity", "Dropout") and node.input[0] in r.consts:   # a shared weight
        r.consts[node.output[0]] = r.consts[node.input[0]]
    elif t in ("Identity", "Dropout"):
        r.name_of[node.output[0]] = r.source(node.input[0], node)
    elif t == "Conv":
        _conv(r, node, a)
    elif t == "BatchNormalization":
        s, b, m, v = (r.const(i, node) for i in node.input[1:5])
        r.add(node, "bn", [node.input[0]], {"channels": int(s.shape[0]), "eps": float(a.get("epsilon", 1e-5))},
              {"weight": s, "bias": b, "running_mean": m, "running_var": v})
        r.state[f"layers.{r.nodes[-1].name}.num_batches_tracked"] = torch.tensor(0)
    elif t == "Relu":
        r.add(node, "relu", [node.input[0]])
    elif t == "Clip":
        _clip(r, node, a)
    elif t == "Add":
        _add(r, node)
    elif t in ("MaxPool", "AveragePool"):
        attrs = _window(node, a, r)
        if t == "AveragePool" and any(attrs["padding"]) and not a.get("count_include_pad", 0):
            raise r.fail(node, "AveragePool with padding excluded from the count")
        r.add(node, "maxpool" if t == "MaxPool" else "avgpool", [node.input[0]], attrs)
    elif t == "GlobalAveragePool" or t == "ReduceMean" and _mean_axes(r, node, a) == [2, 3]:
        n = r.add(node, "gap", [node.input[0]])
        if t == "ReduceMean" and not a.get("keepdims", 1):
            r.name_of[node.output[0] + "#"] = n.name
            r.add(node, "flatten", [node.output[0] + "#"])
    elif t == "Flatten" and a.get("axis", 1) == 1 or t == "Reshape" and _to_rows(r, node):
        r.add(node, "flatten", [node.input[0]])
    elif t == "Gemm":
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise r.fail(node, "Gemm with transA, alpha or beta")
        w = r.const(node.input[1], node)
        w = w if a.get("transB", 0) else w.T
        _linear(r, node, w, r.const(node.input[2], node).reshape(-1) if len(node.input) > 2 and node.input[2] else None)
    elif t == "MatMul":
        r.linear_of[node.output[0]] = _linear(r, node, r.const(node.input[1], node).T, None)
    else:
        raise r.fail(node, "operation")


def _mean_axes(r: _Reader, node, a: dict) -> list[int]:
    axes = a.get("axes") if "axes" in a else (r.const(node.input[1], node).tolist() if len(node.input) > 1 else None)
    return sorted(int(x) % 4 for x in axes) if axes is not None else []


def _to_rows(r: _Reader, node) -> bool:
    shape = r.const(node.input[1], node).reshape(-1).tolist()
    return len(shape) == 2 and (shape[1] == -1 or shape[0] in (-1, 0, 1))


def import_onnx(path: str) -> tuple[GraphSpec, dict]:
    """(spec, GraphNet state_dict) of an ONNX file; one UserError for a file or op we cannot take."""
    try:
        import onnx
    except ImportError:
        raise UserError("ONNX import needs the onnx package: pip install onnx") from None
    p = Path(path)
    if not p.is_file():
        raise UserError(f"ONNX file {p} not found")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as e:  # onnx raises DecodeError, ValidationError, ...
        raise UserError(f"{p} is not a valid ONNX model ({' '.join(str(e).split())[:160]}); re-export it") from None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < MIN_OPSET:
        raise UserError(f"{p} uses ONNX opset {opset}; re-export it with opset {MIN_OPSET} or newer")
    g = model.graph
    inputs = [i for i in g.input if i.name not in {x.name for x in g.initializer}]
    if len(inputs) != 1 or len(g.output) != 1:
        raise UserError(f"{p} has {len(inputs)} inputs and {len(g.output)} outputs; hashiflex takes one image "
                        "input and one score output")
    dims = [d.dim_value for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or min(dims[1:]) < 1:
        raise UserError(f"{p}: the input must be [N, C, H, W] with fixed C, H and W (got {dims})")
    r = _Reader(model, str(p))
    r.name_of[inputs[0].name] = "input"
    for node in g.node:
        _node(r, node)
    out = r.name_of.get(g.output[0].name)
    if out is None or not r.nodes or out != r.nodes[-1].name:
        raise UserError(f"{p}: the output must be the last layer's class scores")
    last = r.nodes[-1]
    if last.op != "linear":
        raise UserError(f"{p}: the network must end in a Gemm/MatMul classifier (ends in {last.op})")
    try:
        spec = GraphSpec(input_shape=dims[1:], num_classes=last.attrs["out_features"], nodes=r.nodes).check()
    except ValueError as e:
        raise UserError(f"{p}: the imported graph is not valid ({' '.join(str(e).split())[:200]})") from None
    return spec, r.state
