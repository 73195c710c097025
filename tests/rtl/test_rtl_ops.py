"""Per-op RTL tests: generated Verilog, built with Verilator, equals the golden simulator exactly
on random Po2 weights and random images. These fail (never skip) when Verilator is missing."""
import pytest

from rtl_progs import ProgBuilder, mobilenet_block_prog, rtl_check


def test_full_conv_3x3_stride1_pad1(tmp_path):
    b = ProgBuilder((3, 7, 6), seed=1)
    b.conv("input", 4, k=3, stride=1, pad=1)
    out = rtl_check(b.program(), tmp_path)
    assert out["manifest"].expected_cycles_per_image == 9 * 8  # padded traversal


def test_full_conv_odd_kernels_strides_and_paddings(tmp_path):
    b = ProgBuilder((2, 13, 11), seed=2)
    x = b.conv("input", 3, k=5, stride=2, pad=2)
    x = b.conv(x, 3, k=3, stride=2, pad=0)
    x = b.conv(x, 2, k=(3, 1), stride=(1, 2), pad=(0, 1), clamp=(-8, 7))
    rtl_check(b.program(), tmp_path)


def test_depthwise_stride1_and_stride2(tmp_path):
    b = ProgBuilder((3, 9, 9), seed=3)
    x = b.conv("input", depthwise=True, k=3, stride=1)
    x = b.conv(x, depthwise=True, k=3, stride=2, prune=0.0)
    x = b.conv(x, depthwise=True, k=5, stride=1, pad=1, clamp=(-100, 100))
    rtl_check(b.program(), tmp_path)


def test_pointwise_and_strided_pointwise(tmp_path):
    b = ProgBuilder((4, 6, 6), seed=4)
    x = b.conv("input", 6, k=1, pad=0)
    x = b.conv(x, 3, k=1, stride=2, pad=0, clamp=(-128, 127))
    rtl_check(b.program(), tmp_path)


@pytest.mark.parametrize("shift, clamp", [(-2, (-2000, 2000)), (0, (-30, 30)), (3, (0, 15)), (9, (-7, 7))])
def test_requantize_shifts_and_clamps(tmp_path, shift, clamp):
    """Left shifts (shift <= 0), round-half-up right shifts and saturation on both sides."""
    b = ProgBuilder((2, 5, 5), seed=10 + shift)
    b.conv("input", 3, k=3, shift=shift, clamp=clamp, bias=3000)
    out = rtl_check(b.program(), tmp_path, n_images=2)
    assert out["result"]["mismatches"] == 0


def test_residual_add_mobilenet_block_with_stalls(tmp_path):
    """expand 1x1 -> depthwise 3x3 -> project 1x1 -> add with the block input (skip FIFO)."""
    prog = mobilenet_block_prog()
    out = rtl_check(prog, tmp_path, n_images=4)
    assert len(out["manifest"].skip_fifos) == 2
    again = rtl_check(prog, tmp_path, n_images=4, seed=7, stall_in=30, stall_out=40)
    assert again["result"]["build_reused"]


def test_pool_and_po2_classifier(tmp_path):
    b = ProgBuilder((2, 6, 5), seed=6)  # 30 pixels: the pool's 1/N is a fixed-point multiply
    x = b.conv("input", 5, k=3, stride=1)
    x = b.pool(x)
    b.linear(x, 4, mode="po2")
    out = rtl_check(b.program(), tmp_path, n_images=4, stall_out=20)
    ports = [o.port for o in out["manifest"].outputs]
    assert ports == ["feat", "logits"]


def test_int8_classifier_exposes_feature_vector(tmp_path):
    b = ProgBuilder((1, 8, 8), seed=8)  # 64 pixels: the pool is a pure shift
    x = b.conv("input", 4, k=3, stride=2)
    x = b.pool(x)
    b.linear(x, 3, mode="int8")
    out = rtl_check(b.program(), tmp_path, n_images=3)
    assert [o.tensor for o in out["manifest"].outputs] == [x]


def test_degenerate_shapes_and_constant_channels(tmp_path):
    """One-pixel-wide and 1x1 images (line buffers of depth 1, no counters) and layers whose clamp
    makes some outputs constant (no adders, still lint-clean)."""
    b = ProgBuilder((1, 5, 1), seed=1)
    b.conv(b.conv("input", 2, k=(3, 1), pad=(1, 0)), 1, k=1, pad=0)
    rtl_check(b.program(), tmp_path / "a")
    b = ProgBuilder((2, 1, 1), seed=2)
    b.linear(b.pool(b.conv(b.conv("input", 3, k=3, pad=1), 2, k=1, pad=0)), 1)
    rtl_check(b.program(), tmp_path / "b")
    b = ProgBuilder((1, 4, 4), seed=3)
    x = b.conv("input", 1, k=1, pad=0, clamp=(0, 1))
    b.add(x, b.conv(x, depthwise=True, k=3, clamp=(0, 1)), shift=0, clamp=(0, 1))
    rtl_check(b.program(), tmp_path / "c")
