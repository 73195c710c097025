"""Bring your own model: torch.fx capture, quantize_model, the new ops (ReLU after add, two
computed branches, max pools, windowed average pools over any window, signed pools) and the
refusals.

The invariant over random networks: golden simulator == reference interpreter == the quantized
torch model in float64, exact integers, on every image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings, strategies as st
from torch import nn

from hashiflex import quantize_model
from hashiflex.errors import UserError
from hashiflex.ir.build import program_from_qmodel
from hashiflex.ir.serialize import to_json
from hashiflex.models.zoo import resnet8, vgg_small
from hashiflex.quant.config import QuantConfig
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.sim.reference import run_reference
from hashiflex.train.loop import predict, to_model_input


def _randomize_bn(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.3)
    return model.eval()


def _exact(q, x: np.ndarray):
    prog = program_from_qmodel(q)
    gold = GoldenSimulator(prog).logits(x)
    ref = run_reference(prog, x)[prog.output]
    torch_logits = predict(q, x, dtype=torch.float64) * 2.0 ** prog.tensors[prog.output].frac
    assert torch.equal(torch_logits, torch.round(torch_logits))
    np.testing.assert_array_equal(gold, ref)
    np.testing.assert_array_equal(gold, torch_logits.to(torch.int64).numpy())
    return prog, gold


class RandomNet(nn.Module):
    """A random CNN from the supported layers: each stage is a plain conv, a residual block (ReLU
    after the add or not; identity or a 1x1 projection), a max pool or a 2x2 or 3x3 average pool."""

    def __init__(self, stages: list[tuple[str, int]], width: int, classes: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU6())
        self.stages = stages
        self.mods = nn.ModuleList()
        c = width
        for kind, arg in stages:
            if kind == "conv":
                self.mods.append(nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=c if arg else 1), nn.BatchNorm2d(c)))
            elif kind in ("res", "res_relu", "proj"):
                cout = c * 2 if kind == "proj" else c
                s = 2 if kind == "proj" and arg else 1
                body = nn.Sequential(nn.Conv2d(c, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                                     nn.Conv2d(cout, cout, 1, bias=False), nn.BatchNorm2d(cout))
                short = (nn.Sequential(nn.Conv2d(c, cout, 1, s, bias=False), nn.BatchNorm2d(cout))
                         if kind == "proj" else nn.Identity())
                self.mods.append(nn.ModuleList([body, short]))
                c = cout
            elif kind == "maxpool":
                self.mods.append(nn.MaxPool2d(3, 2, 1) if arg else nn.MaxPool2d(2))
            else:   # a shift (2x2), or a fixed-point 1/9 (3x3, stride 1, padding counted)
                self.mods.append(nn.AvgPool2d(3, 1, 1) if arg else nn.AvgPool2d(2))
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stem(x)
        for (kind, _), m in zip(self.stages, self.mods):
            if kind in ("res", "res_relu", "proj"):
                y = m[0](x) + m[1](x)
                x = F.relu(y) if kind != "res" else y
            else:
                x = m(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


STAGE = st.sampled_from([("conv", 0), ("conv", 1), ("res", 0), ("res_relu", 0), ("proj", 0), ("proj", 1),
                         ("maxpool", 0), ("maxpool", 1), ("avgpool", 0), ("avgpool", 1)])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stages=st.lists(STAGE, min_size=1, max_size=4), seed=st.integers(0, 1000),
       classifier=st.sampled_from(["npu", "po2"]))
def test_random_networks_exact(stages, seed, classifier):
    """Any mix of the supported layers: golden == reference == torch on 6 images."""
    size = 16
    if sum(k in ("maxpool", "avgpool") or k == "proj" and a for k, a in stages) > 3:
        stages = stages[:2]
    torch.manual_seed(seed)
    net = _randomize_bn(RandomNet(stages, 4), seed)
    x = torch.randint(0, 256, (6, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    q = quantize_model(net, to_model_input(x), QuantConfig(classifier=classifier))
    _exact(q, x.numpy())


def test_resnet_and_vgg_lower_to_the_new_ops():
    x = torch.randint(0, 256, (8, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    r = quantize_model(_randomize_bn(resnet8(4), 0), to_model_input(x))
    prog, _ = _exact(r, x.numpy())
    adds = [op for op in prog.ops if op.kind == "add"]
    assert len(adds) == 3 and all(op.clamp_lo == 0 for op in adds)   # ReLU after every add
    assert all(not prog.tensors[op.output].signed for op in adds)
    v = quantize_model(_randomize_bn(vgg_small(4), 0), to_model_input(x))
    prog, _ = _exact(v, x.numpy())
    assert [op.kind for op in prog.ops].count("maxpool") == 2


def test_pool_of_a_signed_sum_stays_signed():
    """A global pool after an add without ReLU: negative averages survive (they used to be
    clamped to 0)."""
    torch.manual_seed(3)
    net = _randomize_bn(RandomNet([("res", 0)], 4), 3)
    with torch.no_grad():
        net.mods[0][0][4].bias.fill_(-2.0)   # push the sum negative
    x = torch.randint(0, 256, (8, 1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    q = quantize_model(net, to_model_input(x))
    prog = program_from_qmodel(q)
    pool = next(op for op in prog.ops if op.kind == "avgpool")
    assert prog.tensors[pool.output].signed and pool.clamp_lo < 0
    vals = run_reference(prog, x.numpy())
    assert (vals[pool.output] < 0).any()
    _exact(q, x.numpy())


class _AnyWindowPools(nn.Module):
    """Average pools whose windows hold 9 and 6 pixels (not powers of two) over an unsigned input
    (after a ReLU) and a signed one (a conv without activation), and a 2x2 pool (a power of two)."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.p1 = nn.AvgPool2d(3, stride=1, padding=1)      # unsigned, 9 pixels, padding counted
        self.p2 = nn.AvgPool2d(3)                           # unsigned, 9 pixels, stride 3
        self.c2 = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6))
        self.p3 = nn.AvgPool2d(3, stride=1, padding=1)      # signed
        self.p4 = nn.AvgPool2d((2, 3), stride=(2, 3))       # signed, 6 pixels
        self.p5 = nn.AvgPool2d(2)                           # a power of two: the all-ones depthwise conv
        self.fc = nn.Linear(6, 5)

    def forward(self, x):
        x = self.p2(self.p1(self.c1(x)))
        x = self.p5(self.p4(self.p3(self.c2(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


@pytest.mark.parametrize("seed", [0, 1])
def test_average_pools_over_any_window_are_exact(seed):
    """AvgPool2d(3, 1, 1), AvgPool2d(3) and a 2x3 window quantize and lower to `avgpool2d` ops with
    QAvgPool.constants(N) (the 2x2 pool still to a depthwise conv); the QAT module's output of every
    pool equals the reference interpreter's tensor, and golden == reference == torch on the logits,
    over an unsigned and a signed input (negative averages survive)."""
    from hashiflex.quant.modules import QAvgPool

    torch.manual_seed(seed)
    net = _randomize_bn(_AnyWindowPools(), seed)
    with torch.no_grad():
        net.c2[1].bias.add_(-0.5)   # push the signed branch below zero somewhere
    x = torch.randint(0, 256, (8, 1, 20, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))
    q = quantize_model(net, to_model_input(x))
    prog = program_from_qmodel(q)
    windows = [op for op in prog.ops if op.kind == "avgpool2d"]
    assert [(op.kernel, op.stride, op.padding) for op in windows] == [
        ((3, 3), (1, 1), (1, 1)), ((3, 3), (3, 3), (0, 0)), ((3, 3), (1, 1), (1, 1)), ((2, 3), (2, 3), (0, 0))]
    assert all((op.mult, op.shift) == QAvgPool.constants(op.kernel[0] * op.kernel[1]) for op in windows)
    assert [prog.tensors[op.output].signed for op in windows] == [False, False, True, True]
    assert next(op for op in prog.ops if op.name.endswith("p5")).kind == "conv"
    mods = dict(q.named_modules())
    seen = {}
    hooks = [mods[op.name].register_forward_hook(lambda m, i, o, n=op.name: seen.__setitem__(n, o))
             for op in windows]
    _, gold = _exact(q, x.numpy())
    for h in hooks:
        h.remove()
    vals = run_reference(prog, x.numpy())
    for op in windows:
        got = seen[op.name] * 2.0 ** prog.tensors[op.output].frac
        assert torch.equal(got, torch.round(got))
        np.testing.assert_array_equal(got.to(torch.int64).numpy(), vals[op.output])
    assert (vals[windows[2].output] < 0).any() and (vals[windows[0].output] > 0).any()


def test_capture_is_deterministic():
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    texts = []
    for _ in range(2):
        torch.manual_seed(0)
        texts.append(to_json(program_from_qmodel(quantize_model(_randomize_bn(resnet8(4), 0), to_model_input(x)))))
    assert texts[0] == texts[1]


class _Wrap(nn.Module):
    def __init__(self, body, c_out=4):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.body = body
        self.fc = nn.Linear(c_out, 3)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.body(self.conv(x)), 1), 1))


class _Cat(nn.Module):
    def forward(self, x):
        return torch.cat([x, x], 1)


REFUSED = {
    "sigmoid": (_Wrap(nn.Sigmoid()), "Sigmoid"),
    "upsample": (_Wrap(nn.Upsample(scale_factor=2)), "Upsample"),
    "dilated": (_Wrap(nn.Conv2d(4, 4, 3, padding=2, dilation=2)), "dilated"),
    "concat": (_Wrap(_Cat(), 8), "cat"),
    "bn_alone": (_Wrap(nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4))), "BatchNorm2d"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_unsupported_ops_are_one_line_naming_the_node(case):
    net, word = REFUSED[case]
    x = to_model_input(torch.zeros((2, 1, 8, 8), dtype=torch.uint8))
    with pytest.raises(UserError) as e:
        quantize_model(net.eval(), x)
    msg = str(e.value)
    assert "\n" not in msg and word in msg and "node" in msg


def test_mobilenetv2_through_the_generic_path_is_the_same_integer_network():
    """quantize_model on the float MobileNetV2 of small-fp32 and the dedicated QMobileNetV2 path,
    calibrated on the same images: the same ops with the same fields and arrays (only names
    differ), so the same integer logits. MobileNetV2 is one user of the generic path; its own
    module tree stays so the committed checkpoints keep loading."""
    import dataclasses

    from hashiflex import checkpoint
    from hashiflex.models.registry import fp32_from_config
    from hashiflex.quant.convert import build_qmodel
    from hashiflex.quant.qnet import calibrate

    blob = checkpoint.load("small-fp32")
    fp = fp32_from_config(blob["model_config"])
    fp.load_state_dict(blob["state_dict"])
    x = torch.randint(0, 256, (32, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    generic = program_from_qmodel(quantize_model(fp.eval(), to_model_input(x)))
    q = build_qmodel(blob["model_config"], QuantConfig(), fp32_state=blob["state_dict"])
    calibrate(q, [to_model_input(x)])
    dedicated = program_from_qmodel(q.eval())
    assert len(generic.ops) == len(dedicated.ops) == 65
    skip = {"name", "input", "output", "a", "b", "weight", "bias", "scale_mult"}
    for og, od in zip(generic.ops, dedicated.ops):
        fg = {k: v for k, v in dataclasses.asdict(og).items() if k not in skip}
        assert fg == {k: v for k, v in dataclasses.asdict(od).items() if k not in skip}
        for key in ("weight", "bias", "scale_mult"):
            if getattr(og, key, None):
                np.testing.assert_array_equal(generic.arrays[getattr(og, key)], dedicated.arrays[getattr(od, key)])
    np.testing.assert_array_equal(GoldenSimulator(generic).logits(x.numpy()),
                                  GoldenSimulator(dedicated).logits(x.numpy()))


class _MeanHead(nn.Module):
    def __init__(self, keepdim: bool):
        super().__init__()
        self.keepdim = keepdim
        self.c, self.b, self.f = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Linear(4, 10)

    def forward(self, x):
        y = F.relu(self.b(self.c(x)))
        if self.keepdim:
            return self.f(torch.flatten(torch.mean(y, dim=[-1, -2], keepdim=True), 1))
        return self.f(y.mean((2, 3)))


@pytest.mark.parametrize("keepdim", [False, True])
def test_spatial_mean_is_a_global_pool(keepdim):
    """`x.mean((2, 3))` (and torch.mean over the last two dims, keepdim) is captured as a global
    pool (plus a flatten when the dims are dropped): exact like AdaptiveAvgPool2d(1)."""
    torch.manual_seed(0)
    x = torch.randint(0, 256, (8, 1, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    prog, _ = _exact(quantize_model(_randomize_bn(_MeanHead(keepdim), 0), to_model_input(x)), x.numpy())
    assert [op.kind for op in prog.ops] == ["conv", "avgpool", "linear"]
