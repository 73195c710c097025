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
class MaxPool:
    """y[c, oy, ox] = max of x[c, oy*sh + ky - ph, ox*sw + kx - pw] over the kernel positions inside
    the image (padding is never the maximum). No rounding: y is on x's grid, in x's range."""
    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    acc_lo: int | None = None     # the input's interval (nothing is accumulated)
    acc_hi: int | None = None
    kind: str = field(default="maxpool", init=False)


@dataclass(frozen=True)
class AvgPoolWindow:
    """acc[c, oy, ox] = sum of x[c, oy*sh + ky - ph, ox*sw + kx - pw] over all kh*kw kernel positions,
    padding counted as 0 (PyTorch's count_include_pad: the divisor is always N = kh*kw);
    y = clamp(rshift_round(acc * mult, shift), clamp_lo, clamp_hi), on x's grid. The lowering uses
    it for windows whose N is not a power of two, with (mult, shift) = QAvgPool.constants(N)."""
    name: str
    input: str
    output: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    mult: int
    shift: int
    clamp_lo: int
    clamp_hi: int
    acc_lo: int | None = None     # interval of the window sums (analysis)
    acc_hi: int | None = None
    kind: str = field(default="avgpool2d", init=False)


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


Op = Union[Conv, Add, AvgPool, MaxPool, AvgPoolWindow, Linear]
OP_TYPES = {"conv": Conv, "add": Add, "avgpool": AvgPool, "maxpool": MaxPool, "avgpool2d": AvgPoolWindow,
            "linear": Linear}


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

    def validate(self) -> "Program":
        """Topological order, known tensors, field types and ranges, and every array and tensor
        shape consistent with the ops (ValueError naming the op and the field otherwise)."""
        if not isinstance(self.meta, dict):
            raise ValueError(f"meta must be an object (got {type(self.meta).__name__})")
        for key, t in self.tensors.items():
            if not isinstance(t.name, str) or t.name != key or not t.name:
                raise ValueError(f"tensor {key!r}: its name must be the string it is listed under")
            _check_tensor(t)
        names = [op.name for op in self.ops]
        if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
            raise ValueError("op names must be distinct non-empty strings")
        if self.input not in self.tensors or len(self.tensors[self.input].shape) != 3:
            raise ValueError(f"program input {self.input} must be a [C, H, W] tensor")
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
            _check_op(self, op)
        if self.output not in seen:
            raise ValueError(f"program output {self.output} is never produced")
        return self


def _int(v, what: str, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{what} must be an integer (got {v!r})")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ValueError(f"{what} = {v} is outside [{lo}, {hi}]")


def _check_tensor(t: Tensor) -> None:
    if not isinstance(t.shape, tuple) or len(t.shape) not in (1, 3):
        raise ValueError(f"tensor {t.name}: shape must be [C] or [C, H, W] (got {t.shape!r})")
    for d in t.shape:
        _int(d, f"tensor {t.name}: a dimension", 1, 1 << 20)
    _int(t.bits, f"tensor {t.name}: bits", 1, 64)
    _int(t.frac, f"tensor {t.name}: frac", -1024, 1024)
    if not isinstance(t.signed, bool):
        raise ValueError(f"tensor {t.name}: signed must be true or false")
    for v in (t.lo, t.hi):
        if v is not None:
            _int(v, f"tensor {t.name}: bound")
    if t.lo is not None and t.hi is not None and t.lo > t.hi:
        raise ValueError(f"tensor {t.name}: lo {t.lo} > hi {t.hi}")


def _array(prog: "Program", key: str, shape: tuple, what: str, int8: bool = False) -> np.ndarray:
    a = prog.arrays[key]
    ok = isinstance(a, np.ndarray) and (a.dtype == np.int8 if int8 else a.dtype.kind in "iuO")
    if not ok or tuple(a.shape) != shape:
        raise ValueError(f"{what} {key} must be an {'int8' if int8 else 'integer'} array of shape {list(shape)} "
                         f"(got {getattr(a, 'dtype', type(a))} {list(getattr(a, 'shape', ()))})")
    return a


def _check_op(prog: "Program", op) -> None:
    """One op's fields against its tensors and arrays."""
    out = prog.tensors[op.output].shape
    if isinstance(op, (Conv, Add, AvgPool, AvgPoolWindow)):
        _int(op.shift, f"op {op.name}: shift", -62, 62)
        _int(op.clamp_lo, f"op {op.name}: clamp_lo", -(1 << 62), 1 << 62)
        _int(op.clamp_hi, f"op {op.name}: clamp_hi", -(1 << 62), 1 << 62)
        if op.clamp_lo > op.clamp_hi:
            raise ValueError(f"op {op.name}: clamp_lo {op.clamp_lo} > clamp_hi {op.clamp_hi}")
    if isinstance(op, Conv):
        x = prog.tensors[op.input].shape
        w = prog.arrays[op.weight]
        if len(x) != 3 or getattr(w, "ndim", 0) != 4:
            raise ValueError(f"op {op.name}: a conv needs a [C, H, W] input and a 4-D weight")
        for name, v in (("stride", op.stride), ("padding", op.padding)):
            if not isinstance(v, tuple) or len(v) != 2:
                raise ValueError(f"op {op.name}: {name} must be a pair of integers (got {v!r})")
        for v in (*op.stride, op.groups):
            _int(v, f"op {op.name}: stride / groups", 1, 1 << 16)
        for v in op.padding:
            _int(v, f"op {op.name}: padding", 0, 1 << 16)
        o, kh, kw = w.shape[0], w.shape[2], w.shape[3]
        if x[0] % op.groups or o % op.groups:
            raise ValueError(f"op {op.name}: groups {op.groups} must divide {x[0]} inputs and {o} outputs")
        _array(prog, op.weight, (o, x[0] // op.groups, kh, kw), f"op {op.name}: weight", int8=True)
        _array(prog, op.bias, (o,), f"op {op.name}: bias")
        oh, ow = window_out(x[1], x[2], (kh, kw), op.stride, op.padding)
        if tuple(out) != (o, oh, ow):
            raise ValueError(f"op {op.name}: output shape {list(out)} is not [{o}, {oh}, {ow}]")
    elif isinstance(op, (MaxPool, AvgPoolWindow)):
        x = prog.tensors[op.input].shape
        what = "a max pool" if isinstance(op, MaxPool) else "an average pool"
        for name, v in (("kernel", op.kernel), ("stride", op.stride), ("padding", op.padding)):
            if not isinstance(v, tuple) or len(v) != 2:
                raise ValueError(f"op {op.name}: {name} must be a pair of integers (got {v!r})")
            for d in v:
                _int(d, f"op {op.name}: {name}", 0 if name == "padding" else 1, 1 << 16)
        if len(x) != 3 or any(2 * p > k for p, k in zip(op.padding, op.kernel)):
            raise ValueError(f"op {op.name}: {what} needs a [C, H, W] input and padding at most half its kernel")
        oh, ow = window_out(x[1], x[2], op.kernel, op.stride, op.padding)
        if oh < 1 or ow < 1 or tuple(out) != (x[0], oh, ow):
            raise ValueError(f"op {op.name}: output shape {list(out)} is not [{x[0]}, {oh}, {ow}]")
        if isinstance(op, AvgPoolWindow):
            _int(op.mult, f"op {op.name}: mult", 0, 1 << 40)
    elif isinstance(op, Add):
        a, b = prog.tensors[op.a].shape, prog.tensors[op.b].shape
        if not (a == b == out):
            raise ValueError(f"op {op.name}: operands {list(a)}, {list(b)} and output {list(out)} must agree")
        _int(op.align_a, f"op {op.name}: align_a", 0, 62)
        _int(op.align_b, f"op {op.name}: align_b", 0, 62)
    elif isinstance(op, AvgPool):
        x = prog.tensors[op.input].shape
        if len(x) != 3 or tuple(out) != (x[0],):
            raise ValueError(f"op {op.name}: a pool maps [C, H, W] to [C] (got {list(x)} -> {list(out)})")
        _int(op.mult, f"op {op.name}: mult", 0, 1 << 40)
    elif isinstance(op, Linear):
        x = prog.tensors[op.input].shape
        if op.mode not in ("int8", "po2"):
            raise ValueError(f"op {op.name}: mode must be int8 or po2 (got {op.mode!r})")
        if len(x) != 1 or len(out) != 1:
            raise ValueError(f"op {op.name}: a linear maps [C] to [O]")
        _array(prog, op.weight, (out[0], x[0]), f"op {op.name}: weight", int8=True)
        _array(prog, op.bias, (out[0],), f"op {op.name}: bias")
        if op.mode == "int8":
            if op.scale_mult is None:
                raise ValueError(f"op {op.name}: an int8 linear needs scale_mult")
            _array(prog, op.scale_mult, (out[0],), f"op {op.name}: scale_mult")
    else:
        raise ValueError(f"unknown op {op!r}")
    if hasattr(op, "e_min"):
        _int(op.e_min, f"op {op.name}: e_min", -1024, 1024)


def window_out(h: int, w: int, kernel, stride, padding) -> tuple[int, int]:
    """(OH, OW) of a window (conv or pool) of `kernel` stepped by `stride` over an H x W map padded by
    `padding` on each side: (H + 2 ph - kh) // sh + 1, likewise along W."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


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
    multiplies by the constant `AvgPool.mult` / `AvgPoolWindow.mult`: one term per digit)."""
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
