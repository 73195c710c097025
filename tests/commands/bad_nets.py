"""Python models hashiflex must refuse, one factory per case of tests/commands/test_adversarial.py
(read by `hashiflex import --model bad_nets.py:NAME`, not imported by the tests)."""
import torch
import torch.nn.functional as F
from torch import nn


def _head(body, c=4, classes=10):
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), body, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(c, classes))


def sigmoid(): return _head(nn.Sigmoid())
def upsample(): return _head(nn.Upsample(scale_factor=2))
def dilated(): return _head(nn.Conv2d(4, 4, 3, padding=2, dilation=2))
def leaky(): return _head(nn.LeakyReLU())
def hardtanh(): return _head(nn.Hardtanh(-1.0, 1.0))
def reflect(): return _head(nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"))
def ceil_pool(): return _head(nn.MaxPool2d(2, ceil_mode=True))
def avg_div(): return _head(nn.AvgPool2d(3, divisor_override=4))
def bn_first(): return _head(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4)))
def five_classes(): return _head(nn.ReLU(), classes=5)
def raises(): raise RuntimeError("weights file missing")
def not_module(): return 3


class Cat(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], 1)


def concat(): return _head(Cat(), 8)


class Two(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _head(nn.ReLU())

    def forward(self, x):
        return self.a(x), self.a(x)


def two_outputs(): return Two()


class TwoIn(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _head(nn.ReLU())

    def forward(self, x, y):
        return self.a(x + y)


def two_inputs(): return TwoIn()


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _head(nn.ReLU())

    def forward(self, x):
        if x.sum() > 0:
            return self.a(x)
        return self.a(-x)


def control_flow(): return Branchy()


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = _head(nn.ReLU())
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        return self.a(x) * self.scale


def parameter_op(): return Scaled()


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)
        self.f1 = nn.Linear(4, 8)
        self.f2 = nn.Linear(8, 10)

    def forward(self, x):
        return self.f2(F.relu(self.f1(torch.flatten(F.adaptive_avg_pool2d(self.c(x), 1), 1))))


def hidden_linear(): return Mlp()


class NoPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 2, 3, stride=4)
        self.f = nn.Linear(2 * 7 * 7, 10)

    def forward(self, x):
        return self.f(torch.flatten(F.relu(self.c(x)), 1))


def flatten_map(): return NoPool()


def adaptive2(): return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16, 10))
def rgb(): return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
