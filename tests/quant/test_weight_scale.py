"""Per-output-channel Po2 weight scale (QuantConfig.weight_scale = "channel")."""
import math

import numpy as np
import pytest
import torch

from hashiflex import checkpoint
from hashiflex.errors import UserError
from hashiflex.ir.build import program_from_qmodel
from hashiflex.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from hashiflex.quant.config import QuantConfig
from hashiflex.quant.convert import QMobileNetV2, build_qmodel
from hashiflex.quant.qnet import calibrate
from hashiflex.quant.modules import QConvBN
from hashiflex.quant.po2 import best_e_max, best_e_max_per_channel, po2_quantize
from hashiflex.sim.golden import GoldenSimulator

CFG = MobileNetV2Config(width_mult=0.25, last_channel=32, input_size=16)


def spread_rows(seed: int = 0) -> torch.Tensor:
    """Weights whose output channels differ in scale by up to 2^12, plus one all-zero channel."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(12, 6, 3, 3, generator=g) * torch.pow(2.0, torch.linspace(-10, 2, 12)).view(-1, 1, 1, 1)
    w[5] = 0
    return w


def scalar_best_e_max(w: torch.Tensor, levels: int) -> int:
    """Reference for one row, written as a plain loop (best_e_max itself is the one-row case)."""
    m = float(w.abs().max())
    if m == 0.0:
        return 0
    mant, ex = math.frexp(m)
    e0 = ex - 1 + (1 if mant >= 0.75 else 0)
    errs = [(float(((po2_quantize(w, c, levels) - w) ** 2).sum()), -c) for c in (e0, e0 - 1, e0 - 2)]
    return -min(errs)[1]


@pytest.mark.parametrize("levels", [1, 3, 7])
def test_channel_scale_is_the_layer_choice_made_per_row(levels):
    w = spread_rows()
    e = best_e_max_per_channel(w, levels)
    top = max(scalar_best_e_max(w[o], levels) for o in range(len(w)) if o != 5)
    for o in range(len(w)):
        assert int(e[o]) == (top if o == 5 else scalar_best_e_max(w[o], levels))
        if o != 5:
            assert best_e_max(w[o], levels) == int(e[o])


@pytest.mark.parametrize("levels", [1, 3, 7])
def test_channel_scale_never_loses_to_the_layer_scale(levels):
    w = spread_rows(1)
    err_c = ((po2_quantize(w, best_e_max_per_channel(w, levels), levels) - w) ** 2).flatten(1).sum(1)
    err_l = ((po2_quantize(w, best_e_max(w, levels), levels) - w) ** 2).flatten(1).sum(1)
    assert bool((err_c <= err_l).all()) and float(err_c.sum()) < float(err_l.sum())


@pytest.fixture(scope="module")
def qmodel():
    torch.manual_seed(0)
    fp32 = MobileNetV2(CFG)
    for m in fp32.modules():  # BN gains over 2^8 so that channel scales differ inside a layer
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.pow(2.0, torch.empty_like(m.weight).uniform_(-6, 2))
    q = QMobileNetV2(fp32, QuantConfig(exp_bits=2, weight_scale="channel"))
    x = torch.randint(0, 256, (8, 1, 16, 16)).float() / 256
    calibrate(q, [x])
    q.train()
    with torch.no_grad():
        q(x)  # a training-mode forward pass picks the scales
    return q.eval()


def test_every_weight_is_po2_inside_its_channel_range(qmodel):
    spreads = []
    for _, m in qmodel.hardened_convs():
        assert m.e_max.shape == (m.conv.out_channels,)
        spreads.append(int(m.e_max.max() - m.e_max.min()))
        w, _ = m.quantized_wb(torch.float64)
        a = w.detach().abs()
        e_max = m.e_max.to(torch.float64).view(-1, 1, 1, 1).expand_as(a)[a > 0]
        e = torch.log2(a[a > 0])
        assert torch.equal(e, torch.round(e))
        assert bool((e <= e_max).all()) and bool((e >= e_max - m.levels + 1).all())
    assert max(spreads) >= 3


def test_golden_equals_torch_and_the_checkpoint_round_trips(qmodel, tmp_path):
    prog = program_from_qmodel(qmodel)
    images = np.random.default_rng(2).integers(0, 256, (16, 1, 16, 16), dtype=np.uint8)
    gold = GoldenSimulator(prog).logits(images)
    with torch.no_grad():
        out = qmodel(torch.from_numpy(images).double() / 256) * 2.0 ** prog.tensors[prog.output].frac
    assert np.array_equal(out.to(torch.int64).numpy(), gold)

    path = tmp_path / "c.pt"
    checkpoint.save(path, "po2", CFG.to_dict(), qmodel.state_dict(), quant_config=qmodel.qc.to_dict())
    blob = checkpoint.load(str(path))
    back = build_qmodel(blob["model_config"], QuantConfig.from_dict(blob["quant_config"]), q_state=blob["state_dict"])
    assert np.array_equal(GoldenSimulator(program_from_qmodel(back.eval())).logits(images), gold)


def test_bad_weight_scale_is_a_user_error():
    with pytest.raises(UserError, match="--weight-scale must be 'layer' or 'channel'"):
        QuantConfig(weight_scale="tensor").validate()
    e_max = [m.e_max for m in QMobileNetV2(MobileNetV2(CFG), QuantConfig()).modules() if isinstance(m, QConvBN)]
    assert all(t.dim() == 0 for t in e_max)  # the default stays one scale per layer
