"""Netlist emission: one Verilog line per operation, every width from interval arithmetic.

A `Sig` is a wire with the exact interval of the values it can carry (its width and signedness
follow from it with `bits_for`). A `Term` is a signal's contribution to a sum: +-(sig << shift).
Constant shifts and negations are wiring; only `hf_add` instances are adders. Adder trees are
balanced (depth ceil(log2 n)); combining two terms factors out their common shift, so low-order
zero bits never enter an adder, and two negated terms are added and stay negated, so a negation
costs nothing until the root (where `hf_requant` absorbs it).

`graph_terms` emits a shared adder graph (hashiflex.ir.adder_graph, solved once per layer)
instead: one `hf_add` per graph adder, in the graph's topological order, each sized from its
own interval (the graph's inputs include the bias constants, so its outputs are whole sums).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.intervals import bits_for, constant_result  # noqa: F401  (re-exported)


def sbits(lo: int, hi: int) -> int:
    """Two's-complement width holding [lo, hi] (always signed)."""
    return max((-lo - 1).bit_length() if lo < 0 else 0, hi.bit_length() if hi >= 0 else 0) + 1


def lit(value: int, width: int) -> str:
    """A sized Verilog literal of `width` bits (unsigned two's-complement pattern)."""
    return f"{width}'d{value % (1 << width)}"


@dataclass(frozen=True)
class Sig:
    name: str
    lo: int
    hi: int
    depth: int = 0        # adder levels from the module's inputs (0: an input or a constant)
    stage: int = 0        # pipeline registers passed (pipelined nets; -1: a constant, valid at any stage)
    lvl: int = 0          # adder levels since the last pipeline register

    @property
    def width(self) -> int:
        return bits_for(self.lo, self.hi)

    @property
    def signed(self) -> int:
        return int(self.lo < 0)


@dataclass(frozen=True)
class Term:
    sig: Sig
    shift: int = 0
    neg: bool = False


class Net:
    """Body lines of one module plus its adder and register statistics.

    emit=False only counts (adders, adder bits, depth): no lines are written.
    pipeline=k: a register (enabled by the module's `pen`) after every k adder levels; an operand
    from an earlier stage is delayed to its partner's stage first, so every sum adds values of one
    image (`at_stage` aligns any signal; each Sig carries its stage)."""

    def __init__(self, emit: bool = True, pipeline: int | None = None):
        self.lines: list[str] = []
        self.emit = emit
        self.n = 0
        self.adders = 0
        self.adder_bits = 0
        self.depth = 0        # most adder levels of any adder
        self.reg_bits = 0     # flip-flops declared with reg() (and FIFOs instantiated with count_regs())
        self.mem_bits = 0     # memory arrays declared with mem()
        self.consts: dict[tuple[int, int], Sig] = {}
        self.k = pipeline
        self._delayed: dict[tuple[str, int], Sig] = {}

    def fresh(self, prefix: str = "n") -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def wire(self, name: str, width: int, expr: str | None = None) -> None:
        if not self.emit:
            return
        rng = f"[{width - 1}:0] " if width > 1 else ""
        self.lines.append(f"wire {rng}{name}" + (f" = {expr};" if expr is not None else ";"))

    def reg(self, names: str | list[str], width: int = 1, words: int = 0, signed: bool = False) -> str:
        """Declare register(s) (words > 0: an array [0:words-1] of flip-flops) and count their bits:
        the count is what was declared. Returns the (first) name."""
        names = [names] if isinstance(names, str) else list(names)
        rng = (f"signed [{width - 1}:0] " if signed else f"[{width - 1}:0] ") if width > 1 or signed else ""
        if self.emit:
            self.lines.append(f"reg {rng}{', '.join(names)}" + (f" [0:{words - 1}]" if words else "") + ";")
        self.reg_bits += len(names) * width * max(words, 1)
        return names[0]

    def mem(self, name: str, width: int, words: int, signed: bool = False) -> str:
        """Declare a memory array (a RAM, counted in mem_bits, not as register bits)."""
        rng = (f"signed [{width - 1}:0] " if signed else f"[{width - 1}:0] ") if width > 1 or signed else ""
        if self.emit:
            self.lines.append(f"reg {rng}{name} [0:{words - 1}];")
        self.mem_bits += width * words
        return name

    def count_regs(self, bits: int) -> None:
        """Flip-flops inside an instantiated primitive (an hf_fifo): counted where it is instantiated."""
        self.reg_bits += bits

    def const(self, value: int) -> Sig:
        """A constant (non-negative) wire, shared within the module."""
        w = bits_for(value, value)
        key = (value, w)
        if key not in self.consts:
            s = Sig(self.fresh("k"), value, value, stage=-1)
            self.wire(s.name, w, lit(value, w))
            self.consts[key] = s
        return self.consts[key]

    def const_term(self, value: int) -> Term | None:
        if value == 0:
            return None
        mag = abs(value)
        tz = (mag & -mag).bit_length() - 1
        return Term(self.const(mag >> tz), tz, value < 0)

    def pipe_reg(self, name: str, width: int, src: str) -> None:
        """A pipeline register: declared, counted, loaded from `src` whenever the pipeline moves."""
        self.reg(name, width)
        if self.emit:
            self.lines.append(f"always @(posedge clk) if (pen) {name} <= {src};")

    def at_stage(self, s: Sig, stage: int, width: int | None = None) -> Sig:
        """`s` delayed by pipeline registers until `stage` (constants and same-stage signals as is);
        `width`: the registers' width when the wire is wider than its interval (a requantizer's)."""
        if s.stage < 0 or s.stage >= stage:
            return s
        key = (s.name, stage)
        if key not in self._delayed:
            prev = self.at_stage(s, stage - 1, width)
            d = Sig(f"{s.name}_s{stage}", s.lo, s.hi, s.depth, stage, 0)
            self.pipe_reg(d.name, width or s.width, prev.name)
            self._delayed[key] = d
        return self._delayed[key]

    def add(self, a: Term, b: Term) -> Term:
        if self.k:
            st = max(a.sig.stage, b.sig.stage, 0)
            a = Term(self.at_stage(a.sig, st), a.shift, a.neg)
            b = Term(self.at_stage(b.sig, st), b.shift, b.neg)
        m = min(a.shift, b.shift)
        if a.neg and not b.neg:
            a, b = b, a
        la, lb = a.shift - m, b.shift - m
        sub = a.neg != b.neg
        if sub:
            lo, hi = (a.sig.lo << la) - (b.sig.hi << lb), (a.sig.hi << la) - (b.sig.lo << lb)
        else:
            lo, hi = (a.sig.lo << la) + (b.sig.lo << lb), (a.sig.hi << la) + (b.sig.hi << lb)
        y = Sig(self.fresh(), lo, hi, max(a.sig.depth, b.sig.depth) + 1, max(a.sig.stage, b.sig.stage, 0),
                max(a.sig.lvl, b.sig.lvl) + 1)
        w = y.width
        if self.emit:
            self.wire(y.name, w)
            self.lines.append(
                f"hf_add #(.WA({a.sig.width}),.SA({a.sig.signed}),.LA({la}),.WB({b.sig.width}),.SB({b.sig.signed}),"
                f".LB({lb}),.NA(0),.SUB({int(sub)}),.WO({w})) u_{y.name} (.a({a.sig.name}),.b({b.sig.name}),"
                f".y({y.name}));")
        self.adders += 1
        self.adder_bits += w
        self.depth = max(self.depth, y.depth)
        if self.k and y.lvl >= self.k:   # k levels since the last register: cut here
            r = Sig(f"{y.name}_p", y.lo, y.hi, y.depth, y.stage + 1, 0)
            self.pipe_reg(r.name, w, y.name)
            y = r
        return Term(y, m, a.neg and b.neg)

    def graph_terms(self, g, inp) -> list[Term | None]:
        """Emit the adders of an adder graph g (hashiflex.ir.adder_graph.AdderGraph); inp(j) is
        input j's Sig (asked only for inputs the graph reads). Returns every output's term.

        Shared adders (the first g.n_shared) are emitted once each, positive, in index order. The
        rest form one private tree per output; each is emitted for the sign its output wants (a
        negation is pushed down to the leaves, where `add` turns it into a subtraction), so an
        output stays negated, and needs `hf_requant`'s negation, only when every leaf under it is
        negated, as in the naive trees."""
        n, ns = g.n_inputs, g.n_shared
        a, b, sh, sg = (v.tolist() for v in (g.a, g.b, g.shift, g.sign))
        shared: list[Sig] = []
        leaf = lambda k: inp(k) if k < n else shared[k - n]  # noqa: E731
        for k in range(ns):   # operands of a shared adder are inputs or earlier shared adders
            shared.append(self.add(Term(leaf(a[k])), Term(leaf(b[k]), sh[k], sg[k] < 0)).sig)
        uses = np.bincount(np.concatenate([g.a[ns:], g.b[ns:], g.out_node[g.out_node >= n + ns]]),
                           minlength=n + len(a))[n + ns:]
        if np.any(uses != 1):
            raise ValueError("adder graph: every per-output tree adder must have exactly one use")

        def term(k: int, neg: bool) -> Term:   # (-1)^neg * node k
            if k < n + ns:
                return Term(leaf(k), 0, neg)
            i = k - n
            ta, tb = term(a[i], neg), term(b[i], neg != (sg[i] < 0))
            return self.add(ta, Term(tb.sig, tb.shift + sh[i], tb.neg))

        outs: list[Term | None] = []
        for k, s, sign in zip(g.out_node.tolist(), g.out_shift.tolist(), g.out_sign.tolist()):
            t = None if k < 0 else term(k, sign < 0)
            outs.append(None if t is None else Term(t.sig, t.shift + s, t.neg))
        return outs

    def tree(self, terms: list[Term]) -> Term | None:
        """Balanced adder tree over terms (ordered positive first, then by shift, for sharing)."""
        level = sorted(terms, key=lambda t: (t.neg, t.shift))
        if not level:
            return None
        while len(level) > 1:
            nxt = [self.add(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            level = nxt
        return level[0]

    def requant(self, root: Term | None, shift: int, clamp_lo: int | None, clamp_hi: int | None,
                out_w: int) -> tuple[str, int, int]:
        """clamp(floor(root / 2^shift)) as `out_w` bits; returns (expression, lo, hi).

        The caller has already added the rounding constant 2^(shift-1) into the sum."""
        if root is None:
            v = min(max(0, clamp_lo if clamp_lo is not None else 0), clamp_hi if clamp_hi is not None else 0)
            return lit(v, out_w), v, v
        s = root.sig
        lo, hi = (-s.hi, -s.lo) if root.neg else (s.lo, s.hi)
        r = shift - root.shift
        tlo, thi = (lo >> r, hi >> r) if r >= 0 else (lo << -r, hi << -r)
        clo = clamp_lo is not None and tlo < clamp_lo
        chi = clamp_hi is not None and thi > clamp_hi
        olo, ohi = max(tlo, clamp_lo) if clo else tlo, min(thi, clamp_hi) if chi else thi
        if olo > ohi:  # the clamp range lies entirely outside the value range: a constant
            v = clamp_lo if clo and thi < clamp_lo else clamp_hi
            return lit(v, out_w), v, v
        wt = max(sbits(tlo, thi), sbits(clamp_lo, clamp_lo) if clo else 1, sbits(clamp_hi, clamp_hi) if chi else 1,
                 s.width + 1 - max(r, 0), out_w)
        name = self.fresh("q")
        self.wire(name, out_w)
        lo_p, hi_p = (clamp_lo if clo else 0), (clamp_hi if chi else 0)
        self.lines.append(
            f"hf_requant #(.WI({s.width}),.SI({s.signed}),.NEG({int(root.neg)}),.SHR({r}),.WT({wt}),"
            f".CLO({int(clo)}),.CHI({int(chi)}),.LO({slit(lo_p, wt)}),.HI({slit(hi_p, wt)}),.WO({out_w})) "
            f"u_{name} (.x({s.name}),.y({name}));")
        return name, olo, ohi


def slit(value: int, width: int) -> str:
    """A signed sized literal."""
    return f"$signed({lit(value, width)})" if value < 0 else f"{width}'sd{value}"
