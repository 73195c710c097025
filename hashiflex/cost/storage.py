"""Register and memory inventory, cycles and output format of a module for a stream format:
G pixels of a row per beat (the RTL's lanes) and V rows per beat (V > 1 is a model-only
extension, docs/cost.md), with the generator's formulas (rtl/window.py, conv.py, pool.py,
layers.py, common.py). A max pool or windowed average pool walks its window as a conv does (every
tap read, every output live, unless an average pool's clamp makes its outputs constant).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..ir.intervals import bits_for
from ..ir.spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, csd_digits, round_const
from ..rtl.common import OUT_FIFO_DEPTH, fifo_pointer_bits, stream_bits, stream_range
from ..rtl.emit import constant_result
from ..rtl.layers import POOL_MULTICYCLE
from ..rtl.pool import constant_average
from ..errors import UserError
from ..rtl.walk import check_rows, columns, kernel_of, row_walk, windowed
from .counts import _constant, _sums


@dataclass
class Storage:
    """Registers of one module: plain bits, and arrays (name, words, bits per word)."""
    reg_bits: int = 0
    arrays: list = field(default_factory=list)

    @property
    def array_bits(self) -> int:
        return sum(w * b for _, w, b in self.arrays)

    @property
    def total_bits(self) -> int:
        return self.reg_bits + self.array_bits


def fifo_storage(width: int, depth: int, name: str = "fifo") -> Storage:
    """hf_fifo: DEPTH words of W bits, two pointers and a count (the generator's register_bits)."""
    return Storage(fifo_pointer_bits(depth), [(name, depth, width)])


def conv_shape(op, prog: Program, g: int = 1, v: int = 1):
    """(column plan, row plan, rows of steps per image) of a conv or windowed pool for G lanes and V
    rows per beat (V > 1: the column rule applied to rows, model only)."""
    x, y = prog.tensors[op.input], prog.tensors[op.output]
    _, h, w = x.shape
    _, oh, ow = y.shape
    kh, kw = kernel_of(prog, op)
    col = columns(op, w, ow, kw, g)
    row = columns(replace(op, stride=op.stride[::-1], padding=op.padding[::-1]), h, oh, kh, v) if v > 1 else None
    ht, y0 = row_walk(op, h, oh, int(kh), g)
    return col, row, (row.steps if row else ht - y0)


def stem_rows(op: Conv, prog: Program, g: int, v: int) -> bool:
    """Whether V rows per beat at this conv are the generator's stem walk (rtl.walk.check_rows)."""
    if not isinstance(op, Conv):
        return False
    x, y = prog.tensors[op.input].shape, prog.tensors[op.output].shape
    kh, kw = (int(k) for k in prog.arrays[op.weight].shape[2:])
    try:
        check_rows(op, x[1], y[1], kh, kw, x[2], g, v)
    except UserError:
        return False
    return True


def live_outputs(prog: Program, op: Conv) -> np.ndarray:
    """[C_out] bool: outputs that are not constant whatever the input (a max pool's: all; an average
    pool's: all or none, its channels share the stream's range)."""
    x = prog.tensors[op.input]
    if isinstance(op, MaxPool):
        return np.ones(x.shape[0], bool)
    if isinstance(op, AvgPoolWindow):
        return np.full(x.shape[0], constant_average(op, *stream_range(x)) is None)
    xlo, xhi = stream_range(x)
    const = prog.arrays[op.bias].astype(np.int64) + round_const(op.shift)
    return ~_constant(*_sums(prog.arrays[op.weight], const, xlo, xhi), op.shift, op.clamp_lo, op.clamp_hi)


def used_taps(prog: Program, op: Conv) -> np.ndarray:
    """[C_in, KH, KW]: taps some non-constant output reads through a nonzero weight (a pool reads
    every tap of its live outputs)."""
    x, y = prog.tensors[op.input], prog.tensors[op.output]
    if isinstance(op, (MaxPool, AvgPoolWindow)):
        return np.ones((x.shape[0], *kernel_of(prog, op)), bool) & live_outputs(prog, op)[:, None, None]
    c_in, c_out = x.shape[0], y.shape[0]
    codes = prog.arrays[op.weight]
    kh, kw = codes.shape[2:]
    nz = (codes != 0) & live_outputs(prog, op)[:, None, None, None]
    cpg, opg = c_in // op.groups, c_out // op.groups
    return nz.reshape(op.groups, opg, cpg, kh, kw).any(axis=1).reshape(c_in, kh, kw)


def storage(prog: Program, op, g: int = 1, v: int = 1, trim: bool = True, taps=None,
            out_depth: int = OUT_FIFO_DEPTH) -> Storage:
    """Register/memory inventory of op's module fed G lanes x V rows per beat (V = 1: the RTL).
    trim: leave out the window, line-buffer, realignment and FIFO bits of taps no live output
    reads and of constant outputs (synthesis removes them); False: the generator's register_bits.
    taps: (used_taps, live output count) of a conv, when the caller has them already.
    out_depth: the output FIFO's words (rtl.depths sizes some deeper than the default)."""
    if windowed(op):    # a conv or a windowed pool: the same walk
        x, y = prog.tensors[op.input], prog.tensors[op.output]
        c_in, c_out = x.shape[0], y.shape[0]
        kh, kw = kernel_of(prog, op)
        col, row, ht = conv_shape(op, prog, g, v)
        wt, gl, p = col.steps, col.lanes, col.out_lanes
        vo = row.out_lanes if row else 1
        bi = stream_bits(x)
        stem = v > 1 and stem_rows(op, prog, g, v)   # the generated V > 1 walk (rtl.walk.check_rows)
        h_pad = ht if v > 1 else row_walk(op, x.shape[1], y.shape[1], int(kh), g)[0]   # the row counter's span
        reg = 1 + (max(1, (h_pad - 1).bit_length()) if ht > 1 else 0) + (max(1, (wt - 1).bit_length()) if wt > 1 else 0)
        ncol = kw - 1 + gl
        low = kw - 1 if col.pad_left and wt == 1 else 0    # a constant-padding margin has no registers
        # V > 1 (model): the window holds kh - 1 + V rows; the generated stem holds the kh rows it reads
        rows_v = 1 if stem or v == 1 else (kh - 1 + v) / kh
        if trim:
            used, n_live = taps if taps is not None else (used_taps(prog, op), int(live_outputs(prog, op).sum()))
            # a window register is needed if its tap or one it shifts into (lower column) is read
            first = np.where(used.any(axis=2), used.argmax(axis=2), kw)      # lowest used kx per (c, ky)
            reg += round(int(np.where(first < kw, ncol - np.maximum(col.lead + first, low), 0).sum()) * bi * rows_v)
            # line buffer k feeds window row k and line buffer k - 1
            top = np.where(used.any(axis=2).any(axis=1), used.any(axis=2).argmax(axis=1), kh)  # lowest used ky
            lb_ch = [int((top <= k).sum()) for k in range(kh - 1)]
            if stem:   # one unchained buffer per kernel row above the beat (the top padding rows)
                lb_ch = [int(used[:, k, :].any(axis=1).sum()) for k in range(op.padding[0])]
            ch_used = int((top < kh).sum())
        else:
            reg += round(kh * (ncol - low) * c_in * bi * rows_v)
            lb_ch, ch_used = [c_in] * (op.padding[0] if stem else kh - 1), c_in
        if col.a > 0:
            reg += gl * ch_used * bi * v                             # column realignment
        if gl > 1 and wt > 1 and (col.nob - 1) * p + p - 1 >= y.shape[2]:
            reg += 1                                                 # wlast
        arrays = [("linebuf", wt, gl * n * bi) for n in lb_ch if n]
        if row is not None and row.a > 0 and not stem:               # V > 1 (model): one more row held
            arrays.append(("linebuf", wt, gl * ch_used * bi))
        live = n_live if trim else c_out    # constant outputs need no FIFO bits
        f = fifo_storage(p * vo * live * stream_bits(y), out_depth, "out_fifo")
        return Storage(reg + f.reg_bits, arrays + f.arrays)
    if isinstance(op, Add):
        y = prog.tensors[op.output]
        return fifo_storage(g * v * y.shape[0] * stream_bits(y), out_depth, "out_fifo")
    if isinstance(op, AvgPool):
        x, y = prog.tensors[op.input], prog.tensors[op.output]
        c, h, w = x.shape
        n = -(-h // v) * -(-w // g)
        xlo, xhi = stream_range(x)
        f = fifo_storage(c * stream_bits(y), OUT_FIFO_DEPTH, "out_fifo")
        alo, ahi = min(0, h * w * xlo), max(0, h * w * xhi)
        acc = c * bits_for(alo, ahi)
        if trim and n == 1:
            acc = 0   # one beat per image: the accumulator is always cleared, synthesis removes it
        reg = (max(1, (n - 1).bit_length()) if n > 1 else 0) + acc
        if n >= POOL_MULTICYCLE:   # the registered sum of each scaled channel, and sv, mc (rtl.layers.pool_module)
            slo, shi = alo + g * v * xlo, ahi + g * v * xhi
            scaled = constant_result([(slo, shi, k, neg) for k, neg in csd_digits(op.mult)], round_const(op.shift),
                                     op.shift, op.clamp_lo, op.clamp_hi) is None
            reg += 2 + (c * bits_for(slo, shi) if scaled else 0)
        return Storage(reg + f.reg_bits, f.arrays)
    if isinstance(op, Linear):
        y = prog.tensors[op.output]
        return fifo_storage(y.shape[0] * stream_bits(y), OUT_FIFO_DEPTH, "out_fifo")
    raise TypeError(f"no storage for {op!r}")


def cycles(prog: Program, op, g: int = 1, v: int = 1) -> int:
    """Cycles per image of op's module (the generator's cycles_per_image for V = 1)."""
    if windowed(op):
        col, _, ht = conv_shape(op, prog, g, v)
        return ht * col.steps
    if isinstance(op, (Add, AvgPool)):
        _, h, w = prog.tensors[op.a if isinstance(op, Add) else op.input].shape
        return -(-h // v) * -(-w // g)
    return 1


def out_format(prog: Program, op, g: int, v: int) -> tuple[int, int]:
    """(lanes, rows) per beat of op's output stream."""
    if windowed(op):
        col, row, _ = conv_shape(op, prog, g, v)
        return col.out_lanes, (row.out_lanes if row else 1)
    if isinstance(op, Add):
        return g, v
    return 1, 1


def copies(prog: Program, op, g: int, v: int) -> int:
    """Copies of the adder network: output pixels per beat (conv, windowed average pool; a max pool's
    comparators), pixels per beat (add)."""
    if windowed(op):
        p, vo = out_format(prog, op, g, v)
        return p * vo
    if isinstance(op, Add):
        return g * v
    return 1
