"""Property: for random small networks using every IR op, the quantized PyTorch model (run in
float64), the reference interpreter and the golden simulator give identical integers, and no
value leaves its analyzed interval."""
import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hashiflex.ir.intervals import analyze
from hashiflex.ir.lower import lower
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.sim.reference import run_reference
from random_nets import make_random_net


@st.composite
def layer(draw):
    k = draw(st.sampled_from([1, 3, 5]))
    return {"k": k, "stride": draw(st.sampled_from([1, 2])), "pad": draw(st.integers(0, k // 2)),
            "depthwise": draw(st.booleans()), "cout": draw(st.integers(1, 6)), "bias": draw(st.booleans()),
            "bn": draw(st.booleans()), "relu6": draw(st.booleans()), "residual": draw(st.booleans())}


@st.composite
def net_spec(draw):
    return {"layers": draw(st.lists(layer(), min_size=1, max_size=4)), "in_ch": draw(st.integers(1, 3)),
            "classes": draw(st.integers(1, 5)), "exp_bits": draw(st.integers(1, 4)),
            "act_bits": draw(st.sampled_from([4, 6, 8])), "head": draw(st.sampled_from(["npu", "po2"])),
            "prune": draw(st.sampled_from([0.0, 0.3, 0.7])), "size": draw(st.integers(7, 12))}


def _fits(spec):
    hw = spec["size"]
    for l in spec["layers"]:
        hw = (hw + 2 * l["pad"] - l["k"]) // l["stride"] + 1
        if hw < 1:
            return False
    return True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=net_spec(), seed=st.integers(0, 2 ** 16))
def test_random_nets_bit_exact(spec, seed):
    assume(_fits(spec))
    net = make_random_net(spec, seed)
    prog = analyze(lower(net, (spec["in_ch"], spec["size"], spec["size"])))
    images = np.random.default_rng(seed).integers(0, 256, (6, spec["in_ch"], spec["size"], spec["size"]),
                                                  dtype=np.uint8)
    ref = run_reference(prog, images)
    gold = GoldenSimulator(prog).run(images, keep_all=True)
    for name, t in prog.tensors.items():
        g = gold[name].to(torch.int64).numpy()
        assert np.array_equal(ref[name], g), name
        assert t.lo <= g.min() and g.max() <= t.hi, (name, t.lo, t.hi, g.min(), g.max())
    for op in prog.ops:
        acc = gold[f"{op.name}.acc"]
        assert op.acc_lo <= acc.min() and acc.max() <= op.acc_hi, op.name
    with torch.no_grad():
        out = net(torch.from_numpy(images).to(torch.float64) / 256)
    scaled = out * 2.0 ** prog.tensors[prog.output].frac
    assert torch.equal(scaled, torch.round(scaled))
    assert np.array_equal(scaled.to(torch.int64).numpy(), ref[prog.output])
