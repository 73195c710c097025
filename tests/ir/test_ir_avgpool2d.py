"""The IR's windowed average pool (`avgpool2d`: the zero-padded window's sum times mult, rounded
half up by shift and clamped): the reference interpreter equals the formula written out in
torch, the golden simulator equals the reference (and proves its bound max|acc| * mult), values
stay inside the analyzed intervals, files round-trip and every mutated field loads or fails in
one line, and bad geometry is refused by Program.validate."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hashiflex.errors import UserError
from hashiflex.ir import serialize
from hashiflex.quant.modules import QAvgPool
from hashiflex.sim.golden import GoldenSimulator, check_exactness
from hashiflex.sim.reference import run_reference
from mutations import mutations
from rtl_progs import ProgBuilder


def _program(signed: bool):
    b = ProgBuilder((2, 9, 8), seed=11)
    x = b.conv("input", 3, k=3, clamp=(-100, 100) if signed else (0, 127), bias=2000 if signed else 200)
    x = b.avgpool(x, 3, stride=1, pad=1)
    x = b.avgpool(x, (2, 3), stride=(2, 1), pad=(1, 1))
    b.avgpool(x, 3, stride=3)
    return b.program()


def _formula(x: np.ndarray, op) -> np.ndarray:
    """clamp(floor(sum * mult / 2^shift + 1/2)) with the sum from torch's avg_pool2d (divisor 1)."""
    s = F.avg_pool2d(torch.from_numpy(x).to(torch.float64), op.kernel, op.stride, op.padding,
                     count_include_pad=True, divisor_override=1).to(torch.int64).numpy()
    return np.clip((s * op.mult + (1 << (op.shift - 1))) >> op.shift, op.clamp_lo, op.clamp_hi)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
def test_reference_golden_and_formula_agree_within_the_intervals(signed):
    prog = _program(signed)
    pools = [op for op in prog.ops if op.kind == "avgpool2d"]
    assert all((op.mult, op.shift) == QAvgPool.constants(op.kernel[0] * op.kernel[1]) for op in pools)
    images = np.random.default_rng(1).integers(0, 256, (6, 2, 9, 8), dtype=np.uint8)
    ref = run_reference(prog, images)
    gold = GoldenSimulator(prog).run(images, keep_all=True)
    bounds = check_exactness(prog)
    for op in pools:
        np.testing.assert_array_equal(ref[op.output], _formula(ref[op.input], op))
        np.testing.assert_array_equal(ref[op.output], gold[op.output].to(torch.int64).numpy())
        t, acc = prog.tensors[op.output], gold[f"{op.name}.acc"]
        assert op.acc_lo <= acc.min() and acc.max() <= op.acc_hi
        assert t.lo <= ref[op.output].min() and ref[op.output].max() <= t.hi
        assert bounds[op.name] == max(-op.acc_lo, op.acc_hi) * op.mult
    x = prog.tensors[pools[0].input]
    assert (pools[0].acc_lo, pools[0].acc_hi) == (9 * min(x.lo, 0), 9 * max(x.hi, 0))
    assert (ref[pools[0].output] < 0).any() == signed


def test_files_round_trip_and_every_mutated_field_loads_or_fails_in_one_line(tmp_path):
    prog = _program(True)
    serialize.save(prog, tmp_path)
    back = serialize.load(tmp_path)
    assert serialize.to_json(back) == serialize.to_json(prog)
    assert [dataclasses.asdict(o) for o in back.ops] == [dataclasses.asdict(o) for o in prog.ops]
    good = json.loads((tmp_path / "model.ir.json").read_text())
    i = next(k for k, o in enumerate(good["ops"]) if o["kind"] == "avgpool2d")
    refused = 0
    for _, _, bad in mutations({"op": good["ops"][i]}):
        doc = dict(good, ops=good["ops"][:i] + [bad.get("op", {})] + good["ops"][i + 1:])
        (tmp_path / "model.ir.json").write_text(json.dumps(doc))
        try:
            serialize.load(tmp_path)
        except UserError as e:
            assert "\n" not in str(e) and "hashiflex compile" in str(e), str(e)
            refused += 1
    assert refused > 80


@pytest.mark.parametrize("change, says", [
    (dict(padding=(2, 1)), "an average pool needs a .* padding at most half its kernel"),
    (dict(stride=(2, 1)), "output shape"),
    (dict(mult=-1), "mult = -1 is outside"),
    (dict(clamp_lo=300), "clamp_lo 300 > clamp_hi"),
    (dict(kernel=(3,)), "kernel must be a pair"),
])
def test_bad_geometry_and_constants_are_refused(change, says):
    prog = _program(False)
    i = next(k for k, o in enumerate(prog.ops) if o.kind == "avgpool2d")
    ops = list(prog.ops)
    ops[i] = dataclasses.replace(ops[i], **change)
    with pytest.raises(ValueError, match=says):
        prog.with_ops(ops).validate()
