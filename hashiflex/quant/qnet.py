"""What every quantized network offers the QAT loop, the lowering and checkpoints, and the
calibration that sets every tensor's scale."""
from __future__ import annotations

import torch
from torch import nn

from .graph import link_fracs
from .modules import QConvBN


class QNetBase(nn.Module):
    """What every quantized network offers the QAT loop, the lowering and checkpoints."""

    def hardened_convs(self) -> list[tuple[str, QConvBN]]:
        return [(n, m) for n, m in self.named_modules() if isinstance(m, QConvBN)]

    def freeze_bn(self) -> "QNetBase":
        """BN running statistics stay fixed during QAT (they are folded into the Po2 weights)."""
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        return self.freeze_bn()

    def model_config(self) -> dict:   # what a checkpoint records to rebuild the network
        raise NotImplementedError

    def input_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError


@torch.no_grad()
def calibrate(q: QNetBase, batches) -> None:
    """Record activation ranges on float outputs, then fix every tensor's fraction bits."""
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
