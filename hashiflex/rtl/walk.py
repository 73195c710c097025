"""The walks of a conv's (and a windowed pool's) traversal: how its steps cover the columns of a row
(lanes G per beat) and the rows of an image (one row per step, or V rows per beat for a stem),
the geometry shared by the generator (rtl/window.py), the schedule (rtl/schedule.py) and the cost
model (cost/storage.py).
See docs/architecture.md, "Per-layer parallelism P (lanes)"."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..ir.spec import AvgPoolWindow, Conv, MaxPool, Program


def windowed(op) -> bool:
    """Ops that walk a window over their input: a conv, a max pool and a windowed average pool (the
    conv's traversal with a comparator tree, or a window sum and a constant multiply, instead of the
    conv's adders, rtl/pool.py). Everything geometric treats them alike."""
    return isinstance(op, (Conv, MaxPool, AvgPoolWindow))


def kernel_of(prog: Program, op) -> tuple[int, int]:
    """(KH, KW) of a windowed op: a conv's weight shape, a pool's kernel."""
    if isinstance(op, (MaxPool, AvgPoolWindow)):
        return int(op.kernel[0]), int(op.kernel[1])
    kh, kw = prog.arrays[op.weight].shape[2:]
    return int(kh), int(kw)


@dataclass(frozen=True)
class Columns:
    """How a conv walks the columns of one padded row.

    lanes == 1: one padded column per step (any stride), outputs where the window's right edge
    lands on ox*sw + kw - 1. lanes G > 1 (sw divides G): each step shifts in a chunk of G
    columns, image columns [c*G + a, c*G + a + G) for chunk c (0 <= a < G), and computes
    P = G / sw outputs, ox in [c*P, c*P + P), lane k from window columns starting at
    k*sw + lead. Chunk c consumes input beat c + (a > 0). Window column j of chunk c is image
    column c*G + a - (kw - 1) + j.

    Three walks, the first that fits:
    - a = kw - sw - pw = 0: chunk c is beat c and the kw - 1 columns left of chunk 0 are all
      padding, so the window's left margin is zeroed at a row's first step (`pad_left`) instead
      of being shifted in by priming steps: ceil(W / G) steps per row.
    - a > 0 and one beat holds the whole row (G >= W, one output beat): chunk 0 is the beat, the
      left margin is padding and the `extra` = a columns right of the beat are padding too (zero
      taps): one step per row.
    - otherwise chunks are realigned by a columns (`hold`), with ceil((kw - sw) / G) priming
      steps (`first`) before chunk 0."""
    lanes: int
    steps: int
    first: int          # chunk index of step 0 (lanes > 1)
    a: int
    out_lanes: int
    nb: int             # input beats per row
    nob: int            # output beats per row
    lead: int = 0       # window column of lane 0's leftmost tap
    pad_left: bool = False   # the left margin (window columns < kw - 1) is zero at chunk 0
    extra: int = 0      # zero window columns right of the registers (padding past a one-beat row)

    def consumes(self, t: int) -> bool:
        b = t + self.first + (self.a > 0)
        return 0 <= b < self.nb

    def outputs(self, t: int) -> bool:
        return 0 <= t + self.first < self.nob

    def beat_of_step(self, t: int) -> int:
        return t + self.first + (self.a > 0)


def columns(op: Conv, w: int, ow: int, kw: int, lanes: int) -> Columns:
    sw, pw = op.stride[1], op.padding[1]
    if lanes == 1:
        wt = max(pw + w, (ow - 1) * sw + kw)
        return Columns(1, wt, 0, 0, 1, w, ow)
    a = kw - sw - pw
    if lanes % sw or not 0 <= a < lanes:
        raise UserError(f"layer {op.name}: {lanes} pixels per beat do not fit a {kw}-wide kernel with stride {sw} "
                        f"and padding {pw} (need the stride to divide the lanes and 0 <= kw - stride - pad < lanes)")
    p = lanes // sw
    nb, nob = -(-w // lanes), -(-ow // p)
    if a == 0 and kw > sw:     # chunk c is beat c; the margin left of chunk 0 is padding
        return Columns(lanes, max(nob, nb), 0, 0, p, nb, nob, sw - 1, True)
    if a > 0 and nb == 1 and nob == 1:    # one beat per row: padding on both sides
        return Columns(lanes, 1, 0, 0, p, nb, nob, kw - 1 - pw, True, a)
    first = -(-(kw - sw) // lanes) if kw > sw else 0
    last = max(nob - 1, nb - 1 - (a > 0))
    return Columns(lanes, last + first + 1, -first, a, p, nb, nob, sw - 1)


def row_walk(op: Conv, h: int, oh: int, kh: int, lanes: int) -> tuple[int, int]:
    """(ht, y0): the padded rows [0, ht) of the traversal and the first one stepped through. With
    lanes > 1 the top padding rows that come before the first output row are skipped: the line
    buffers' stale rows are masked to zero where the window reaches above the image, so an
    image takes ht - y0 rows of steps (P = 1 modules keep y0 = 0)."""
    ht = max(op.padding[0] + h, (oh - 1) * op.stride[0] + kh)
    return ht, (min(op.padding[0], kh - 1) if lanes > 1 else 0)


def check_rows(op: Conv, h: int, oh: int, kh: int, kw: int, w: int, lanes: int, rows: int) -> int:
    """Rows of steps per image of a conv fed `rows` > 1 image rows per beat, or a one-line
    UserError. Generated (a stem's walk): rows == row stride, kh - stride - pad == 0 along rows
    (the kh - 1 rows above the first beat are padding), kh - 1 <= rows, a column walk without
    realignment; each step takes one beat of `rows` rows and emits one output row."""
    sh, ph = op.stride[0], op.padding[0]
    if rows != sh or kh - sh - ph != 0 or kh - 1 > rows:
        raise UserError(f"layer {op.name}: {rows} rows per beat are generated for a conv whose row stride is "
                        f"{rows} with kernel - stride - pad = 0 along rows (a 3x3/pad 1/stride 2 stem takes 2); "
                        f"this one has kernel {kh}, stride {sh}, pad {ph}")
    if lanes > 1 and columns(op, w, -(-w // op.stride[1]), kw, lanes).a:
        raise UserError(f"layer {op.name}: rows per beat need a column walk without realignment "
                        f"(kernel - stride - pad = 0 along columns)")
    return max(oh, -(-h // rows))


