"""generate_rtl: an analyzed IR Program -> one Verilog file per layer, the primitives, the top
level and manifest.json (spec: docs/architecture.md)."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from dataclasses import dataclass, field

from ..errors import UserError
from ..progress import bar
from ..ir.sharing import AdderGraphs, solve_adder_graphs
from ..ir.spec import Add, AvgPool, Conv, MaxPool, Program
from .common import Module, fifo_register_bits
from .pool import check_maxpool
from .walk import check_rows, columns, kernel_of, windowed
from .convert import check_convertible
from .depths import out_fifo_depths
from .layers import OUT_FIFO_DEPTH, layer_module, stream_bits
from .manifest import FORMAT, VERSION, Block, BlockInput, Manifest, ModuleEntry, Port, PortStream, Shell, SkipFifo, Stream
from .prims import PRIMS_V
from .schedule import hw_ops, hw_outputs, items, skip_fifos

TOP = "hf_top"
SHELL = "hf_top_shell"
SHELL_FILE = f"{SHELL}.v"
PRIMS_FILE = "hf_prims.v"


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "x"


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def plan_lanes(prog: Program, parallelism) -> tuple[dict[str, int], dict[str, int]]:
    """Pixels per beat of every tensor and P (output pixels per cycle) of every layer.

    A stream with G lanes carries G pixels of a row per beat. A conv (or max pool) fed G > 1 lanes
    with column stride s computes P = G / s outputs per cycle, so P follows from the input lanes and
    the strides: the first layer's P (an int `parallelism`, or its entry in the dict) sets the input
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
    lanes = {prog.input: (p0 * first.stride[1] if p0 > 1 else 1) if windowed(first) else 1}
    par = {}
    for op in ops:
        if windowed(op):
            if isinstance(op, MaxPool):
                check_maxpool(op, prog)
            g = lanes[op.input]
            _, _, w = prog.tensors[op.input].shape
            col = columns(op, w, prog.tensors[op.output].shape[2], kernel_of(prog, op)[1], g)
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


def plan_formats(prog: Program, formats: dict[str, tuple[int, int]]) -> tuple[dict[str, int], dict[str, int],
                                                                             dict[str, tuple[int, int]]]:
    """Per-layer lanes (a plan's formats, {op: (G lanes, V rows)} of each op's input): (pixels per
    beat of every tensor as produced, P of every layer, the formats as generated). A conv or max
    pool whose input arrives with other lanes than its G gets a width converter (rtl.convert);
    adds and average pools take their input as it comes; V > 1 only for a stem conv fed by the
    chip input (walk.check_rows). One line for anything the generator does not build."""
    ops = hw_ops(prog)
    missing = [op.name for op in ops if op.name not in formats]
    if missing or len(formats) != len(ops):
        raise UserError(f"the formats do not name exactly this network's hardware layers (first missing: "
                        f"{missing[0] if missing else 'none'}; {len(formats)} given, {len(ops)} layers)")
    for op in ops:
        g, v = formats[op.name]
        if not 1 <= g <= 1 << 14 or not 1 <= v <= 1 << 10:
            raise UserError(f"layer {op.name}: {g} pixels x {v} rows per beat is out of range (1..16384 x 1..1024)")
        if v != 1 and not (op is ops[0] and isinstance(op, Conv) and op.input == prog.input):
            raise UserError(f"layer {op.name}: {v} rows per beat (V > 1) is generated for the first conv only "
                            "(it reads the chip input); plan the other layers with V = 1")
        if v != 1:
            x, y = prog.tensors[op.input].shape, prog.tensors[op.output].shape
            kh, kw = (int(k) for k in prog.arrays[op.weight].shape[2:])
            check_rows(op, x[1], y[1], kh, kw, x[2], g, v)
    lanes = {prog.input: formats[ops[0].name][0]}
    par, made = {}, {}
    for op in ops:
        g = formats[op.name][0]
        made[op.name] = (g, formats[op.name][1])
        if windowed(op):
            if isinstance(op, MaxPool):
                check_maxpool(op, prog)
            _, _, w = prog.tensors[op.input].shape
            if lanes[op.input] != g:
                check_convertible(op.name, w, lanes[op.input], g)
            col = columns(op, w, prog.tensors[op.output].shape[2], kernel_of(prog, op)[1], g)
            lanes[op.output] = par[op.name] = col.out_lanes
            continue
        got = {lanes[t] for t in prog.op_inputs(op)}
        if isinstance(op, (Add, AvgPool)) and got != {g}:
            raise UserError(f"layer {op.name}: its inputs arrive with {sorted(got)} pixels per beat and the plan "
                            f"gives it {g}; width converters are generated in front of convs and max pools only")
        if isinstance(op, Add):
            lanes[op.output] = par[op.name] = g
        else:
            lanes[op.output] = 1
            par[op.name] = g if isinstance(op, AvgPool) else 1
    return lanes, par, made


def _rng(w: int) -> str:
    return f"[{w - 1}:0] " if w > 1 else ""


def top_ports(in_w: int, outs: list[PortStream]) -> list[Port]:
    """Every port of the top level: name, direction, width."""
    ps = [("clk", "input", 1), ("rst", "input", 1), ("in_valid", "input", 1), ("in_ready", "output", 1),
          ("in_data", "input", in_w)]
    for o in outs:
        ps += [(f"{o.port}_valid", "output", 1), (f"{o.port}_ready", "input", 1), (f"{o.port}_data", "output", o.width)]
    return [Port(name=n, direction=d, width=w) for n, d, w in ps]


def stream_fields(prog: Program, t: str, lanes: int, rows: int = 1) -> dict:
    """How tensor t travels on a stream: lanes (pixels of a row per beat), rows per beat (when
    > 1), bits and signedness per channel, beats per image (the fields of manifest.Stream)."""
    tt = prog.tensors[t]
    bits, signed = (8, False) if t == prog.input else (stream_bits(tt), bool(tt.lo < 0))
    return {"tensor": t, "lanes": lanes, "bits": bits, "signed": signed, "beats": items(tt.shape, lanes, rows),
            "shape": list(tt.shape), **({"rows": rows} if rows > 1 else {})}


def port_stream(prog: Program, port: str, t: str, lanes: int, rows: int = 1) -> PortStream:
    f = stream_fields(prog, t, lanes, rows)
    return PortStream(port=port, channels=int(f["shape"][0]), width=lanes * rows * f["shape"][0] * f["bits"], **f)


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


@dataclass
class TopWiring:
    """hf_top's streams: declarations, forks, skip FIFOs and the (valid, ready, data) nets that
    reach every layer input (`edge`), before any layer is instantiated."""
    ports: list[str]
    lines: list[str]
    edge: dict[tuple[str, str], tuple[str, str, str]]
    sid: dict[str, str]
    fifos: list[SkipFifo] = field(default_factory=list)
    reg_bits: int = 0


def emit_modules(prog: Program, ops: list, lanes: dict[str, int], graphs: AdderGraphs | None, out: Path,
                 pipeline: int | None = None, formats: dict[str, tuple[int, int]] | None = None,
                 depths: dict[str, int] | None = None) -> list[Module]:
    """One module file per hardware op (fed its input stream's lanes, through a width converter
    to `formats[op]`'s lanes where that differs; V rows per beat for a stem; the output FIFO
    `depths[op]` deep where rtl.depths needs more than the default), then the primitives."""
    modules = []
    for i, op in enumerate(bar(ops, desc="verilog", unit="layer")):
        solved = graphs.get(op.name) if graphs is not None else None
        src = lanes[prog.op_inputs(op)[0]]
        g, v = (formats or {}).get(op.name, (src, 1))
        m = layer_module(f"hf_l{i:02d}_{_sanitize(op.name)}", op, prog, g, solved, pipeline, src, v,
                         (depths or {}).get(op.name, OUT_FIFO_DEPTH))
        _write(out / f"{m.name}.v", m.text)
        modules.append(m)
    _write(out / PRIMS_FILE, PRIMS_V)
    return modules


def wire_streams(prog: Program, ops: list, lanes: dict[str, int], inp: PortStream, outs: list[PortStream],
                 extra: dict[str, int] | None = None, formats: dict[str, tuple[int, int]] | None = None
                 ) -> TopWiring:
    """Every tensor has one producer stream; its consumers are module ports and top outputs. A
    stream with several consumers goes through an hf_fork; a residual operand that must wait for
    the other goes through a skip FIFO of the schedule's depth."""
    fifo_depths = skip_fifos(prog, lanes, extra, formats)
    sid = {prog.input: "s_in"}
    for i, op in enumerate(ops):
        sid[op.output] = f"s{i:02d}"
    consumers: dict[str, list[tuple[str, str]]] = {t: [] for t in sid}
    for i, op in enumerate(ops):
        ports = (("a", op.a), ("b", op.b)) if isinstance(op, Add) else (("in", op.input),)
        for port, t in ports:
            consumers[t].append((f"u{i:02d}", port))
    for o in outs:
        consumers[o.tensor].append(("top", o.port))
    ports = ["    input wire clk", "    input wire rst", "    input wire in_valid", "    output wire in_ready",
             f"    input wire {_rng(inp.width)}in_data"]
    for o in outs:
        ports += [f"    output wire {o.port}_valid", f"    input wire {o.port}_ready",
                  f"    output wire {_rng(o.width)}{o.port}_data"]
    top = TopWiring(ports, [], {}, sid)
    lines = top.lines
    for t, s in sid.items():
        w = lanes[t] * prog.tensors[t].shape[0] * stream_bits(prog.tensors[t]) if t != prog.input else inp.width
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
            top.reg_bits += n      # one "taken" flag per branch
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
                fb = fifo_register_bits(depth, w)
                top.reg_bits += fb
                top.fifos.append(SkipFifo(add=op.name, operand=port, tensor=t, depth=depth, width=w, register_bits=fb))
                v, r, d = f"{q}_valid", f"{q}_ready", f"{q}_data"
            if who == "top":
                lines += [f"assign {port}_valid = {v};", f"assign {r} = {port}_ready;", f"assign {port}_data = {d};"]
            else:
                top.edge[(who, port)] = (v, r, d)
    return top


def write_top_and_shell(prog: Program, ops: list, modules: list[Module], lanes: dict[str, int], top: TopWiring,
                        out: Path, in_rows: int = 1) -> list[Block]:
    """hf_top.v (the wiring plus one instance per layer) and hf_top_shell.v (the wiring with every
    instance cut out, its streams brought out as ports); returns the shell's blocks."""
    lines, shell_ports, shell_lines, blocks = list(top.lines), list(top.ports), [], []
    for i, (op, m) in enumerate(zip(ops, modules)):
        u = f"u{i:02d}"
        conn = ["    .clk(clk)", "    .rst(rst)"]
        for port in m.ports_in:
            v, r, d = top.edge[(u, port)]
            conn += [f"    .{port}_valid({v})", f"    .{port}_ready({r})", f"    .{port}_data({d})"]
        s = top.sid[op.output]
        conn += [f"    .out_valid({s}_valid)", f"    .out_ready({s}_ready)", f"    .out_data({s}_data)"]
        lines.append(f"{m.name} {u} (\n" + ",\n".join(conn) + "\n);")
        sp, sl = shell_block(u, m, [top.edge[(u, port)] for port in m.ports_in], s)
        shell_ports += sp
        shell_lines += sl
        blocks.append(Block(instance=u, module=m.name, file=f"{m.name}.v", op=op.name,
                            inputs=[BlockInput(port=p, width=w, **stream_fields(
                                prog, t, lanes[t], in_rows if t == prog.input else 1))
                                    for p, w, t in zip(m.ports_in, m.in_bits, prog.op_inputs(op))],
                            out_width=m.out_bits, output=Stream(**stream_fields(prog, op.output, lanes[op.output]))))
    text = (f"// generated by hashiflex.rtl; do not edit\nmodule {TOP} (\n" + ",\n".join(top.ports) + "\n);\n" +
            "\n".join(lines) + "\nendmodule\n")
    _write(out / f"{TOP}.v", text)
    shell = (f"// generated by hashiflex.rtl; do not edit\n// {TOP} with every layer instance cut out: its ports are "
             f"this module's u<NN>_* ports (block-by-block simulation, docs/verification.md)\nmodule {SHELL} (\n" +
             ",\n".join(shell_ports) + "\n);\n" + "\n".join(top.lines + shell_lines) + "\nendmodule\n")
    _write(out / SHELL_FILE, shell)
    return blocks


def module_entry(m: Module, p: int) -> ModuleEntry:
    fields = {"shared": False, "adders_naive": m.adders, "adder_bits_naive": m.adder_bits}
    fields.update(m.info)
    return ModuleEntry(name=m.name, op=m.op, kind=m.kind, file=f"{m.name}.v", P=p, in_width=m.in_bits,
                       out_width=m.out_bits, adders=m.adders, adder_bits=m.adder_bits, register_bits=m.register_bits,
                       cycles_per_image=m.cycles_per_image, **fields)


def generate_rtl(prog: Program, out_dir, parallelism: int | dict[str, int] = 1, share: bool = True,
                 npu=None, graphs: AdderGraphs | None = None, pipeline_levels: int | None = None,
                 formats: dict[str, tuple[int, int]] | None = None) -> Manifest:
    """Write the streaming RTL of `prog` (interval analysis must have run) into out_dir: one .v
    per layer module, hf_prims.v, hf_top.v, hf_top_shell.v and manifest.json (each written to a
    temporary name, then renamed). `parallelism` is the first layer's P (output pixels per cycle)
    as an int, or {layer name: P}; later layers' P follow from the strides (see plan_lanes).
    `graphs`: the adder-sharing pass's result (hashiflex.ir.sharing), instantiated as solved;
    without it, `share` runs the pass here, and share=False gives one tree per output channel.
    `npu` (an rtl.npu.NPUConfig): with an int8 classifier, also the NPU and the chip top hf_chip
    (manifest entry "npu", docs/npu.md); the files above are the same with or without it.
    `pipeline_levels` k: every conv's adder network gets a register after every k adder levels
    (each module's stages are in the manifest; skip FIFOs grow by the stages they must cover).
    `formats` ({op: (G, V)}, a plan's per-layer lanes, rtl.plan) replaces `parallelism`: each
    layer gets its own lanes, with a width converter in front of a conv where they change.
    Returns the manifest (rtl.manifest.Manifest)."""
    if pipeline_levels is not None and not 1 <= pipeline_levels <= 64:
        raise UserError(f"--pipeline-levels must be 1..64 (got {pipeline_levels})")
    if any(op.acc_lo is None for op in prog.ops):
        raise UserError("the program has no interval analysis: run hashiflex.ir.intervals.analyze first")
    empty = [t.name for t in prog.tensors.values() if 0 in t.shape]
    if empty:
        raise UserError(f"tensors with an empty dimension cannot stream: {', '.join(empty)}")
    if formats is not None:
        lanes, par, made = plan_formats(prog, formats)
    else:
        (lanes, par), made = plan_lanes(prog, parallelism), None
    if graphs is None and share:
        graphs = solve_adder_graphs(prog)
    ops = hw_ops(prog)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if made is None:
        made = {op.name: (lanes[prog.op_inputs(op)[0]], 1) for op in ops}
    depths, _ = out_fifo_depths(prog, lanes, made)
    modules = emit_modules(prog, ops, lanes, graphs, out, pipeline_levels, made, depths)
    in_rows = made[ops[0].name][1]
    inp = port_stream(prog, "in", prog.input, lanes[prog.input], in_rows)
    outs = [port_stream(prog, port, t, lanes[t]) for port, t in hw_outputs(prog)]
    top = wire_streams(prog, ops, lanes, inp, outs, {m.op: m.info.get("pipeline_stages", 0) for m in modules},
                       made)
    blocks = write_top_and_shell(prog, ops, modules, lanes, top, out, in_rows)

    cycles = {"input": inp.beats}
    cycles.update({m.op: m.cycles_per_image for m in modules})
    bottleneck = max(cycles, key=lambda k: cycles[k])
    man = Manifest(
        format=FORMAT, version=VERSION, top=TOP, files=[PRIMS_FILE] + [f"{m.name}.v" for m in modules] + [f"{TOP}.v"],
        input=inp, outputs=outs, ports=top_ports(inp.width, outs),
        handshake="valid/ready, one beat per pixel (all channels), raster order; synchronous active-high rst",
        modules=[module_entry(m, par[m.op]) for m in modules], skip_fifos=top.fifos, parallelism=par,
        adders=sum(m.adders for m in modules), adder_bits=sum(m.adder_bits for m in modules),
        shared=graphs is not None,
        adders_naive=sum(m.info.get("adders_naive", m.adders) for m in modules),
        adder_bits_naive=sum(m.info.get("adder_bits_naive", m.adder_bits) for m in modules),
        register_bits=sum(m.register_bits for m in modules) + top.reg_bits,
        expected_cycles_per_image=cycles[bottleneck], bottleneck=bottleneck, out_fifo_depth=OUT_FIFO_DEPTH,
        shell=Shell(top=SHELL, file=SHELL_FILE, blocks=blocks), pipeline_levels=pipeline_levels, sha256={})
    if npu is not None:
        from .chip import emit_npu
        man = man.model_copy(update={"npu": emit_npu(prog, out, man, npu, _write)})
    names = set(man.files) | {SHELL_FILE}
    if man.npu is not None:
        names |= set(man.npu.files) | set(man.npu.shell.files or [])
    man = man.model_copy(update={"sha256": {n: hashlib.sha256((out / n).read_bytes()).hexdigest()
                                            for n in sorted(names)}})
    text = man.to_json()
    man = Manifest.parse(json.loads(text), str(out / "manifest.json"), "this is a bug in hashiflex")
    _write(out / "manifest.json", text)
    return man
