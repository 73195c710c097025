"""The walk of a windowed module (a conv, rtl/conv.py; a max or windowed average pool, rtl/pool.py): its plan (the
padded traversal, the column walk, stream and counter widths), the control and handshake, the line
buffers and window registers, the counters, the window taps and the output lanes. The module adds
the arithmetic on the taps. See docs/architecture.md for the traversal and the lanes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..ir.spec import Program
from .common import OUT_FIFO_DEPTH, _concat, _mask, _rng, stream_bits
from .convert import check_convertible, emit_converter
from .emit import Net, Sig, lit
from .walk import Columns, check_rows, columns, kernel_of, row_walk


@dataclass(frozen=True)
class ConvPlan:
    """The geometry of one windowed module (a conv or a windowed pool): the padded traversal (ht x wt
    steps), the column walk, the stream widths and the counter widths. Everything the emit steps
    need and nothing they emit."""
    c_in: int
    h: int
    w: int
    c_out: int
    oh: int
    ow: int
    kh: int
    kw: int
    stride: tuple[int, int]
    pad: tuple[int, int]
    groups: int
    ht: int
    col: Columns
    y0: int               # first padded row walked (lanes > 1: top padding rows are not stepped through)
    bi: int               # bits per input channel
    bo: int               # bits per output channel
    src_lanes: int = 0    # pixels per beat of the input port when a width converter feeds the core
    v: int = 1            # image rows per input beat (a stem's walk, walk.check_rows)
    lead_r: int = 0       # window row of the kernel's top row (v > 1: kh - 1 - pad)

    @property
    def window_rows(self) -> range:   # the window's registered rows: line-buffer rows, then the beat's
        return range(self.lead_r, self.kh - 1 + self.v)

    @property
    def port(self) -> str:    # the stream the traversal reads: the port, or the converter's output
        return "cin" if self.src_lanes else "in"

    @property
    def wt(self) -> int:
        return self.col.steps

    @property
    def g(self) -> int:
        return self.col.lanes

    @property
    def cw(self) -> int:  # bits of one input pixel (all channels)
        return self.c_in * self.bi

    @property
    def rows(self) -> int:     # rows walked per image
        return self.ht - self.y0

    @property
    def yw(self) -> int:
        return max(1, (self.ht - 1).bit_length())

    @property
    def xw(self) -> int:
        return max(1, (self.wt - 1).bit_length())


def plan_conv(op, prog: Program, lanes: int, src_lanes: int | None = None, rows: int = 1) -> ConvPlan:
    """The walk of a windowed op (a conv, or a pool: depthwise, groups = channels)."""
    x, y = prog.tensors[op.input], prog.tensors[op.output]
    (c_in, h, w), (c_out, oh, ow) = x.shape, y.shape
    kh, kw = kernel_of(prog, op)
    src = src_lanes if src_lanes and src_lanes != lanes else 0
    if rows > 1:
        if src:
            raise UserError(f"layer {op.name}: rows per beat are generated for a layer fed by the chip input, "
                            "not through a width converter")
        ht, y0 = check_rows(op, h, oh, kh, kw, w, lanes, rows), 0
    else:
        ht, y0 = row_walk(op, h, oh, kh, lanes)
    groups = getattr(op, "groups", c_in)   # a pool: depthwise
    return ConvPlan(c_in, h, w, c_out, oh, ow, kh, kw, tuple(op.stride), tuple(op.padding), groups, ht,
                    columns(op, w, ow, kw, lanes), y0, stream_bits(x), stream_bits(y), src, rows,
                    kh - 1 - op.padding[0] if rows > 1 else 0)


def step_rules(p: ConvPlan):
    """(row takes input, row emits, column takes input, column emits): the traversal's masks, as
    predicates on the row counter y and the column counter x. A step takes an input beat when
    both its row and its column do, and emits an output beat likewise."""
    (sh, sw), (ph, pw) = p.stride, p.pad
    if p.g == 1:
        cin = lambda i: pw <= i < pw + p.w  # noqa: E731
        cout = lambda i: i >= p.kw - 1 and (i - p.kw + 1) % sw == 0 and (i - p.kw + 1) // sw < p.ow  # noqa: E731
    else:
        cin, cout = p.col.consumes, p.col.outputs
    if p.v > 1:   # step t takes beat t (rows t*v .. t*v + v - 1) and emits output row t
        r_in, r_out = (lambda i: i < -(-p.h // p.v)), (lambda i: i < p.oh)
    else:
        r_in = lambda i: ph <= i < ph + p.h  # noqa: E731
        r_out = lambda i: i >= p.kh - 1 and (i - p.kh + 1) % sh == 0 and (i - p.kh + 1) // sh < p.oh  # noqa: E731
    return r_in, r_out, cin, cout


def step_flags(p: ConvPlan) -> tuple[np.ndarray, np.ndarray]:
    """(takes, emits): bool per step of one image, in walk order (rows from y0, columns inner)."""
    r_in, r_out, cin, cout = step_rules(p)
    ys, xs = range(p.y0, p.ht), range(p.wt)
    ri, ro = np.array([r_in(y) for y in ys]), np.array([r_out(y) for y in ys])
    ci, co = np.array([cin(x) for x in xs]), np.array([cout(x) for x in xs])
    return (ri[:, None] & ci[None, :]).reshape(-1), (ro[:, None] & co[None, :]).reshape(-1)


def _emit_control(net: Net, p: ConvPlan) -> None:
    """The traversal counters' declarations and masks, and the handshake: a step advances when it
    needs no input or has one, unless the output stage is full."""
    L = net.lines
    L.append("wire o_free;")
    if net.k:
        L.append("wire pen;")   # the adder pipeline moves (its last stage is empty or handed over)
    net.reg("wv")
    r_in, r_out, cin, cout = step_rules(p)
    conds = {}
    for axis, n, var, in_ok, out_ok, start in (
            ("r", p.ht, "y", r_in, r_out, p.y0),
            ("c", p.wt, "x", cin, cout, 0)):
        if n - start == 1:
            conds[axis] = (f"1'b{int(in_ok(start))}", f"1'b{int(out_ok(start))}")
            continue
        net.reg(var, p.yw if var == "y" else p.xw)
        L.append(f"localparam [{n - 1}:0] {axis.upper()}IN = {_mask(n, in_ok)};")
        L.append(f"localparam [{n - 1}:0] {axis.upper()}OUT = {_mask(n, out_ok)};")
        conds[axis] = (f"{axis.upper()}IN[{var}]", f"{axis.upper()}OUT[{var}]")
    L.append(f"wire need_in = {conds['r'][0]} & {conds['c'][0]};")
    L.append(f"wire is_out = {conds['r'][1]} & {conds['c'][1]};")
    L.append(f"wire stall = wv & ~{'pen' if net.k else 'o_free'};")
    L.append(f"wire adv = (~need_in | {p.port}_valid) & ~stall;")
    L.append(f"assign {p.port}_ready = need_in & ~stall;")


def _emit_window(net: Net, p: ConvPlan) -> None:
    """The column chunk entering this step (`pix`), kh - 1 line buffers of wt chunks and the
    kh x (kw - 1 + G) window registers, shifted on every advance."""
    L, g, cw, wt, kh = net.lines, p.g, p.cw, p.wt, p.kh
    gw = g * cw
    if p.v > 1:
        _emit_row_window(net, p)
        return
    if p.col.a == 0:
        L.append(f"wire {_rng(gw)}pix = need_in ? {p.port}_data : {lit(0, gw)};")
    else:  # chunk = lanes a..g-1 of the previous beat, then lanes 0..a-1 of the new one
        a = p.col.a
        L.append(f"wire {_rng(gw)}pixn = need_in ? {p.port}_data : {lit(0, gw)};")
        net.reg("hold", gw)
        first = f"x == {lit(0, p.xw)}" if wt > 1 else "1'b1"
        L.append(f"wire {_rng(gw)}holde = ({first}) ? {lit(0, gw)} : hold;")
        L.append(f"wire {_rng(gw)}pix = {{pixn[{a * cw - 1}:0], holde[{gw - 1}:{a * cw}]}};")
        L.append("always @(posedge clk) if (adv) hold <= pixn;")
        L.append(f"wire _unused_hold = &{{1'b0, holde[{a * cw - 1}:0], pixn[{gw - 1}:{a * cw}]}};")
    idx = "x" if wt > 1 else "0"
    for k in range(kh - 1):
        net.reg(f"lb{k}", gw, words=wt)
        # window row k holds padded row y - (kh - 1) + k: zero above the image when the top
        # padding rows were not stepped through (their zeros never entered the line buffers)
        above = p.pad[0] + kh - 1 - k
        if p.y0 and above > p.y0:
            cond = f"y < {lit(above, p.yw)}" if p.rows > 1 else "1'b1"
            L.append(f"wire {_rng(gw)}col{k} = ({cond}) ? {lit(0, gw)} : lb{k}[{idx}];")
        else:
            L.append(f"wire {_rng(gw)}col{k} = lb{k}[{idx}];")
    upd = [f"lb{k}[{idx}] <= {f'lb{k + 1}[{idx}]' if k < kh - 2 else 'pix'};" for k in range(kh - 1)]
    _emit_window_regs(net, p, {ky: f"col{ky}" if ky < kh - 1 else "pix" for ky in range(kh)}, upd)


def _emit_row_window(net: Net, p: ConvPlan) -> None:
    """V > 1 rows per beat (a stem, walk.check_rows): the beat's rows, and one line buffer per
    window row above them (row v - (kh - 1) + i of the previous beat; zero for the first beat,
    the top padding), then the window registers of every row the kernel reads."""
    L, g, cw, wt, kh, v = net.lines, p.g, p.cw, p.wt, p.kh, p.v
    gw = g * cw
    L.append(f"wire {_rng(v * gw)}pix = need_in ? {p.port}_data : {lit(0, v * gw)};")
    for q in range(v):
        net.wire(f"prow{q}", gw, f"pix[{q * gw + gw - 1}:{q * gw}]")
    idx = "x" if wt > 1 else "0"
    first = f"y == {lit(0, p.yw)}" if p.ht > 1 else "1'b1"
    upd, src = [], {}
    for i in p.window_rows:
        if i >= kh - 1:
            src[i] = f"prow{i - (kh - 1)}"
            continue
        net.reg(f"lb{i}", gw, words=wt)
        L.append(f"wire {_rng(gw)}col{i} = ({first}) ? {lit(0, gw)} : lb{i}[{idx}];")
        upd.append(f"lb{i}[{idx}] <= prow{v - (kh - 1) + i};")
        src[i] = f"col{i}"
    _emit_window_regs(net, p, src, upd)


def _emit_window_regs(net: Net, p: ConvPlan, src: dict[int, str], upd: list[str]) -> None:
    """The window registers of each window row (its chunk from `src[row]`), shifted on every
    advance together with the line-buffer updates `upd`."""
    L, g, cw, wt, kw = net.lines, p.g, p.cw, p.wt, p.kw
    gw = g * cw
    ncol, col = kw - 1 + g, p.col
    zero_margin = col.pad_left and wt == 1    # every step starts a row: the margin is constant padding
    for ky in src:
        for j in range(ncol + col.extra):
            if j >= ncol or (zero_margin and j < kw - 1):
                net.wire(f"w{ky}_{j}", cw, lit(0, cw))
            else:
                net.reg(f"w{ky}_{j}", cw)
    row_start = f"x == {lit(0, p.xw)}" if wt > 1 else "1'b1"
    for ky, s in src.items():
        for j in range(ncol):
            m = j - (kw - 1)
            if m < 0 and zero_margin:
                continue
            shifted = f"({row_start}) ? {lit(0, cw)} : w{ky}_{j + g}" if col.pad_left else f"w{ky}_{j + g}"
            upd.append(f"w{ky}_{j} <= {shifted if m < 0 else (s if gw == cw else f'{s}[{m * cw + cw - 1}:{m * cw}]')};")
    L += ["always @(posedge clk) begin", "    if (adv) begin"] + ["        " + u for u in upd] + ["    end", "end"]


def _emit_counters(net: Net, p: ConvPlan) -> None:
    """Reset and advance of the traversal counters (x fastest) and the output-valid flag."""
    L, wt, ht, xw, yw = net.lines, p.wt, p.ht, p.xw, p.yw
    L += ["always @(posedge clk) begin", "    if (rst) begin", "        wv <= 1'b0;"]
    if wt > 1:
        L.append(f"        x <= {lit(0, xw)};")
    if p.rows > 1:
        L.append(f"        y <= {lit(p.y0, yw)};")
    L += ["    end else if (adv) begin", "        wv <= is_out;"]
    if wt > 1:
        L.append(f"        x <= (x == {lit(wt - 1, xw)}) ? {lit(0, xw)} : x + 1'b1;")
    if p.rows > 1:
        step = f"(y == {lit(ht - 1, yw)}) ? {lit(p.y0, yw)} : y + 1'b1"
        L.append(f"        if ({f'x == {lit(wt - 1, xw)}' if wt > 1 else '1'}) y <= {step};")
    L += [f"    end else if ({'pen' if net.k else 'o_free'}) begin", "        wv <= 1'b0;", "    end", "end"]


def window_tap(net: Net, p: ConvPlan, taps: dict, c: int, ky: int, j: int, lo: int, hi: int) -> Sig:
    """Channel c of window register (kernel row ky, column j), a wire declared on first use;
    `taps` records the ones read (the rest are marked unused)."""
    ky += p.lead_r    # the window row of kernel row ky
    if (c, ky, j) not in taps:
        s = Sig(f"x{ky}_{j}_{c}", lo, hi)
        net.wire(s.name, p.bi, f"w{ky}_{j}[{c * p.bi + p.bi - 1}:{c * p.bi}]" if p.cw > 1 else f"w{ky}_{j}")
        taps[(c, ky, j)] = s
    return taps[(c, ky, j)]


def _wlast(net: Net, p: ConvPlan) -> None:
    """The flag "the window holds the row's last output chunk" (lanes past the row's end are zero)."""
    if "reg wlast;" not in net.lines:
        net.reg("wlast")
        net.lines.append(f"always @(posedge clk) if (adv) wlast <= x == {lit(p.col.nob - 1 - p.col.first, p.xw)};")


def _lane_wire(net: Net, p: ConvPlan, lane: int, qs: list[str], wlast: str) -> str:
    """Output lane `lane`: its channels, or zeros past the row's end in a row's last beat."""
    col, p_out, lw = p.col, p.col.out_lanes, p.c_out * p.bo
    net.wire(f"lane{lane}", lw, _concat(qs))
    if p.g > 1 and (col.nob - 1) * p_out + lane >= p.ow:  # past the row's end in its last beat: zero
        if p.wt > 1:
            _wlast(net, p)
        net.wire(f"olane{lane}", lw, f"{wlast} ? {lit(0, lw)} : lane{lane}" if p.wt > 1 else lit(0, lw))
        return f"olane{lane}"
    return f"lane{lane}"


def emit_walk(net: Net, p: ConvPlan, name: str) -> None:
    """The walk of a windowed module, in order: its width converter (if any), the control, the
    window and the counters. The caller adds the arithmetic on the window's taps."""
    if p.src_lanes:
        check_convertible(name, p.w, p.src_lanes, p.g)
        emit_converter(net, p.w, p.cw, p.src_lanes, p.g)
    _emit_control(net, p)
    _emit_window(net, p)
    _emit_counters(net, p)


def window_unused(p: ConvPlan, taps: dict) -> list[str]:
    """Window bits no tap reads (and output lanes that are constant zero past a one-step row)."""
    g, p_out, col, bi, cw = p.g, p.col.out_lanes, p.col, p.bi, p.cw
    # a window column is read by its taps and, in the left margin's shift, by the column g to its left
    shifted = set() if col.pad_left and p.wt == 1 else set(range(g, p.kw - 1 + g))
    unused = [f"w{ky}_{j}[{c * bi + bi - 1}:{c * bi}]" if cw > 1 else f"w{ky}_{j}"
              for ky in p.window_rows for j in range(p.kw - 1 + g + col.extra) if j not in shifted
              for c in range(p.c_in) if (c, ky, j) not in taps]
    if p.wt <= 1 and any(g > 1 and (col.nob - 1) * p_out + k >= p.ow for k in range(p_out)):
        unused += [f"lane{k}" for k in range(p_out) if (col.nob - 1) * p_out + k >= p.ow]
    return unused


def walk_cycles(p: ConvPlan) -> int:
    """Cycles per image of a walk: its steps, or a widening converter's port beats (one narrower
    beat per cycle can outlast the walk)."""
    port_beats = p.h * -(-p.w // p.src_lanes) if p.src_lanes else 0
    return max(p.rows * p.wt, port_beats)


def walk_info(p: ConvPlan, out_depth: int) -> dict:
    """Manifest fields of a walk: geometry, lanes, converter, rows per beat, output FIFO depth."""
    return {"kernel": [p.kh, p.kw], "stride": list(p.stride), "padding": list(p.pad), "traversal": [p.rows, p.wt],
            "lanes_in": p.g, "lanes_out": p.col.out_lanes, **({"lanes_src": p.src_lanes} if p.src_lanes else {}),
            **({"rows_in": p.v} if p.v > 1 else {}),
            **({"out_fifo_depth": out_depth} if out_depth != OUT_FIFO_DEPTH else {})}
