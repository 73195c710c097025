"""Build the quantized (QAT) MobileNetV2 from an FP32 one, reusing its parameters.

The quantized model keeps the FP32 module tree (features.N..., classifier.1) so its state_dict
keys stay recognisable; each conv+BN(+ReLU6) becomes a QConvBN, each residual add a QAdd.
"""
from __future__ import annotations

import copy

from torch import nn

from ..checkpoint import state_dict_problem
from ..errors import UserError
from ..models.mobilenetv2 import ConvBNAct, InvertedResidual, MobileNetV2
from .config import QuantConfig
from .generic import QGraphNet
from .modules import QAdd, QAvgPool, QConvBN, QInput, QLinearNPU, QLinearPo2
from .qnet import QNetBase


def _qconv(seq: nn.Sequential, qc: QuantConfig) -> QConvBN:
    relu6 = len(seq) == 3
    return QConvBN(seq[0], seq[1], relu6, qc.exp_bits, qc.act_bits, qc.weight_scale)


class QInvertedResidual(nn.Module):
    def __init__(self, block: InvertedResidual, qc: QuantConfig):
        super().__init__()
        mods = list(block.conv)
        layers = [_qconv(m, qc) for m in mods if isinstance(m, ConvBNAct)]
        conv, bn = mods[-2], mods[-1]
        layers.append(QConvBN(conv, bn, False, qc.exp_bits, qc.act_bits, qc.weight_scale))
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = block.use_res_connect
        self.add = QAdd(qc.act_bits) if self.use_res_connect else None

    def forward(self, x):
        if self.use_res_connect:
            return self.add(x, self.conv(x))
        return self.conv(x)


class QMobileNetV2(QNetBase):
    def __init__(self, fp32: MobileNetV2, qc: QuantConfig):
        super().__init__()
        fp32 = copy.deepcopy(fp32)
        self.cfg = fp32.cfg
        self.qc = qc
        self.input_q = QInput()
        feats = []
        for m in fp32.features:
            feats.append(QInvertedResidual(m, qc) if isinstance(m, InvertedResidual) else _qconv(m, qc))
        self.features = nn.Sequential(*feats)
        self.pool = QAvgPool(qc.act_bits)
        lin = fp32.classifier[1]
        head = QLinearNPU(lin) if qc.classifier == "npu" else QLinearPo2(lin, qc.exp_bits)
        self.classifier = nn.Sequential(fp32.classifier[0], head)

    def forward(self, x):
        x = self.input_q(x)
        x = self.features(x)
        x = self.pool(x)
        return self.classifier(x)

    def model_config(self) -> dict:
        return self.cfg.to_dict()

    def input_shape(self) -> tuple[int, int, int]:
        return (self.cfg.in_channels, self.cfg.input_size, self.cfg.input_size)


def build_qmodel(model_config: dict, qc: QuantConfig, fp32_state: dict | None = None,
                 q_state: dict | None = None) -> QNetBase:
    """Construct the quantized form of the architecture a checkpoint declares (MobileNetV2 or any
    GraphSpec); load an FP32 state_dict into its base or a quantized state_dict."""
    from ..models.registry import fp32_from_config, is_graph

    what = "graph" if is_graph(model_config) else "MobileNetV2 architecture"
    try:
        fp32 = fp32_from_config(model_config)
        if fp32_state is not None:
            fp32.load_state_dict(fp32_state)
        if is_graph(model_config):
            q = QGraphNet(fp32, qc)
        else:
            q = QMobileNetV2(fp32, qc)
        if q_state is not None:
            q.load_state_dict(q_state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise UserError(f"checkpoint does not match the {what} it declares ({state_dict_problem(e)})") from None
    return q
