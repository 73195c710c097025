"""Random small quantized networks covering every IR op, for property-based tests."""
from __future__ import annotations

import torch
from torch import nn

from hashiflex.quant.qnet import calibrate
from hashiflex.quant.modules import QAdd, QAvgPool, QConvBN, QInput, QLinearNPU, QLinearPo2
from hashiflex.quant.prune import apply_masks


class RandomQNet(nn.Module):
    """QInput -> convs (full / depthwise / pointwise, any k, stride, padding) with residual adds
    where shapes allow -> global average pool -> int8 or Po2 linear."""

    def __init__(self, layers: list[dict], in_ch: int, classes: int, exp_bits: int, act_bits: int, head: str):
        super().__init__()
        self.input_q = QInput()
        self.convs = nn.ModuleList()
        self.adds = nn.ModuleList()
        self.residual = []
        c = in_ch
        for spec in layers:
            cout = c if spec["depthwise"] else spec["cout"]
            groups = c if spec["depthwise"] else 1
            conv = nn.Conv2d(c, cout, spec["k"], spec["stride"], spec["pad"], groups=groups, bias=spec["bias"])
            bn = nn.BatchNorm2d(cout) if spec["bn"] else None
            self.convs.append(QConvBN(conv, bn, spec["relu6"], exp_bits, act_bits))
            res = spec["residual"] and cout == c and spec["stride"] == 1 and spec["k"] == 2 * spec["pad"] + 1
            self.residual.append(res)
            self.adds.append(QAdd(act_bits) if res else nn.Identity())
            c = cout
        self.pool = QAvgPool(act_bits)
        lin = nn.Linear(c, classes)
        self.head = QLinearNPU(lin) if head == "npu" else QLinearPo2(lin, exp_bits)

    def forward(self, x):
        x = self.input_q(x)
        for conv, add, res in zip(self.convs, self.adds, self.residual):
            y = conv(x)
            x = add(x, y) if res else y
        x = self.pool(x)
        return self.head(torch.flatten(x, 1))


@torch.no_grad()
def make_random_net(spec: dict, seed: int) -> RandomQNet:
    torch.manual_seed(seed)
    net = RandomQNet(spec["layers"], spec["in_ch"], spec["classes"], spec["exp_bits"], spec["act_bits"],
                     spec["head"])
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.3)
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.3, 2.0)
        elif isinstance(m, nn.Conv2d) and m.bias is not None:
            m.bias.normal_(0, 0.3)
    if spec["prune"] > 0:
        apply_masks([m for m in net.modules() if isinstance(m, QConvBN)], spec["prune"], "layer")
    hw = spec["size"]
    x = torch.randint(0, 256, (8, spec["in_ch"], hw, hw), dtype=torch.uint8)
    calibrate(net, [x.to(torch.float32) / 256])
    net.eval()
    return net
