"""Random-weight networks (the stand-in for trained weights in hardware studies and RTL tests)
must exercise the chip: their outputs depend on the input through every layer, so "0 mismatches"
on them means something."""
import numpy as np

from hashiflex.ir.build import program_from_qmodel, random_images, random_qmodel
from hashiflex.models.mobilenetv2 import MobileNetV2Config
from hashiflex.quant.config import QuantConfig
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.verify.harness import distinct_rows


def test_random_network_outputs_are_input_dependent():
    cfg = MobileNetV2Config(num_classes=10, in_channels=3, width_mult=0.35, first_stride=1, input_size=32)
    prog = program_from_qmodel(random_qmodel(cfg, QuantConfig(exp_bits=3, prune=0.5), seed=0))
    x = random_images((3, 32, 32), 256, seed=123)
    out = GoldenSimulator(prog).run(x, keep_all=True)
    logits = out[prog.output].numpy()
    assert distinct_rows(logits) >= 0.9 * 256
    constant = [op.output for op in prog.ops if distinct_rows(out[op.output].numpy()) < 2]
    assert not constant, constant


def test_random_images_differ_in_their_averages():
    x = random_images((3, 16, 16), 64, seed=0).astype(np.float64)
    means = x.mean(axis=(1, 2, 3))
    assert means.std() > 20 and len(np.unique(np.round(means))) > 40
