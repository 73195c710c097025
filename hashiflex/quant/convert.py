"""Build the quantized (QAT) MobileNetV2 from an FP32 one, reusing its parameters.

The quantized model keeps the FP32 module tree (features.N..., classifier.1) so its state_dict
keys stay recognisable; each conv+BN(+ReLU6) becomes a QConvBN, each residual add a QAdd.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..checkpoint import state_dict_problem
from ..errors import UserError
from ..models.mobilenetv2 import ConvBNAct, InvertedResidual, MobileNetV2, MobileNetV2Config
from .config import QuantConfig
from .modules import QAdd, QAvgPool, QConvBN, QInput, QLinearNPU, QLinearPo2


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


class QMobileNetV2(nn.Module):
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

    def hardened_convs(self) -> list[tuple[str, QConvBN]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, QConvBN)]

    def freeze_bn(self) -> "QMobileNetV2":
        """BN running statistics stay fixed during QAT (they are folded into the Po2 weights)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        return self.freeze_bn()


def build_qmodel(model_config: dict, qc: QuantConfig, fp32_state: dict | None = None,
                 q_state: dict | None = None) -> QMobileNetV2:
    """Construct a QMobileNetV2; load an FP32 state_dict into its base or a quantized state_dict."""
    try:
        cfg = MobileNetV2Config.from_dict(model_config)
        fp32 = MobileNetV2(cfg)
        if fp32_state is not None:
            fp32.load_state_dict(fp32_state)
        q = QMobileNetV2(fp32, qc)
        if q_state is not None:
            q.load_state_dict(q_state)
    except (RuntimeError, ValueError, TypeError) as e:
        raise UserError(f"checkpoint does not match the MobileNetV2 architecture it declares "
                        f"({state_dict_problem(e)})") from None
    return q


@torch.no_grad()
def calibrate(q: QMobileNetV2, batches) -> None:
    """Record activation ranges on float outputs, then fix every tensor's fraction bits."""
    from .graph import link_fracs

    mods = [m for m in q.modules() if hasattr(m, "calibrating")]
    q.train()
    for m in mods:
        m.absmax.zero_()
        m.calibrating = True
    for xb in batches:
        q(xb)
    for m in mods:
        m.finish_calibration()
    link_fracs(q)
