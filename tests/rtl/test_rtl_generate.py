"""RTL generation: deterministic files, lint-clean Verilog, manifest contents, harness errors."""
import subprocess

import numpy as np
import pytest

from hashiflex.errors import UserError
from hashiflex.ir.intervals import bits_for
from hashiflex.rtl import generate_rtl
from hashiflex.verify import harness, verify_build
from rtl_progs import ProgBuilder


def _all_ops_program():
    b = ProgBuilder((2, 7, 7), seed=11)
    x = b.conv("input", 4, k=3, stride=2)
    y = b.conv(x, depthwise=True, k=3, clamp=(-30, 30))
    z = b.add(x, y, align_a=0, align_b=1, shift=1)
    p = b.pool(z, clamp=(0, 127))
    b.linear(p, 3, mode="po2")
    return b.program()


def test_generation_is_deterministic_and_atomic(tmp_path):
    prog = _all_ops_program()
    m1 = generate_rtl(prog, tmp_path / "a")
    m2 = generate_rtl(prog, tmp_path / "b")
    assert m1 == m2
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert not [n for n in names if ".tmp" in n]
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes(), n
    assert set(m1.files) | {"manifest.json", m1.shell.file} == set(names)


def test_verilator_lint_wall_is_clean(tmp_path):
    prog = _all_ops_program()
    man = generate_rtl(prog, tmp_path)
    r = subprocess.run([harness.verilator(), "--quiet", "--lint-only", "-Wall", "--top-module", man.top,
                        *[str(tmp_path / f) for f in man.files]], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout + r.stderr == "", r.stdout + r.stderr


def test_manifest_figures(tmp_path):
    prog = _all_ops_program()
    man = generate_rtl(prog, tmp_path)
    assert [m.kind for m in man.modules] == ["conv", "conv", "add", "avgpool", "linear"]
    assert all(m.P == 1 for m in man.modules)
    nz = sum(int(np.count_nonzero(prog.arrays[op.weight])) for op in prog.ops if op.kind in ("conv", "linear"))
    assert man.adders >= nz  # one adder per nonzero weight (the bias takes the place of the +1)
    assert man.adders == sum(m.adders for m in man.modules)
    assert man.adder_bits > man.adders and man.register_bits > 0
    # stride-2 3x3 pad 1 on 7x7: traversal max(1+7, 3*2+3) = 9 per axis
    assert man.modules[0].cycles_per_image == 81 and man.expected_cycles_per_image == 81
    logits = prog.tensors[prog.output]
    assert man.outputs[1].model_dump(exclude_none=True) == {"port": "logits", "tensor": prog.output, "channels": 3, "signed": bool(logits.lo < 0),
                                 "bits": bits_for(min(logits.lo, 0), max(logits.hi, 0)),
                                 "width": 3 * bits_for(min(logits.lo, 0), max(logits.hi, 0)), "shape": [3],
                                 "beats": 1, "lanes": 1}


def test_parallelism_follows_the_first_layer_and_the_strides(tmp_path):
    prog = _all_ops_program()  # stride-2 3x3 conv first
    man = generate_rtl(prog, tmp_path, parallelism={prog.ops[0].name: 2})
    assert man.input.lanes == 4 and [m.P for m in man.modules] == [2, 2, 2, 2, 1]
    assert man.expected_cycles_per_image < 81 / 2 + 10
    with pytest.raises(UserError, match="P follows"):
        generate_rtl(prog, tmp_path, parallelism={prog.ops[1].name: 3})
    with pytest.raises(UserError, match="unknown layers"):
        generate_rtl(prog, tmp_path, parallelism={"nope": 1})


def test_missing_verilator_is_a_user_error(tmp_path, monkeypatch):
    prog = _all_ops_program()
    generate_rtl(prog, tmp_path / "rtl")
    from hashiflex.verify import verilator as vl
    monkeypatch.setattr(vl, "locate", lambda override, path: None)
    images = np.zeros((1, 2, 7, 7), np.uint8)
    with pytest.raises(UserError, match="verilator not found: reinstall hashiflex"):
        verify_build(tmp_path, images, prog=prog)


def test_wrong_image_shape_is_a_user_error(tmp_path):
    prog = _all_ops_program()
    generate_rtl(prog, tmp_path / "rtl")
    with pytest.raises(UserError, match="images must be uint8"):
        verify_build(tmp_path, np.zeros((1, 2, 8, 8), np.uint8), prog=prog)
