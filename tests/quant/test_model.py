"""MobileNetV2 keeps torchvision's module tree, so torchvision state_dicts load strictly."""
from __future__ import annotations

import torch

from hashiflex.models.mobilenetv2 import MobileNetV2, MobileNetV2Config

IMAGENET = MobileNetV2Config(num_classes=1000, in_channels=3, width_mult=1.0, first_stride=2, input_size=224)
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def conv_bn(prefix: str) -> list[str]:
    """torchvision's Conv2dNormActivation: conv at .0, BatchNorm at .1 (ReLU6 at .2 has no state)."""
    return [f"{prefix}.0.weight"] + [f"{prefix}.1.{s}" for s in BN]


def torchvision_keys() -> list[str]:
    """torchvision.models.mobilenet_v2().state_dict().keys(), written out by hand."""
    keys = conv_bn("features.0")
    # block 1 (expansion 1): depthwise conv-bn-relu, then the linear 1x1 projection and its BN
    keys += conv_bn("features.1.conv.0") + ["features.1.conv.1.weight"] + [f"features.1.conv.2.{s}" for s in BN]
    for i in range(2, 18):  # expansion 6: 1x1 expand, 3x3 depthwise, 1x1 projection + BN
        keys += conv_bn(f"features.{i}.conv.0") + conv_bn(f"features.{i}.conv.1")
        keys += [f"features.{i}.conv.2.weight"] + [f"features.{i}.conv.3.{s}" for s in BN]
    keys += conv_bn("features.18")
    return keys + ["classifier.1.weight", "classifier.1.bias"]


def test_state_dict_keys_are_torchvision_mobilenet_v2():
    model = MobileNetV2(IMAGENET)
    assert list(model.state_dict().keys()) == torchvision_keys()
    assert sum(p.numel() for p in model.parameters()) == 3_504_872


def test_torchvision_shapes_and_strides():
    model = MobileNetV2(IMAGENET)
    sd = model.state_dict()
    expect = {"features.0.0.weight": (32, 3, 3, 3), "features.1.conv.0.0.weight": (32, 1, 3, 3),
              "features.1.conv.1.weight": (16, 32, 1, 1), "features.2.conv.0.0.weight": (96, 16, 1, 1),
              "features.2.conv.1.0.weight": (96, 1, 3, 3), "features.17.conv.2.weight": (320, 960, 1, 1),
              "features.18.0.weight": (1280, 320, 1, 1), "classifier.1.weight": (1000, 1280)}
    assert {k: tuple(sd[k].shape) for k in expect} == expect
    strides = [m.stride[0] for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert strides == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]  # torchvision's depthwise strides
    assert model.features[0][0].stride == (2, 2)


def test_fashion_mnist_config_gives_ten_logits():
    model = MobileNetV2(MobileNetV2Config(width_mult=0.25, last_channel=64)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 28, 28))
    assert out.shape == (2, 10)
