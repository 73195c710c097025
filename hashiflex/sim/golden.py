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
from ..ir.intervals import _weight_ints, analyze
from ..ir.spec import Add, AvgPool, Conv, Linear, Program
from ..progress import bar

EXACT_LIMIT = 2 ** 53


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
            w = _weight_ints(prog, op)
            l1 = max(int(sum(abs(int(v)) for v in row)) if w.dtype == object else int(np.abs(row).sum())
                     for row in w.reshape(w.shape[0], -1))
            b = max((abs(int(v)) for v in prog.arrays[op.bias]), default=0)
            bound = b + l1 * max(_maxabs(x.lo, x.hi), 0)
            if isinstance(op, Linear) and op.mode == "int8":
                bound = max(bound, _maxabs(prog.tensors[op.output].lo, prog.tensors[op.output].hi))
        elif isinstance(op, AvgPool):
            bound = _maxabs(op.acc_lo, op.acc_hi) * op.mult
        else:
            bound = _maxabs(op.acc_lo, op.acc_hi)
        if bound >= EXACT_LIMIT:
            raise UserError(f"layer {op.name} can reach {bound.bit_length()} bits, beyond float64's exact 53: "
                            f"the golden simulator cannot be exact; use fewer exponent bits")
        bounds[op.name] = bound
    return bounds


class GoldenSimulator:
    """Prepared once per program (weights as float64 tensors), then run on batches."""

    def __init__(self, prog: Program):
        if any(op.acc_lo is None for op in prog.ops):
            prog = analyze(prog)
        self.prog = prog
        self.bounds = check_exactness(prog)
        self.weights = {}
        # index of the last op reading each tensor, so intermediate tensors are freed early
        self.last_use = {t: i for i, op in enumerate(prog.ops) for t in prog.op_inputs(op)}
        for op in prog.ops:
            if isinstance(op, (Conv, Linear)):
                w = torch.from_numpy(_weight_ints(prog, op).astype(np.float64))
                b = torch.from_numpy(prog.arrays[op.bias].astype(np.float64))
                m = (torch.from_numpy(prog.arrays[op.scale_mult].astype(np.float64))
                     if isinstance(op, Linear) and op.mode == "int8" else None)
                self.weights[op.name] = (w, b, m)

    @staticmethod
    def _requant(acc: torch.Tensor, shift: int, lo: int, hi: int) -> torch.Tensor:
        return torch.clamp(torch.floor(acc * 2.0 ** -shift + 0.5) if shift > 0 else acc * 2.0 ** -shift, lo, hi)

    @torch.no_grad()
    def run(self, images: np.ndarray, keep_all: bool = False) -> dict[str, torch.Tensor]:
        """Run uint8 images [N,C,H,W]; returns the output (and, with keep_all, every tensor) as float64."""
        p = self.prog
        vals = {p.input: torch.from_numpy(np.ascontiguousarray(images)).to(torch.float64)}
        for i, op in enumerate(p.ops):
            if isinstance(op, Conv):
                w, b, _ = self.weights[op.name]
                acc = F.conv2d(vals[op.input], w, b, op.stride, op.padding, 1, op.groups)
                out = self._requant(acc, op.shift, op.clamp_lo, op.clamp_hi)
            elif isinstance(op, Add):
                acc = vals[op.a] * 2.0 ** op.align_a + vals[op.b] * 2.0 ** op.align_b
                out = self._requant(acc, op.shift, op.clamp_lo, op.clamp_hi)
            elif isinstance(op, AvgPool):
                acc = vals[op.input].sum(dim=(2, 3))
                out = self._requant(acc * op.mult, op.shift, op.clamp_lo, op.clamp_hi)
            elif isinstance(op, Linear):
                w, b, m = self.weights[op.name]
                out = F.linear(vals[op.input], w, b)
                if m is not None:
                    out = out * m
            else:
                raise TypeError(f"unknown op {op!r}")
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

    prog = program_from_checkpoint(ckpt)
    logits = GoldenSimulator(prog).logits(images)
    acc = float((logits.argmax(1) == labels).mean())
    return {"accuracy": acc, "images": int(len(images)), "correct": int((logits.argmax(1) == labels).sum())}
