"""Width converters: a stream of S pixels of a row per beat regrouped into G pixels per beat, as
the input stage of the module that wants G (the per-layer lanes of a plan, rtl.plan).

A row of W pixels takes ceil(W / S) source beats and ceil(W / G) module beats; lanes past the
row's end are zero on both sides. One of S and G divides the other:
- narrowing (S = k * G): the source beat is held (S pixels) and handed on as k slices of G; a
  row's last source beat carries only the slices that reach into the row. A new beat is taken
  in the cycle its predecessor's last slice is, so the converter never idles the module.
- widening (G = k * S): k - 1 source beats are collected (k - 1 slices of S pixels) and the
  k-th completes the module beat combinationally; a row's last module beat is completed by the
  row's last source beat, the slices after it zero.
The module's core reads `cin_valid`, `cin_data` and drives `cin_ready`; `cin_ready` never depends
on `cin_valid`, so the converter adds no combinational loop. Its registers are declared on the
module's Net, so they are counted where they are declared (converter_register_bits replays it
for the cost model).
"""
from __future__ import annotations

import numpy as np

from ..errors import UserError
from .emit import Net, lit


def _bits(n: int) -> int:
    return max(1, (n - 1).bit_length())


def convertible(src: int, dst: int) -> bool:
    """Whether a converter from `src` to `dst` pixels per beat is generated (one divides the other)."""
    return src % dst == 0 or dst % src == 0


def check_convertible(name: str, w: int, src: int, dst: int) -> None:
    """One line unless a converter from `src` to `dst` pixels per beat is generated."""
    if not convertible(src, dst):
        raise UserError(f"layer {name}: its input arrives with {src} pixels per beat and it takes {dst}; width "
                        "converters are generated when one divides the other (plan lanes that do)")


def _last_index(net: Net, beats: int, last: int, k: int, jw: int) -> str:
    """The index of the last of k sub-beats in the current beat: k - 1, or `last` - 1 in a row's last
    beat (counted by `cv_b`, declared here when a row has more than one beat)."""
    if beats == 1:
        return lit(last - 1, jw)
    net.reg("cv_b", _bits(beats))
    return f"((cv_b == {lit(beats - 1, _bits(beats))}) ? {lit(last - 1, jw)} : {lit(k - 1, jw)})"


def _joined(head: str, width: int, n: int) -> str:
    """{head, cv_acc slice n - 1, ..., slice 0}: the collected beats below the newest one."""
    return "{" + head + "".join(f", cv_acc[{i * width + width - 1}:{i * width}]" for i in reversed(range(n))) + "}"


def emit_converter(net: Net, w: int, cw: int, src: int, dst: int) -> None:
    """The converter from the module port (in_valid, in_ready, in_data: src pixels of cw bits)
    to the core's cin_valid / cin_data (dst pixels); the core assigns cin_ready."""
    L = net.lines
    nbs, nbd = -(-w // src), -(-w // dst)
    gw = dst * cw
    L += ["wire cin_valid;", "wire cin_ready;", f"wire [{gw - 1}:0] cin_data;"]
    if src > dst:
        k = src // dst
        last_n = nbd - (nbs - 1) * k          # slices of a row's last source beat
        net.reg("cv_buf", src * cw)
        net.reg("cv_full")
        jw = _bits(k)
        net.reg("cv_j", jw)
        L += [f"wire cv_last = cv_j == {_last_index(net, nbs, last_n, k, jw)};",
              "wire cv_take = cv_full & cin_ready;",
              "assign in_ready = ~cv_full | (cv_take & cv_last);",
              "wire cv_load = in_valid & in_ready;",
              "assign cin_valid = cv_full;"]
        if k > 1:
            L.append(f"assign cin_data = cv_buf[cv_j * {gw} +: {gw}];")
        else:
            L.append("assign cin_data = cv_buf;")
        L += ["always @(posedge clk) begin",
              "    if (rst) begin",
              "        cv_full <= 1'b0;",
              f"        cv_j <= {lit(0, jw)};"]
        if nbs > 1:
            L.append(f"        cv_b <= {lit(nbs - 1, _bits(nbs))};")
        L += ["    end else if (cv_load) begin",
              "        cv_full <= 1'b1;",
              f"        cv_j <= {lit(0, jw)};"]
        if nbs > 1:
            L.append(f"        cv_b <= (cv_b == {lit(nbs - 1, _bits(nbs))}) ? {lit(0, _bits(nbs))} : cv_b + 1'b1;")
        L += ["    end else if (cv_take) begin",
              "        if (cv_last) cv_full <= 1'b0;",
              "        else cv_j <= cv_j + 1'b1;",
              "    end",
              "end",
              "always @(posedge clk) if (cv_load) cv_buf <= in_data;"]
        return
    k = dst // src
    sw_ = src * cw
    last_m = nbs - (nbd - 1) * k             # source beats of a row's last module beat
    jw = _bits(k)
    net.reg("cv_acc", (k - 1) * sw_)
    net.reg("cv_j", jw)
    m_here = _last_index(net, nbd, last_m, k, jw)
    full = _joined("in_data", sw_, k - 1)
    if last_m == k:
        data = full
    else:   # a row's last module beat is completed early, the slices after it zero
        short = _joined(f"{lit(0, (k - last_m) * sw_)}, in_data", sw_, last_m - 1)
        data = f"(cv_b == {lit(nbd - 1, _bits(nbd))}) ? {short} : {full}" if nbd > 1 else short
    L += [f"wire cv_end = cv_j == {m_here};",
          "assign cin_valid = in_valid & cv_end;",
          f"assign cin_data = {data};",
          "assign in_ready = ~cv_end | cin_ready;",
          "wire cv_step = in_valid & in_ready;",
          "always @(posedge clk) begin",
          "    if (rst) begin",
          f"        cv_j <= {lit(0, jw)};"]
    if nbd > 1:
        L.append(f"        cv_b <= {lit(0, _bits(nbd))};")
    L += ["    end else if (cv_step) begin",
          f"        cv_j <= cv_end ? {lit(0, jw)} : cv_j + 1'b1;"]
    if nbd > 1:
        L.append(f"        if (cv_end) cv_b <= (cv_b == {lit(nbd - 1, _bits(nbd))}) ? {lit(0, _bits(nbd))} : cv_b + 1'b1;")
    L += ["    end", "end",
          f"always @(posedge clk) if (cv_step & ~cv_end) cv_acc[cv_j * {sw_} +: {sw_}] <= in_data;"]
    if last_m < k and k - 1 > last_m - 1:
        used = set(range(last_m - 1)) if nbd == 1 else set(range(k - 1))
        spare = [f"cv_acc[{i * sw_ + sw_ - 1}:{i * sw_}]" for i in range(k - 1) if i not in used]
        if spare:
            L.append("wire _unused_cv = &{1'b0, " + ", ".join(spare) + "};")


def converter_register_bits(w: int, cw: int, src: int, dst: int) -> int:
    """Flip-flops of the converter emit_converter declares (the cost model's count)."""
    net = Net(emit=False)
    emit_converter(net, w, cw, src, dst)
    return net.reg_bits


def beat_map(w: int, src: int, dst: int) -> np.ndarray:
    """For each module beat of a row (dst pixels), the last source beat of the row (src pixels)
    it needs: how a converter composes with the schedule's need index (rtl.schedule)."""
    nbs, nbd = -(-w // src), -(-w // dst)
    b = np.arange(nbd)
    last_pixel = np.minimum((b + 1) * dst, w) - 1
    return np.minimum(last_pixel // src, nbs - 1).astype(np.int64)


__all__ = ["beat_map", "check_convertible", "convertible", "converter_register_bits", "emit_converter"]
