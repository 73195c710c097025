"""The QAT form of any GraphNet (hashiflex.models.graph): layers fused into the quantized modules
the IR lowering knows, in the graph's own order.

Fusion: conv [-> bn] [-> relu | relu6] is one QConvBN (BN folded), add [-> relu] one QAdd, and
a node is fused only into its producer's unit when it is that producer's only consumer. Signs
follow the graph: a tensor is unsigned after a ReLU (or ReLU6, or the input) and pools keep
their input's sign, so a pool of a signed sum stays signed.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import UserError
from ..models.graph import GraphNet, GraphSpec, Node
from .config import QuantConfig
from .modules import QAdd, QAvgPool, QAvgPoolWindow, QConvBN, QInput, QLinearNPU, QLinearPo2, QMaxPool
from .qnet import QNetBase, calibrate


def _consumers(spec: GraphSpec) -> dict[str, list[Node]]:
    out: dict[str, list[Node]] = {"input": []}
    for n in spec.nodes:
        out[n.name] = []
        for i in n.inputs:
            out[i].append(n)
    return out


class QGraphNet(QNetBase):
    """Quantized GraphNet. `steps`: (kind, module key, input names, output name) in graph order;
    the modules live in `layers.<first node of the unit>`."""

    def __init__(self, fp32: GraphNet, qc: QuantConfig):
        super().__init__()
        fp32 = copy.deepcopy(fp32)
        self.spec, self.qc = fp32.spec, qc
        self.input_q = QInput()
        self.layers = nn.ModuleDict()
        self.steps: list[tuple[str, str | None, tuple[str, ...], str]] = []
        cons = _consumers(self.spec)
        alias: dict[str, str] = {"input": "input"}   # node name -> the unit output that holds its value
        signed: dict[str, bool] = {"input": False}
        fused: set[str] = set()
        last = self.spec.nodes[-1].name

        def follow(n: Node, ops: tuple[str, ...]) -> Node | None:
            nxt = cons[n.name]
            return nxt[0] if len(nxt) == 1 and nxt[0].op in ops else None

        for n in self.spec.nodes:
            if n.name in fused:
                continue
            ins = tuple(alias[i] for i in n.inputs)
            tail, kind = n, n.op
            if n.op == "conv":
                bn = follow(n, ("bn",))
                tail = bn or n
                act = follow(tail, ("relu", "relu6"))
                tail = act or tail
                m = QConvBN(fp32.layers[n.name], fp32.layers[bn.name] if bn else None, bool(act and act.op == "relu6"),
                            qc.exp_bits, qc.act_bits, qc.weight_scale, relu=bool(act and act.op == "relu"))
                fused.update(x.name for x in (bn, act) if x)
                signed[tail.name] = act is None
            elif n.op == "add":
                act = follow(n, ("relu",))
                tail = act or n
                m = QAdd(qc.act_bits, relu=act is not None)
                fused.update([act.name] if act else [])
                signed[tail.name] = act is None
            elif n.op in ("maxpool", "avgpool", "gap"):
                m = self._pool(n, fp32, qc, signed[ins[0]])
                signed[n.name] = signed[ins[0]]
            elif n.op in ("flatten", "dropout"):
                m = fp32.layers[n.name] if n.op == "dropout" else None
                signed[n.name] = signed[ins[0]]
            elif n.op == "linear":
                if n.name != last:
                    raise UserError(f"node {n.name}: a Linear layer must be the network's last layer (the NPU "
                                    "classifier); hidden Linear layers are not supported")
                m = self._head(fp32.layers[n.name], qc)
            else:   # bn, relu or relu6 that no conv/add unit took
                what = {"bn": "a BatchNorm2d", "relu": "a ReLU", "relu6": "a ReLU6"}[n.op]
                after = "a conv" if n.op == "bn" else "a conv or an add (as that layer's only consumer)"
                raise UserError(f"node {n.name}: {what} must directly follow {after}; this graph has it "
                                f"after {', '.join(n.inputs)}")
            if m is not None:
                self.layers[n.name] = m
            self.steps.append((kind, n.name if m is not None else None, ins, tail.name))
            alias[n.name] = alias[tail.name] = tail.name
        self.output_name = alias[last]

    @staticmethod
    def _pool(n: Node, fp32: GraphNet, qc: QuantConfig, signed: bool) -> nn.Module:
        if n.op == "gap":
            return QAvgPool(qc.act_bits, signed=signed)
        pool = fp32.layers[n.name]
        if n.op == "maxpool":
            return QMaxPool(pool, qc.act_bits, signed)
        return QAvgPoolWindow(pool, qc.act_bits, signed)   # any window: a shift, or a fixed-point 1/N

    @staticmethod
    def _head(lin: nn.Linear, qc: QuantConfig) -> nn.Module:
        if lin.bias is None:   # the NPU always adds a bias: give it zeros
            lin.bias = nn.Parameter(torch.zeros(lin.out_features))
        return QLinearNPU(lin) if qc.classifier == "npu" else QLinearPo2(lin, qc.exp_bits)

    def forward(self, x):
        env = {"input": self.input_q(x)}
        for kind, key, ins, out in self.steps:
            if kind == "flatten":
                env[out] = torch.flatten(env[ins[0]], 1)
            else:
                env[out] = self.layers[key](*(env[i] for i in ins))
        return env[self.output_name]

    def model_config(self) -> dict:
        return {"graph": self.spec.to_dict()}

    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.spec.input_shape)


def quantize_model(model: nn.Module, example_input: torch.Tensor, config: QuantConfig | None = None,
                   calibration=None) -> QGraphNet:
    """Any float CNN built from standard layers -> its calibrated Po2 QAT model (public API).

    `example_input`: one [N, C, H, W] batch as the model sees it (hashiflex feeds raw uint8 pixels
    scaled by 2^-8); `calibration`: batches like it whose activation ranges set every tensor's
    scale (default: the example itself). The result trains with `hashiflex.train.loop.train`,
    lowers with `hashiflex.ir.build.program_from_qmodel` and saves as a po2 checkpoint; one
    UserError names the first layer or operation outside the supported set."""
    from ..models.capture import capture

    qc = (config or QuantConfig()).validate()
    spec, state = capture(model, example_input)
    fp32 = GraphNet(spec)
    fp32.load_state_dict(state)
    q = QGraphNet(fp32, qc)
    calibrate(q, list(calibration) if calibration is not None else [example_input])
    return q.eval()
