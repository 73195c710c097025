"""generate_rtl: an analyzed IR Program -> one Verilog file per layer, the primitives, the top
level and manifest.json (spec: docs/architecture.md)."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ..errors import UserError
from ..ir.spec import Add, AvgPool, Conv, Program
from .conv import columns
from .layers import OUT_FIFO_DEPTH, layer_module, stream_bits
from .prims import PRIMS_V
from .schedule import hw_ops, hw_outputs, items, skip_fifos

TOP = "hf_top"
SHELL = "hf_top_shell"
SHELL_FILE = f"{SHELL}.v"
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


def plan_lanes(prog: Program, parallelism) -> tuple[dict[str, int], dict[str, int]]:
    """Pixels per beat of every tensor and P (output pixels per cycle) of every layer.

    A stream with G lanes carries G pixels of a row per beat. A conv fed G > 1 lanes with column
    stride s computes P = G / s outputs per cycle, so P follows from the input lanes and the
    strides: the first layer's P (an int `parallelism`, or its entry in the dict) sets the input
    lanes (P * stride), and every later layer's P is derived; a dict entry that disagrees is an
    error naming the derived value."""
    ops = hw_ops(prog)
    names = [op.name for op in ops]
    asked = {names[0]: int(parallelism)} if isinstance(parallelism, int) else {k: int(v) for k, v in parallelism.items()}
    unknown = sorted(set(asked) - set(names))
    if unknown:
        raise UserError(f"parallelism names unknown layers: {', '.join(unknown)}")
    if any(p < 1 for p in asked.values()):
        raise UserError("parallelism P must be >= 1")
    first = ops[0]
    p0 = asked.get(first.name, 1)
    lanes = {prog.input: (p0 * first.stride[1] if p0 > 1 else 1) if isinstance(first, Conv) else 1}
    par = {}
    for op in ops:
        if isinstance(op, Conv):
            g = lanes[op.input]
            _, _, w = prog.tensors[op.input].shape
            col = columns(op, w, prog.tensors[op.output].shape[2], prog.arrays[op.weight].shape[3], g)
            lanes[op.output] = par[op.name] = col.out_lanes
        elif isinstance(op, Add):
            if lanes[op.a] != lanes[op.b]:
                raise UserError(f"residual add {op.name}: operands arrive with {lanes[op.a]} and {lanes[op.b]} "
                                f"pixels per beat")
            lanes[op.output] = par[op.name] = lanes[op.a]
        else:
            lanes[op.output] = 1
            par[op.name] = lanes[op.input] if isinstance(op, AvgPool) else 1
    bad = {n: (p, par[n]) for n, p in asked.items() if p != par[n]}
    if bad:
        raise UserError("P follows from the first layer's P and the strides; asked (asked, derived): " +
                        ", ".join(f"{n} {a}->{d}" for n, (a, d) in sorted(bad.items())))
    return lanes, par


def _rng(w: int) -> str:
    return f"[{w - 1}:0] " if w > 1 else ""


def _ports(in_w: int, outs: list[dict]) -> list[dict]:
    """Every port of the top level: name, direction, width."""
    ps = [("clk", "input", 1), ("rst", "input", 1), ("in_valid", "input", 1), ("in_ready", "output", 1),
          ("in_data", "input", in_w)]
    for o in outs:
        ps += [(f"{o['port']}_valid", "output", 1), (f"{o['port']}_ready", "input", 1),
               (f"{o['port']}_data", "output", o["width"])]
    return [{"name": n, "direction": d, "width": w} for n, d, w in ps]


def stream_info(prog: Program, t: str, lanes: int) -> dict:
    """How tensor t travels on a stream: lanes (pixels per beat), bits and signedness per channel,
    beats per image."""
    tt = prog.tensors[t]
    bits, signed = (8, False) if t == prog.input else (stream_bits(tt), bool(tt.lo < 0))
    return {"tensor": t, "lanes": lanes, "bits": bits, "signed": signed, "beats": items(tt.shape, lanes),
            "shape": list(tt.shape)}


def shell_block(u: str, m, ins: list[tuple[str, str, str]], s: str) -> tuple[list[str], list[str]]:
    """The ports and assigns that stand in for layer instance `u` in the shell: each of its input
    streams (valid, ready, data nets `ins`) leaves the shell, its output stream `s` enters it."""
    ports, lines = [], []
    for port, w, (v, r, d) in zip(m.ports_in, m.in_bits, ins):
        p = f"{u}_{port}"
        ports += [f"    output wire {p}_valid", f"    input wire {p}_ready", f"    output wire {_rng(w)}{p}_data"]
        lines += [f"assign {p}_valid = {v};", f"assign {r} = {p}_ready;", f"assign {p}_data = {d};"]
    p = f"{u}_out"
    ports += [f"    input wire {p}_valid", f"    output wire {p}_ready", f"    input wire {_rng(m.out_bits)}{p}_data"]
    lines += [f"assign {s}_valid = {p}_valid;", f"assign {p}_ready = {s}_ready;", f"assign {s}_data = {p}_data;"]
    return ports, lines


def generate_rtl(prog: Program, out_dir, parallelism: int | dict[str, int] = 1, share: bool = True,
                 npu=None) -> dict:
    """Write the streaming RTL of `prog` (interval analysis must have run) into out_dir: one .v
    per layer module, hf_prims.v, hf_top.v and manifest.json (each written to a temporary name,
    then renamed). `parallelism` is the first layer's P (output pixels per cycle) as an int, or
    {layer name: P}; later layers' P follow from the strides (see plan_lanes). `share`: pointwise
    and full convs and the Po2 linear emit a shared adder graph (hashiflex.ir.adder_graph, one
    solve per layer) instead of one tree per output channel. `npu` (an rtl.npu.NPUConfig): with an
    int8 classifier, also the NPU and the chip top hf_chip (manifest entry "npu", docs/npu.md); the
    files above are the same with or without it. Returns the manifest."""
    if any(op.acc_lo is None for op in prog.ops):
        raise UserError("the program has no interval analysis: run hashiflex.ir.intervals.analyze first")
    empty = [t.name for t in prog.tensors.values() if 0 in t.shape]
    if empty:
        raise UserError(f"tensors with an empty dimension cannot stream: {', '.join(empty)}")
    lanes, par = plan_lanes(prog, parallelism)
    ops = hw_ops(prog)
    outputs = hw_outputs(prog)
    fifo_depths = skip_fifos(prog, lanes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    modules = []
    for i, op in enumerate(ops):
        m = layer_module(f"hf_l{i:02d}_{_sanitize(op.name)}", op, prog, lanes[prog.op_inputs(op)[0]], share)
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
    in_w = lanes[prog.input] * x.shape[0] * 8
    lines, reg_bits_extra, fifos = [], 0, []
    ports = ["    input wire clk", "    input wire rst", "    input wire in_valid", "    output wire in_ready",
             f"    input wire {_rng(in_w)}in_data"]
    out_ports = []
    for port, t in outputs:
        w = lanes[t] * prog.tensors[t].shape[0] * stream_bits(prog.tensors[t])
        ports += [f"    output wire {port}_valid", f"    input wire {port}_ready", f"    output wire {_rng(w)}{port}_data"]
        tt = prog.tensors[t]
        out_ports.append({"port": port, "tensor": t, "channels": int(tt.shape[0]), "bits": stream_bits(tt),
                          "signed": bool(tt.lo < 0), "width": w, "shape": list(tt.shape),
                          "beats": items(tt.shape, lanes[t]), "lanes": lanes[t]})
    edge: dict[tuple[str, str], tuple[str, str, str]] = {}
    for t, s in sid.items():
        w = lanes[t] * prog.tensors[t].shape[0] * stream_bits(prog.tensors[t]) if t != prog.input else in_w
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
    wiring = list(lines)
    shell_ports, shell_lines, blocks = list(ports), [], []
    for i, (op, m) in enumerate(zip(ops, modules)):
        u = f"u{i:02d}"
        conn = ["    .clk(clk)", "    .rst(rst)"]
        for port in m.ports_in:
            v, r, d = edge[(u, port)]
            conn += [f"    .{port}_valid({v})", f"    .{port}_ready({r})", f"    .{port}_data({d})"]
        s = sid[op.output]
        conn += [f"    .out_valid({s}_valid)", f"    .out_ready({s}_ready)", f"    .out_data({s}_data)"]
        lines.append(f"{m.name} {u} (\n" + ",\n".join(conn) + "\n);")
        sp, sl = shell_block(u, m, [edge[(u, port)] for port in m.ports_in], sid[op.output])
        shell_ports += sp
        shell_lines += sl
        blocks.append({"instance": u, "module": m.name, "file": f"{m.name}.v", "op": op.name,
                       "inputs": [{"port": p, "width": w, **stream_info(prog, t, lanes[t])}
                                  for p, w, t in zip(m.ports_in, m.in_bits, prog.op_inputs(op))],
                       "out_width": m.out_bits, "output": stream_info(prog, op.output, lanes[op.output])})
    top = (f"// generated by hashiflex.rtl; do not edit\nmodule {TOP} (\n" + ",\n".join(ports) + "\n);\n" +
           "\n".join(lines) + "\nendmodule\n")
    _write(out / f"{TOP}.v", top)
    shell = (f"// generated by hashiflex.rtl; do not edit\n// {TOP} with every layer instance cut out: its ports are "
             f"this module's u<NN>_* ports (block-by-block simulation, docs/verification.md)\nmodule {SHELL} (\n" +
             ",\n".join(shell_ports) + "\n);\n" + "\n".join(wiring + shell_lines) + "\nendmodule\n")
    _write(out / SHELL_FILE, shell)

    cycles = {"input": items(x.shape, lanes[prog.input])}
    cycles.update({m.op: m.cycles_per_image for m in modules})
    bottleneck = max(cycles, key=lambda k: cycles[k])
    files = [PRIMS_FILE] + [f"{m.name}.v" for m in modules] + [f"{TOP}.v"]
    manifest = {
        "format": FORMAT, "version": VERSION, "top": TOP, "files": files,
        "input": {"port": "in", "tensor": prog.input, "shape": list(x.shape), "channels": int(x.shape[0]),
                  "bits": 8, "signed": False, "width": in_w, "lanes": lanes[prog.input],
                  "beats": items(x.shape, lanes[prog.input])},
        "outputs": out_ports,
        "ports": _ports(in_w, out_ports),
        "handshake": "valid/ready, one beat per pixel (all channels), raster order; synchronous active-high rst",
        "modules": [{"name": m.name, "op": m.op, "kind": m.kind, "file": f"{m.name}.v", "P": par[m.op],
                     "in_width": m.in_bits, "out_width": m.out_bits, "adders": m.adders, "adder_bits": m.adder_bits,
                     "register_bits": m.register_bits, "cycles_per_image": m.cycles_per_image, "shared": False,
                     "adders_naive": m.adders, "adder_bits_naive": m.adder_bits, **m.info}
                    for m in modules],
        "skip_fifos": fifos,
        "parallelism": par,
        "adders": sum(m.adders for m in modules),
        "adder_bits": sum(m.adder_bits for m in modules),
        "shared": bool(share),
        "adders_naive": sum(m.info.get("adders_naive", m.adders) for m in modules),
        "adder_bits_naive": sum(m.info.get("adder_bits_naive", m.adder_bits) for m in modules),
        "register_bits": sum(m.register_bits for m in modules) + reg_bits_extra,
        "expected_cycles_per_image": cycles[bottleneck],
        "bottleneck": bottleneck,
        "out_fifo_depth": OUT_FIFO_DEPTH,
        "shell": {"top": SHELL, "file": SHELL_FILE, "blocks": blocks},
    }
    if npu is not None:
        from .npu import emit_npu
        manifest["npu"] = emit_npu(prog, out, manifest, npu, _write)
    names = set(manifest["files"]) | {SHELL_FILE} | set(manifest.get("npu", {}).get("files", []))
    names |= set(manifest.get("npu", {}).get("shell", {}).get("files", []))
    manifest["sha256"] = {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in sorted(names)}
    _write(out / "manifest.json", json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest
