"""Max pools in RTL (rtl/pool.py: the conv's walk with a comparator tree per channel): Verilator
output equals the golden simulator exactly (rtl_check: lint-clean, exact, measured cycles per
image == the manifest's), with and without stalls, at one and several lanes, and the comparators
the manifest counts are what the cost model counts. These fail (never skip) when Verilator is
missing."""
import numpy as np
import pytest

from hashiflex.cost import design
from hashiflex.errors import UserError
from hashiflex.rtl import generate_rtl
from hashiflex.sim.reference import run_reference
from hashiflex.verify.layers import verify_layers
from rtl_progs import ProgBuilder, assert_counts_match_manifest, rtl_check


def _pool(man):
    return [m for m in man.modules if m.kind == "maxpool"]


def test_maxpool_2x2_stride2_on_the_input(tmp_path):
    """The chip input (uint8) pooled 2x2/2: one step per input pixel, 3 comparators per channel."""
    b = ProgBuilder((3, 8, 10), seed=1)
    b.maxpool("input", 2)
    man = rtl_check(b.program(), tmp_path, n_images=4)["manifest"]
    (m,) = _pool(man)
    assert (m.comparators, m.comparator_bits, m.comparator_depth) == (9, 72, 2)
    assert m.traversal == [8, 10] and man.expected_cycles_per_image == 80 and m.adders == 0


def test_maxpool_3x3_stride2_pad1_unsigned(tmp_path):
    """Padding (zeros from the walk) never wins over a non-negative input: 9x11 -> 5x6."""
    b = ProgBuilder((2, 9, 11), seed=2)
    x = b.conv("input", 3, k=3, clamp=(0, 127))
    b.maxpool(x, 3, stride=2, pad=1)
    prog = b.program()
    assert prog.tensors[prog.output].shape == (3, 5, 6)
    man = rtl_check(prog, tmp_path, n_images=4)["manifest"]
    (m,) = _pool(man)
    assert (m.comparators, m.comparator_depth, m.traversal) == (3 * 8, 4, [11, 13])   # (5-1)*2+3 rows


def test_maxpool_3x3_stride1(tmp_path):
    """Stride 1 with and without padding, back to back."""
    b = ProgBuilder((2, 8, 7), seed=3)
    x = b.conv("input", 3, k=3, clamp=(0, 100))
    x = b.maxpool(x, 3, stride=1, pad=1)
    b.maxpool(x, 3, stride=1, pad=0)
    prog = b.program()
    assert prog.tensors[prog.output].shape == (3, 6, 5)
    rtl_check(prog, tmp_path, n_images=4)


def test_maxpool_signed_input_without_padding(tmp_path):
    """A two's-complement input (signed comparators), 3x3/2 and 2x2/1 without padding; the pooled
    values really are negative somewhere."""
    b = ProgBuilder((2, 11, 9), seed=16)
    x = b.conv("input", 3, k=3, clamp=(-100, 100), bias=2000)
    x = b.maxpool(x, 3, stride=2)
    b.maxpool(x, 2, stride=1)
    prog = b.program()
    assert prog.tensors[x].lo < 0
    images = np.random.default_rng(0).integers(0, 256, (4, 2, 11, 9), dtype=np.uint8)
    assert (run_reference(prog, images)[prog.output] < 0).any()
    man = rtl_check(prog, tmp_path, n_images=4)["manifest"]
    assert [m.comparator_bits for m in _pool(man)] == [3 * 8 * 8, 3 * 3 * 8]   # 8-bit signed stream


def _network(seed=5):
    b = ProgBuilder((3, 12, 12), seed=seed)
    x = b.conv("input", 6, k=3, clamp=(0, 127))
    x = b.maxpool(x, 2)                                   # 12 -> 6
    x = b.conv(x, 8, k=3, clamp=(-80, 80))
    b.pool(x, clamp=(-128, 127))
    return b.program()


def test_conv_maxpool_conv_avgpool_network_with_and_without_stalls(tmp_path):
    """conv -> maxpool -> conv -> global average pool: exact, cycles == manifest (the stem's 14 x 14
    traversal), and again with random input bubbles and output back-pressure; each layer alone
    (verify_layers) too."""
    prog = _network()
    out = rtl_check(prog, tmp_path, n_images=4)
    man = out["manifest"]
    assert man.expected_cycles_per_image == 14 * 14 and out["result"]["cycles_per_image"] == 196
    assert _pool(man)[0].comparators == 6 * 3     # docs/architecture.md
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=7, stall_in=30, stall_out=40)
    images = np.random.default_rng(3).integers(0, 256, (3, 3, 12, 12), dtype=np.uint8)
    r = verify_layers(tmp_path, images, prog, jobs=1)
    assert r["mismatches"] == 0 and r["layers"] == 4
    pooled = next(x for x in r["per_layer"] if x["op"] == _pool(man)[0].op)
    assert pooled["cycles_per_image"] == pooled["expected_cycles_per_image"] == 144


def test_maxpool_with_lanes_and_a_width_converter(tmp_path):
    """P = 4 from a stride-1 stem: the 2x2/2 pool takes 4 lanes and gives 2, the 3x3/2/pad 1 pool
    takes 2 and gives 1 (lanes follow the strides as through a conv); then a plan that narrows
    6 -> 2 lanes in front of the first pool (a width converter as its input stage) and widens
    1 -> 2 in front of the 1x1 conv, so the last pool takes 2 lanes again."""
    b = ProgBuilder((2, 12, 12), seed=6)
    x = b.conv("input", 3, k=3, clamp=(0, 127))
    x = b.maxpool(x, 2)                                   # 12 -> 6
    x = b.conv(x, 4, k=1, pad=0, clamp=(0, 127))
    b.maxpool(x, 3, stride=2, pad=1)                      # 6 -> 3
    prog = b.program()
    man = rtl_check(prog, tmp_path, n_images=4, parallelism=4)["manifest"]
    assert [(m.lanes_in, m.lanes_out, m.P) for m in _pool(man)] == [(4, 2, 2), (2, 1, 1)]
    assert _pool(man)[0].comparators == 2 * 3 * 3
    names = [op.name for op in prog.ops]
    formats = dict(zip(names, [(6, 1), (2, 1), (2, 1), (2, 1)]))
    man = rtl_check(prog, tmp_path / "plan", n_images=3, formats=formats)["manifest"]
    assert _pool(man)[0].lanes_src == 6 and man.formats() == formats
    rtl_check(prog, tmp_path / "plan_stall", n_images=3, seed=2, stall_in=25, stall_out=25, formats=formats)


def test_padded_maxpool_over_a_signed_input_is_refused(tmp_path):
    b = ProgBuilder((2, 6, 6), seed=7)
    x = b.conv("input", 3, k=3, clamp=(-50, 50))
    b.maxpool(x, 3, stride=2, pad=1)
    prog = b.program()
    with pytest.raises(UserError, match=r"layer maxpool1: a max pool with padding \[1, 1\] needs an input that "
                                        r"cannot be negative") as e:
        generate_rtl(prog, tmp_path / "rtl")
    assert "\n" not in str(e.value) and not (tmp_path / "rtl" / "manifest.json").exists()
    assert not design.generates(prog, {op.name: (1, 1) for op in prog.ops})


@pytest.mark.parametrize("p", [1, 2, 4])
def test_cost_model_counts_the_generators_comparators(tmp_path, p):
    """Comparators, comparator bits and depth, register bits and cycles of every max pool (and
    every other module) replayed from the IR equal the manifest's; `estimate` totals them."""
    b = ProgBuilder((2, 12, 12), seed=8)
    x = b.conv("input", 3, k=3, clamp=(0, 127))
    x = b.maxpool(x, 2)
    x = b.maxpool(x, 3, stride=2, pad=1)
    b.pool(x)
    prog = b.program()
    man = generate_rtl(prog, tmp_path / "rtl", p, share=False)
    for op, m, net, k in assert_counts_match_manifest(prog, man, p):
        if m.kind == "maxpool":
            assert (net.comparators * k, net.comparator_bits * k, net.depth) == \
                (m.comparators, m.comparator_bits, m.comparator_depth), op.name
    r = design.as_generated(prog, man)
    assert r["comparators"] == sum(m.comparators for m in _pool(man)) > 0
    assert r["cycles_per_image"] == man.expected_cycles_per_image
    assert r["area_breakdown_mm2"]["comparators"] > 0


def test_manifest_checks_the_maxpool_fields(tmp_path):
    """A max pool's module entry has the walk's fields and its comparator counts, and no conv-only
    field; read back, it matches the program (rtl.readback)."""
    import json

    from hashiflex.rtl.manifest import Manifest
    from hashiflex.rtl.readback import program_errors, read_manifest

    prog = _network()
    generate_rtl(prog, tmp_path, 2)
    man = read_manifest(tmp_path / "manifest.json")
    assert program_errors(man, prog) == [] and _pool(man)[0].copies() == _pool(man)[0].P
    good = json.loads((tmp_path / "manifest.json").read_text())
    i = next(k for k, m in enumerate(good["modules"]) if m["kind"] == "maxpool")
    for edit, says in ((lambda m: m.pop("comparators"), "fields comparators missing or not allowed"),
                       (lambda m: m.update(groups=6), "fields groups missing or not allowed"),
                       (lambda m: m.update(pipeline_stages=1), "only convs are pipelined")):
        bad = json.loads(json.dumps(good))
        edit(bad["modules"][i])
        with pytest.raises(UserError, match=f"modules.{i}: .*{says}"):
            Manifest.parse(bad, "m.json")
