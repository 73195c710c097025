"""The committed checkpoints: Po2 weights really are Po2, and the golden simulator reproduces
the quantized model bit for bit on real Fashion-MNIST test images, with every value inside its
analyzed interval."""
import numpy as np
import pytest
import torch

from hashiflex import checkpoint
from hashiflex.data import load_fashion_mnist
from hashiflex.ir.build import program_from_qmodel
from hashiflex.quant.modules import QConvBN
from hashiflex.quant.qat import load_qmodel
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.train.loop import predict

IMAGES = 2000  # for the torch comparison; the full 10,000 is `hashiflex eval --engine compare` (README)
ALL = 10000


@pytest.fixture(scope="module")
def po2():
    q, blob = load_qmodel("default-po2")
    return q, blob, program_from_qmodel(q)


def test_default_checkpoints_exist_and_are_small():
    total = sum(checkpoint.resolve(n).stat().st_size for n in checkpoint.BUILTIN)
    assert total <= 20 * 2 ** 20
    assert checkpoint.load("default-fp32")["kind"] == "fp32"


def test_every_hardened_weight_is_zero_or_po2_in_range(po2):
    q, blob, _ = po2
    levels = 2 ** blob["quant_config"]["exp_bits"] - 1
    layers = [m for m in q.modules() if isinstance(m, QConvBN)]
    assert layers
    for m in layers:
        w, _ = m.quantized_wb(torch.float64)
        a = w.detach().abs()
        nz = a[a > 0]
        e = torch.log2(nz)
        assert torch.equal(e, torch.round(e)), "a nonzero weight is not a power of two"
        # e_max: one per layer, or one per output channel (weight_scale "channel")
        e_max = m.e_max.to(torch.float64).reshape(-1, *[1] * (a.dim() - 1)).expand_as(a)[a > 0]
        assert bool((e <= e_max).all()) and bool((e >= e_max - levels + 1).all())


def test_golden_equals_quantized_model_on_real_images(po2):
    q, _, prog = po2
    x, y = load_fashion_mnist("test", limit=IMAGES)
    gold = GoldenSimulator(prog).logits(x)
    torch_out = predict(q, x, dtype=torch.float64) * 2.0 ** prog.tensors[prog.output].frac
    assert torch.equal(torch_out, torch.round(torch_out))
    assert np.array_equal(torch_out.to(torch.int64).numpy(), gold)


def test_no_value_leaves_its_interval_on_the_test_set(po2):
    _, _, prog = po2
    x, _ = load_fashion_mnist("test", limit=ALL)
    sim = GoldenSimulator(prog)
    lo, hi = {}, {}
    for i in range(0, len(x), 500):
        for name, v in sim.run(x[i:i + 500], keep_all=True).items():
            lo[name] = min(lo.get(name, np.inf), float(v.min()))
            hi[name] = max(hi.get(name, -np.inf), float(v.max()))
    for name, t in prog.tensors.items():
        assert t.lo <= lo[name] and hi[name] <= t.hi, (name, t.lo, t.hi, lo[name], hi[name])
    for op in prog.ops:
        key = f"{op.name}.acc"
        assert op.acc_lo <= lo[key] and hi[key] <= op.acc_hi, (key, op.acc_lo, op.acc_hi, lo[key], hi[key])
