"""IR lowering, serialization and error handling on a small quantized MobileNetV2."""
import json

import numpy as np
import pytest
import torch
from torch import nn

from hashiflex.errors import UserError
from hashiflex.ir import serialize
from hashiflex.ir.build import program_from_qmodel
from hashiflex.ir.intervals import analyze
from hashiflex.ir.lower import lower
from hashiflex.ir.spec import Add, AvgPool, Conv, Linear, po2_weight_ints
from hashiflex.models.mobilenetv2 import MobileNetV2, MobileNetV2Config
from hashiflex.quant.config import QuantConfig
from hashiflex.quant.convert import QMobileNetV2
from hashiflex.quant.qnet import calibrate
from hashiflex.quant.modules import QConvBN, QInput
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.sim.reference import run_reference

CFG = MobileNetV2Config(width_mult=0.25, last_channel=32, input_size=16)


@pytest.fixture(scope="module")
def qmodel():
    torch.manual_seed(0)
    q = QMobileNetV2(MobileNetV2(CFG), QuantConfig(exp_bits=3, prune=0.3))
    calibrate(q, [torch.randint(0, 256, (8, 1, 16, 16)).float() / 256])
    return q.eval()


@pytest.fixture(scope="module")
def prog(qmodel):
    return program_from_qmodel(qmodel)


def test_lowering_covers_mobilenetv2(prog):
    kinds = [type(op) for op in prog.ops]
    convs = [op for op in prog.ops if isinstance(op, Conv)]
    assert kinds.count(AvgPool) == 1 and kinds[-1] is Linear and Add in kinds
    assert any(op.groups > 1 for op in convs) and any(op.stride == (2, 2) for op in convs)
    assert prog.tensors[prog.output].shape == (10,)


def test_weights_are_po2_codes_within_range(prog):
    levels = 2 ** 3 - 1
    for op in prog.ops:
        if isinstance(op, Conv):
            w = prog.arrays[op.weight]
            assert w.dtype == np.int8 and np.abs(w).max() <= levels
            ints = po2_weight_ints(w)
            nz = ints[ints != 0]
            assert np.all((np.abs(nz) & (np.abs(nz) - 1)) == 0)  # powers of two


def test_serialization_roundtrip_is_exact_and_deterministic(prog, tmp_path):
    (tmp_path / "a").mkdir()
    serialize.save(prog, tmp_path / "a")
    (tmp_path / "b").mkdir()
    serialize.save(prog, tmp_path / "b")
    for f in ("model.ir.json", "model.ir.npz"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    back = serialize.load(tmp_path / "a")
    assert back.ops == prog.ops and back.tensors == prog.tensors
    assert set(back.arrays) == set(prog.arrays)
    for k in prog.arrays:
        assert np.array_equal(back.arrays[k], prog.arrays[k]) and back.arrays[k].dtype == prog.arrays[k].dtype


def test_lowering_twice_gives_identical_json(qmodel):
    assert serialize.to_json(program_from_qmodel(qmodel)) == serialize.to_json(program_from_qmodel(qmodel))


def test_golden_equals_reference_and_torch(qmodel, prog):
    images = np.random.default_rng(1).integers(0, 256, (20, 1, 16, 16), dtype=np.uint8)
    gold = GoldenSimulator(prog).logits(images)
    assert np.array_equal(gold, run_reference(prog, images)[prog.output])
    with torch.no_grad():
        out = qmodel(torch.from_numpy(images).double() / 256) * 2.0 ** prog.tensors[prog.output].frac
    assert np.array_equal(out.to(torch.int64).numpy(), gold)


def test_version_mismatch_and_corrupt_npz(prog, tmp_path):
    serialize.save(prog, tmp_path)
    js = tmp_path / "model.ir.json"
    doc = json.loads(js.read_text())
    doc["version"] = 99
    js.write_text(json.dumps(doc))
    with pytest.raises(UserError, match="version 99"):
        serialize.load(tmp_path)
    serialize.save(prog, tmp_path)
    (tmp_path / "model.ir.npz").write_bytes(b"PK\x03\x04garbage" * 10)
    with pytest.raises(UserError, match="corrupt"):
        serialize.load(tmp_path)
    serialize.save(prog, tmp_path)
    raw = (tmp_path / "model.ir.npz").read_bytes()
    (tmp_path / "model.ir.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError):
        serialize.load(tmp_path)


class _WithMaxPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_q = QInput()
        self.conv = QConvBN(nn.Conv2d(1, 2, 3, padding=1), None, True, 3, 8)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.conv(self.input_q(x)))


class _WithFunctionalRelu(_WithMaxPool):
    def forward(self, x):
        return torch.relu(self.conv(self.input_q(x)))


@pytest.mark.parametrize("net, word", [(_WithMaxPool, "MaxPool2d"), (_WithFunctionalRelu, "relu")])
def test_unsupported_op_is_named(net, word):
    with pytest.raises(UserError, match=word):
        lower(net().eval(), (1, 8, 8))


def test_analysis_bounds_contain_extreme_inputs(prog):
    """All-0 and all-255 images push many accumulators to their extremes; none may escape."""
    images = np.stack([np.zeros((1, 16, 16), np.uint8), np.full((1, 16, 16), 255, np.uint8)])
    vals = run_reference(prog, images)
    for name, t in prog.tensors.items():
        assert t.lo <= vals[name].min() and vals[name].max() <= t.hi


def test_analyze_is_pure(prog):
    again = analyze(prog)
    assert again.ops == prog.ops and again.tensors == prog.tensors


def test_exponent_span_beyond_int8_codes_is_a_user_error():
    # 8 exponent bits: 255 magnitudes, so small weights get codes above 127 (int8 would wrap them)
    torch.manual_seed(0)
    q = QMobileNetV2(MobileNetV2(CFG), QuantConfig(exp_bits=8))
    calibrate(q, [torch.randint(0, 256, (4, 1, 16, 16)).float() / 256])
    with pytest.raises(UserError, match="more than the IR's int8 codes hold"):
        program_from_qmodel(q.eval())
