"""Reference interpreter: the IR semantics written plainly in numpy int64 (object arrays when a
layer's values exceed int64). Slow but obviously exact; the fast golden simulator is tested
against it.
"""
from __future__ import annotations

import numpy as np

from ..ir.intervals import weight_ints
from ..ir.spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, rshift_round, window_out


def _requant(acc: np.ndarray, shift: int, lo: int, hi: int) -> np.ndarray:
    return np.clip(rshift_round(acc, shift), lo, hi)


def _conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, op: Conv) -> np.ndarray:
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    (sh, sw), (ph, pw), g = op.stride, op.padding, op.groups
    oh, ow = window_out(h, wd, (kh, kw), op.stride, op.padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    xg = xp.reshape(n, g, cg, h + 2 * ph, wd + 2 * pw)
    wg = w.reshape(g, o // g, cg, kh, kw)
    acc = np.zeros((n, g, o // g, oh, ow), dtype=np.result_type(x, w))
    for ky in range(kh):
        for kx in range(kw):
            patch = xg[:, :, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
            acc = acc + np.einsum("ngchw,goc->ngohw", patch, wg[:, :, :, ky, kx])
    return acc.reshape(n, o, oh, ow) + bias.reshape(1, o, 1, 1)


def _maxpool(x: np.ndarray, op: MaxPool) -> np.ndarray:
    """Max over each window's positions inside the image (padding never wins)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    oh, ow = window_out(h, w, op.kernel, op.stride, op.padding)
    out = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            y0, x0 = oy * sh - ph, ox * sw - pw
            win = x[:, :, max(y0, 0):min(y0 + kh, h), max(x0, 0):min(x0 + kw, w)]
            out[:, :, oy, ox] = win.max(axis=(2, 3))
    return out


def _window_sum(x: np.ndarray, op: AvgPoolWindow) -> np.ndarray:
    """Sum over each zero-padded kh x kw window (padding counts as 0)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = op.kernel, op.stride, op.padding
    oh, ow = window_out(h, w, op.kernel, op.stride, op.padding)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    acc = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            acc = acc + xp[:, :, ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
    return acc


def run_reference(prog: Program, images: np.ndarray) -> dict[str, np.ndarray]:
    """Run the program on uint8 images [N, C, H, W]; return every tensor's integer values."""
    vals = {prog.input: images.astype(np.int64)}
    for op in prog.ops:
        if isinstance(op, Conv):
            acc = _conv(vals[op.input], weight_ints(prog, op), prog.arrays[op.bias], op)
            vals[op.output] = _requant(acc, op.shift, op.clamp_lo, op.clamp_hi)
        elif isinstance(op, Add):
            acc = (vals[op.a] << op.align_a) + (vals[op.b] << op.align_b)
            vals[op.output] = _requant(acc, op.shift, op.clamp_lo, op.clamp_hi)
        elif isinstance(op, MaxPool):
            vals[op.output] = _maxpool(vals[op.input], op)
        elif isinstance(op, AvgPoolWindow):
            acc = _window_sum(vals[op.input], op)
            vals[op.output] = _requant(acc * op.mult, op.shift, op.clamp_lo, op.clamp_hi)
        elif isinstance(op, AvgPool):
            acc = vals[op.input].sum(axis=(2, 3))
            vals[op.output] = _requant(acc * op.mult, op.shift, op.clamp_lo, op.clamp_hi)
        elif isinstance(op, Linear):
            w = weight_ints(prog, op)
            acc = vals[op.input] @ w.T + prog.arrays[op.bias]
            vals[op.output] = acc * prog.arrays[op.scale_mult] if op.mode == "int8" else acc
        else:
            raise TypeError(f"unknown op {op!r}")
    return vals
