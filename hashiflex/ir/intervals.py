"""Interval analysis: exact bounds of every accumulator and tensor, from the weights and the
input range [0, 255]. A pure pass Program -> Program.

Bounds are computed with Python integers (no overflow, whatever the exponent range): for an
output channel, acc_hi = bias + sum(w>0)*x_hi + sum(w<0)*x_lo, and symmetrically for acc_lo.
Zero padding is a value the input may take, so x_lo/x_hi are widened to include 0 where a conv
pads. Per-channel accumulator bounds are stored as object arrays `<op>.acc_lo` / `<op>.acc_hi`
(int64 when they fit) so RTL can size each channel's adder tree.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, po2_weight_ints, rshift_round

INPUT_RANGE = (0, 255)


def weight_ints(prog: Program, op) -> np.ndarray:
    w = prog.arrays[op.weight]
    if isinstance(op, Linear) and op.mode == "int8":
        return w.astype(np.int64)
    if np.abs(w.astype(np.int64)).max(initial=0) - 1 > 61:  # 2^k no longer fits int64: Python ints
        c = w.astype(object)
        return np.array([0 if v == 0 else (1 if v > 0 else -1) << (abs(v) - 1) for v in c.flat],
                        dtype=object).reshape(w.shape)
    return po2_weight_ints(w)


def pos_neg_sums(w: np.ndarray) -> tuple[list[int], list[int]]:
    flat = w.reshape(w.shape[0], -1)
    if flat.dtype != object and np.abs(flat).sum(axis=1, dtype=np.float64).max(initial=0) < 2.0 ** 62:
        pos = np.where(flat > 0, flat, 0).sum(axis=1)
        neg = np.where(flat < 0, flat, 0).sum(axis=1)
        return [int(v) for v in pos], [int(v) for v in neg]
    pos = [sum(int(v) for v in row if v > 0) for row in flat]
    neg = [sum(int(v) for v in row if v < 0) for row in flat]
    return pos, neg


def _as_array(vals: list[int]) -> np.ndarray:
    if all(-(2 ** 62) < v < 2 ** 62 for v in vals):
        return np.array(vals, dtype=np.int64)
    return np.array(vals, dtype=object)


def _requant(v: int, shift: int, lo: int, hi: int) -> int:
    return min(max(rshift_round(v, shift), lo), hi)


def analyze(prog: Program) -> Program:
    """Return a copy of `prog` with acc_lo/acc_hi on every op and lo/hi on every tensor."""
    tensors = dict(prog.tensors)
    arrays = dict(prog.arrays)
    tensors[prog.input] = replace(tensors[prog.input], lo=INPUT_RANGE[0], hi=INPUT_RANGE[1])
    ops = []
    for op in prog.ops:
        if isinstance(op, (Conv, Linear)):
            x = tensors[op.input]
            xl, xh = x.lo, x.hi
            if isinstance(op, Conv) and any(op.padding):
                xl, xh = min(xl, 0), max(xh, 0)
            pos, neg = pos_neg_sums(weight_ints(prog, op))
            bias = [int(b) for b in prog.arrays[op.bias]]
            alo = [b + p * xl + n * xh for b, p, n in zip(bias, pos, neg)]
            ahi = [b + p * xh + n * xl for b, p, n in zip(bias, pos, neg)]
            arrays[f"{op.name}.acc_lo"], arrays[f"{op.name}.acc_hi"] = _as_array(alo), _as_array(ahi)
            if isinstance(op, Conv):
                olo = _requant(min(alo), op.shift, op.clamp_lo, op.clamp_hi)
                ohi = _requant(max(ahi), op.shift, op.clamp_lo, op.clamp_hi)
            elif op.mode == "int8":
                mult = [int(m) for m in prog.arrays[op.scale_mult]]
                olo = min(min(a * m, b * m) for a, b, m in zip(alo, ahi, mult))
                ohi = max(max(a * m, b * m) for a, b, m in zip(alo, ahi, mult))
            else:
                olo, ohi = min(alo), max(ahi)
            ops.append(replace(op, acc_lo=min(alo), acc_hi=max(ahi)))
        elif isinstance(op, Add):
            a, b = tensors[op.a], tensors[op.b]
            alo = (a.lo << op.align_a) + (b.lo << op.align_b)
            ahi = (a.hi << op.align_a) + (b.hi << op.align_b)
            olo = _requant(alo, op.shift, op.clamp_lo, op.clamp_hi)
            ohi = _requant(ahi, op.shift, op.clamp_lo, op.clamp_hi)
            ops.append(replace(op, acc_lo=alo, acc_hi=ahi))
        elif isinstance(op, MaxPool):   # every window holds an image pixel: the input's range
            x = tensors[op.input]
            olo, ohi = x.lo, x.hi
            ops.append(replace(op, acc_lo=olo, acc_hi=ohi))
        elif isinstance(op, AvgPoolWindow):   # N = kh*kw taps, each in x's range (widened to 0 when padded)
            x = tensors[op.input]
            n = op.kernel[0] * op.kernel[1]
            xl, xh = (min(x.lo, 0), max(x.hi, 0)) if any(op.padding) else (x.lo, x.hi)
            alo, ahi = n * xl, n * xh
            olo = _requant(alo * op.mult, op.shift, op.clamp_lo, op.clamp_hi)
            ohi = _requant(ahi * op.mult, op.shift, op.clamp_lo, op.clamp_hi)
            ops.append(replace(op, acc_lo=alo, acc_hi=ahi))
        elif isinstance(op, AvgPool):
            x = tensors[op.input]
            n = x.shape[1] * x.shape[2]
            alo, ahi = n * x.lo, n * x.hi
            olo = _requant(alo * op.mult, op.shift, op.clamp_lo, op.clamp_hi)
            ohi = _requant(ahi * op.mult, op.shift, op.clamp_lo, op.clamp_hi)
            ops.append(replace(op, acc_lo=alo, acc_hi=ahi))
        else:
            raise TypeError(f"unknown op {op!r}")
        tensors[op.output] = replace(tensors[op.output], lo=olo, hi=ohi)
    return prog.with_ops(ops, tensors, arrays)


def bits_for(lo: int, hi: int) -> int:
    """Two's-complement width (or unsigned width when lo >= 0) that holds [lo, hi]."""
    if lo >= 0:
        return max(1, int(hi).bit_length())
    return max(int(-lo - 1).bit_length(), int(hi).bit_length()) + 1


def stream_range(t) -> tuple[int, int]:
    """The range a tensor's values are carried in on a hardware stream: its interval widened to
    hold 0 (padding, reset and idle beats carry zeros)."""
    return min(int(t.lo), 0), max(int(t.hi), 0)


def constant_result(leaves: list[tuple[int, int, int, bool]], const: int, shift: int, clamp_lo: int | None,
                    clamp_hi: int | None) -> int | None:
    """The value of clamp(floor((sum of leaves + const) / 2^shift)) when it is the same for every
    input (the clamp range lies outside the sum's interval, or nothing varies), else None.
    A leaf is (lo, hi, shift, negated): the same interval arithmetic as the adder tree."""
    lo = hi = const
    for llo, lhi, sh, neg in leaves:
        a, b = (-(lhi << sh), -(llo << sh)) if neg else (llo << sh, lhi << sh)
        lo, hi = lo + a, hi + b
    tlo, thi = (lo >> shift, hi >> shift) if shift >= 0 else (lo << -shift, hi << -shift)
    if clamp_lo is not None:
        tlo, thi = max(tlo, clamp_lo), max(thi, clamp_lo)
    if clamp_hi is not None:
        tlo, thi = min(tlo, clamp_hi), min(thi, clamp_hi)
    return tlo if tlo == thi else None
