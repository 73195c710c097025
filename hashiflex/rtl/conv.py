"""The convolution module: the walk (rtl/window.py: line buffers, a window register, counters,
lanes) and the adder network of the output channels (per output lane when P > 1): a shared adder
graph (one solve per layer, the same in every lane) for pointwise and full convs when `share`,
else one tree per output channel. See docs/architecture.md for the traversal, the lanes and the
adder network."""
from __future__ import annotations

import numpy as np

from ..ir.sharing import LayerGraph
from ..ir.spec import Conv, Program, round_const
from .common import OUT_FIFO_DEPTH, Module, _concat, _header, _out_fifo, _unused, stream_range
from .emit import Net, Sig, Term, constant_result, lit
from .window import (ConvPlan, _lane_wire, _wlast, emit_walk, plan_conv, step_flags, walk_cycles, walk_info,
                     window_tap, window_unused)

__all__ = ["ConvPlan", "adder_info", "conv_module", "plan_conv", "step_flags"]


def _emit_network(net: Net, p: ConvPlan, op: Conv, prog: Program, solved: LayerGraph | None):
    """Every output lane's adder network (the shared graph, or one tree per output channel) and
    requantizers. Returns (lane output nets, taps read, the naive trees' counting Net, shared or
    not, the pipeline stage of the outputs: 0 unpipelined)."""
    g, bo, kh, kw = p.g, p.bo, p.kh, p.kw
    sw = p.stride[1]
    codes = prog.arrays[op.weight].astype(np.int64)
    bias = prog.arrays[op.bias]
    xlo, xhi = stream_range(prog.tensors[op.input])
    taps: dict[tuple[int, int, int], Sig] = {}

    def tap(c: int, ky: int, j: int) -> Sig:
        return window_tap(net, p, taps, c, ky, j, xlo, xhi)

    cpg, opg = p.c_in // p.groups, p.c_out // p.groups
    acc0 = [int(b) + round_const(op.shift) for b in bias]      # bias plus the rounding constant
    nzs = [np.argwhere(codes[o] != 0) for o in range(p.c_out)]

    def terms(o: int, tapf, j0: int) -> list[Term]:
        base = (o // opg) * cpg
        return [Term(tapf(base + int(i), int(ky), j0 + int(kx)), abs(int(codes[o, i, ky, kx])) - 1,
                     bool(codes[o, i, ky, kx] < 0)) for i, ky, kx in nzs[o]]

    leaf = Sig("x", xlo, xhi)   # any tap, for interval-only work
    # saturated whatever the input: a constant, no adders
    cst = [constant_result([(xlo, xhi, t.shift, t.neg) for t in terms(o, lambda *_: leaf, 0)],
                           acc0[o], op.shift, op.clamp_lo, op.clamp_hi) for o in range(p.c_out)]
    if solved is not None and solved.dropped != tuple(v is not None for v in cst):
        raise ValueError(f"layer {op.name}: the adder graph was solved for other constants (re-run the pass)")
    graph = solved.graph if solved else None
    naive = net if graph is None else Net(emit=False)     # the naive trees, counted for the manifest
    if graph is not None:
        for o in range(p.c_out):
            if cst[o] is None:
                bt = naive.const_term(acc0[o])
                naive.tree(terms(o, lambda *_: leaf, 0) + ([bt] if bt else []))
    lane_outs, lane_vals = [], []
    p_out, col = p.col.out_lanes, p.col
    for lane in range(p_out):
        j0 = 0 if g == 1 else lane * sw + col.lead
        if graph is not None:   # graph input i*kh*kw + ky*kw + kx is tap (i, ky, kx), then the constants
            nt = p.c_in * kh * kw
            roots = net.graph_terms(graph, lambda j: tap(j // (kh * kw), (j // kw) % kh, j0 + j % kw) if j < nt
                                    else net.const(solved.constants[j - nt]))
        outs = []
        for o in range(p.c_out):
            if cst[o] is not None:
                outs.append((lit(cst[o], bo), -1))
                continue
            if graph is None:
                ts = terms(o, tap, j0)
                bt = net.const_term(acc0[o])
                root = net.tree(ts + ([bt] if bt else []))
            else:   # the graph's output includes the bias and rounding constant
                root = roots[o]
            q, _, _ = net.requant(root, op.shift, op.clamp_lo, op.clamp_hi, bo)
            outs.append((q, root.sig.stage if root is not None else -1))
        lane_vals.append(outs)
        if not net.k:
            lane_outs.append(_lane_wire(net, p, lane, [q for q, _ in outs], "wlast"))
    stage = 0
    if net.k:   # every output at the deepest stage, then the lanes (the row-end flag delayed alike)
        stage = max([s for outs in lane_vals for _, s in outs] + [0])
        wlast = "wlast"
        if g > 1 and p.wt > 1 and any((col.nob - 1) * p_out + k >= p.ow for k in range(p_out)):
            _wlast(net, p)
            wlast = net.at_stage(Sig("wlast", 0, 1), stage).name
        for lane, outs in enumerate(lane_vals):
            qs = [net.at_stage(Sig(q, 0, 0, stage=s), stage, width=bo).name for q, s in outs]   # -1: a literal
            lane_outs.append(_lane_wire(net, p, lane, qs, wlast))
    return lane_outs, taps, naive, graph is not None, stage


def _emit_valid_pipe(net: Net, stages: int) -> str:
    """The valid bit of each pipeline stage (reset to empty) and the pipeline's move condition;
    returns the last stage's valid, which feeds the output FIFO."""
    prev = "wv"
    for s in range(1, stages + 1):
        net.reg(f"pv{s}")
        net.lines.append(f"always @(posedge clk) if (rst) pv{s} <= 1'b0; else if (pen) pv{s} <= {prev};")
        prev = f"pv{s}"
    net.lines.append(f"assign pen = ~{prev} | o_free;" if stages else "assign pen = o_free;")
    return prev


def conv_module(name: str, op: Conv, prog: Program, lanes: int = 1, solved: LayerGraph | None = None,
                pipeline: int | None = None, src_lanes: int | None = None, rows: int = 1,
                out_depth: int = OUT_FIFO_DEPTH):
    """The module of a conv whose input carries `lanes` pixels per beat; `solved`: the layer's shared
    adder graph (hashiflex.ir.sharing), else one tree per output channel; `pipeline` k: a register
    after every k adder levels (docs/architecture.md). Plan, then emit the control, the window, the
    counters and the adder network, in that order."""
    p = plan_conv(op, prog, lanes, src_lanes, rows)
    net = Net(pipeline=pipeline)
    emit_walk(net, p, op.name)
    lane_outs, taps, naive, shared, stages = _emit_network(net, p, op, prog, solved)
    ow_bits = p.col.out_lanes * p.c_out * p.bo
    net.wire("o_data", ow_bits, _concat(lane_outs))
    _out_fifo(net, ow_bits, _emit_valid_pipe(net, stages) if net.k else "wv", out_depth)
    _unused(net, window_unused(p, taps))
    in_w = (p.src_lanes or p.g) * p.cw * p.v
    text = _header(name, [("in", in_w)], ow_bits, net.lines)
    return Module(name, "conv", op.name, text, ["in"], [in_w], ow_bits, walk_cycles(p), net.adders, net.adder_bits,
                  net.reg_bits, {**walk_info(p, out_depth), "groups": p.groups,
                                 **adder_info(net, naive, shared, p.col.out_lanes),
                                 **({"pipeline_stages": stages} if pipeline else {})})


def adder_info(net: Net, naive: Net, shared: bool, copies: int = 1) -> dict:
    """Manifest fields of a module's adder network: shared or not, the naive trees' figures
    (`naive` counts one copy; `copies` lanes instantiate it) and the adder depths."""
    k = copies if shared else 1
    return {"shared": shared, "adders_naive": naive.adders * k, "adder_bits_naive": naive.adder_bits * k,
            "adder_depth": net.depth, "adder_depth_naive": naive.depth}
