"""End to end on a trained network: the committed small-po2 checkpoint (the default recipe on a
width-reduced MobileNetV2 that keeps every layer type) in RTL, on 100 real Fashion-MNIST test
images, equals the golden simulator exactly and runs at the manifest's cycles per image.
(default-po2 itself is verified by tests/rtl/test_rtl_default_chip.py.)
Its Verilator build takes 5-8 minutes, so it is marked slow: `python -m pytest -m slow tests`."""
import pytest

from hashiflex.data import load_fashion_mnist
from hashiflex.ir.build import program_from_checkpoint
from hashiflex.rtl import generate_rtl
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.verify import verify_build

IMAGES = 100


@pytest.mark.slow
def test_small_po2_rtl_equals_golden_on_real_images(tmp_path):
    prog = program_from_checkpoint("small-po2")
    kinds = {op.kind for op in prog.ops}
    assert kinds == {"conv", "add", "avgpool", "linear"}
    man = generate_rtl(prog, tmp_path / "rtl")
    x, y = load_fashion_mnist("test", limit=IMAGES)
    res = verify_build(tmp_path, x, prog=prog)
    assert res["images"] == IMAGES and res["mismatches"] == 0, res["first_mismatch"]
    expected = man.expected_cycles_per_image
    assert res["cycles_per_image"] == expected
    # the RTL's features equal the golden ones, so its top-1 is the golden simulator's; make sure
    # that top-1 is a real classifier's, not a constant
    logits = GoldenSimulator(prog).logits(x)
    assert (logits.argmax(1) == y).mean() > 0.7
