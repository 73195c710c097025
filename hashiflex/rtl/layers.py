"""One Verilog module per IR op (conv, add, avgpool, maxpool, avgpool2d, Po2 linear), streaming with valid/ready.

Every module ends in a 2-entry `hf_fifo`, so its outputs (valid, data) and its input ready are
driven by registers only. See docs/architecture.md for the schedule each module follows.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..ir.intervals import bits_for
from ..ir.sharing import LayerGraph
from ..ir.spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, csd_digits, round_const
from .common import (OUT_FIFO_DEPTH, Module, _concat, _header, _out_fifo, _unused, stream_bits,
                     stream_range)
from .conv import adder_info, conv_module
from .emit import Net, Sig, Term, constant_result, lit
from .pool import avgpool_window_module, maxpool_module

__all__ = ["OUT_FIFO_DEPTH", "conv_module", "graph_counts", "layer_module", "stream_bits"]


def add_module(name: str, op: Add, prog: Program, lanes: int = 1, out_depth: int = OUT_FIFO_DEPTH) -> Module:
    a, b, y = prog.tensors[op.a], prog.tensors[op.b], prog.tensors[op.output]
    c1, h, w = a.shape
    if lanes > 1 and not op.clamp_lo <= 0 <= op.clamp_hi:
        raise UserError(f"layer {op.name}: with {lanes} pixels per beat the clamp range must contain 0")
    c = c1 * lanes  # lanes side by side: lane l, channel ch is channel l*c1 + ch of the beat
    ba, bb, bo = stream_bits(a), stream_bits(b), stream_bits(y)
    net = Net()
    L = net.lines
    L.append("wire o_free;")
    L.append("wire fire = a_valid & b_valid & o_free;")
    L.append("assign a_ready = fire;")
    L.append("assign b_ready = fire;")
    outs, unused = [], []
    for ch in range(c):
        sa = Sig(f"a_{ch}", *stream_range(a))
        sb = Sig(f"b_{ch}", *stream_range(b))
        net.wire(sa.name, ba, f"a_data[{ch * ba + ba - 1}:{ch * ba}]" if c * ba > 1 else "a_data")
        net.wire(sb.name, bb, f"b_data[{ch * bb + bb - 1}:{ch * bb}]" if c * bb > 1 else "b_data")
        k = constant_result([(sa.lo, sa.hi, op.align_a, False), (sb.lo, sb.hi, op.align_b, False)],
                            round_const(op.shift), op.shift, op.clamp_lo, op.clamp_hi)
        if k is not None:
            outs.append(lit(k, bo))
            unused += [sa.name, sb.name]
            continue
        terms = [Term(sa, op.align_a), Term(sb, op.align_b)]
        rt = net.const_term(round_const(op.shift))
        root = net.tree(terms + ([rt] if rt else []))
        q, _, _ = net.requant(root, op.shift, op.clamp_lo, op.clamp_hi, bo)
        outs.append(q)
    net.wire("o_data", c * bo, _concat(outs))
    _out_fifo(net, c * bo, "a_valid & b_valid", out_depth)
    _unused(net, unused)
    text = _header(name, [("a", c * ba), ("b", c * bb)], c * bo, L)
    return Module(name, "add", op.name, text, ["a", "b"], [c * ba, c * bb], c * bo, h * -(-w // lanes), net.adders,
                  net.adder_bits, net.reg_bits,
                  {"lanes": lanes, **({"out_fifo_depth": out_depth} if out_depth != OUT_FIFO_DEPTH else {})})


# A global pool's scaling (the whole-image sum times mult, then requantized) is as wide as the sum
# times mult (about 31 bits for a 7x7 map): on ASAP7 cells that path takes about 1.2 ns (hashiflex
# synth; docs/cost.md, "Real cells"). It runs once per image, so with two or more beats per image the
# sum is registered on the last beat and the result enters the output FIFO POOL_MULTICYCLE cycles
# later: the scaling is a multicycle path (synth times it so) and the pool still takes a beat per
# cycle. One beat per image keeps the single-cycle path (the input is the previous FIFO's register).
POOL_MULTICYCLE = 2


def pool_module(name: str, op: AvgPool, prog: Program, lanes: int = 1) -> Module:
    x, y = prog.tensors[op.input], prog.tensors[op.output]
    c, h, w = x.shape
    n = h * -(-w // lanes)  # beats per image; lanes past a row's end carry zeros
    bi, bo = stream_bits(x), stream_bits(y)
    xlo, xhi = stream_range(x)
    staged = n >= POOL_MULTICYCLE
    net = Net()
    L = net.lines
    L.append("wire o_free;")
    pw_ = max(1, (n - 1).bit_length())
    if n > 1:
        net.reg("p", pw_)
        L.append(f"wire last = p == {lit(n - 1, pw_)};")
    else:
        L.append("wire last = 1'b1;")
    if staged:   # sv: sq holds a sum; mc: its scaling has had a cycle; the FIFO takes it on the next
        net.reg(["sv", "mc"])
        L.append("wire push = sv & mc;")
        L.append("assign in_ready = ~last | ~sv | (push & o_free);")
    else:
        L.append("assign in_ready = ~last | o_free;")
    L.append("wire fire = in_valid & in_ready;")
    alo, ahi = min(0, h * w * xlo), max(0, h * w * xhi)
    aw = bits_for(alo, ahi)
    outs, acc_upd, unused = [], [], []
    for ch in range(c):
        xs = []
        for lane in range(lanes):
            k = lane * c + ch
            xs.append(Sig(f"x_{lane}_{ch}", xlo, xhi))
            net.wire(xs[-1].name, bi, f"in_data[{k * bi + bi - 1}:{k * bi}]" if lanes * c * bi > 1 else "in_data")
        acc = Sig(f"acc_{ch}", alo, ahi)
        net.reg(acc.name, aw)
        s = net.tree([Term(acc)] + [Term(sx) for sx in xs]).sig
        acc_upd.append(f"{acc.name} <= (rst | last) ? {lit(0, aw)} : {s.name}"
                       f"{f'[{aw - 1}:0]' if s.width > aw else ''};")
        k = constant_result([(s.lo, s.hi, k, neg) for k, neg in csd_digits(op.mult)], round_const(op.shift), op.shift,
                            op.clamp_lo, op.clamp_hi)
        if k is not None:
            outs.append(lit(k, bo))
            unused.append(s.name)
            continue
        if staged:
            sq = Sig(f"sq_{ch}", s.lo, s.hi)
            net.reg(sq.name, s.width)
            L.append(f"always @(posedge clk) if (fire & last) {sq.name} <= {s.name};")
            s = sq
        terms = [Term(s, k, neg) for k, neg in csd_digits(op.mult)]
        rt = net.const_term(round_const(op.shift))
        root = net.tree(terms + ([rt] if rt else []))
        q, _, _ = net.requant(root, op.shift, op.clamp_lo, op.clamp_hi, bo)
        outs.append(q)
    L.append("always @(posedge clk) begin")
    if n > 1:
        L.append(f"    if (rst) p <= {lit(0, pw_)};")
        L.append(f"    else if (fire) p <= last ? {lit(0, pw_)} : p + 1'b1;")
    L.append("    if (rst | fire) begin")
    L += ["        " + u for u in acc_upd]
    L.append("    end")
    if staged:
        L += ["    if (rst) sv <= 1'b0;", "    else if (fire & last) sv <= 1'b1;", "    else if (push & o_free) sv <= 1'b0;",
              "    mc <= ~(fire & last) & sv;"]
    L.append("end")
    net.wire("o_data", c * bo, _concat(outs))
    _out_fifo(net, c * bo, "push" if staged else "in_valid & last")
    _unused(net, unused)
    text = _header(name, [("in", lanes * c * bi)], c * bo, L)
    return Module(name, "avgpool", op.name, text, ["in"], [lanes * c * bi], c * bo, n, net.adders, net.adder_bits,
                  net.reg_bits, {"mult": int(op.mult), "shift": int(op.shift), "lanes": lanes,
                                 **({"multicycle": POOL_MULTICYCLE} if staged else {})})


def linear_module(name: str, op: Linear, prog: Program, solved: LayerGraph | None = None) -> Module:
    x, y = prog.tensors[op.input], prog.tensors[op.output]
    codes = prog.arrays[op.weight].astype(np.int64)
    bias = prog.arrays[op.bias]
    c_out, c_in = codes.shape
    bi, bo = stream_bits(x), stream_bits(y)
    xlo, xhi = stream_range(x)
    net = Net()
    L = net.lines
    L.append("wire o_free;")
    L.append("assign in_ready = o_free;")
    xs = []
    for ch in range(c_in):
        s = Sig(f"x_{ch}", xlo, xhi)
        net.wire(s.name, bi, f"in_data[{ch * bi + bi - 1}:{ch * bi}]" if c_in * bi > 1 else "in_data")
        xs.append(s)
    outs = []
    graph = solved.graph if solved else None   # inputs x, then the bias constants
    naive = net if graph is None else Net(emit=False)  # the naive trees, counted for the manifest
    if graph is not None:
        roots = net.graph_terms(graph, lambda j: xs[j] if j < c_in else net.const(solved.constants[j - c_in]))
    for o in range(c_out):
        terms = [Term(xs[i], abs(int(codes[o, i])) - 1, bool(codes[o, i] < 0)) for i in np.flatnonzero(codes[o])]
        bt = naive.const_term(int(bias[o]))
        root = naive.tree(terms + ([bt] if bt else []))
        if graph is not None:
            root = roots[o]   # includes the bias
        q, _, _ = net.requant(root, 0, None, None, bo)
        outs.append(q)
    used = {int(i) for i in np.flatnonzero(np.any(codes != 0, axis=0))}
    net.wire("o_data", c_out * bo, _concat(outs))
    _out_fifo(net, c_out * bo, "in_valid")
    _unused(net, [s.name for i, s in enumerate(xs) if i not in used])
    text = _header(name, [("in", c_in * bi)], c_out * bo, L)
    return Module(name, "linear", op.name, text, ["in"], [c_in * bi], c_out * bo, 1, net.adders, net.adder_bits,
                  net.reg_bits, adder_info(net, naive, graph is not None))


def graph_counts(prog: Program, op, solved: LayerGraph) -> tuple[int, int, int]:
    """(adders, adder bits, adder depth) of one copy of a layer's shared adder graph, counted by
    the emitter itself in counting mode (what conv_module / linear_module instantiate per lane)."""
    net = Net(emit=False)
    xlo, xhi = stream_range(prog.tensors[op.input])
    tap = Sig("x", xlo, xhi)
    net.graph_terms(solved.graph, lambda j: tap if j < solved.n_taps else net.const(solved.constants[j - solved.n_taps]))
    return net.adders, net.adder_bits, net.depth


def layer_module(name: str, op, prog: Program, lanes: int = 1, solved: LayerGraph | None = None,
                 pipeline: int | None = None, src_lanes: int | None = None, rows: int = 1,
                 out_depth: int = OUT_FIFO_DEPTH) -> Module:
    """The module of one op whose input streams carry `lanes` pixels per beat; `solved`: its shared
    adder graph (pointwise and full convs and the Po2 linear; hashiflex.ir.sharing), else trees;
    `pipeline` k: convs register their adder network every k levels (the other modules' paths are
    short, and the Po2 linear is a once-per-image multicycle path); `src_lanes`: a conv's (or windowed
    pool's) input port lanes when a width converter regroups them into `lanes` (rtl.convert);
    `rows`: image rows per beat of a stem conv (walk.check_rows)."""
    if isinstance(op, Conv):
        return conv_module(name, op, prog, lanes, solved, pipeline, src_lanes, rows, out_depth)
    if isinstance(op, Add):
        return add_module(name, op, prog, lanes, out_depth)
    if isinstance(op, AvgPool):
        return pool_module(name, op, prog, lanes)
    if isinstance(op, MaxPool):
        return maxpool_module(name, op, prog, lanes, src_lanes, out_depth)
    if isinstance(op, AvgPoolWindow):
        return avgpool_window_module(name, op, prog, lanes, src_lanes, out_depth)
    if isinstance(op, Linear) and op.mode == "po2":
        return linear_module(name, op, prog, solved)
    raise TypeError(f"no RTL for op {op!r}")

