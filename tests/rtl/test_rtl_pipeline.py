"""Pipelined adder networks (`generate_rtl(..., pipeline_levels=k)`, `compile --pipeline-levels k`):
a register after every k adder levels of every conv, operands from earlier stages delayed so
each sum adds one image's values, valid bits per stage and one move condition for the whole
pipeline. In Verilator the outputs equal the golden simulator exactly, with random input bubbles
and output back-pressure; cycles per image are unchanged (the manifest's), the latency grows
by the stages, and the registers are counted where they are declared."""

import numpy as np
import pytest

from hashiflex.cost import design, model
from hashiflex.errors import UserError
from hashiflex.rtl import generate_rtl
from hashiflex.verify import verify_build
from rtl_progs import ProgBuilder, assert_lint_clean
from test_rtl_random import random_program


def deep_program():
    """Full and pointwise convs (shared graphs), a depthwise conv (per-channel trees), a residual
    add whose conv branch is pipelined (its skip FIFO must cover the stages), pool and head."""
    b = ProgBuilder((3, 7, 7), seed=11)
    x = b.conv("input", 8, k=3, clamp=(0, 127), prune=0.1)
    y = b.conv(x, 12, k=1, pad=0, prune=0.1)
    y = b.conv(y, depthwise=True, k=3, clamp=(-60, 60))
    y = b.conv(y, 8, k=1, pad=0, clamp=(-64, 63), prune=0.1)
    z = b.pool(b.add(x, y, align_a=1, shift=1))
    b.linear(z, 4, mode="int8")
    return b.program()


def _check(prog, d, k, parallelism=1, n=5, stall=0, seed=0):
    man = generate_rtl(prog, d / "rtl", parallelism, pipeline_levels=k)
    assert_lint_clean(d / "rtl", man)
    images = np.random.default_rng(seed).integers(0, 256, (n, *prog.tensors["input"].shape), dtype=np.uint8)
    res = verify_build(d, images, prog=prog, stall_in=stall, stall_out=stall, seed=seed, target="pipeline")
    assert res["mismatches"] == 0, res["first_mismatch"]
    return man, res


@pytest.mark.parametrize("k", [1, 2, 3])
def test_pipelined_equals_golden_with_stalls(tmp_path, k):
    prog = deep_program()
    flat, res0 = _check(prog, tmp_path / "flat", None, n=6)
    man, res = _check(prog, tmp_path / "pipe", k, n=6)
    convs = [m for m in man.modules if m.kind == "conv"]
    assert [m.pipeline_stages for m in convs] == [m.adder_depth // k for m in convs]   # a cut every k levels
    assert max(m.pipeline_stages for m in convs) >= 1 and man.pipeline_levels == k
    assert res["cycles_per_image"] == res0["cycles_per_image"] == man.expected_cycles_per_image
    assert res["ports"]["feat"]["distinct_outputs"] == 6   # input-dependent through every layer
    assert res["latency_cycles"] > res0["latency_cycles"]
    assert man.register_bits > flat.register_bits and man.adders == flat.adders
    _, stalled = _check(prog, tmp_path / "pipe", k, n=6, stall=30, seed=3)
    assert stalled["mismatches"] == 0
    # the cost model prices the build as generated: its emitted pipeline registers, its cut trees
    base, piped = design.as_generated(prog, flat), design.as_generated(prog, man)
    assert piped["register_bits"] - base["register_bits"] == man.register_bits - flat.register_bits
    assert piped["clock_fmax_ghz"] >= base["clock_fmax_ghz"] and piped["pipeline_levels"] == k
    timed = {m.op.name: m.timing_depth() for m in model.models_for(prog, man) if m.kind.startswith(("conv", "pw", "dw"))}
    assert timed and max(timed.values()) <= k
    assert piped["cycles_per_image"] == base["cycles_per_image"] and piped["adders"] == base["adders"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_programs_pipelined(tmp_path, seed):
    prog = random_program(seed)
    _check(prog, tmp_path, 1 + seed % 2, n=4, stall=(seed % 2) * 25, seed=seed)


def test_pipelined_lanes(tmp_path):
    """P = 2: the row-end flag of the last beat is delayed with the data."""
    b = ProgBuilder((2, 9, 9), seed=5)
    x = b.conv("input", 6, k=3, clamp=(0, 127))
    b.conv(x, 4, k=1, pad=0, clamp=(0, 127))
    _check(b.program(), tmp_path, 1, parallelism=2, n=4, stall=20)


def test_pipeline_levels_out_of_range(tmp_path):
    with pytest.raises(UserError, match="pipeline-levels must be 1..64"):
        generate_rtl(deep_program(), tmp_path, pipeline_levels=0)
