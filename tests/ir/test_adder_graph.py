"""Adder graphs (CSE across output channels): exact on random Po2 matrices, never more adders
than the naive trees, and widths that hold every value the adders produce."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashiflex.errors import UserError
from hashiflex.ir import serialize
from hashiflex.ir.adder_graph import (adder_widths, build_graph, evaluate_graph, graph_cost, layer_matrix, node_bounds,
                                      node_depths, node_values)
from hashiflex.ir.sharing import (GRAPHS_FILE, hardware_constants, load_graphs, save_graphs, solve_adder_graphs,
                                  to_npz_bytes)
from hashiflex.ir.intervals import analyze
from hashiflex.ir.lower import lower
from random_nets import make_random_net


def po2_matrix(rng, o, n, zero_frac, e_lo, e_hi):
    e = rng.integers(e_lo, e_hi + 1, size=(o, n))
    sign = rng.choice([-1, 1], size=(o, n))
    m = sign * np.left_shift(np.int64(1), e)
    return np.where(rng.random((o, n)) < zero_frac, 0, m).astype(np.int64)


def check_widths(g, x, lo, hi):
    """Every adder's observed value lies in its interval and fits its width."""
    L, H = node_bounds(g, lo, hi)
    v = node_values(g, x)[:, :-1]
    assert np.all(v >= L) and np.all(v <= H)
    w = adder_widths(g, lo, hi)
    va = v[:, g.n_inputs:]
    signed = (L[g.n_inputs:] < 0)
    top = np.where(signed, np.left_shift(np.int64(1), np.maximum(w - 1, 0)), np.left_shift(np.int64(1), w))
    assert np.all(va < top) and np.all(va >= np.where(signed, -top, 0))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), o=st.integers(1, 14), n=st.integers(1, 14),
       zero_frac=st.sampled_from([0.0, 0.3, 0.6, 0.95]), e_lo=st.integers(0, 3), e_span=st.integers(0, 12),
       lo=st.integers(-300, 40), span=st.integers(0, 600))
def test_graph_equals_matrix_product(seed, o, n, zero_frac, e_lo, e_span, lo, span):
    rng = np.random.default_rng(seed)
    m = po2_matrix(rng, o, n, zero_frac, e_lo, e_lo + e_span)
    hi = lo + span
    x = rng.integers(lo, hi + 1, size=(9, n))
    x[0], x[1] = lo, hi   # the interval's corners
    ours, naive = build_graph(m), build_graph(m, cse=False)
    for g in (ours, naive):
        assert np.array_equal(evaluate_graph(g, x), x @ m.T)
        check_widths(g, x, lo, hi)
    assert ours.n_adders <= naive.n_adders
    assert naive.n_adders == int((m != 0).sum()) - int((m != 0).any(axis=1).sum())


def test_sharing_pays_on_a_layer_sized_matrix():
    rng = np.random.default_rng(1)
    m = po2_matrix(rng, 96, 64, 0.5, 2, 6)
    ours, naive = graph_cost(build_graph(m), 0, 255), graph_cost(build_graph(m, cse=False), 0, 255)
    assert ours.adders < 0.75 * naive.adders and ours.bits < 0.75 * naive.bits
    assert ours.depth <= naive.depth + 1


def test_wide_exponents_stay_exact_with_python_ints():
    rng = np.random.default_rng(2)
    codes = rng.integers(0, 90, size=(6, 8))
    m = np.array([[0 if c == 0 else (-1) ** int(c) * (1 << int(c)) for c in row] for row in codes], dtype=object)
    g = build_graph(m)
    x = rng.integers(-1000, 1000, size=(4, 8)).astype(object)
    want = np.array([[sum(int(a) * int(b) for a, b in zip(row, xv)) for row in m] for xv in x], dtype=object)
    assert np.array_equal(evaluate_graph(g, x), want)
    L, H = node_bounds(g, -1000, 999)
    assert L.dtype == object and max(H) > 2 ** 62


def test_max_depth_caps_shared_nodes_and_bad_weights_are_refused():
    rng = np.random.default_rng(3)
    m = po2_matrix(rng, 40, 30, 0.3, 0, 4)
    g = build_graph(m, max_depth=1)
    assert g.n_shared > 0 and node_depths(g)[g.n_inputs:g.n_inputs + g.n_shared].max() == 1
    with pytest.raises(ValueError):
        build_graph(np.array([[3, 1], [1, 2]]))


def test_sharing_pass_is_an_ir_object_saved_beside_the_ir(tmp_path):
    layer = dict(bias=False, bn=True, relu6=True, residual=False, depthwise=False)
    spec = {"in_ch": 2, "classes": 5, "exp_bits": 3, "act_bits": 8, "head": "po2", "prune": 0.4, "size": 8,
            "layers": [dict(layer, cout=8, k=3, stride=1, pad=1),
                       dict(layer, depthwise=True, cout=8, k=3, stride=2, pad=1),
                       dict(layer, cout=12, k=1, stride=1, pad=0),
                       dict(layer, cout=12, k=1, stride=1, pad=0, relu6=False)]}
    net = make_random_net(spec, seed=0)
    prog = analyze(lower(net, (2, 8, 8)))
    graphs = solve_adder_graphs(prog)
    handled = [op for op in prog.ops if layer_matrix(prog, op) is not None]
    assert [type(op).__name__ for op in handled] == ["Conv", "Conv", "Conv", "Linear"]
    assert sorted(graphs.layers) == sorted(op.name for op in handled)
    assert handled[0].padding == (1, 1) and layer_matrix(prog, handled[0])[0].shape == (8, 18)
    serialize.save(prog, tmp_path)
    save_graphs(graphs, tmp_path)
    assert (tmp_path / GRAPHS_FILE).read_bytes() == to_npz_bytes(solve_adder_graphs(prog))  # deterministic
    back = load_graphs(tmp_path, serialize.load(tmp_path))
    rng = np.random.default_rng(4)
    for op in handled:
        m, lo, hi = layer_matrix(prog, op)
        lg = back.get(op.name)
        consts, dropped = hardware_constants(prog, op)
        assert lg.dropped == tuple(dropped)
        x = rng.integers(lo, hi + 1, size=(5, m.shape[1]))
        xs = np.concatenate([x, np.tile(np.array(lg.constants, dtype=np.int64), (5, 1))], axis=1)
        want = (x @ m.T + np.array(consts))[:, ~np.array(dropped, dtype=bool)]
        assert np.array_equal(evaluate_graph(lg.graph, xs)[:, ~np.array(dropped, dtype=bool)], want)


def test_graph_file_checked_on_read(tmp_path):
    """A graph file that does not belong to the IR, or is damaged, is refused with one line."""
    layer = dict(bias=True, bn=True, relu6=True, residual=False, depthwise=False)
    spec = {"in_ch": 1, "classes": 3, "exp_bits": 3, "act_bits": 8, "head": "po2", "prune": 0.3, "size": 6,
            "layers": [dict(layer, cout=6, k=3, stride=1, pad=1), dict(layer, cout=6, k=1, stride=1, pad=0)]}
    prog = analyze(lower(make_random_net(spec, seed=1), (1, 6, 6)))
    other = analyze(lower(make_random_net(spec, seed=2), (1, 6, 6)))
    save_graphs(solve_adder_graphs(other), tmp_path)
    with pytest.raises(UserError, match="not a valid adder-graph file for this IR"):
        load_graphs(tmp_path, prog)
    data = bytearray(to_npz_bytes(solve_adder_graphs(prog)))
    (tmp_path / GRAPHS_FILE).write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(UserError, match="re-run 'hashiflex compile"):
        load_graphs(tmp_path, prog)
    (tmp_path / GRAPHS_FILE).unlink()
    assert load_graphs(tmp_path, prog) is None
