"""generate_rtl: an analyzed IR Program -> one Verilog file per layer, the primitives, the top
level and manifest.json (spec: docs/architecture.md)."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import UserError
from ..ir.spec import Add, Program
from .layers import OUT_FIFO_DEPTH, layer_module, stream_bits
from .prims import PRIMS_V
from .schedule import hw_ops, hw_outputs, items, skip_fifos

TOP = "hf_top"
PRIMS_FILE = "hf_prims.v"
FORMAT = "hashiflex-rtl"
VERSION = 1


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "x"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def _parallelism(prog: Program, parallelism) -> dict[str, int]:
    names = [op.name for op in hw_ops(prog)]
    if isinstance(parallelism, int):
        par = {n: parallelism for n in names}
    else:
        unknown = sorted(set(parallelism) - set(names))
        if unknown:
            raise UserError(f"parallelism names unknown layers: {', '.join(unknown)}")
        par = {n: int(parallelism.get(n, 1)) for n in names}
    bad = {n: p for n, p in par.items() if p != 1}
    if bad:
        raise UserError(f"per-layer parallelism P > 1 is not implemented yet (asked for {bad}); use P = 1")
    return par


def _rng(w: int) -> str:
    return f"[{w - 1}:0] " if w > 1 else ""


def generate_rtl(prog: Program, out_dir, parallelism: int | dict[str, int] = 1) -> dict:
    """Write the streaming RTL of `prog` (interval analysis must have run) into out_dir.

    Returns the manifest (also written to out_dir/manifest.json)."""
    if any(op.acc_lo is None for op in prog.ops):
        raise UserError("the program has no interval analysis: run hashiflex.ir.intervals.analyze first")
    par = _parallelism(prog, parallelism)
    ops = hw_ops(prog)
    outputs = hw_outputs(prog)
    fifo_depths = skip_fifos(prog)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    modules = []
    for i, op in enumerate(ops):
        m = layer_module(f"hf_l{i:02d}_{_sanitize(op.name)}", op, prog)
        _write(out / f"{m.name}.v", m.text)
        modules.append(m)
    _write(out / PRIMS_FILE, PRIMS_V)

    # streams: every tensor has one producer stream; consumers are module ports and top outputs
    sid = {prog.input: "s_in"}
    for i, op in enumerate(ops):
        sid[op.output] = f"s{i:02d}"
    consumers: dict[str, list[tuple[str, str]]] = {t: [] for t in sid}
    for i, op in enumerate(ops):
        ports = (("a", op.a), ("b", op.b)) if isinstance(op, Add) else (("in", op.input),)
        for port, t in ports:
            consumers[t].append((f"u{i:02d}", port))
    for port, t in outputs:
        consumers[t].append(("top", port))

    x = prog.tensors[prog.input]
    in_w = x.shape[0] * 8
    lines, reg_bits_extra, fifos = [], 0, []
    ports = ["    input wire clk", "    input wire rst", "    input wire in_valid", "    output wire in_ready",
             f"    input wire {_rng(in_w)}in_data"]
    out_ports = []
    for port, t in outputs:
        w = prog.tensors[t].shape[0] * stream_bits(prog.tensors[t])
        ports += [f"    output wire {port}_valid", f"    input wire {port}_ready", f"    output wire {_rng(w)}{port}_data"]
        tt = prog.tensors[t]
        out_ports.append({"port": port, "tensor": t, "channels": int(tt.shape[0]), "bits": stream_bits(tt),
                          "signed": bool(tt.lo < 0), "width": w, "shape": list(tt.shape),
                          "beats": items(tt.shape)})
    edge: dict[tuple[str, str], tuple[str, str, str]] = {}
    for t, s in sid.items():
        w = prog.tensors[t].shape[0] * stream_bits(prog.tensors[t]) if t != prog.input else in_w
        cons = consumers[t]
        if t == prog.input:
            src = ("in_valid", "in_ready", "in_data")
        else:
            lines += [f"wire {s}_valid;", f"wire {s}_ready;", f"wire {_rng(w)}{s}_data;"]
            src = (f"{s}_valid", f"{s}_ready", f"{s}_data")
        if not cons:
            lines.append(f"assign {src[1]} = 1'b1;")
            continue
        if len(cons) == 1:
            ends = [src]
        else:
            n = len(cons)
            lines += [f"wire {_rng(n)}{s}_fv;", f"wire {_rng(n)}{s}_fr;", f"wire {_rng(w)}{s}_fd;"]
            lines.append(f"hf_fork #(.N({n}),.W({w})) u_fork_{s} (.clk(clk),.rst(rst),.in_valid({src[0]}),"
                         f".in_ready({src[1]}),.in_data({src[2]}),.out_valid({s}_fv),.out_ready({s}_fr),"
                         f".out_data({s}_fd));")
            reg_bits_extra += n
            ends = [(f"{s}_fv[{k}]" if n > 1 else f"{s}_fv", f"{s}_fr[{k}]" if n > 1 else f"{s}_fr", f"{s}_fd")
                    for k in range(n)]
        for (who, port), (v, r, d) in zip(cons, ends):
            op = ops[int(who[1:])] if who != "top" else None
            depth = fifo_depths.get((op.name, port)) if op is not None else None
            if depth:
                q = f"{s}_q_{who}_{port}"
                lines += [f"wire {q}_valid;", f"wire {q}_ready;", f"wire {_rng(w)}{q}_data;"]
                lines.append(f"hf_fifo #(.W({w}),.DEPTH({depth})) u_skip_{who}_{port} (.clk(clk),.rst(rst),"
                             f".in_valid({v}),.in_ready({r}),.in_data({d}),.out_valid({q}_valid),"
                             f".out_ready({q}_ready),.out_data({q}_data));")
                fb = depth * w + 2 * max(1, (depth - 1).bit_length()) + depth.bit_length()
                reg_bits_extra += fb
                fifos.append({"add": op.name, "operand": port, "tensor": t, "depth": depth, "width": w,
                              "register_bits": fb})
                v, r, d = f"{q}_valid", f"{q}_ready", f"{q}_data"
            if who == "top":
                lines += [f"assign {port}_valid = {v};", f"assign {r} = {port}_ready;", f"assign {port}_data = {d};"]
            else:
                edge[(who, port)] = (v, r, d)
    for i, (op, m) in enumerate(zip(ops, modules)):
        u = f"u{i:02d}"
        conn = ["    .clk(clk)", "    .rst(rst)"]
        for port in m.ports_in:
            v, r, d = edge[(u, port)]
            conn += [f"    .{port}_valid({v})", f"    .{port}_ready({r})", f"    .{port}_data({d})"]
        s = sid[op.output]
        conn += [f"    .out_valid({s}_valid)", f"    .out_ready({s}_ready)", f"    .out_data({s}_data)"]
        lines.append(f"{m.name} {u} (\n" + ",\n".join(conn) + "\n);")
    top = (f"// generated by hashiflex.rtl; do not edit\nmodule {TOP} (\n" + ",\n".join(ports) + "\n);\n" +
           "\n".join(lines) + "\nendmodule\n")
    _write(out / f"{TOP}.v", top)

    cycles = {"input": items(x.shape)}
    cycles.update({m.op: m.cycles_per_image for m in modules})
    bottleneck = max(cycles, key=lambda k: cycles[k])
    files = [PRIMS_FILE] + [f"{m.name}.v" for m in modules] + [f"{TOP}.v"]
    manifest = {
        "format": FORMAT, "version": VERSION, "top": TOP, "files": files,
        "input": {"port": "in", "tensor": prog.input, "shape": list(x.shape), "channels": int(x.shape[0]),
                  "bits": 8, "signed": False, "width": in_w},
        "outputs": out_ports,
        "handshake": "valid/ready, one beat per pixel (all channels), raster order; synchronous active-high rst",
        "modules": [{"name": m.name, "op": m.op, "kind": m.kind, "file": f"{m.name}.v", "P": par[m.op],
                     "in_width": m.in_bits, "out_width": m.out_bits, "adders": m.adders, "adder_bits": m.adder_bits,
                     "register_bits": m.register_bits, "cycles_per_image": m.cycles_per_image, **m.info}
                    for m in modules],
        "skip_fifos": fifos,
        "parallelism": par,
        "adders": sum(m.adders for m in modules),
        "adder_bits": sum(m.adder_bits for m in modules),
        "register_bits": sum(m.register_bits for m in modules) + reg_bits_extra,
        "expected_cycles_per_image": cycles[bottleneck],
        "bottleneck": bottleneck,
        "out_fifo_depth": OUT_FIFO_DEPTH,
    }
    _write(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
