"""Per-layer lanes: width converters in front of convs (rtl.convert), the walks that skip
padding steps (rtl.conv.columns / row_walk), exact in Verilator with and without stalls."""
import pytest

from hashiflex.errors import UserError
from hashiflex.rtl import generate_rtl
from hashiflex.rtl.convert import beat_map, converter_register_bits
from rtl_progs import ProgBuilder, rtl_check


def _stem(shape=(1, 12, 12), seed=40):
    b = ProgBuilder(shape, seed=seed)
    x = b.conv("input", 4, k=3, stride=2, pad=1, clamp=(0, 127))      # 12 -> 6
    return b, x


def test_narrowing_and_widening_converters_exact(tmp_path):
    b, x = _stem()
    y = b.conv(x, 6, k=1, pad=0)                     # 6 lanes in -> converter 6 -> 2
    y = b.conv(y, depthwise=True, k=3, stride=2)     # 2 lanes, stride 2: P = 1 out, 3x3
    y = b.conv(y, 3, k=1, pad=0)                     # 1 -> 3 widening converter
    prog = b.program()
    ops = [op.name for op in prog.ops]
    formats = dict(zip(ops, [(12, 1), (2, 1), (2, 1), (3, 1)]))
    out = rtl_check(prog, tmp_path, n_images=4, formats=formats)
    man = out["manifest"]
    assert [(m.lanes_in, m.lanes_src) for m in man.modules] == [(12, None), (2, 6), (2, None), (3, 1)]
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=5, stall_in=30, stall_out=30, formats=formats)


def test_converters_inside_a_residual_block(tmp_path):
    """The skip branch keeps 6 lanes while the conv branch narrows to 2 and widens back: the skip
    FIFO's depth follows the converters (schedule.need_from composes them)."""
    b, x = _stem(seed=41)
    y = b.conv(x, 8, k=1, pad=0)
    y = b.conv(y, depthwise=True, k=3)
    y = b.conv(y, 4, k=1, pad=0, clamp=(-64, 63))
    z = b.add(x, y, align_a=1, shift=1)
    z = b.pool(z)
    b.linear(z, 3)
    prog = b.program()
    names = [op.name for op in prog.ops]
    formats = dict(zip(names, [(12, 1), (2, 1), (2, 1), (6, 1), (6, 1), (6, 1), (1, 1)]))
    formats = {k: v for k, v in formats.items() if k in {o.name for o in prog.ops}}
    rtl_check(prog, tmp_path, n_images=4, formats=formats)
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=7, stall_in=25, stall_out=25, formats=formats)


def test_one_beat_rows_take_one_step(tmp_path):
    """G >= W: a stride-1 3x3 (kw - stride - pad = 1) and a stride-2 one take one step per row."""
    b = ProgBuilder((2, 8, 8), seed=42)
    x = b.conv("input", 3, k=3, stride=1)
    x = b.conv(x, depthwise=True, k=3, stride=2)
    prog = b.program()
    man = rtl_check(prog, tmp_path, n_images=4, parallelism=8)["manifest"]
    assert [m.traversal for m in man.modules] == [[9, 1], [8, 1]]


def test_unconvertible_lanes_are_refused(tmp_path):
    b, x = _stem()
    b.conv(x, 6, k=1, pad=0)
    prog = b.program()
    ops = [op.name for op in prog.ops]
    with pytest.raises(UserError, match="one divides the other"):
        generate_rtl(prog, tmp_path / "rtl", formats=dict(zip(ops, [(12, 1), (4, 1)])))
    assert not (tmp_path / "rtl" / "manifest.json").exists()


@pytest.mark.parametrize("w,src,dst", [(7, 4, 2), (7, 2, 4), (6, 6, 1), (5, 1, 5), (9, 3, 6)])
def test_beat_map_needs_the_last_source_beat_covering_the_module_beat(w, src, dst):
    m = beat_map(w, src, dst)
    for b, s in enumerate(m):
        last_pixel = min((b + 1) * dst, w) - 1
        assert s == last_pixel // src
    assert converter_register_bits(w, 8, src, dst) > 0


@pytest.mark.parametrize("g", [12, 4, 1])
def test_stem_takes_two_rows_per_beat(tmp_path, g):
    """V = 2 at a 3x3/pad 1/stride 2 stem: each step takes two image rows and emits one output row,
    so the stem walks 6 beat rows instead of 12 padded rows; exact, with and without stalls."""
    b, x = _stem(shape=(2, 12, 12), seed=43)
    y = b.conv(x, depthwise=True, k=3)
    b.conv(y, 5, k=1, pad=0)
    prog = b.program()
    names = [op.name for op in prog.ops]
    out_lanes = max(1, g // 2)
    formats = dict(zip(names, [(g, 2), (out_lanes, 1), (out_lanes, 1)]))
    man = rtl_check(prog, tmp_path, n_images=4, formats=formats)["manifest"]
    assert man.input.rows == 2 and man.input.beats == 6 * -(-12 // g)
    assert man.modules[0].rows_in == 2 and man.modules[0].traversal[0] == 6
    assert man.formats() == formats
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=9, stall_in=30, stall_out=30, formats=formats)


def test_rows_per_beat_only_where_generated(tmp_path):
    b, x = _stem()
    b.conv(x, 4, k=3, stride=1)
    prog = b.program()
    names = [op.name for op in prog.ops]
    with pytest.raises(UserError, match="first conv only"):
        generate_rtl(prog, tmp_path / "a", formats=dict(zip(names, [(12, 1), (6, 2)])))
    b2 = ProgBuilder((1, 12, 12), seed=44)
    b2.conv("input", 4, k=3, stride=1)
    p2 = b2.program()
    with pytest.raises(UserError, match="rows per beat are generated for a conv whose row stride"):
        generate_rtl(p2, tmp_path / "b", formats={p2.ops[0].name: (12, 2)})


def _every_format_program():
    """A 2-row-per-beat stem, lanes going down (12 -> 6 -> 2) and up (2 -> 6) through width
    converters, a stride-2 depthwise at 6 lanes, a residual add whose conv branch crosses two
    converters, a pool fed 3 lanes and an int8 head. Seed 51: every layer's output differs on
    each of the 6 test images (random weights often collapse deep layers to a few values)."""
    b = ProgBuilder((3, 12, 12), seed=51)
    x = b.conv("input", 6, k=3, stride=2, pad=1, clamp=(0, 127))              # 12x12 -> 6x6
    y = b.conv(x, 8, k=1, pad=0, clamp=(0, 127), prune=0.1)                  # 6 -> 2 lanes
    y = b.conv(y, depthwise=True, k=3, clamp=(-60, 60))
    y = b.conv(y, 6, k=1, pad=0, clamp=(-64, 63), prune=0.1)                  # 2 -> 6 lanes
    z = b.add(x, y, align_a=1, shift=1)
    z = b.conv(z, depthwise=True, k=3, stride=2, clamp=(0, 127))             # 6 lanes, stride 2: 3 out
    b.linear(b.pool(z), 4, mode="int8")
    prog = b.program()
    names = [op.name for op in prog.ops if op.name != prog.ops[-1].name]
    return prog, dict(zip(names, [(12, 2), (2, 1), (2, 1), (6, 1), (6, 1), (6, 1), (3, 1)]))


@pytest.mark.parametrize("k", [None, 2])
def test_every_generated_format_together(tmp_path, k):
    from hashiflex.verify import verify_build
    from rtl_progs import assert_lint_clean
    import numpy as np

    prog, formats = _every_format_program()
    man = generate_rtl(prog, tmp_path / "rtl", formats=formats, pipeline_levels=k)
    assert_lint_clean(tmp_path / "rtl", man)
    assert man.formats() == formats and man.input.rows == 2
    assert [m.lanes_src for m in man.modules if m.lanes_src] == [6, 2]
    assert man.skip_fifos and (k is None or man.pipeline_levels == k)
    images = np.random.default_rng(1).integers(0, 256, (6, 3, 12, 12), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=prog)
    assert res["mismatches"] == 0, res["first_mismatch"]
    assert res["cycles_per_image"] == man.expected_cycles_per_image
    assert res["ports"]["feat"]["distinct_outputs"] == 6     # input-dependent through every layer
    stalled = verify_build(tmp_path, images, prog=prog, stall_in=30, stall_out=30, seed=4)
    assert stalled["mismatches"] == 0


def test_sized_output_fifo_is_what_keeps_the_figure(tmp_path, monkeypatch):
    """The stride-2 stem (30 cycles, the bottleneck) feeds a depthwise conv whose bottom padding row
    outlasts the stem's idle gap between images. With the default 2-word FIFO Verilator measures
    more than the manifest's figure; rtl.depths sizes the stem's FIFO and the figure is met."""
    from hashiflex.rtl import depths, generate
    from hashiflex.verify import verify_build
    import numpy as np

    b = ProgBuilder((1, 10, 10), seed=30)
    x = b.conv("input", 3, k=3, stride=2, pad=1)
    x = b.conv(x, depthwise=True, k=3, stride=1)
    x = b.conv(x, depthwise=True, k=3, stride=2)
    prog = b.program()
    images = np.random.default_rng(0).integers(0, 256, (4, 1, 10, 10), dtype=np.uint8)
    sized = generate_rtl(prog, tmp_path / "rtl", 2)
    assert sized.modules[0].out_fifo_depth and sized.modules[0].out_fifo_depth > 2
    assert verify_build(tmp_path, images, prog=prog)["cycles_per_image"] == sized.expected_cycles_per_image
    monkeypatch.setattr(generate, "out_fifo_depths", lambda prog, lanes, made: ({}, 0))
    plain = generate_rtl(prog, tmp_path / "plain" / "rtl", 2)
    assert not any(m.out_fifo_depth for m in plain.modules)
    got = verify_build(tmp_path / "plain", images, prog=prog)["cycles_per_image"]
    assert got > plain.expected_cycles_per_image == sized.expected_cycles_per_image
    assert depths._longest_idle(np.array([1, 0, 0, 1, 0, 0, 0], bool)) == 3


def test_widening_port_sets_the_module_figure(tmp_path):
    """A conv fed 1 lane through a widening converter to 6 can step faster than its port delivers:
    its figure is the port's beats, and the cost model's converter carries the same cycles."""
    from hashiflex.cost import design, model

    b = ProgBuilder((1, 12, 12), seed=46)
    x = b.conv("input", 3, k=3, stride=1)
    b.conv(x, 4, k=1, pad=0)
    prog = b.program()
    names = [op.name for op in prog.ops]
    formats = dict(zip(names, [(1, 1), (6, 1)]))
    man = rtl_check(prog, tmp_path, n_images=4, formats=formats)["manifest"]
    assert man.modules[1].lanes_src == 1 and man.modules[1].cycles_per_image == 12 * 12
    res = design.evaluate(prog, model.models_for(prog, man), formats, 1.0, pipeline=False, manifest=man)
    assert res["cycles_per_image"] == man.expected_cycles_per_image
