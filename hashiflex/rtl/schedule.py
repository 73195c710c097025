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
from .walk import columns, kernel_of, windowed
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
        if windowed(op):   # a conv or a windowed pool: the same walk
            inner = need(op.input)
            if inner is not None:
                src_g = lanes.get(op.input, 1)
                g, v = formats.get(op.name, (src_g, 1))
                idx = conv_need_index(op, prog.tensors[op.input].shape, prog.tensors[t].shape,
                                      kernel_of(prog, op), g, v)
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

    Both operands descend from a fork tensor f, their nearest common ancestor (an operand itself
    for a skip connection). Item i of the add needs f up to X_i = max(need_a(i), need_b(i)); by
    then operand p's branch can have produced #{j : need_p(j) <= X_i} items, of which the add has
    taken i. An operand whose branch runs ahead (it can produce items before the other operand's
    matching ones, or has less latency) is delayed in a FIFO that holds them all, depth >=
    max_i(#{j : need_p(j) <= X_i} - i), so the fork never blocks while the other branch still
    needs input and the pipeline cannot deadlock; STAGE_LATENCY more per module on the other
    branch, and one per pipeline stage of its adder network (`extra`: {op: stages}; items the fork
    pushes while results ripple through it) plus a small slack keep the fork from stalling in
    steady state, so the add costs no throughput. For a skip connection (need_skip(j) = j) the
    first term is max_i(need_other(i) - i) + 1 and only the skip operand gets a FIFO."""
    depths = {}
    for op in hw_ops(prog):
        if not isinstance(op, Add):
            continue
        f = fork_of(prog, op.a, op.b)
        if f in (op.a, op.b):    # a skip connection: the ancestor operand waits for the branch
            port, other = ("a", op.b) if f == op.a else ("b", op.a)
            n, latency = need_from(prog, f, other, lanes, extra, formats)
            lead = int((n - np.arange(len(n))).max(initial=0))
            depths[(op.name, port)] = lead + 1 + latency + STAGE_LATENCY + SKIP_SLACK
            continue
        check_branches(prog, op, f)
        (na, la), (nb, lb) = (need_from(prog, f, t, lanes, extra, formats) for t in (op.a, op.b))
        depths.update({(op.name, port): d for port, d in branch_fifos(na, la, nb, lb).items()})
    return depths


def branch_fifos(na: np.ndarray, la: int, nb: np.ndarray, lb: int) -> dict[str, int]:
    """{operand port: FIFO depth} of an add whose operands a and b are computed from one fork
    tensor: item i of operand p needs the fork's items up to need_p(i) and comes la / lb cycles
    of latency after it. A port gets a FIFO when its branch can run ahead: it makes items before
    the fork has pushed X_i = max(need_a(i), need_b(i)) beyond the i the add has taken, or it
    has less latency than the other; the depth holds #{j : need_p(j) <= X_i} - i items for every
    i plus the other branch's latency and the slack (skip_fifos)."""
    x = np.maximum(na, nb)                 # items of the fork that item i of the add needs
    i = np.arange(len(x))
    out = {}
    for port, n, lat, other in (("a", na, la, lb), ("b", nb, lb, la)):
        srt = np.sort(n)
        ahead = int((np.searchsorted(srt, x, side="left") - i).max(initial=0))   # made before f[X_i]
        if ahead <= 0 and lat >= other:
            continue    # this branch never runs ahead: its items are taken as they come
        hold = int((np.searchsorted(srt, x, side="right") - i).max(initial=1))
        out[port] = hold + other + STAGE_LATENCY + SKIP_SLACK
    return out


def ancestors(prog: Program, t: str) -> set[str]:
    """The tensors `t` is computed from, `t` included."""
    producer = {op.output: op for op in prog.ops}
    seen, todo = set(), [t]
    while todo:
        u = todo.pop()
        if u not in seen:
            seen.add(u)
            if u in producer:
                todo += list(prog.op_inputs(producer[u]))
    return seen


def fork_of(prog: Program, a: str, b: str) -> str:
    """The nearest common ancestor of tensors a and b: the latest tensor in stream order that both
    are computed from (a itself when a feeds b)."""
    common = ancestors(prog, a) & ancestors(prog, b)
    order = [prog.input] + [op.output for op in prog.ops]
    return max(common, key=order.index)


def check_branches(prog: Program, add: Add, f: str) -> None:
    """One line unless both operands of `add` are computed from the fork f alone (every op on the
    way reads only tensors computed from f), the two-branch residuals the schedule sizes."""
    from_f = {f}
    for op in prog.ops:     # topological: the tensors computed from f
        if any(i in from_f for i in prog.op_inputs(op)):
            from_f.add(op.output)
    producer = {op.output: op for op in prog.ops}
    for t in (add.a, add.b):
        for u in sorted(ancestors(prog, t) & from_f - {f}):
            stray = [i for i in prog.op_inputs(producer[u]) if i not in from_f]
            if stray:
                raise UserError(f"residual add {add.name}: its operands' branches fork from {f}, but layer "
                                f"{producer[u].name} also reads {stray[0]}; only residuals whose two branches start "
                                f"at one tensor are supported in RTL")
