"""Adder graphs for constant Po2 matrix-vector products: fewer adders than one per weight.

A layer's outputs y = M @ x (M [O, N] integer, every entry 0 or +-2^k, x an integer vector in
[lo, hi]) become a graph of two-input adders, solved once per layer (not per pixel):
- nodes 0..N-1 are the inputs; adder k is node N + k = `a[k] + sign[k] * (b[k] << shift[k])`
  with shift >= 0, operands earlier nodes (so index order is a topological order);
- output o is `out_sign[o] * (out_node[o] << out_shift[o])` (out_node -1: constant 0).
The first `n_shared` adders come from common-subexpression elimination across outputs
(`adder_cse`); the rest are per-output balanced trees over what is left, combining the two
earliest-arriving terms first (ties: the smallest shifts, which keeps adders narrow), so an
output's depth is the optimum for its terms' arrival depths. The naive baseline builds one
balanced tree per output over its terms in input order: one adder per nonzero weight minus one.

Widths: interval arithmetic from the input range gives every node's exact bounds (exact in the
interval domain: each input may independently take any value in [lo, hi]); an adder's width is
`bits_for` of its result. "Adder bits" sums those widths, for the naive graph, ours and a peer's.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from .adder_cse import CseResult, eliminate
from .spec import Conv, Linear, Program, po2_weight_ints

_I64 = np.int64
_POW2 = np.left_shift(np.int64(1), np.arange(63, dtype=np.int64))


@dataclass(frozen=True)
class AdderGraph:
    n_inputs: int
    a: np.ndarray          # int64 [A] operand node ids
    b: np.ndarray          # int64 [A]
    shift: np.ndarray      # int64 [A] >= 0, applied to b
    sign: np.ndarray       # int64 [A] +1 / -1, applied to b
    out_node: np.ndarray   # int64 [O] node id, -1 = constant zero
    out_shift: np.ndarray  # int64 [O]
    out_sign: np.ndarray   # int64 [O] +1 / -1
    n_shared: int          # adders 0..n_shared-1 are shared (CSE), the rest per-output trees

    @property
    def n_adders(self) -> int:
        return len(self.a)

    @property
    def n_outputs(self) -> int:
        return len(self.out_node)


@dataclass(frozen=True)
class Cost:
    adders: int
    bits: int              # sum of adder result widths
    depth: int             # adder levels on the longest input-to-output path

    def as_dict(self) -> dict:
        return {"adders": self.adders, "bits": self.bits, "depth": self.depth}


# -- construction -------------------------------------------------------------------------------
def _trees(n_inputs: int, n_shared: int, depth: np.ndarray, rows, naive: bool):
    """Append one adder tree per row; returns (a, b, shift, sign) lists and the output terms."""
    a, b, sh, sg = [], [], [], []
    depth = list(depth)
    out = []
    nxt = n_inputs + n_shared
    for ids, shifts, signs in rows:
        if len(ids) == 0:
            out.append((-1, 0, 1))
            continue
        if naive:  # level by level over the terms in input order
            level = list(zip(shifts.tolist(), ids.tolist(), signs.tolist()))
            while len(level) > 1:
                paired = []
                for i in range(0, len(level) - 1, 2):
                    (s1, n1, g1), (s2, n2, g2) = sorted(level[i:i + 2])
                    a.append(n1), b.append(n2), sh.append(s2 - s1), sg.append(g1 * g2)
                    paired.append((s1, nxt, g1))
                    nxt += 1
                if len(level) % 2:
                    paired.append(level[-1])
                level = paired
            s1, n1, g1 = level[0]
        else:      # earliest arrival first, then smallest shift
            heap = [(depth[n], s, n, g) for n, s, g in zip(ids.tolist(), shifts.tolist(), signs.tolist())]
            heapq.heapify(heap)
            while len(heap) > 1:
                d1, s1, n1, g1 = heapq.heappop(heap)
                d2, s2, n2, g2 = heapq.heappop(heap)
                if (s2, n2) < (s1, n1):
                    s1, n1, g1, s2, n2, g2 = s2, n2, g2, s1, n1, g1
                a.append(n1), b.append(n2), sh.append(s2 - s1), sg.append(g1 * g2)
                depth.append(max(d1, d2) + 1)
                heapq.heappush(heap, (max(d1, d2) + 1, s1, nxt, g1))
                nxt += 1
            _, s1, n1, g1 = heap[0]
        out.append((n1, s1, g1))
    return (a, b, sh, sg), out


def build_graph(m: np.ndarray, cse: bool = True, max_depth: int | None = None) -> AdderGraph:
    """Adder graph of y = m @ x for an integer Po2 matrix m [O, N] (int64 or Python-int object).

    cse=False gives the naive graph (balanced trees in input order, no sharing)."""
    res: CseResult = eliminate(m, max_depth=max_depth, cse=cse)
    (a, b, sh, sg), out = _trees(res.n_inputs, len(res.a), res.depth, res.rows, naive=not cse)
    cat = lambda first, rest: np.concatenate([first, np.array(rest, dtype=_I64)]).astype(_I64)  # noqa: E731
    out = np.array(out, dtype=_I64).reshape(-1, 3)
    return AdderGraph(res.n_inputs, cat(res.a, a), cat(res.b, b), cat(res.shift, sh), cat(res.sign, sg),
                      out[:, 0].copy(), out[:, 1].copy(), out[:, 2].copy(), len(res.a))


# -- analysis ---------------------------------------------------------------------------------
def node_depths(g: AdderGraph) -> np.ndarray:
    d = np.zeros(g.n_inputs + g.n_adders, dtype=_I64)
    for k, (x, y) in enumerate(zip(g.a.tolist(), g.b.tolist())):
        d[g.n_inputs + k] = max(d[x], d[y]) + 1
    return d


def _levels(g: AdderGraph):
    """Adder indices grouped by depth: each group depends only on earlier groups."""
    d = node_depths(g)[g.n_inputs:]
    order = np.argsort(d, kind="stable")
    cuts = np.flatnonzero(np.diff(d[order])) + 1
    return np.split(order, cuts) if len(order) else []


def _shl(v: np.ndarray, s: np.ndarray) -> np.ndarray:
    if v.dtype == object:
        return v * np.array([1 << int(k) for k in np.ravel(s)], dtype=object).reshape(np.shape(s))
    return np.left_shift(v, s)


def _max_gain(g: AdderGraph) -> int:
    """An upper bound of sum |coefficient| over any node (how much a node can amplify |x|)."""
    gain = [1] * g.n_inputs
    for x, y, s in zip(g.a.tolist(), g.b.tolist(), g.shift.tolist()):
        gain.append(gain[x] + (gain[y] << s))
    return max(gain, default=1)


def _fits_int64(g: AdderGraph, lo: int, hi: int) -> bool:
    return _max_gain(g) * max(abs(int(lo)), abs(int(hi)), 1) < 2 ** 62


def node_bounds(g: AdderGraph, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Exact interval of every node (inputs first), for inputs in [lo, hi] (scalars or [N] arrays).

    int64 arrays when every bound fits, else Python-int object arrays."""
    lo_in = np.broadcast_to(np.asarray(lo, dtype=object), (g.n_inputs,))
    hi_in = np.broadcast_to(np.asarray(hi, dtype=object), (g.n_inputs,))
    wide = not _fits_int64(g, max(map(abs, lo_in), default=0), max(map(abs, hi_in), default=0))
    dt = object if wide else _I64
    L = np.zeros(g.n_inputs + g.n_adders, dtype=dt)
    H = np.zeros(g.n_inputs + g.n_adders, dtype=dt)
    L[:g.n_inputs], H[:g.n_inputs] = [int(v) for v in lo_in], [int(v) for v in hi_in]
    for idx in _levels(g):
        k, x, y, s, pos = g.n_inputs + idx, g.a[idx], g.b[idx], g.shift[idx], g.sign[idx] > 0
        ylo, yhi = _shl(L[y], s), _shl(H[y], s)
        L[k] = L[x] + np.where(pos, ylo, -yhi)
        H[k] = H[x] + np.where(pos, yhi, -ylo)
    return L, H


def _bit_length(v: np.ndarray) -> np.ndarray:
    if v.dtype == object:
        return np.array([int(x).bit_length() for x in v], dtype=_I64)
    return np.searchsorted(_POW2, v, side="right").astype(_I64)


def adder_widths(g: AdderGraph, lo, hi) -> np.ndarray:
    """Result width of every adder (intervals.bits_for of its exact bounds)."""
    L, H = node_bounds(g, lo, hi)
    L, H = L[g.n_inputs:], H[g.n_inputs:]
    neg = L < 0
    w = np.where(neg, np.maximum(_bit_length(np.where(neg, -L - 1, 0)), _bit_length(H)) + 1,
                 np.maximum(_bit_length(np.where(neg, 0, H)), 1))
    return w.astype(_I64)


def graph_cost(g: AdderGraph, lo, hi) -> Cost:
    d = node_depths(g)
    outs = g.out_node[g.out_node >= 0]
    return Cost(g.n_adders, int(adder_widths(g, lo, hi).sum()), int(d[outs].max(initial=0)))


def naive_depth(m: np.ndarray) -> int:
    """ceil(log2(terms)) of the output with the most nonzero weights."""
    t = int((np.asarray(m) != 0).sum(axis=1).max(initial=0))
    return max(0, (t - 1).bit_length())


# -- evaluation -------------------------------------------------------------------------------
def node_values(g: AdderGraph, x: np.ndarray) -> np.ndarray:
    """Values [batch, N + A + 1] of every node for integer inputs x [batch, N] (last column: 0).

    int64 when no node can overflow it for inputs in [x.min(), x.max()], else Python ints."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != g.n_inputs:
        raise ValueError(f"expected inputs [batch, {g.n_inputs}], got {x.shape}")
    lo, hi = (int(x.min()), int(x.max())) if x.size else (0, 0)
    dt = _I64 if _fits_int64(g, lo, hi) else object
    v = np.zeros((x.shape[0], g.n_inputs + g.n_adders + 1), dtype=dt)
    v[:, :g.n_inputs] = x.astype(dt)
    for idx in _levels(g):   # one vector operation per adder level
        y = _shl(v[:, g.b[idx]], np.broadcast_to(g.shift[idx], (x.shape[0], len(idx))))
        v[:, g.n_inputs + idx] = v[:, g.a[idx]] + g.sign[idx] * y
    return v


def evaluate_graph(g: AdderGraph, x: np.ndarray) -> np.ndarray:
    """y [batch, O] = M @ x for integer inputs x [batch, N], exactly."""
    v = node_values(g, x)
    outs = v[:, g.out_node]                                       # -1 reads the zero column
    return g.out_sign * _shl(outs, np.broadcast_to(g.out_shift, outs.shape))


# -- layers of a Program (the pass itself: hashiflex.ir.sharing) ------------------------------
def layer_matrix(prog: Program, op) -> tuple[np.ndarray, int, int] | None:
    """(M [O, N], x_lo, x_hi) of a hardened layer the pass handles, or None.

    Pointwise and full convs (groups == 1): N = I*KH*KW window taps, index i*KH*KW + ky*KW + kx
    (the weight's own C order); the input range includes 0 when the conv pads. Po2 Linear: N = C.
    Depthwise/grouped convs (no sharing across channels) and the int8 Linear return None."""
    if isinstance(op, Conv) and op.groups != 1 or isinstance(op, Linear) and op.mode != "po2":
        return None
    if not isinstance(op, (Conv, Linear)):
        return None
    w = prog.arrays[op.weight]
    if np.abs(w.astype(_I64)).max(initial=0) > 62:
        m = np.array([0 if c == 0 else (1 if c > 0 else -1) << (abs(int(c)) - 1) for c in w.flat],
                     dtype=object).reshape(w.shape[0], -1)
    else:
        m = po2_weight_ints(w).reshape(w.shape[0], -1)
    t = prog.tensors[op.input]
    if t.lo is None or t.hi is None:
        raise ValueError("the adder-sharing pass needs an analyzed program (run intervals.analyze first)")
    lo, hi = int(t.lo), int(t.hi)
    if isinstance(op, Conv) and any(op.padding):
        lo, hi = min(lo, 0), max(hi, 0)
    return m, lo, hi


def with_constants(m: np.ndarray, consts) -> tuple[np.ndarray, list[int]]:
    """([m | C], odd): y = m @ x + consts as a Po2 matrix over inputs [x; odd].

    Constant v = +-(c << t), c odd, becomes the entry +-2^t in the column of c; equal odd parts
    share a column (as the RTL's constant wires do), so the solver may share `x + c` patterns and
    the per-output trees place the constant leaf by arrival like any other term."""
    cols: dict[int, int] = {}
    entries = []
    for o, v in enumerate(int(v) for v in consts):
        if v:
            mag = abs(v)
            t = (mag & -mag).bit_length() - 1
            entries.append((o, cols.setdefault(mag >> t, len(cols)), -(1 << t) if v < 0 else 1 << t))
    n = m.shape[1]
    wide = m.dtype == object or any(abs(e) >= 2 ** 62 for _, _, e in entries)
    out = np.zeros((m.shape[0], n + len(cols)), dtype=object if wide else _I64)
    out[:, :n] = m
    for o, k, e in entries:
        out[o, n + k] = e
    return out, list(cols)


def check_graph(g: AdderGraph, m: np.ndarray, what: str) -> None:
    """g computes m @ x on a few pseudo-random inputs, or ValueError (an internal error)."""
    n = m.shape[1]
    x = np.random.default_rng(12345).integers(-3, 4, size=(3, n))
    wide = m.dtype == object or float(np.abs(m).max(initial=0)) * max(n, 1) * 4 >= 2.0 ** 62
    want = (x.astype(object) @ m.T.astype(object)) if wide else x @ m.T
    if g.n_inputs != n or g.n_outputs != m.shape[0] or not np.array_equal(evaluate_graph(g, x), want):
        raise ValueError(f"{what}: the adder graph does not compute the layer's weights")
