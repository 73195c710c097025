"""Structural counts of every hardware layer, from the IR alone and fast (numpy, no Verilog).

`adder_network(prog, op)` replays hashiflex.rtl's per-output adder trees for one copy of a layer
(one output pixel, every channel): the same term order (positive first, then by shift, the bias
constant after the taps of its key), the same pairing, the same interval arithmetic, so the
adders, adder bits and depth equal the generator's naive trees (`adders_naive` in the
manifest); all rows of a layer are combined level by level at once. It also gives the
requantizer's widths and the live bits after each tree level (for pipeline registers).

A max pool has no adders: one comparator tree per output channel over its kh x kw window taps
(rtl.pool), n - 1 comparators as wide as the stream in ceil(log2 n) levels. A windowed average
pool has, per output channel, the tree of its n = kh x kw taps (n - 1 adders) and the global
pool's scaling tree over the CSD digits of mult (`window_average_network`).

Registers, memories and cycles per stream format are in cost.storage.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UserError
from ..ir.intervals import bits_for
from ..ir.spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, csd_digits, round_const
from ..rtl.common import stream_bits, stream_range

_BIG = 1 << 40


def _bitlen(v: np.ndarray) -> np.ndarray:
    """bit_length of non-negative int64 values below 2^52 (exact through float64)."""
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def bits_for_np(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    neg = lo < 0
    w_pos = np.maximum(1, _bitlen(np.maximum(hi, 0)))
    w_neg = np.maximum(_bitlen(np.maximum(-lo - 1, 0)), _bitlen(np.maximum(hi, 0))) + 1
    return np.where(neg, w_neg, w_pos)


def sbits_np(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    a = np.where(lo < 0, _bitlen(np.maximum(-lo - 1, 0)), 0)
    b = np.where(hi >= 0, _bitlen(np.maximum(hi, 0)), 0)
    return np.maximum(a, b) + 1


@dataclass
class Network:
    """Adder network of one copy of a layer (one output pixel, all channels)."""
    adders: int = 0
    adder_bits: int = 0
    carry_bits: int = 0            # adder bits minus the low bits that pass through (shifted operand)
    depth: int = 0                 # adder levels of the deepest tree
    max_width: int = 0             # widest adder
    requant_bits: int = 0          # see `_requant`
    outputs: int = 0               # non-constant outputs
    level_bits: list = field(default_factory=list)   # live bits after level k (k = 1..depth)
    comparators: int = 0           # a max pool's comparators (depth and widths above are theirs)
    comparator_bits: int = 0

    def __add__(self, o: "Network") -> "Network":
        n = max(len(self.level_bits), len(o.level_bits))
        lb = [(self.level_bits[i] if i < len(self.level_bits) else 0) +
              (o.level_bits[i] if i < len(o.level_bits) else 0) for i in range(n)]
        return Network(self.adders + o.adders, self.adder_bits + o.adder_bits, self.carry_bits + o.carry_bits,
                       max(self.depth, o.depth),
                       max(self.max_width, o.max_width), self.requant_bits + o.requant_bits,
                       self.outputs + o.outputs, lb, self.comparators + o.comparators,
                       self.comparator_bits + o.comparator_bits)

    def scaled(self, k: int) -> "Network":
        return Network(self.adders * k, self.adder_bits * k, self.carry_bits * k, self.depth, self.max_width,
                       self.requant_bits * k,
                       self.outputs * k, [b * k for b in self.level_bits], self.comparators * k,
                       self.comparator_bits * k)


def _trees(neg, shift, lo, hi, cnt):
    """Balanced trees over rows of terms (already in the generator's order; entries past cnt are
    padding). Returns per-row adders, bits, the root (neg, shift, lo, hi), depth, widest adder and
    the live bits after each level."""
    neg, shift, lo, hi, cnt = (np.array(a, copy=True) for a in (neg, shift, lo, hi, cnt))
    r = len(cnt)
    adders = np.zeros(r, np.int64)
    bits = np.zeros(r, np.int64)
    carry = np.zeros(r, np.int64)
    maxw = np.zeros(r, np.int64)
    depth = 0
    level_bits = []
    while neg.shape[1] > 1 and (cnt > 1).any():
        if neg.shape[1] % 2:
            pad = lambda a, v: np.concatenate([a, np.full((r, 1), v, a.dtype)], axis=1)  # noqa: E731
            neg, shift, lo, hi = pad(neg, False), pad(shift, 0), pad(lo, 0), pad(hi, 0)
        an, bn = neg[:, 0::2], neg[:, 1::2]
        sa, sb = shift[:, 0::2], shift[:, 1::2]
        alo, blo, ahi, bhi = lo[:, 0::2], lo[:, 1::2], hi[:, 0::2], hi[:, 1::2]
        idx = np.arange(an.shape[1])[None, :]
        pair = 2 * idx + 1 < cnt[:, None]
        swap = an & ~bn
        an, bn = np.where(swap, bn, an), np.where(swap, an, bn)
        sa, sb = np.where(swap, sb, sa), np.where(swap, sa, sb)
        alo, blo = np.where(swap, blo, alo), np.where(swap, alo, blo)
        ahi, bhi = np.where(swap, bhi, ahi), np.where(swap, ahi, bhi)
        m = np.minimum(sa, sb)
        la, lb = sa - m, sb - m
        sub = an != bn
        a_lo, a_hi, b_lo, b_hi = alo << la, ahi << la, blo << lb, bhi << lb
        nlo = np.where(sub, a_lo - b_hi, a_lo + b_lo)
        nhi = np.where(sub, a_hi - b_lo, a_hi + b_hi)
        w = bits_for_np(nlo, nhi)
        adders += pair.sum(axis=1)
        bits += np.where(pair, w, 0).sum(axis=1)
        carry += np.where(pair, np.maximum(w - la - lb, 1), 0).sum(axis=1)
        maxw = np.maximum(maxw, np.where(pair, w, 0).max(axis=1, initial=0))
        # unpaired (odd last) entries carry over unchanged
        neg = np.where(pair, an & bn, neg[:, 0::2])
        shift = np.where(pair, m, shift[:, 0::2])
        lo, hi = np.where(pair, nlo, lo[:, 0::2]), np.where(pair, nhi, hi[:, 0::2])
        cnt = (cnt + 1) // 2
        depth += 1
        live = idx < cnt[:, None]
        level_bits.append(int(np.where(live, bits_for_np(lo, hi), 0).sum()))
    return adders, bits, carry, (neg[:, 0], shift[:, 0], lo[:, 0], hi[:, 0]), depth, maxw, level_bits


def _requant(root, shift: int, clamp_lo, clamp_hi, out_w: int) -> np.ndarray:
    """Per row: bits of requantize logic: the negation (root negated), each active clamp
    comparison, and the output mux when a clamp is active (widths as hf_requant's)."""
    neg, m, lo, hi = root
    slo, shi = np.where(neg, -hi, lo), np.where(neg, -lo, hi)
    r = shift - m
    tlo = np.where(r >= 0, slo >> np.maximum(r, 0), slo << np.maximum(-r, 0))
    thi = np.where(r >= 0, shi >> np.maximum(r, 0), shi << np.maximum(-r, 0))
    clo = np.zeros_like(neg) if clamp_lo is None else tlo < clamp_lo
    chi = np.zeros_like(neg) if clamp_hi is None else thi > clamp_hi
    width = bits_for_np(lo, hi)
    wt = np.maximum.reduce([sbits_np(tlo, thi), width + 1 - np.maximum(r, 0), np.full_like(width, out_w)])
    if clamp_lo is not None:
        wt = np.maximum(wt, np.where(clo, sbits_np(np.array(clamp_lo), np.array(clamp_lo)), 1))
    if clamp_hi is not None:
        wt = np.maximum(wt, np.where(chi, sbits_np(np.array(clamp_hi), np.array(clamp_hi)), 1))
    we = wt + np.maximum(r, 0)
    return neg * we + clo * wt + chi * wt + (clo | chi) * out_w


def _rows_network(neg, shift, lo, hi, cnt, const_mask, rq_shift, clamp_lo, clamp_hi, out_w) -> Network:
    keep = ~const_mask & (cnt > 0)
    if not keep.any():
        return Network()
    adders, bits, carry, root, depth, maxw, level_bits = _trees(neg[keep], shift[keep], lo[keep], hi[keep],
                                                                cnt[keep])
    rq = _requant(root, rq_shift, clamp_lo, clamp_hi, out_w)
    return Network(int(adders.sum()), int(bits.sum()), int(carry.sum()), depth, int(maxw.max(initial=0)),
                   int(rq.sum()), int(keep.sum()), level_bits)


def _const_term(v: np.ndarray):
    """The generator's Term for a constant: (present, neg, shift tz, magnitude >> tz)."""
    mag = np.abs(v)
    tz = np.where(mag > 0, _bitlen(mag & -mag) - 1, 0)
    return v != 0, v < 0, tz, np.where(mag > 0, mag >> tz, 0)


def _rows(codes: np.ndarray, const: np.ndarray, xlo: int, xhi: int):
    """Rows of terms of Po2 code matrix [O, N] plus a constant per row, in the generator's order."""
    o = codes.shape[0]
    c = codes.reshape(o, -1).astype(np.int64)
    has_c, cneg, csh, cmag = _const_term(const)
    neg = np.concatenate([c < 0, cneg[:, None]], axis=1)
    shift = np.concatenate([np.maximum(np.abs(c) - 1, 0), csh[:, None]], axis=1)
    present = np.concatenate([c != 0, has_c[:, None]], axis=1)
    lo = np.concatenate([np.full(c.shape, xlo, np.int64), cmag[:, None]], axis=1)
    hi = np.concatenate([np.full(c.shape, xhi, np.int64), cmag[:, None]], axis=1)
    # stable order by (neg, shift); the constant is last in its key; absent terms at the end
    key = np.where(present, (neg.astype(np.int64) * 4096 + shift) * 2, _BIG)
    key[:, -1] += 1
    order = np.argsort(key, axis=1, kind="stable")
    take = lambda a: np.take_along_axis(a, order, axis=1)  # noqa: E731
    return take(neg), take(shift), take(lo), take(hi), present.sum(axis=1)


def _sums(codes, const, xlo, xhi):
    """Interval of every row's sum (the generator's constant_result check)."""
    c = codes.reshape(codes.shape[0], -1).astype(np.int64)
    w = np.where(c != 0, np.sign(c) * (np.int64(1) << np.maximum(np.abs(c) - 1, 0)), 0)
    pos, negs = np.where(w > 0, w, 0).sum(axis=1), np.where(w < 0, w, 0).sum(axis=1)
    return const + pos * xlo + negs * xhi, const + pos * xhi + negs * xlo


def _constant(lo, hi, shift, clamp_lo, clamp_hi):
    tlo = lo >> shift if shift >= 0 else lo << -shift
    thi = hi >> shift if shift >= 0 else hi << -shift
    if clamp_lo is not None:
        tlo, thi = np.maximum(tlo, clamp_lo), np.maximum(thi, clamp_lo)
    if clamp_hi is not None:
        tlo, thi = np.minimum(tlo, clamp_hi), np.minimum(thi, clamp_hi)
    return tlo == thi


def _small(terms: list[tuple[bool, int, int, int]], const: int, rq_shift, clamp_lo, clamp_hi, out_w) -> Network:
    """One tree over explicit (neg, shift, lo, hi) terms plus a constant (add, pool)."""
    lo_s = const + sum((-(h << s) if n else lo << s) for n, s, lo, h in terms)
    hi_s = const + sum((-(lo << s) if n else h << s) for n, s, lo, h in terms)
    if _constant(np.array([lo_s]), np.array([hi_s]), rq_shift, clamp_lo, clamp_hi)[0]:
        return Network()
    if const:
        mag = abs(const)
        tz = (mag & -mag).bit_length() - 1
        terms = terms + [(const < 0, tz, mag >> tz, mag >> tz)]
    ts = sorted(terms, key=lambda t: (t[0], t[1]))        # stable: the constant last in its key
    arr = lambda i, dt: np.array([[t[i] for t in ts]], dtype=dt)  # noqa: E731
    return _rows_network(arr(0, bool), arr(1, np.int64), arr(2, np.int64), arr(3, np.int64),
                         np.array([len(ts)]), np.array([False]), rq_shift, clamp_lo, clamp_hi, out_w)


def adder_network(prog: Program, op, lanes: int = 1) -> Network:
    """The naive adder trees and requantizers of one copy of `op` (a conv or add: one output
    pixel, every channel; a pool fed `lanes` pixels per beat: its accumulator tree adds them all)."""
    for v in (op.acc_lo, op.acc_hi):
        if v is not None and abs(int(v)) >= 1 << 50:
            raise UserError(f"layer {op.name}: accumulator bound {v} is beyond the cost model's 2^50 range")
    if isinstance(op, Conv):
        x, y = prog.tensors[op.input], prog.tensors[op.output]
        xlo, xhi = stream_range(x)
        codes = prog.arrays[op.weight]
        const = prog.arrays[op.bias].astype(np.int64) + round_const(op.shift)
        slo, shi = _sums(codes, const, xlo, xhi)
        cm = _constant(slo, shi, op.shift, op.clamp_lo, op.clamp_hi)
        rows = _rows(codes, const, xlo, xhi)
        return _rows_network(*rows, cm, op.shift, op.clamp_lo, op.clamp_hi, stream_bits(y))
    if isinstance(op, Linear):
        x, y = prog.tensors[op.input], prog.tensors[op.output]
        xlo, xhi = stream_range(x)
        codes = prog.arrays[op.weight]
        const = prog.arrays[op.bias].astype(np.int64)
        rows = _rows(codes, const, xlo, xhi)
        return _rows_network(*rows, np.zeros(len(const), bool), 0, None, None, stream_bits(y))
    if isinstance(op, Add):
        a, b, y = prog.tensors[op.a], prog.tensors[op.b], prog.tensors[op.output]
        t = [(False, op.align_a, *stream_range(a)), (False, op.align_b, *stream_range(b))]
        return _small(t, round_const(op.shift), op.shift, op.clamp_lo, op.clamp_hi, stream_bits(y)).scaled(a.shape[0])
    if isinstance(op, AvgPool):
        acc, mult, one_beat = pool_parts(prog, op, lanes)
        c = prog.tensors[op.input].shape[0]
        net = (acc + mult).scaled(c)
        # timing: the accumulator's adder, then the scaling tree and the requantizer (in the same cycle
        # for one beat per image, else from the registered sum, a multicycle path: cost.model). With one
        # beat per image the accumulator is always zero and adds no level.
        net.depth = mult.depth + (0 if one_beat else acc.depth)
        net.max_width = max(mult.max_width, 0 if one_beat else acc.max_width)
        net.level_bits = [b * c for b in (([] if one_beat else acc.level_bits) + mult.level_bits)]
        return net
    if isinstance(op, MaxPool):
        return comparator_network(prog, op)
    if isinstance(op, AvgPoolWindow):
        return window_average_network(prog, op)
    raise TypeError(f"no adder network for {op!r}")


def pool_parts(prog: Program, op: AvgPool, lanes: int = 1) -> tuple[Network, Network, bool]:
    """One channel of a global pool as rtl.layers.pool_module emits it: (the accumulator's tree over
    the sum and `lanes` inputs, the scaling tree over mult's CSD digits with the rounding constant and
    the requantizer, one beat per image)."""
    x, y = prog.tensors[op.input], prog.tensors[op.output]
    c, h, w = x.shape
    xlo, xhi = stream_range(x)
    alo, ahi = min(0, h * w * xlo), max(0, h * w * xhi)
    one_beat = h * -(-w // lanes) == 1
    acc = _small([(False, 0, alo, ahi)] + [(False, 0, xlo, xhi)] * lanes, 0, 0, None, None, bits_for(alo, ahi))
    acc.requant_bits = 0   # the accumulator is not requantized
    if one_beat:
        acc.carry_bits = 0  # one beat per image: the accumulator is always zero, no carry chain
    slo, shi = alo + lanes * min(xlo, 0), ahi + lanes * max(xhi, 0)
    mult = _small([(n, k, slo, shi) for k, n in csd_digits(op.mult)], round_const(op.shift), op.shift, op.clamp_lo,
                  op.clamp_hi, stream_bits(y))
    return acc, mult, one_beat


def comparator_network(prog: Program, op: MaxPool) -> Network:
    """One copy of a max pool (one output pixel, every channel): per channel a balanced tree of
    n - 1 comparators over the n = kh x kw taps, each as wide as the stream (rtl.pool.Comparators
    pairs level by level), and the live bits after each level."""
    x = prog.tensors[op.input]
    c, b = x.shape[0], stream_bits(x)
    n = int(op.kernel[0]) * int(op.kernel[1])
    levels, live = [], n
    while live > 1:
        live = (live + 1) // 2
        levels.append(live * b * c)
    return Network(depth=len(levels), max_width=b if n > 1 else 0, outputs=c, level_bits=levels,
                   comparators=(n - 1) * c, comparator_bits=(n - 1) * b * c)


def window_average_network(prog: Program, op: AvgPoolWindow) -> Network:
    """One copy of a windowed average pool (one output pixel, every channel), as rtl.pool emits it:
    per channel the balanced tree of its n = kh x kw taps (each in the stream's range, so the sum
    is in [n lo, n hi]), then sum * mult as a tree over mult's CSD digits plus the rounding
    constant and the requantizer (the global pool's scaling); nothing when the clamp makes the
    output constant. The sum feeds the scaling tree in the same cycle: depth and live bits run
    through both."""
    x, y = prog.tensors[op.input], prog.tensors[op.output]
    c = x.shape[0]
    xlo, xhi = stream_range(x)
    n = int(op.kernel[0]) * int(op.kernel[1])
    slo, shi = n * xlo, n * xhi
    mult = _small([(neg, k, slo, shi) for k, neg in csd_digits(op.mult)], round_const(op.shift), op.shift,
                  op.clamp_lo, op.clamp_hi, stream_bits(y))
    if not mult.outputs:
        return Network()
    acc = _small([(False, 0, xlo, xhi)] * n, 0, 0, None, None, bits_for(slo, shi))
    net = (acc + mult).scaled(c)
    net.outputs = c
    net.depth = acc.depth + mult.depth
    net.level_bits = [b * c for b in acc.level_bits + mult.level_bits]
    return net
