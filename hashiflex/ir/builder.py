"""ProgBuilder: hand-built IR Programs with random Po2 weights (any kernel, stride, padding,
requantize shift and clamp), for RTL tests, the cost model's calibration modules and hardware
studies. Building the IR directly (rather than quantizing a torch net) is fast and reaches
corners training never does."""
from __future__ import annotations

import numpy as np

from ..quant.modules import QAvgPool
from .intervals import analyze, pos_neg_sums
from .spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, Tensor, po2_weight_ints, window_out


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _window(k, stride, pad) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(kernel, stride, padding) pairs of a pool; the stride defaults to the kernel."""
    kernel = _pair(k)
    return kernel, _pair(kernel if stride is None else stride), _pair(pad)


class ProgBuilder:
    def __init__(self, shape: tuple[int, int, int], seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.tensors = {"input": Tensor("input", tuple(shape), False, 8, 8, 0, 255)}
        self.ops, self.arrays = [], {}

    def _analyzed(self) -> Program:
        return analyze(Program(dict(self.tensors), tuple(self.ops), "input", self.ops[-1].output, dict(self.arrays)))

    def _range(self, name: str) -> tuple[int, int]:
        t = self._analyzed().tensors[name] if name != "input" else self.tensors[name]
        return t.lo, t.hi

    def conv(self, x: str, cout: int | None = None, k=3, stride=1, pad=None, depthwise=False, shift=None,
             clamp=(0, 255), max_code=4, prune=0.3, bias=200) -> str:
        c, h, w = self.tensors[x].shape
        kh, kw = (k, k) if isinstance(k, int) else k
        sh, sw = (stride, stride) if isinstance(stride, int) else stride
        ph, pw = ((kh // 2, kw // 2) if pad is None else (pad, pad) if isinstance(pad, int) else pad)
        groups = c if depthwise else 1
        cout = c if depthwise else cout
        name = f"conv{len(self.ops)}"
        codes = self.rng.integers(-max_code, max_code + 1, (cout, c // groups, kh, kw))
        codes[self.rng.random(codes.shape) < prune] = 0
        self.arrays[f"{name}.weight"] = codes.astype(np.int8)
        self.arrays[f"{name}.bias"] = self.rng.integers(-bias, bias + 1, cout).astype(np.int64)
        oh, ow = window_out(h, w, (kh, kw), (sh, sw), (ph, pw))
        if shift is None:  # spread the accumulator over the clamp range
            lo, hi = self._range(x)
            pos, neg = pos_neg_sums(po2_weight_ints(codes))
            span = max(max(p * max(hi, 0) - n * max(-lo, 0) for p, n in zip(pos, neg)), 1)
            shift = max(span.bit_length() - (clamp[1] - clamp[0]).bit_length(), 0)
        self.tensors[name] = Tensor(name, (cout, oh, ow), clamp[0] < 0, 8, 0)
        self.ops.append(Conv(name, x, name, f"{name}.weight", f"{name}.bias", (sh, sw), (ph, pw), groups, 0, shift,
                             clamp[0], clamp[1]))
        return name

    def add(self, a: str, b: str, align_a=0, align_b=1, shift=1, clamp=(-128, 127)) -> str:
        name = f"add{len(self.ops)}"
        self.tensors[name] = Tensor(name, self.tensors[a].shape, clamp[0] < 0, 8, 0)
        self.ops.append(Add(name, a, b, name, align_a, align_b, shift, clamp[0], clamp[1]))
        return name

    def pool(self, x: str, clamp=(0, 255)) -> str:
        c, h, w = self.tensors[x].shape
        mult, k = QAvgPool.constants(h * w)
        name = f"pool{len(self.ops)}"
        self.tensors[name] = Tensor(name, (c,), False, 8, 0)
        self.ops.append(AvgPool(name, x, name, int(mult), int(k), clamp[0], clamp[1]))
        return name

    def maxpool(self, x: str, k=2, stride=None, pad=0) -> str:
        """A max pool of x (kernel k, stride defaulting to k, padding never wins): on x's grid."""
        t = self.tensors[x]
        c, h, w = t.shape
        (kh, kw), (sh, sw), (ph, pw) = _window(k, stride, pad)
        name = f"maxpool{len(self.ops)}"
        oh, ow = window_out(h, w, (kh, kw), (sh, sw), (ph, pw))
        self.tensors[name] = Tensor(name, (c, oh, ow), t.signed, t.bits, t.frac)
        self.ops.append(MaxPool(name, x, name, (kh, kw), (sh, sw), (ph, pw)))
        return name

    def avgpool(self, x: str, k=3, stride=None, pad=0, clamp=None) -> str:
        """A windowed average pool of x (avgpool2d: the zero-padded window's sum times the fixed-point
        1/N of QAvgPool.constants(N), N = kh*kw; stride defaulting to k), on x's grid; `clamp`
        defaults to the 8-bit range of x's sign."""
        t = self.tensors[x]
        c, h, w = t.shape
        (kh, kw), (sh, sw), (ph, pw) = _window(k, stride, pad)
        signed = t.signed or self._range(x)[0] < 0
        lo, hi = clamp if clamp is not None else ((-128, 127) if signed else (0, 255))
        mult, shift = QAvgPool.constants(kh * kw)
        name = f"avgpool{len(self.ops)}"
        oh, ow = window_out(h, w, (kh, kw), (sh, sw), (ph, pw))
        self.tensors[name] = Tensor(name, (c, oh, ow), lo < 0, 8, t.frac)
        self.ops.append(AvgPoolWindow(name, x, name, (kh, kw), (sh, sw), (ph, pw), int(mult), int(shift), lo, hi))
        return name

    def linear(self, x: str, cout: int, mode="po2", max_code=5, prune=0.3) -> str:
        c = self.tensors[x].shape[0]
        name = f"fc{len(self.ops)}"
        if mode == "po2":
            codes = self.rng.integers(-max_code, max_code + 1, (cout, c))
            codes[self.rng.random(codes.shape) < prune] = 0
            self.arrays[f"{name}.weight"] = codes.astype(np.int8)
            mult = None
        else:
            self.arrays[f"{name}.weight"] = self.rng.integers(-127, 128, (cout, c)).astype(np.int8)
            self.arrays[f"{name}.scale_mult"] = self.rng.integers(1, 100, cout).astype(np.int64)
            mult = f"{name}.scale_mult"
        self.arrays[f"{name}.bias"] = self.rng.integers(-1000, 1001, cout).astype(np.int64)
        self.tensors[name] = Tensor(name, (cout,), True, 64, 0)
        self.ops.append(Linear(name, x, name, mode, f"{name}.weight", f"{name}.bias", mult, 0))
        return name

    def program(self) -> Program:
        prog = self._analyzed()
        prog.validate()
        return prog


__all__ = ["ProgBuilder"]
