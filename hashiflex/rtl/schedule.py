"""The pipeline schedule: which tensors stream where, how deep each skip FIFO must be, and how
many cycles per image the pipeline needs.

Items are beats: pixels (all channels; P pixels of a row per beat when a stream has P lanes)
in raster order, or whole vectors.
`need(t)[i]` is, for item i of tensor t, the index of the last item of a source tensor s that
the pipeline must have consumed before item i of t can be produced (-1: none). A conv emits
output (oy, ox) at traversal position (oy*sh + kh - 1, ox*sw + kw - 1) of its padded grid, so it
needs every input pixel whose padded position comes before that one in raster order.
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from ..ir.spec import Add, AvgPool, Conv, Linear, Program
from .walk import columns
from .convert import beat_map

SKIP_SLACK = 3
STAGE_LATENCY = 2   # cycles from a module accepting an item to its output FIFO offering one


def hw_ops(prog: Program) -> list:
    """Ops that become hardware: everything but the programmable (int8) classifier."""
    return [op for op in prog.ops if not (isinstance(op, Linear) and op.mode == "int8")]


def hw_outputs(prog: Program) -> list[tuple[str, str]]:
    """(port, tensor) pairs the top level exposes: the feature vector, and the logits when the
    classifier is hardened (Po2)."""
    ops = {op.output: op for op in prog.ops}
    out = ops.get(prog.output)
    if isinstance(out, Linear):
        if out.mode == "int8":
            return [("feat", out.input)]
        return [("feat", out.input), ("logits", out.output)]
    return [("feat", prog.output)]


def conv_need_index(op: Conv, in_shape, out_shape, kernel, lanes: int = 1, rows: int = 1) -> np.ndarray:
    """For each output beat (raster order), the last input beat index it needs (-1: none)."""
    _, h, w = in_shape
    _, oh, ow = out_shape
    kh, kw = kernel
    (sh, sw), (ph, pw) = op.stride, op.padding
    col = columns(op, w, ow, kw, lanes)
    if rows > 1:   # a stem's walk (walk.check_rows): output row r is computed from beat row r
        c = np.arange(col.nob) if lanes > 1 else np.arange(ow) * sw + kw - 1 - pw
        r = np.minimum(np.arange(oh), -(-h // rows) - 1)
        return (r[:, None] * col.nb + np.clip(c, 0, col.nb - 1)[None, :]).reshape(-1).astype(np.int64)
    r = np.arange(oh)[:, None] * sh + kh - 1 - ph
    if lanes == 1:
        c = np.arange(ow)[None, :] * sw + kw - 1 - pw
    else:  # output beat b is computed at chunk b, which has consumed input beat b + (a > 0)
        c = np.arange(col.nob)[None, :] + (col.a > 0)
    r, c = np.broadcast_arrays(r, c)
    nb = col.nb
    need = np.where(r >= h, h * nb - 1,
                    np.where(r < 0, -1, r * nb + np.clip(c, -1, nb - 1)))
    return need.reshape(-1).astype(np.int64)


def items(shape, lanes: int = 1, rows: int = 1) -> int:
    """Beats per image of a tensor streamed with `lanes` pixels of `rows` rows per beat (1 for a
    vector)."""
    return int(-(-shape[1] // rows) * -(-shape[2] // lanes)) if len(shape) == 3 else 1


def need_from(prog: Program, src: str, target: str, lanes: dict[str, int] | None = None,
              extra: dict[str, int] | None = None, formats: dict[str, tuple[int, int]] | None = None
              ) -> tuple[np.ndarray, int] | None:
    """(need(target) in items of src, cycles of latency on the longest path from src to target:
    STAGE_LATENCY per module plus its pipeline stages `extra[op]`), or None when target does not
    depend on src."""
    extra = extra or {}
    producer = {op.output: op for op in prog.ops}
    lanes = lanes or {}
    formats = formats or {}
    first = next((op for op in prog.ops if prog.op_inputs(op)[0] == prog.input), None)
    in_rows = formats.get(first.name, (1, 1))[1] if first is not None and src == prog.input else 1
    memo: dict[str, np.ndarray | None] = {
        src: np.arange(items(prog.tensors[src].shape, lanes.get(src, 1), in_rows), dtype=np.int64)}

    def stages(t: str) -> int:
        op = producer.get(t)
        if t == src or op is None:
            return 0
        return STAGE_LATENCY + extra.get(op.name, 0) + max(stages(i) for i in prog.op_inputs(op))

    memo_stages = stages

    def need(t: str):
        if t in memo:
            return memo[t]
        op = producer.get(t)
        res = None
        if isinstance(op, Conv):
            inner = need(op.input)
            if inner is not None:
                src_g = lanes.get(op.input, 1)
                g, v = formats.get(op.name, (src_g, 1))
                idx = conv_need_index(op, prog.tensors[op.input].shape, prog.tensors[t].shape,
                                      prog.arrays[op.weight].shape[2:], g, v)
                if g != src_g:   # module beats -> the port's beats, through the width converter
                    _, _, w = prog.tensors[op.input].shape
                    per_row, m = -(-w // g), beat_map(w, src_g, g)
                    idx = np.where(idx < 0, -1, (idx // per_row) * -(-w // src_g) + m[idx % per_row])
                res = np.where(idx < 0, -1, inner[np.maximum(idx, 0)])
        elif isinstance(op, Add):
            na, nb = need(op.a), need(op.b)
            res = na if nb is None else nb if na is None else np.maximum(na, nb)
        elif isinstance(op, (AvgPool, Linear)):
            inner = need(op.input)
            if inner is not None:
                res = np.array([inner.max(initial=-1)], dtype=np.int64)
        memo[t] = res
        return res

    res = need(target)
    return None if res is None else (res, memo_stages(target))


def skip_fifos(prog: Program, lanes: dict[str, int] | None = None, extra: dict[str, int] | None = None,
               formats: dict[str, tuple[int, int]] | None = None) -> dict[tuple[str, str], int]:
    """{(add op name, operand port 'a'|'b'): FIFO depth} for every residual add.

    The operand that is an ancestor of the other (the skip branch) is delayed in a FIFO deep
    enough to hold everything the other branch consumes before producing a matching item:
    depth >= max_i(need_other(i) - i) + 1 keeps the fork before the branches from blocking while
    the conv branch still needs input, so the pipeline cannot deadlock; STAGE_LATENCY more per
    module on the branch, and one per pipeline stage of its adder network (`extra`: {op: stages};
    items the fork pushes while results ripple through it) plus a small slack keep the fork from
    stalling in steady state, so the add costs no throughput."""
    depths = {}
    for op in hw_ops(prog):
        if not isinstance(op, Add):
            continue
        for port, skip, other in (("a", op.a, op.b), ("b", op.b, op.a)):
            found = need_from(prog, skip, other, lanes, extra, formats)
            if found is not None:
                n, latency = found
                lead = int((n - np.arange(len(n))).max(initial=0))
                depths[(op.name, port)] = lead + 1 + latency + STAGE_LATENCY + SKIP_SLACK
                break
        else:
            raise UserError(f"residual add {op.name}: neither operand feeds the other; only skip connections "
                            f"(one operand an ancestor of the other) are supported in RTL")
    return depths
