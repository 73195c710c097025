"""Small example CNNs that are not MobileNetV2, written as a user would write them: the
ResNet-8-style and VGG-style networks of README "Bring your own model" and of the tests.
`hashiflex train --model hashiflex.models.zoo:resnet8` trains one."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """The textbook ResNet block: two 3x3 convs, ReLU after the add, a 1x1 projection shortcut
    when the block downsamples or widens."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet8(nn.Module):
    def __init__(self, width: int = 16, in_channels: int = 1, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU())
        self.layer1 = BasicBlock(width, width, 1)
        self.layer2 = BasicBlock(width, 2 * width, 2)
        self.layer3 = BasicBlock(2 * width, 4 * width, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(torch_flatten(self.pool(x)))


def torch_flatten(x):
    return x.view(x.size(0), -1)


class VGGSmall(nn.Module):
    """conv-bn-relu pairs with 2x2 max-pooling between stages, a global pool and a linear head."""

    def __init__(self, width: int = 16, in_channels: int = 1, num_classes: int = 10):
        super().__init__()

        def stage(cin, cout):
            return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(*stage(in_channels, width), nn.MaxPool2d(2), *stage(width, 2 * width),
                                      nn.MaxPool2d(2), *stage(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(4 * width, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))


def resnet8(width: int = 16) -> nn.Module:
    return ResNet8(width)


def vgg_small(width: int = 16) -> nn.Module:
    return VGGSmall(width)
