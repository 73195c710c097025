"""MobileNetV2 with torchvision-compatible state_dict keys.

torchvision is not a dependency; this module rebuilds the same module tree
(`features.N...`, `classifier.1`) so a torchvision `mobilenet_v2` state_dict
loads with `load_state_dict(strict=True)` when the shapes match.
Extra knobs (input channels, first stride, classes, width) let the same
network fit 28x28 grayscale data.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

# (expansion t, output channels c, repeats n, first stride s), as in the paper/torchvision.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels the way torchvision does (never more than 10 % down)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class MobileNetV2Config:
    num_classes: int = 10
    in_channels: int = 1
    width_mult: float = 1.0
    first_stride: int = 1
    input_size: int = 28
    last_channel: int = 1280
    dropout: float = 0.2

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "MobileNetV2Config":
        fields = set(MobileNetV2Config.__dataclass_fields__)
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return MobileNetV2Config(**d)

    def validate(self) -> None:
        if self.num_classes < 1 or self.in_channels < 1:
            raise ValueError("num_classes and in_channels must be >= 1")
        if not 0 < self.width_mult <= 4:
            raise ValueError("width_mult must be in (0, 4]")
        if self.first_stride not in (1, 2):
            raise ValueError("first_stride must be 1 or 2")
        if self.input_size < 8:
            raise ValueError("input_size must be >= 8")


class ConvBNAct(nn.Sequential):
    """conv -> BN [-> ReLU6]; children named 0, 1, 2 as torchvision's Conv2dNormActivation."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1, act: bool = True):
        layers = [
            nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU6(inplace=False))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(cin, hidden, k=1))
        layers += [
            ConvBNAct(hidden, hidden, k=3, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, cfg: MobileNetV2Config = MobileNetV2Config()):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        cin = make_divisible(32 * cfg.width_mult)
        last = make_divisible(cfg.last_channel * max(1.0, cfg.width_mult))
        features: list[nn.Module] = [ConvBNAct(cfg.in_channels, cin, k=3, stride=cfg.first_stride)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            cout = make_divisible(c * cfg.width_mult)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNAct(cin, last, k=1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(last, cfg.num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = self.pool(x).flatten(1)
        return self.classifier(x)
