"""Any CNN as data: a GraphSpec lists the layers of a float network and how they connect, and
GraphNet runs it. A checkpoint stores the spec (its `model_config` is `{"graph": ...}`), so every
command rebuilds the network without the user's code. Specs come from torch.fx
(hashiflex.models.capture) or ONNX (hashiflex.models.onnx_import).

Node ops and their attributes (all integers unless noted):
  conv       in_channels, out_channels, kernel [kh, kw], stride [sh, sw], padding [ph, pw], groups, bias (bool)
  bn         channels, eps (float)
  relu, relu6
  add        (two inputs)
  maxpool    kernel, stride, padding
  avgpool    kernel, stride, padding            (count_include_pad, as PyTorch's default)
  gap        (global average pool to [N, C, 1, 1])
  flatten    (to [N, C*H*W])
  dropout    p (float)
  linear     in_features, out_features, bias (bool)
Nodes are in topological order; `inputs` name earlier nodes or "input".
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from torch import nn

Dim = Annotated[StrictInt, Field(ge=1, le=1 << 16)]
Pad = Annotated[StrictInt, Field(ge=0, le=1 << 12)]
Name = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
OPS = ("conv", "bn", "relu", "relu6", "add", "maxpool", "avgpool", "gap", "flatten", "dropout", "linear")
ATTRS = {"conv": {"in_channels", "out_channels", "kernel", "stride", "padding", "groups", "bias"},
         "bn": {"channels", "eps"}, "maxpool": {"kernel", "stride", "padding"},
         "avgpool": {"kernel", "stride", "padding"}, "dropout": {"p"},
         "linear": {"in_features", "out_features", "bias"}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Node(_Strict):
    name: Name
    op: Literal[OPS]
    inputs: list[Name] = Field(min_length=1, max_length=2)
    attrs: dict[StrictStr, StrictInt | StrictBool | StrictFloat | list[Pad]] = {}


class GraphSpec(_Strict):
    input_shape: Annotated[list[Dim], Field(min_length=3, max_length=3)]   # C, H, W
    num_classes: Dim
    nodes: list[Node] = Field(min_length=1, max_length=4096)

    def check(self) -> "GraphSpec":
        """Cross-field rules: distinct names, inputs produced before use, the attributes each op
        needs (ValueError naming the node otherwise)."""
        seen = {"input"}
        for n in self.nodes:
            if n.name in seen:
                raise ValueError(f"node {n.name}: the name is used twice")
            for i in n.inputs:
                if i not in seen:
                    raise ValueError(f"node {n.name}: input {i} is not produced before it")
            if len(n.inputs) != (2 if n.op == "add" else 1):
                raise ValueError(f"node {n.name}: a {n.op} takes {2 if n.op == 'add' else 1} input(s)")
            need = ATTRS.get(n.op, set())
            if set(n.attrs) != need:
                raise ValueError(f"node {n.name}: a {n.op} has attributes {sorted(need)} (got {sorted(n.attrs)})")
            for k in ("kernel", "stride", "padding"):
                if k in need and not (isinstance(n.attrs[k], list) and len(n.attrs[k]) == 2 and
                                      (k == "padding" or min(n.attrs[k]) >= 1)):
                    raise ValueError(f"node {n.name}: {k} must be a pair of integers")
            seen.add(n.name)
        return self

    def to_dict(self) -> dict:
        return self.model_dump()

    @staticmethod
    def from_dict(d) -> "GraphSpec":
        """Validate a stored spec (ValueError with the first problem)."""
        try:
            return GraphSpec.model_validate(d).check()
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise ValueError(f"{where}: {err['msg']}") from None


def _pair(v) -> tuple[int, int]:
    return tuple(v)


def make_layer(n: Node) -> nn.Module | None:
    """The torch module of a node (None for ops without one: add, flatten)."""
    a = n.attrs
    if n.op == "conv":
        return nn.Conv2d(a["in_channels"], a["out_channels"], _pair(a["kernel"]), _pair(a["stride"]),
                         _pair(a["padding"]), groups=a["groups"], bias=a["bias"])
    if n.op == "bn":
        return nn.BatchNorm2d(a["channels"], eps=a["eps"])
    if n.op == "relu":
        return nn.ReLU()
    if n.op == "relu6":
        return nn.ReLU6()
    if n.op == "maxpool":
        return nn.MaxPool2d(_pair(a["kernel"]), _pair(a["stride"]), _pair(a["padding"]))
    if n.op == "avgpool":
        return nn.AvgPool2d(_pair(a["kernel"]), _pair(a["stride"]), _pair(a["padding"]))
    if n.op == "gap":
        return nn.AdaptiveAvgPool2d(1)
    if n.op == "dropout":
        return nn.Dropout(a["p"])
    if n.op == "linear":
        return nn.Linear(a["in_features"], a["out_features"], bias=a["bias"])
    return None


class GraphNet(nn.Module):
    """The float network of a GraphSpec; parameters live in `layers.<node name>`."""

    def __init__(self, spec: GraphSpec):
        super().__init__()
        self.spec = spec
        self.layers = nn.ModuleDict({n.name: m for n in spec.nodes if (m := make_layer(n)) is not None})

    def forward(self, x):
        env = {"input": x}
        for n in self.spec.nodes:
            args = [env[i] for i in n.inputs]
            if n.op == "add":
                env[n.name] = args[0] + args[1]
            elif n.op == "flatten":
                env[n.name] = torch.flatten(args[0], 1)
            else:
                env[n.name] = self.layers[n.name](args[0])
        return env[self.spec.nodes[-1].name]
