"""Golden simulator: the IR run batched in torch float64.

Every value of the IR is an integer. float64 represents integers below 2^53 exactly, and sums
of such integers stay exact whatever the summation order as long as every partial sum stays
below 2^53 too. `check_exactness` proves that per op from the interval analysis before any
image runs: for a conv/linear, |partial sum| <= max|bias| + max_o sum|w_o| * max|x|.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from ..ir.intervals import weight_ints, analyze
from ..ir.spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, window_out
from ..progress import bar

EXACT_LIMIT = 2 ** 53
FLOAT32_EXACT_LIMIT = 2 ** 24


def _maxabs(lo: int, hi: int) -> int:
    return max(abs(int(lo)), abs(int(hi)))


def check_exactness(prog: Program) -> dict[str, int]:
    """Return each op's bound on |any intermediate value|; UserError if one reaches 2^53."""
    bounds = {}
    for op in prog.ops:
        if op.acc_lo is None:
            raise ValueError("run interval analysis (hashiflex.ir.intervals.analyze) first")
        if isinstance(op, (Conv, Linear)):
            x = prog.tensors[op.input]
            w = weight_ints(prog, op)
            l1 = max(int(sum(abs(int(v)) for v in row)) if w.dtype == object else int(np.abs(row).sum())
                     for row in w.reshape(w.shape[0], -1))
            b = max((abs(int(v)) for v in prog.arrays[op.bias]), default=0)
            bound = b + l1 * max(_maxabs(x.lo, x.hi), 0)
            if isinstance(op, Linear) and op.mode == "int8":
                bound = max(bound, _maxabs(prog.tensors[op.output].lo, prog.tensors[op.output].hi))
        elif isinstance(op, (AvgPool, AvgPoolWindow)):   # acc * mult, acc the (window) sum
            bound = _maxabs(op.acc_lo, op.acc_hi) * op.mult
        else:
            bound = _maxabs(op.acc_lo, op.acc_hi)
        if bound >= EXACT_LIMIT:
            raise UserError(f"layer {op.name} can reach {bound.bit_length()} bits, beyond float64's exact 53: "
                            f"the golden simulator cannot be exact; use fewer exponent bits")
        bounds[op.name] = bound
    return bounds


class GoldenSimulator:
    """Prepared once per program, then run on batches.

    Each conv/linear runs in float32 when its proven bound is below 2^24 (float32 is then just as
    exact and much faster) and in float64 otherwise; requantization always runs in float64.
    Convs with a kernel larger than 1x1 and groups == 1 always use float64, so no fast-convolution
    algorithm (e.g. Winograd, whose transforms are not integer) can be picked for float32.
    Depthwise convs in float64 are computed as K*K shifted multiply-adds, which torch runs far
    faster than its float64 grouped-conv path. Requantization runs in float32 too when the
    accumulator plus the rounding constant stays below 2^24.
    """

    def __init__(self, prog: Program):
        if any(op.acc_lo is None for op in prog.ops):
            prog = analyze(prog)
        self.prog = prog
        self.bounds = check_exactness(prog)
        self.weights = {}
        # index of the last op reading each tensor, so intermediate tensors are freed early
        self.last_use = {t: i for i, op in enumerate(prog.ops) for t in prog.op_inputs(op)}
        self.dtype = {}
        for op in prog.ops:
            if isinstance(op, (Conv, Linear)):
                wide = isinstance(op, Conv) and op.groups == 1 and self._kernel(op) != (1, 1)
                dt = torch.float32 if self.bounds[op.name] < FLOAT32_EXACT_LIMIT and not wide else torch.float64
                w = torch.from_numpy(weight_ints(prog, op).astype(np.float64)).to(dt)
                b = torch.from_numpy(prog.arrays[op.bias].astype(np.float64)).to(dt)
                m = (torch.from_numpy(prog.arrays[op.scale_mult].astype(np.float64))
                     if isinstance(op, Linear) and op.mode == "int8" else None)
                self.weights[op.name] = (w, b, m)
                self.dtype[op.name] = dt

    def _kernel(self, op: Conv) -> tuple[int, int]:
        return tuple(self.prog.arrays[op.weight].shape[2:])

    def _conv(self, op: Conv, x: torch.Tensor) -> torch.Tensor:
        w, b, _ = self.weights[op.name]
        x = x.to(w.dtype)
        cin = x.shape[1]
        if w.dtype == torch.float32 or op.groups == 1 or op.groups != cin or w.shape[0] != cin:
            return F.conv2d(x, w, b, op.stride, op.padding, 1, op.groups)
        (kh, kw), (sh, sw), (ph, pw) = w.shape[2:], op.stride, op.padding
        xp = F.pad(x, (pw, pw, ph, ph))
        oh, ow = window_out(x.shape[2], x.shape[3], (kh, kw), op.stride, op.padding)
        acc = b.view(1, -1, 1, 1).expand(x.shape[0], -1, oh, ow).clone()
        for ky in range(kh):
            for kx in range(kw):
                patch = xp[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
                acc.addcmul_(patch, w[:, 0, ky, kx].view(1, -1, 1, 1))
        return acc

    def _requant(self, op, acc: torch.Tensor) -> torch.Tensor:
        """clamp(rshift_round(acc, shift)) in place; float64 unless float32 is provably exact."""
        shift = op.shift
        if self.bounds[op.name] + 2 ** max(shift - 1, 0) >= FLOAT32_EXACT_LIMIT:
            acc = acc.to(torch.float64)
        acc = acc.mul_(2.0 ** -shift)
        if shift > 0:
            acc = acc.add_(0.5).floor_()
        return acc.clamp_(op.clamp_lo, op.clamp_hi)

    @torch.no_grad()
    def run(self, images: np.ndarray, keep_all: bool = False) -> dict[str, torch.Tensor]:
        """Run uint8 images [N,C,H,W]; returns the output as float64 tensors of integers. With
        keep_all, every tensor and every op's accumulator (key `<op>.acc`, before requantize)."""
        p = self.prog
        vals = {p.input: torch.from_numpy(np.ascontiguousarray(images)).to(torch.float64)}
        for i, op in enumerate(p.ops):
            if isinstance(op, Conv):
                acc = self._conv(op, vals[op.input])
            elif isinstance(op, Add):
                acc = vals[op.a].to(torch.float64) * 2.0 ** op.align_a + vals[op.b] * 2.0 ** op.align_b
            elif isinstance(op, MaxPool):   # padding is -inf: it never wins, as in the IR
                acc = F.max_pool2d(vals[op.input].to(torch.float64), op.kernel, op.stride, op.padding)
            elif isinstance(op, AvgPoolWindow):   # window sums, zero padding counted (divisor 1)
                acc = F.avg_pool2d(vals[op.input].to(torch.float64), op.kernel, op.stride, op.padding,
                                   count_include_pad=True, divisor_override=1)
            elif isinstance(op, AvgPool):
                acc = vals[op.input].to(torch.float64).sum(dim=(2, 3))
            elif isinstance(op, Linear):
                w, b, m = self.weights[op.name]
                acc = F.linear(vals[op.input].to(w.dtype), w, b).to(torch.float64)
            else:
                raise TypeError(f"unknown op {op!r}")
            if keep_all:
                vals[f"{op.name}.acc"] = acc.clone()
            if isinstance(op, Linear):
                out = acc * m if m is not None else acc
            elif isinstance(op, MaxPool):
                out = acc
            else:
                out = self._requant(op, acc.mul_(op.mult) if isinstance(op, (AvgPool, AvgPoolWindow)) else acc)
            vals[op.output] = out
            if not keep_all:
                for t in p.op_inputs(op):
                    if self.last_use[t] == i:
                        vals.pop(t, None)
        return vals if keep_all else {p.output: vals[p.output]}

    def logits(self, images: np.ndarray, batch_size: int = 500, desc: str = "golden") -> np.ndarray:
        """Integer outputs of the program for all images, as int64."""
        outs = []
        for i in bar(range(0, len(images), batch_size), desc=desc, unit="batch"):
            outs.append(self.run(images[i:i + batch_size])[self.prog.output])
        return torch.cat(outs).to(torch.int64).numpy()


def evaluate_checkpoint(ckpt: str | None, images: np.ndarray, labels: np.ndarray) -> dict:
    """Lower a po2 checkpoint and evaluate it with the golden simulator."""
    from ..ir.build import program_from_checkpoint

    correct = int((GoldenSimulator(program_from_checkpoint(ckpt)).logits(images).argmax(1) == labels).sum())
    return {"accuracy": correct / len(images), "images": int(len(images)), "correct": correct}


def golden_accuracy(q, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of a quantized model computed by lowering it and running the golden simulator."""
    from ..ir.build import program_from_qmodel

    logits = GoldenSimulator(program_from_qmodel(q)).logits(images)
    return float((logits.argmax(1) == labels).mean())
