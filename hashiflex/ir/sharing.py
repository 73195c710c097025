"""The adder-sharing pass: one solved adder graph per eligible layer, as a first-class IR object.

`solve_adder_graphs(prog)` runs once per compile (`hashiflex compile`, on by default; `--no-share`
skips it). For every pointwise or full conv (groups == 1) and every Po2 Linear it solves the
graph the hardware computes (hashiflex.ir.adder_graph): outputs M @ x + c[o] over the inputs
[window taps; odd constants], where c[o] is the bias plus the rounding constant 2^(shift-1) and
outputs that are constant whatever the input (`dropped`: the requantizer saturates over the whole
input interval as carried on a stream, `intervals.stream_range`) are zero rows. The RTL emitter
instantiates exactly these graphs and the cost model counts them; nothing re-solves.

Invariants (checked by `AdderGraphs.validate(prog)`, also on every read of a saved file): one
entry per eligible layer and none for others; each graph has taps + len(constants) inputs and
one output per channel and computes its layer's matrix and constants on pseudo-random inputs.
Saved as `model.graphs.npz` beside the IR (versioned; deterministic bytes).
"""
from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..progress import bar
from ..checkpoint import atomic_write
from ..errors import UserError, os_error_hint
from .adder_graph import AdderGraph, build_graph, check_graph, layer_matrix, with_constants
from .intervals import constant_result, stream_range
from .spec import Conv, Linear, Program, round_const

GRAPHS_FORMAT = "hashiflex-adder-graphs"
GRAPHS_VERSION = 1
GRAPHS_FILE = "model.graphs.npz"
_FIELDS = ("a", "b", "shift", "sign", "out_node", "out_shift", "out_sign")


@dataclass(frozen=True)
class LayerGraph:
    """The solved adder graph of one layer: inputs are the layer's taps (`layer_matrix` order),
    then `constants` (odd values, one input each); output o is M[o] @ x + bias[o] + rounding,
    or unused when `dropped[o]`."""
    op: str
    graph: AdderGraph
    constants: tuple[int, ...]
    dropped: tuple[bool, ...]

    @property
    def n_taps(self) -> int:
        return self.graph.n_inputs - len(self.constants)


@dataclass(frozen=True)
class AdderGraphs:
    """Every shared layer's graph, by op name (a pass result that travels with the IR)."""
    layers: dict[str, LayerGraph]
    version: int = GRAPHS_VERSION

    def get(self, op_name: str) -> LayerGraph | None:
        return self.layers.get(op_name)

    def validate(self, prog: Program) -> "AdderGraphs":
        """The graphs belong to `prog` (see the module docstring), or ValueError."""
        want = {op.name for op in prog.ops if layer_matrix(prog, op) is not None}
        if set(self.layers) != want:
            diff = sorted(set(self.layers) ^ want)
            raise ValueError(f"adder graphs do not match the program's shared layers ({', '.join(diff[:3])})")
        ops = {op.name: op for op in prog.ops}
        for name, lg in self.layers.items():
            consts, dropped = hardware_constants(prog, ops[name])
            m, odd = with_constants(layer_matrix(prog, ops[name])[0], consts)
            if tuple(odd) != lg.constants or tuple(dropped) != lg.dropped:
                raise ValueError(f"adder graph of layer {name}: its constants do not match the program")
            m[np.asarray(dropped, dtype=bool)] = 0
            check_graph(lg.graph, m, f"layer {name}")
        return self


def hardware_constants(prog: Program, op) -> tuple[list[int], list[bool]]:
    """(constant per output, output constant whatever the input) of a layer the pass handles.
    Convs add the rounding constant and drop saturated outputs; the Po2 Linear adds its bias."""
    bias = [int(b) for b in prog.arrays[op.bias]]
    if isinstance(op, Linear):
        return bias, [False] * len(bias)
    assert isinstance(op, Conv)
    consts = [b + round_const(op.shift) for b in bias]
    xlo, xhi = stream_range(prog.tensors[op.input])
    codes = prog.arrays[op.weight].astype(np.int64).reshape(len(bias), -1)
    dropped = []
    for o, c in enumerate(consts):
        nz = codes[o][codes[o] != 0]
        leaves = [(xlo, xhi, abs(int(k)) - 1, bool(k < 0)) for k in nz]
        dropped.append(constant_result(leaves, c, op.shift, op.clamp_lo, op.clamp_hi) is not None)
    return consts, dropped


def layer_graph(prog: Program, op, max_depth: int | None = None) -> LayerGraph | None:
    """The solved graph of one layer, or None for layers that keep per-channel trees."""
    got = layer_matrix(prog, op)
    if got is None:
        return None
    consts, dropped = hardware_constants(prog, op)
    m, odd = with_constants(got[0], consts)
    m[np.asarray(dropped, dtype=bool)] = 0
    g = build_graph(m, max_depth=max_depth)
    check_graph(g, m, f"layer {op.name}")
    return LayerGraph(op.name, g, tuple(int(v) for v in odd), tuple(bool(d) for d in dropped))


def solve_adder_graphs(prog: Program, max_depth: int | None = None) -> AdderGraphs:
    """The pass: one solve per eligible layer of an analyzed program (tensor lo/hi set)."""
    if any(t.lo is None for t in prog.tensors.values()):
        raise ValueError("solve_adder_graphs needs an analyzed program (run intervals.analyze first)")
    layers = {}
    for op in bar(prog.ops, desc="adder graphs", unit="layer"):
        lg = layer_graph(prog, op, max_depth)
        if lg is not None:
            layers[op.name] = lg
    return AdderGraphs(layers)


# -- files ------------------------------------------------------------------------------------
def to_npz_bytes(graphs: AdderGraphs) -> bytes:
    """Deterministic bytes: a JSON header (format, version, per-layer scalars) + int64 arrays."""
    names = sorted(graphs.layers)
    head = {"format": GRAPHS_FORMAT, "version": graphs.version,
            "layers": [{"op": n, "n_inputs": graphs.layers[n].graph.n_inputs,
                        "n_shared": graphs.layers[n].graph.n_shared,
                        "constants": [str(c) for c in graphs.layers[n].constants],
                        "dropped": list(graphs.layers[n].dropped)} for n in names]}
    arrays = {"header": np.frombuffer(json.dumps(head, sort_keys=True).encode(), dtype=np.uint8)}
    for i, n in enumerate(names):
        for f in _FIELDS:
            arrays[f"{i}.{f}"] = getattr(graphs.layers[n].graph, f).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def save_graphs(graphs: AdderGraphs, out_dir) -> Path:
    path = Path(out_dir) / GRAPHS_FILE
    data = to_npz_bytes(graphs)
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))
    except OSError as e:
        raise UserError(f"cannot write {path}: {os_error_hint(e)}") from None
    return path


def _parse(z, names: list[str]) -> AdderGraphs:
    head = json.loads(bytes(z["header"]).decode())
    if not isinstance(head, dict) or head.get("format") != GRAPHS_FORMAT:
        raise ValueError("not a hashiflex adder-graph file")
    if head.get("version") != GRAPHS_VERSION:
        raise ValueError(f"version {head.get('version')!r}; this hashiflex reads version {GRAPHS_VERSION}")
    layers = {}
    for i, e in enumerate(head["layers"]):
        arr = {f: z[f"{i}.{f}"] for f in _FIELDS}
        if any(a.dtype != np.int64 or a.ndim != 1 for a in arr.values()):
            raise ValueError(f"layer {e['op']}: arrays must be 1-D int64")
        n_in, n_sh = int(e["n_inputs"]), int(e["n_shared"])
        na = len(arr["a"])
        if not (len(arr["b"]) == len(arr["shift"]) == len(arr["sign"]) == na and 0 <= n_sh <= na) or \
                len(arr["out_shift"]) != len(arr["out_node"]) or len(arr["out_sign"]) != len(arr["out_node"]):
            raise ValueError(f"layer {e['op']}: array lengths disagree")
        idx = np.arange(na) + n_in    # operands must be earlier nodes (a topological order)
        if na and (arr["a"].min() < 0 or arr["b"].min() < 0 or np.any(arr["a"] >= idx) or np.any(arr["b"] >= idx)
                   or arr["shift"].min() < 0 or arr["shift"].max() > 62 or not np.all(np.abs(arr["sign"]) == 1)):
            raise ValueError(f"layer {e['op']}: adder operands, shifts or signs out of range")
        if len(arr["out_node"]) and (arr["out_node"].min() < -1 or arr["out_node"].max() >= n_in + na
                                     or arr["out_shift"].min() < 0 or not np.all(np.abs(arr["out_sign"]) == 1)):
            raise ValueError(f"layer {e['op']}: outputs out of range")
        g = AdderGraph(n_in, arr["a"], arr["b"], arr["shift"], arr["sign"], arr["out_node"], arr["out_shift"],
                       arr["out_sign"], n_sh)
        layers[str(e["op"])] = LayerGraph(str(e["op"]), g, tuple(int(c) for c in e["constants"]),
                                          tuple(bool(d) for d in e["dropped"]))
    return AdderGraphs(layers)


def load_graphs(build_dir, prog: Program) -> AdderGraphs | None:
    """BUILD/model.graphs.npz checked against `prog`, or None when the build has none."""
    path = Path(build_dir) / GRAPHS_FILE
    if not path.is_file():
        return None
    redo = f"re-run 'hashiflex compile --out {Path(build_dir)}'"
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            graphs = _parse(z, list(z.files))
        return graphs.validate(prog)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, TypeError, AttributeError,
            UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a valid adder-graph file for this IR ({e}); {redo}") from None


__all__ = ["AdderGraphs", "GRAPHS_FILE", "GRAPHS_VERSION", "LayerGraph", "hardware_constants", "layer_graph",
           "load_graphs", "save_graphs", "solve_adder_graphs"]
