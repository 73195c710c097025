"""P > 1: several pixels of a row per beat and several output pixels per cycle. RTL equals the
golden simulator exactly, and cycles per image drop in proportion."""
import pytest

from hashiflex.rtl import generate_rtl
from rtl_progs import ProgBuilder, rtl_check


@pytest.mark.parametrize("p", [2, 3])
def test_stride1_convs_with_lanes(tmp_path, p):
    b = ProgBuilder((2, 7, 8), seed=20 + p)  # 8 columns: not a multiple of 3 lanes
    x = b.conv("input", 3, k=3, stride=1, pad=1)
    x = b.conv(x, depthwise=True, k=3, clamp=(-40, 40))
    x = b.conv(x, 4, k=1, pad=0)
    if p == 3:
        x = b.conv(x, 2, k=5, pad=2)
    out = rtl_check(b.program(), tmp_path, n_images=3, parallelism=p)
    man = out["manifest"]
    assert all(m.P == p for m in man.modules)
    assert man.outputs[0].lanes == p


def test_stride2_stem_and_stride2_depthwise_with_lanes(tmp_path):
    b = ProgBuilder((1, 10, 10), seed=30)
    x = b.conv("input", 3, k=3, stride=2, pad=1)      # 4 lanes in, P = 2
    x = b.conv(x, depthwise=True, k=3, stride=1)      # P = 2
    x = b.conv(x, depthwise=True, k=3, stride=2)      # 2 lanes in, P = 1
    x = b.conv(x, depthwise=True, k=3, stride=2)      # 1 lane: the P = 1 module
    prog = b.program()
    # the stem (30 cycles) feeds a depthwise conv whose bottom padding row outlasts the stem's idle
    # gap between images: its output FIFO is sized for it (rtl.depths), so the figure is met exactly
    out = rtl_check(prog, tmp_path, n_images=3, parallelism=2)
    assert [m.P for m in out["manifest"].modules] == [2, 2, 1, 1]
    assert out["manifest"].input.lanes == 4


def test_residual_block_and_pool_with_lanes_under_stalls(tmp_path):
    b = ProgBuilder((2, 6, 7), seed=31)
    x = b.conv("input", 3, k=3, clamp=(0, 127))
    y = b.conv(x, 6, k=1, pad=0)
    y = b.conv(y, depthwise=True, k=3)
    y = b.conv(y, 3, k=1, pad=0, clamp=(-64, 63))
    z = b.add(x, y, align_a=1, shift=1)
    z = b.pool(z)
    b.linear(z, 3)
    prog = b.program()
    rtl_check(prog, tmp_path, n_images=4, parallelism=2)
    rtl_check(prog, tmp_path, n_images=4, parallelism=2, seed=3, stall_in=30, stall_out=30)


def test_cycles_scale_with_p(tmp_path):
    b = ProgBuilder((1, 16, 16), seed=32)
    x = b.conv("input", 2, k=3)
    b.conv(x, depthwise=True, k=3)
    prog = b.program()
    cyc = {p: generate_rtl(prog, tmp_path / str(p), parallelism=p).expected_cycles_per_image for p in (1, 2, 4)}
    # P = 1 walks all 18 padded rows; with lanes the top padding row is skipped, and 16 columns at
    # G lanes take 16 / G beats plus one realignment step (kw - stride - pad = 1)
    assert cyc[1] == 18 * 18 and cyc[2] == 17 * 9 and cyc[4] == 17 * 5
