"""Residual adds of two computed branches (rtl.schedule.skip_fifos): both operands fork from one
tensor through convolutions of different latency (ResNet's downsampling block); the branch that
runs ahead is buffered deep enough that the fork never blocks. Exact in Verilator with and without
stalls, measured cycles per image == the manifest's; identity skips keep their FIFOs. These fail
(never skip) when Verilator is missing."""
import numpy as np
import pytest

from hashiflex.cost import design
from hashiflex.errors import UserError
from hashiflex.rtl import generate, generate_rtl
from hashiflex.rtl.schedule import SKIP_SLACK, STAGE_LATENCY, branch_fifos, fork_of, need_from, skip_fifos
from hashiflex.verify import verify_build
from rtl_progs import ProgBuilder, mobilenet_block_prog, rtl_check


def _downsampling_block(seed=3, shape=(3, 12, 12), head=False):
    """x -> conv3x3/2 -> conv3x3 ; x -> conv1x1/2 (projection) ; add, ReLU (clamp_lo = 0)."""
    b = ProgBuilder(shape, seed=seed)
    x = b.conv("input", 4, k=3, clamp=(0, 127))
    a = b.conv(x, 8, k=3, stride=2, clamp=(0, 127))
    a = b.conv(a, 8, k=3, clamp=(-64, 63))
    s = b.conv(x, 8, k=1, stride=2, pad=0, clamp=(-64, 63))
    z = b.add(a, s, align_a=0, align_b=0, shift=1, clamp=(0, 127))
    if head:
        b.linear(b.pool(z), 4)
    return b.program()


def test_resnet_downsampling_block_with_and_without_stalls(tmp_path):
    """Only the projection (ready ahead of the two 3x3 convs) gets a FIFO, of the schedule's depth:
    the fork is the stem's output. Exact, cycles == manifest (the stem's 14 x 14 walk), and with
    random input bubbles and output back-pressure."""
    prog = _downsampling_block(head=True)
    add = next(op for op in prog.ops if op.kind == "add")
    assert fork_of(prog, add.a, add.b) == "conv0"
    out = rtl_check(prog, tmp_path, n_images=4)
    man = out["manifest"]
    (f,) = man.skip_fifos
    assert (f.add, f.operand, f.tensor) == (add.name, "b", add.b)
    assert f.depth == skip_fifos(prog, {})[(add.name, "b")] == 21
    assert out["result"]["cycles_per_image"] == man.expected_cycles_per_image == 196
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=4, stall_in=30, stall_out=40)
    # the cost model prices the same FIFO (schedule.skip_fifos, through design.fifo_list)
    fl = design.fifo_list(prog, {op.name: (1, 1) for op in prog.ops})
    assert [(x["add"], x["operand"], x["depth"], x["width"]) for x in fl] == [(f.add, f.operand, f.depth, f.width)]


def test_shallower_fifo_deadlocks(tmp_path, monkeypatch):
    """The hold term is what keeps the pipeline alive: the projection FIFO 12 words shallower
    (9 instead of 21) deadlocks the block, which the testbench reports."""
    prog = _downsampling_block()
    real = generate.skip_fifos
    monkeypatch.setattr(generate, "skip_fifos", lambda *a, **k: {key: d - 12 for key, d in real(*a, **k).items()})
    assert generate_rtl(prog, tmp_path / "rtl").skip_fifos[0].depth == 9
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 12, 12), dtype=np.uint8)
    with pytest.raises(UserError, match="deadlock"):
        verify_build(tmp_path, images, prog=prog)


def _two_multilayer_branches(seed=11):
    """x -> 1x1 -> depthwise 3x3 -> 1x1 ; x -> 3x3 -> 1x1 ; add, then a depthwise conv."""
    b = ProgBuilder((3, 10, 9), seed=seed)
    x = b.conv("input", 4, k=3, clamp=(0, 127))
    a = b.conv(x, 8, k=1, pad=0, clamp=(0, 127))
    a = b.conv(a, depthwise=True, k=3, clamp=(0, 127))
    a = b.conv(a, 4, k=1, pad=0, clamp=(-64, 63))
    c = b.conv(x, 6, k=3, clamp=(0, 127))
    c = b.conv(c, 4, k=1, pad=0, clamp=(-64, 63))
    z = b.add(a, c, align_a=0, align_b=1, shift=1, clamp=(-100, 100))
    b.conv(z, depthwise=True, k=3, clamp=(0, 127))
    return b.program()


@pytest.mark.parametrize("p", [1, 4])
def test_two_multilayer_branches_with_and_without_stalls(tmp_path, p):
    """Both branches hold a 3x3 window (the same need), but the 2-module branch has less latency
    than the 3-module one: it gets a FIFO of hold + the other's latency + slack, the other none.
    Also at 4 pixels per beat (needs in beats)."""
    prog = _two_multilayer_branches()
    add = next(op for op in prog.ops if op.kind == "add")
    lanes = generate.plan_lanes(prog, p)[0]
    na, la = need_from(prog, "conv0", add.a, lanes)
    nb, lb = need_from(prog, "conv0", add.b, lanes)
    assert (na == nb).all() and (la, lb) == (3 * STAGE_LATENCY, 2 * STAGE_LATENCY)
    out = rtl_check(prog, tmp_path, n_images=4, parallelism=p)
    man = out["manifest"]
    (f,) = man.skip_fifos
    hold = int((np.searchsorted(np.sort(nb), np.maximum(na, nb), side="right") - np.arange(len(nb))).max())
    assert f.operand == "b" and f.depth == hold + la + STAGE_LATENCY + SKIP_SLACK
    assert out["result"]["cycles_per_image"] == man.expected_cycles_per_image
    rtl_check(prog, tmp_path / "stall", n_images=3, seed=8, stall_in=35, stall_out=35, parallelism=p)


def test_branch_fifos_rule():
    """branch_fifos on needs given directly: the skip case (need_skip(j) = j) reproduces the skip
    formula; branches that cross (each ahead somewhere) both get a FIFO; equal branches none."""
    n = np.array([3, 4, 5, 9, 9, 9, 9, 9, 9, 9])
    ident = np.arange(10)
    lead = int((n - ident).max()) + 1
    assert branch_fifos(ident, 0, n, 6) == {"a": lead + 6 + STAGE_LATENCY + SKIP_SLACK}
    assert branch_fifos(n, 6, ident, 0) == {"b": lead + 6 + STAGE_LATENCY + SKIP_SLACK}
    a = np.array([5, 5, 5, 6, 7, 9, 9, 9])      # far ahead of b at first, then behind it
    b = np.array([0, 1, 2, 8, 9, 9, 9, 9])
    # X = max(a, b) = [5, 5, 5, 8, 9, 9, 9, 9]: once the fork reaches 9, both have made all 8
    # items while the add has taken 4: each holds 4, plus the other's latency and the slack
    both = 4 + 2 + STAGE_LATENCY + SKIP_SLACK
    assert branch_fifos(a, 2, b, 2) == {"a": both, "b": both}
    assert branch_fifos(n, 4, n, 4) == {}


@pytest.mark.parametrize("k", [1, 2])
def test_pipelined_two_branch_block(tmp_path, k):
    """Adder networks pipelined every k levels: the FIFO grows by the other branch's stages."""
    prog = _downsampling_block(seed=5)
    man = generate_rtl(prog, tmp_path / "rtl", pipeline_levels=k)
    stages = {m.op: m.pipeline_stages for m in man.modules if m.pipeline_stages}
    (f,) = man.skip_fifos
    add = next(op for op in prog.ops if op.kind == "add")
    assert f.depth == skip_fifos(prog, {}, stages)[(add.name, "b")] == \
        skip_fifos(prog, {})[(add.name, "b")] + stages.get("conv1", 0) + stages.get("conv2", 0)
    images = np.random.default_rng(k).integers(0, 256, (4, 3, 12, 12), dtype=np.uint8)
    res = verify_build(tmp_path, images, prog=prog)
    assert res["mismatches"] == 0 and res["cycles_per_image"] == man.expected_cycles_per_image
    res = verify_build(tmp_path, images[:3], prog=prog, stall_in=30, stall_out=30, seed=k)
    assert res["mismatches"] == 0


def test_identity_skips_keep_their_fifo():
    """A skip connection (one operand feeds the other) is the special case need_skip(j) = j: one
    FIFO on the skip operand, max_i(need(i) - i) + 1 + the branch's latency + slack deep."""
    prog = mobilenet_block_prog()
    x, y, z, z2 = "conv0", "conv3", "add4", "conv5"
    got = skip_fifos(prog, {})
    want = {}
    for add, port, skip, other in (("add4", "a", x, y), ("add6", "b", z, z2)):
        n, lat = need_from(prog, skip, other)
        want[(add, port)] = max(int((n - np.arange(len(n))).max()), 0) + 1 + lat + STAGE_LATENCY + SKIP_SLACK
        assert fork_of(prog, skip, other) == skip
    assert got == want


def test_branches_that_do_not_start_at_one_tensor_are_refused(tmp_path):
    """The add's operands fork from x, but one branch also reads a tensor computed beside x."""
    b = ProgBuilder((2, 6, 6), seed=9)
    x = b.conv("input", 3, k=3, clamp=(0, 127))
    a = b.conv(x, 3, k=1, pad=0, clamp=(-64, 63))
    c = b.conv("input", 3, k=3, clamp=(-64, 63))
    y = b.add(b.conv(x, 3, k=3, clamp=(-64, 63)), c)
    b.add(a, y)
    prog = b.program()
    with pytest.raises(UserError, match=r"residual add add5: its operands' branches fork from conv0, but layer "
                                        r"add4 also reads conv2"):
        generate_rtl(prog, tmp_path / "rtl")


def test_a_balanced_plan_lists_layers_in_network_order():
    """The projection (6x6 input) comes after the first main-branch conv (6x6 -> 3x3) in the
    network: the balancer's plan lists layers in network order, so the generator accepts it."""
    from hashiflex.cost.balance import generated_design
    from hashiflex.rtl.plan import formats_of

    b = ProgBuilder((3, 12, 12), seed=5)
    x = b.conv("input", 6, k=3, clamp=(0, 127))
    x = b.maxpool(x, 2)
    a = b.conv(x, 8, k=3, stride=2, clamp=(0, 127))
    a = b.conv(a, 8, k=3, clamp=(-64, 63))
    s = b.conv(x, 8, k=1, stride=2, pad=0, clamp=(-64, 63))
    b.linear(b.pool(b.add(a, s, clamp=(0, 127))), 4)
    prog = b.program()
    best, plan = generated_design(prog, target_ips=1e7)
    assert [f.op for f in plan.layers] == [op.name for op in prog.ops]
    assert formats_of(prog, plan) == {k: tuple(v) for k, v in best["formats"].items()}
