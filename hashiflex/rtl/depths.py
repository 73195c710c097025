"""Output FIFO depths: deep enough that no module's output FIFO costs the pipeline throughput.

Every module emits through a FIFO (common.OUT_FIFO_DEPTH = 2 words by default) after its output
register. A conv (or max pool: the same walk) consumer does not take input on some steps: its
padding rows and columns and, at an image boundary, the bottom padding rows of one image back to
back with the top of the next. If that dead run outlasts its producer's idle gap, the producer's
2-word FIFO fills and the producer stalls: Verilator then measures a few cycles per image more
than the slowest module's figure (2 on the small-po2 plan's stem, 196 -> 198).

Here each producer -> conv consumer edge is simulated cycle by cycle, both walking their own step
patterns (the generator's masks, window.step_flags), the producer free-running (its input always
there, its worst case) and the consumer never blocked downstream, with the handshake of the RTL:
the producer's output register and a FIFO of `depth` words (push when not full, pop when the
consumer's step takes input). The depth is the smallest >= 2 whose steady-state period is at
most the design's cycles per image, so the edge costs no throughput; it is 2 wherever that
already holds. Edges into adds and average pools (which take a beat on every step) and skip-FIFO
operands (sized by the schedule) are not constrained here. Widening converters buffer their own
beats and are modelled as takes on the module's steps.

Scale (measured): an edge whose producer's slack covers the consumer's longest idle run is not
simulated, so the whole pass takes 1-3 ms on the MobileNetV2-224 4 M plan and on small-po2 (P = 1
and its plan); one simulated edge (6 images of the small-po2 stem, 841 cycles each) takes 2 ms.
"""
from __future__ import annotations

import numpy as np

from ..ir.spec import Add, AvgPool, Program
from .common import OUT_FIFO_DEPTH
from .schedule import hw_ops, items
from .walk import windowed
from .window import plan_conv, step_flags

MAX_DEPTH = 64


def _pattern(prog: Program, op, fmt: tuple[int, int], src: int) -> tuple[np.ndarray, np.ndarray]:
    """(takes, emits) per step of one image: input beats of the module's port, output beats."""
    g, v = fmt
    if windowed(op):   # a conv or a windowed pool: the walk's own masks
        p = plan_conv(op, prog, g, src, v)
        takes, emits = step_flags(p)
        if p.src_lanes > g:    # narrowing: the port gives a beat when the first of its slices is taken
            k = p.src_lanes // g
            per_row = -(-p.w // g)
            idx = np.cumsum(takes) - 1          # module beat index of each taking step
            takes = takes & ((idx % per_row) % k == 0)
        return takes, emits
    n = items(prog.tensors[prog.op_inputs(op)[0]].shape, g)
    emits = np.ones(n, bool) if isinstance(op, Add) else np.eye(1, n, n - 1, dtype=bool)[0]
    return np.ones(n, bool), emits


def _period(emits: np.ndarray, takes: np.ndarray, depth: int, images: int = 6) -> float:
    """Steady-state cycles per image of a free-running producer feeding a consumer through its
    output register and a `depth`-word FIFO."""
    tp, tc = len(emits), len(takes)
    sp = sc = 0          # steps done
    wv = False           # the producer's output register holds a beat
    count = 0
    done = []
    cycle = 0
    limit = images * (tp + tc) * 4
    while len(done) < images and cycle < limit:
        o_free = count < depth
        stall = wv and not o_free
        push = wv and o_free
        need = bool(takes[sc % tc])
        c_adv = not need or count > 0
        pop = need and c_adv
        if not stall:
            wv = bool(emits[sp % tp])
            sp += 1
            if sp % tp == 0:
                done.append(cycle)
        elif push:
            wv = False
        if c_adv:
            sc += 1
        count += int(push) - int(pop)
        cycle += 1
    if len(done) < 3:
        return float("inf")
    return (done[-1] - done[1]) / (len(done) - 2)


def _longest_idle(takes: np.ndarray) -> int:
    """The longest run of steps taking no input, around the image boundary too."""
    if takes.all():
        return 0
    if not takes.any():
        return len(takes)
    t = np.roll(takes, -int(np.argmax(takes)))     # start at a taking step: runs do not wrap
    idx = np.flatnonzero(np.append(t, True))
    return int(np.diff(idx).max()) - 1


def out_fifo_depths(prog: Program, lanes: dict[str, int], formats: dict[str, tuple[int, int]]
                    ) -> tuple[dict[str, int], int]:
    """({op: output FIFO depth} for the producers that need more than OUT_FIFO_DEPTH words, the
    design's cycles per image): `lanes` are the streams' pixels per beat as produced, `formats`
    each layer's (G, V) (rtl.generate.plan_formats / plan_lanes)."""
    ops = hw_ops(prog)
    by_out = {op.output: op for op in ops}
    pats = {op.name: _pattern(prog, op, formats[op.name], lanes[prog.op_inputs(op)[0]]) for op in ops}
    first = formats[ops[0].name]
    cycles = max([items(prog.tensors[prog.input].shape, first[0], first[1])] + [len(t) for t, _ in pats.values()])
    out: dict[str, int] = {}
    for cons in ops:
        if not windowed(cons) or cons.input not in by_out:
            continue
        prod = by_out[cons.input]
        if isinstance(prod, AvgPool):
            continue
        emits, takes = pats[prod.name][1], pats[cons.name][0]
        if len(emits) + _longest_idle(takes) <= cycles:    # the producer's slack covers the dead run
            continue
        depth = OUT_FIFO_DEPTH
        while depth < MAX_DEPTH and _period(emits, takes, depth) > cycles:
            depth += 1
        if depth > out.get(prod.name, OUT_FIFO_DEPTH):
            out[prod.name] = depth
    return out, cycles


__all__ = ["MAX_DEPTH", "out_fifo_depths"]
