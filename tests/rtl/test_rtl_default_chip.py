"""The default chip itself in RTL: default-po2 (hardened pipeline + NPU, shared adders, 324 k
adders) built block by block in Verilator 5.048 (one Verilated model per layer module, stitched by
the testbench), on real Fashion-MNIST test images, equals the golden simulator exactly, at the
manifest's cycles per image. About 10 minutes of Verilator/g++ on 2 cores, so it is marked slow:
`python -m pytest -m slow tests`."""
import os

import pytest

from hashiflex.data import load_fashion_mnist
from hashiflex.ir.build import program_from_checkpoint
from hashiflex.rtl import generate_rtl
from hashiflex.rtl.npu import NPUConfig
from hashiflex.verify import verify_build

IMAGES = int(os.environ.get("HASHIFLEX_CHIP_IMAGES", "200"))


@pytest.mark.slow
def test_default_chip_equals_golden_on_real_images(tmp_path):
    prog = program_from_checkpoint("default-po2")
    man = generate_rtl(prog, tmp_path / "rtl", npu=NPUConfig())
    assert man.adders > 300_000 and man.shared
    x, y = load_fashion_mnist("test", limit=IMAGES)
    res = verify_build(tmp_path, x, prog=prog, jobs=2)
    assert res["images"] == IMAGES and res["mismatches"] == 0, res["first_mismatch"]
    assert res["build_mode"] == "blocks" and res["verilator_version"] == "5.048"
    assert res["cycles_per_image"] == man.npu.chip_cycles_per_image
    assert res["ports"]["logits"]["distinct_outputs"] >= 0.9 * IMAGES
    assert res["top1"] if "top1" in res else True
