"""The windowed pool modules: the conv's walk (rtl/window.py: width converter, control, line
buffers, window registers, counters, lanes) with, instead of a conv's adder network, per output
channel and output lane
- a max pool: a comparator tree over the window taps. Nothing is requantized: the output is on
  the input's grid, as wide. The walk pushes zeros on padding steps; a zero never beats the
  window's image pixels when the input cannot be negative (interval lo >= 0), so "padding never
  wins" holds there; a padded max pool over an input that can be negative is refused
  (`check_maxpool`);
- a windowed average pool (`avgpool2d`): an adder tree over the window taps (the walk's zero
  padding is exactly the IR's: padding counts as 0 in the sum), then the global pool's scaling:
  sum * mult as a shift-add tree over mult's canonical signed digits plus the rounding
  constant, and hf_requant (shift, clamp).
Both are depthwise: output channel c reads the window taps of input channel c only. See
docs/architecture.md.
"""
from __future__ import annotations

from ..errors import UserError
from ..ir.spec import AvgPoolWindow, MaxPool, Program, csd_digits, round_const
from .common import OUT_FIFO_DEPTH, Module, _concat, _header, _out_fifo, _unused, stream_range
from .emit import Net, Term, constant_result, lit
from .window import _lane_wire, emit_walk, plan_conv, walk_cycles, walk_info, window_tap, window_unused


def _pool_module(name: str, kind: str, op, net: Net, p, lane_outs: list[str], taps: dict, out_depth: int,
                 info: dict) -> Module:
    """The output stage every windowed pool ends in (its lanes' outputs into the output FIFO, the
    window taps it did not read marked unused) and its Module: the walk's fields plus `info`."""
    ow_bits = p.col.out_lanes * p.c_out * p.bo
    net.wire("o_data", ow_bits, _concat(lane_outs))
    _out_fifo(net, ow_bits, "wv", out_depth)
    _unused(net, window_unused(p, taps))
    in_w = (p.src_lanes or p.g) * p.cw
    text = _header(name, [("in", in_w)], ow_bits, net.lines)
    return Module(name, kind, op.name, text, ["in"], [in_w], ow_bits, walk_cycles(p), net.adders, net.adder_bits,
                  net.reg_bits, {**walk_info(p, out_depth), **info})


def check_maxpool(op: MaxPool, prog: Program) -> None:
    """One line unless the walk's zero padding is exact for this max pool: no padding, or an input
    that cannot be negative (a zero then never beats an image pixel)."""
    x = prog.tensors[op.input]
    if any(op.padding) and (x.lo is None or x.lo < 0):
        raise UserError(f"layer {op.name}: a max pool with padding {list(op.padding)} needs an input that cannot be "
                        f"negative (the RTL pads with zeros); {op.input} ranges down to {x.lo}")


class Comparators:
    """The comparator trees of one module: `max2` emits y = max(a, b) (a signed or unsigned
    compare and a mux, all `width` bits) and counts it; `tree` pairs leaves level by level, like
    the adder trees (emit.Net.tree), so a window of n taps takes n - 1 comparators in
    ceil(log2 n) levels."""

    def __init__(self, net: Net, width: int, signed: bool):
        self.net, self.width, self.signed = net, width, signed
        self.count = self.bits = self.depth = 0

    def max2(self, a: str, b: str) -> str:
        y = self.net.fresh("m")
        gt = f"$signed({a}) > $signed({b})" if self.signed else f"{a} > {b}"
        self.net.wire(y, self.width, f"({gt}) ? {a} : {b}")
        self.count += 1
        self.bits += self.width
        return y

    def tree(self, leaves: list[str]) -> str:
        level, depth = list(leaves), 0
        while len(level) > 1:
            nxt = [self.max2(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            level = nxt + ([level[-1]] if len(level) % 2 else [])
            depth += 1
        self.depth = max(self.depth, depth)
        return level[0]


def maxpool_module(name: str, op: MaxPool, prog: Program, lanes: int = 1, src_lanes: int | None = None,
                   out_depth: int = OUT_FIFO_DEPTH) -> Module:
    """The module of a max pool whose input carries `lanes` pixels per beat (through a width
    converter from `src_lanes` when they differ): the conv's walk, then per output lane and channel
    the maximum of the kh x kw window taps of that channel."""
    check_maxpool(op, prog)
    p = plan_conv(op, prog, lanes, src_lanes)
    net = Net()
    emit_walk(net, p, op.name)
    xlo, xhi = stream_range(prog.tensors[op.input])
    cmp = Comparators(net, p.bi, xlo < 0)
    taps: dict = {}
    lane_outs = []
    for lane in range(p.col.out_lanes):
        j0 = 0 if p.g == 1 else lane * p.stride[1] + p.col.lead
        outs = [cmp.tree([window_tap(net, p, taps, c, ky, j0 + kx, xlo, xhi).name
                          for ky in range(p.kh) for kx in range(p.kw)]) for c in range(p.c_in)]
        lane_outs.append(_lane_wire(net, p, lane, outs, "wlast"))
    return _pool_module(name, "maxpool", op, net, p, lane_outs, taps, out_depth,
                        {"comparators": cmp.count, "comparator_bits": cmp.bits, "comparator_depth": cmp.depth})


def constant_average(op: AvgPoolWindow, lo: int, hi: int) -> int | None:
    """The output of a windowed average pool whose taps range over [lo, hi] when the clamp makes it
    the same whatever the input (then it takes no adders), else None."""
    n = op.kernel[0] * op.kernel[1]
    return constant_result([(n * lo, n * hi, sh, neg) for sh, neg in csd_digits(op.mult)], round_const(op.shift),
                           op.shift, op.clamp_lo, op.clamp_hi)


def window_average(net: Net, op: AvgPoolWindow, taps: list, out_w: int) -> str:
    """One output of a windowed average pool from its window taps (Sigs): the balanced adder tree
    of the taps (Net.tree), then clamp(rshift_round(sum * mult, shift)): the CSD digits of mult as
    shifted (and negated) copies of the sum plus the rounding constant 2^(shift-1), one more tree,
    and hf_requant, exactly as the global pool (rtl.layers.pool_module). `out_w` bits."""
    s = net.tree([Term(t) for t in taps]).sig          # all terms positive, unshifted: the root is the sum
    rt = net.const_term(round_const(op.shift))
    root = net.tree([Term(s, sh, neg) for sh, neg in csd_digits(op.mult)] + ([rt] if rt else []))
    q, _, _ = net.requant(root, op.shift, op.clamp_lo, op.clamp_hi, out_w)
    return q


def avgpool_window_module(name: str, op: AvgPoolWindow, prog: Program, lanes: int = 1, src_lanes: int | None = None,
                          out_depth: int = OUT_FIFO_DEPTH) -> Module:
    """The module of a windowed average pool whose input carries `lanes` pixels per beat (through a
    width converter from `src_lanes` when they differ): the conv's walk, then per output lane and
    channel `window_average` of the kh x kw window taps of that channel."""
    p = plan_conv(op, prog, lanes, src_lanes)
    net = Net()
    emit_walk(net, p, op.name)
    xlo, xhi = stream_range(prog.tensors[op.input])
    k = constant_average(op, xlo, xhi)     # every channel's taps share the stream's range
    taps: dict = {}
    lane_outs = []
    for lane in range(p.col.out_lanes):
        j0 = 0 if p.g == 1 else lane * p.stride[1] + p.col.lead
        outs = [lit(k, p.bo) if k is not None else
                window_average(net, op, [window_tap(net, p, taps, c, ky, j0 + kx, xlo, xhi)
                                         for ky in range(p.kh) for kx in range(p.kw)], p.bo) for c in range(p.c_in)]
        lane_outs.append(_lane_wire(net, p, lane, outs, "wlast"))
    return _pool_module(name, "avgpool2d", op, net, p, lane_outs, taps, out_depth,
                        {"mult": int(op.mult), "shift": int(op.shift), "adder_depth": net.depth})


__all__ = ["Comparators", "avgpool_window_module", "check_maxpool", "constant_average", "maxpool_module",
           "window_average"]
