"""The integer shift-add IR: small immutable dataclasses (spec: docs/ir.md).

A Program is a topologically ordered tuple of ops over named tensors plus a dict of integer
numpy arrays (weights, biases, per-channel bounds) that ops refer to by key. Values are integers;
`frac` gives the dequantized view (real = int * 2^-frac) and is never needed to compute.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

import numpy as np

IR_VERSION = 1


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]        # (C, H, W) for feature maps, (C,) for vectors; batch is implicit
    signed: bool
    bits: int                     # storage width the quantizer promises (clamp range)
    frac: int                     # fraction bits of the dequantized view
    lo: int | None = None         # exact bounds from interval analysis (None before it runs)
    hi: int | None = None


@dataclass(frozen=True)
class Conv:
    """acc = conv(x, sign*2^|code|-1) + bias;  y = clamp(rshift_round(acc, shift), clamp_lo, clamp_hi)."""
    name: str
    input: str
    output: str
    weight: str                   # array key: int8 codes [O, I/groups, KH, KW]
    bias: str                     # array key: int64 [O] on the accumulator grid
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    e_min: int                    # real weight = int weight * 2^e_min (dequantized view only)
    shift: int                    # >0 round-half-up right shift; <=0 exact left shift by -shift
    clamp_lo: int
    clamp_hi: int
    acc_lo: int | None = None     # interval of the accumulator over all channels (analysis)
    acc_hi: int | None = None
    kind: str = field(default="conv", init=False)


@dataclass(frozen=True)
class Add:
    """acc = (a << align_a) + (b << align_b);  y = clamp(rshift_round(acc, shift), clamp_lo, clamp_hi)."""
    name: str
    a: str
    b: str
    output: str
    align_a: int
    align_b: int
    shift: int
    clamp_lo: int
    clamp_hi: int
    acc_lo: int | None = None
    acc_hi: int | None = None
    kind: str = field(default="add", init=False)


@dataclass(frozen=True)
class AvgPool:
    """acc = sum over H*W;  y = clamp(rshift_round(acc * mult, shift), clamp_lo, clamp_hi)."""
    name: str
    input: str
    output: str
    mult: int
    shift: int
    clamp_lo: int
    clamp_hi: int
    acc_lo: int | None = None
    acc_hi: int | None = None
    kind: str = field(default="avgpool", init=False)


@dataclass(frozen=True)
class Linear:
    """acc = x @ W^T + bias; y = acc * scale_mult[o] (int8 NPU) or y = acc (Po2, hardened).

    weight holds int8 values (mode "int8") or Po2 codes (mode "po2")."""
    name: str
    input: str
    output: str
    mode: str                     # "int8" (programmable NPU) or "po2" (fully hardened)
    weight: str
    bias: str
    scale_mult: str | None        # array key, int64 [O] (int8 mode only)
    e_min: int                    # po2 mode: real weight = int * 2^e_min; int8: -scale_shift
    acc_lo: int | None = None
    acc_hi: int | None = None
    kind: str = field(default="linear", init=False)


Op = Union[Conv, Add, AvgPool, Linear]
OP_TYPES = {"conv": Conv, "add": Add, "avgpool": AvgPool, "linear": Linear}


@dataclass(frozen=True)
class Program:
    tensors: dict[str, Tensor]
    ops: tuple[Op, ...]
    input: str
    output: str
    arrays: dict[str, np.ndarray] = field(repr=False)
    meta: dict = field(default_factory=dict)
    version: int = IR_VERSION

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def with_ops(self, ops, tensors=None, arrays=None) -> "Program":
        return replace(self, ops=tuple(ops), tensors=dict(tensors or self.tensors),
                       arrays=dict(arrays if arrays is not None else self.arrays))

    def op_inputs(self, op: Op) -> tuple[str, ...]:
        return (op.a, op.b) if isinstance(op, Add) else (op.input,)

    def validate(self) -> None:
        """Topological order, known tensors, array keys present with the right shapes."""
        seen = {self.input}
        for op in self.ops:
            for t in self.op_inputs(op):
                if t not in seen:
                    raise ValueError(f"op {op.name} reads {t} before it is produced")
            if op.output in seen or op.output not in self.tensors:
                raise ValueError(f"op {op.name} output {op.output} is unknown or written twice")
            seen.add(op.output)
            for key in (getattr(op, "weight", None), getattr(op, "bias", None), getattr(op, "scale_mult", None)):
                if key is not None and key not in self.arrays:
                    raise ValueError(f"op {op.name} refers to missing array {key}")
        if self.output not in seen:
            raise ValueError(f"program output {self.output} is never produced")


def po2_weight_ints(codes: np.ndarray) -> np.ndarray:
    """Integer weights of Po2 codes: 0 -> 0, +-c -> +-2^(c-1)."""
    c = codes.astype(np.int64)
    mag = np.where(c != 0, np.left_shift(np.int64(1), np.maximum(np.abs(c) - 1, 0)), 0)
    return np.sign(c) * mag


def rshift_round(v, shift: int):
    """floor(v / 2^shift + 1/2) for shift > 0, v * 2^-shift otherwise (works on int64 arrays)."""
    if shift > 0:
        return (v + (1 << (shift - 1))) >> shift
    return v << (-shift)


def round_const(shift: int) -> int:
    """The rounding constant rshift_round adds before its floor shift: 2^(shift-1), 0 for shift <= 0."""
    return 1 << (shift - 1) if shift > 0 else 0


def csd_digits(m: int) -> list[tuple[int, bool]]:
    """Canonical signed digits of m > 0: [(shift, negative)], fewest nonzero digits (how hardware
    multiplies by the constant `AvgPool.mult`: one term per digit)."""
    out, k = [], 0
    while m:
        if m & 1:
            d = 2 - (m & 3)
            out.append((k, d < 0))
            m -= d
        m >>= 1
        k += 1
    return out


def npu_op(prog: Program) -> "Linear | None":
    """The int8 classifier the programmable NPU runs (the program's output op), or None."""
    op = next((o for o in prog.ops if o.output == prog.output), None)
    return op if isinstance(op, Linear) and op.mode == "int8" else None
