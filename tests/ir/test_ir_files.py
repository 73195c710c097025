"""IR files read back (hashiflex.ir.serialize.load) are checked, not trusted: every field of a real
model.ir.json mutated seven ways, and arrays of the wrong shape or type in model.ir.npz, load as a
valid Program (Program.validate: types, ranges, shapes against the ops) or fail with one line
naming the file; never another exception."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest

from hashiflex.errors import UserError
from hashiflex.ir import serialize
from mutations import mutations
from rtl_progs import ProgBuilder

def small_program():
    b = ProgBuilder((2, 6, 6), seed=9)
    x = b.conv("input", 4, k=3, clamp=(0, 127))
    y = b.conv(x, 4, k=1, pad=0, clamp=(-64, 63))
    z = b.pool(b.add(x, y))
    b.linear(z, 3, mode="int8")
    return b.program()


def test_every_mutated_json_field_loads_or_fails_in_one_line(tmp_path):
    serialize.save(small_program(), tmp_path)
    good = json.loads((tmp_path / "model.ir.json").read_text())
    counts = {"loaded": 0, "refused": 0}
    for _, _, bad in mutations(good):
        (tmp_path / "model.ir.json").write_text(json.dumps(bad))
        try:
            serialize.load(tmp_path).validate()
            counts["loaded"] += 1
        except UserError as e:
            assert "\n" not in str(e) and "model.ir" in str(e) and "hashiflex compile" in str(e), str(e)
            counts["refused"] += 1
    assert counts["refused"] > 5 * counts["loaded"] and counts["refused"] > 500, counts


@pytest.mark.parametrize("edit", [
    lambda a: a.update({"conv0.weight": a["conv0.weight"][:, :, :2]}),          # kernel cut
    lambda a: a.update({"conv0.bias": a["conv0.bias"][:-1]}),                  # one bias short
    lambda a: a.update({"fc4.weight": a["fc4.weight"].T.copy()}),              # transposed
    lambda a: a.update({"fc4.scale_mult": a["fc4.scale_mult"].astype(np.float64)}),
    lambda a: a.pop("conv1.weight"),
])
def test_npz_arrays_of_the_wrong_shape_or_type_are_refused(tmp_path, edit):
    prog = small_program()
    serialize.save(prog, tmp_path)
    with np.load(tmp_path / "model.ir.npz") as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (tmp_path / "model.ir.npz").write_bytes(buf.getvalue())
    with pytest.raises(UserError, match="re-run 'hashiflex compile'"):
        serialize.load(tmp_path)
