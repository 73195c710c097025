"""Hand-built IR Programs with random Po2 weights for RTL tests, plus the RTL check itself.

Building the IR directly (rather than quantizing a torch net) lets a test pick any kernel,
stride, padding, requantize shift (including left shifts) and clamp range, and is fast."""
from __future__ import annotations

import subprocess

import numpy as np

from hashiflex.ir.builder import ProgBuilder  # noqa: F401  (tests import it from here)
from hashiflex.ir.spec import Program
from hashiflex.rtl import generate_rtl
from hashiflex.verify import harness, verify_build


def assert_lint_clean(rtl_dir, man) -> None:
    """Verilator -Wall on the generated files: no warning at all."""
    lint = subprocess.run([harness.verilator(), "--quiet", "--lint-only", "-Wall", "--top-module", man.top,
                           *[str(rtl_dir / f) for f in man.files]], capture_output=True, text=True)
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr), lint.stdout + lint.stderr


def rtl_check(prog: Program, tmp_path, n_images=3, seed=0, stall_in=0, stall_out=0, exact_cycles=True,
              parallelism=1, formats=None, cycles_slack=0.0) -> dict:
    """Generate (a first-layer P, or per-layer `formats`), lint with -Wall, build, simulate; assert
    no warning, RTL == golden and the cycle figure."""
    man = generate_rtl(prog, tmp_path / "rtl", parallelism, formats=formats)
    assert_lint_clean(tmp_path / "rtl", man)
    images = np.random.default_rng(seed).integers(0, 256, (n_images, *prog.tensors["input"].shape), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=prog, stall_in=stall_in, stall_out=stall_out, seed=seed)
    assert res["images"] == n_images
    assert res["mismatches"] == 0, res["first_mismatch"]
    if exact_cycles and not stall_in and not stall_out and n_images > 1:
        assert abs(res["cycles_per_image"] - man.expected_cycles_per_image) <= cycles_slack * man.expected_cycles_per_image
    return {"manifest": man, "result": res}
