"""Whole designs: a stream format per layer -> totals (cost.model), and a build as generated.

`formats` maps every hardware op to the (G lanes, V rows) per beat of its input stream. The RTL
generates V = 1 and the lanes `rtl.generate.plan_lanes` derives from the first layer's P; other
formats are the model-level extensions of docs/cost.md: V > 1 and per-layer lanes, with a width
converter (a buffer, priced as an array) wherever a consumer's format differs from its producer's.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..ir.sharing import AdderGraphs, load_graphs
from ..ir.spec import Program, npu_op
from ..rtl.common import OUT_FIFO_DEPTH, stream_bits
from ..rtl.convert import convertible, converter_register_bits
from ..rtl.manifest import Manifest, NPUEntry
from ..rtl.npu import NPUCounts
from ..rtl.readback import check_program, find_manifest
from ..rtl.schedule import hw_ops, items, skip_fifos
from ..rtl.walk import windowed
from . import model, storage, tech
from . import npu as npu_cost


def load_build(build) -> tuple[Program, Manifest | None, AdderGraphs | None]:
    """The IR of a build folder and its RTL manifest, or for an IR-only build (--no-rtl) the IR and
    its adder graphs (None when compiled with --no-share), each checked as it is read."""
    from ..ir import serialize

    d = Path(build)
    if not d.is_dir():
        raise UserError(f"build folder {d} does not exist: run 'hashiflex compile --out {d}' first")
    prog = serialize.load(d)
    found = find_manifest(d) if (d / "rtl").is_dir() else None
    if found is not None:   # its counts are what was emitted: the graphs are not needed
        check_program(found[1], prog, found[0] / "manifest.json")
        return prog, found[1], None
    return prog, None, load_graphs(d, prog)


def stream_formats(prog: Program, formats: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
    """The format each tensor is produced in (the input: its first consumer's)."""
    ops = hw_ops(prog)
    out = {prog.input: formats[ops[0].name]}
    for op in ops:
        g, v = formats[op.name]
        out[op.output] = storage.out_format(prog, op, g, v)
    return out


def rtl_formats(prog: Program, parallelism) -> dict[str, tuple[int, int]]:
    """The formats the RTL generates for a first-layer P (rtl.generate.plan_lanes)."""
    from ..rtl.generate import plan_lanes

    lanes, _ = plan_lanes(prog, parallelism)
    return {op.name: (lanes[prog.op_inputs(op)[0]], 1) for op in hw_ops(prog)}


def generates(prog: Program, formats) -> bool:
    """Whether the RTL generator builds these per-layer formats (rtl.generate.plan_formats)."""
    from ..rtl.generate import plan_formats

    try:
        plan_formats(prog, {k: tuple(v) for k, v in formats.items()})
    except UserError:
        return False
    return True


def is_rtl(prog: Program, formats) -> int | None:
    """The first-layer P whose generated RTL has exactly these formats, else None."""
    ops = hw_ops(prog)
    if any(v != 1 for _, v in formats.values()):
        return None
    g0 = formats[ops[0].name][0]
    first = ops[0]
    p = g0 // first.stride[1] if windowed(first) and g0 > 1 else 1
    try:
        return p if rtl_formats(prog, p) == formats else None
    except UserError:
        return None


def converter(prog: Program, t: str, f_in, f_want, name: str = "") -> model.Layer:
    """A width converter of tensor t from format f_in to f_want. V = 1 on both sides with one
    lane count dividing the other: the generator's (rtl.convert), its registers counted by
    emitting it. Otherwise (model only): two beats of the wider format, or whole rows when the
    rows per beat change."""
    c, h, w = prog.tensors[t].shape
    pix = c * stream_bits(prog.tensors[t])
    if f_in[1] == f_want[1] == 1 and convertible(f_in[0], f_want[0]):
        L = model.Layer(name or f"convert:{t}", "converter", f_want[0], 1)
        L.cycles = h * -(-w // f_in[0])     # one source beat per cycle (the module's port)
        L.reg_bits = converter_register_bits(w, pix, f_in[0], f_want[0])
        L.area = {"registers": L.reg_bits * tech.A_REG_BIT, "control": tech.A_MODULE_CONTROL}
        L.energy_pj = h * w * pix * tech.E_FF_BIT    # every pixel written into the buffer once
        return L
    if f_in[1] == f_want[1]:
        words, width = 2, max(f_in[0], f_want[0]) * f_in[1] * pix
    else:
        words, width = max(f_in[1], f_want[1]) + min(f_in[1], f_want[1]), w * pix
    a, e, sram = model.array_cost(words, width, 2 * h * w * pix / width)   # every pixel in and out once
    L = model.Layer(name or f"convert:{t}", "converter", f_want[0], f_want[1])
    L.sram_bits, L.ff_array_bits = (words * width, 0) if sram else (0, words * width)
    L.area, L.energy_pj = {"arrays": a, "control": tech.A_MODULE_CONTROL}, e
    return L


def converter_layers(prog: Program, formats) -> list[model.Layer]:
    """Width converters (model only) where a consumer's format differs from the stream's."""
    made = stream_formats(prog, formats)
    out, seen = [], set()
    for op in hw_ops(prog):
        for t in prog.op_inputs(op):
            f_in, f_want = made[t], formats[op.name]
            if f_in == f_want or len(prog.tensors[t].shape) != 3 or (t, f_want) in seen:
                continue
            seen.add((t, f_want))
            out.append(converter(prog, t, f_in, f_want, f"convert:{t}->{op.name}"))
    return out


def fifo_list(prog: Program, formats, manifest: Manifest | None = None, extra: dict[str, int] | None = None
              ) -> list[dict]:
    """Skip FIFOs: the manifest's, the schedule's (formats the generator builds; `extra`: pipeline
    stages per op), or scaled from the P = 1 ones (model-only formats)."""
    made = stream_formats(prog, formats)
    if manifest is not None:
        fl = [f.model_dump() for f in manifest.skip_fifos]
    elif generates(prog, formats):     # the generator's formats: the schedule's own depths
        lanes = {t: f[0] for t, f in made.items()}
        try:
            deps = skip_fifos(prog, lanes, extra, {op: tuple(f) for op, f in formats.items()})
        except UserError:
            deps = None
        if deps is not None:
            fl = [{"add": a, "operand": p, "depth": d, "tensor": getattr(_op(prog, a), p),
                   "width": lanes[getattr(_op(prog, a), p)] * _pix(prog, getattr(_op(prog, a), p))}
                  for (a, p), d in deps.items()]
        else:
            fl = _scaled_fifos(prog, formats)
    else:
        fl = _scaled_fifos(prog, formats)
    for f in fl:
        t = f.get("tensor") or getattr(_op(prog, f["add"]), f["operand"])
        g, v = made.get(t, (1, 1))
        f["beats_per_image"] = items(prog.tensors[t].shape, g) / v
    return fl


def _op(prog: Program, name: str):
    return next(o for o in prog.ops if o.name == name)


def _pix(prog: Program, t: str) -> int:
    return prog.tensors[t].shape[0] * stream_bits(prog.tensors[t])


_P1_FIFOS: list = [None, None]     # (program, its P = 1 skip FIFO depths)


def _scaled_fifos(prog: Program, formats) -> list[dict]:
    """Model-level formats: the P = 1 depths in pixels, regrouped into beats of G x V pixels
    (the same bits, plus the latency slack per beat)."""
    if _P1_FIFOS[0] is not prog:
        _P1_FIFOS[:] = [prog, skip_fifos(prog, {})]
    out = []
    for (a, p), d in _P1_FIFOS[1].items():
        t = getattr(_op(prog, a), p)
        g, v = formats[a]
        out.append({"add": a, "operand": p, "tensor": t, "depth": max(4, -(-d // (g * v)) + 8),
                    "width": g * v * _pix(prog, t)})
    return out


def out_depths(prog: Program, formats, manifest: Manifest | None = None) -> dict[str, int]:
    """Output FIFO depths beyond the default: the manifest's, or rtl.depths' for formats the
    generator builds (model-only formats keep the default)."""
    if manifest is not None:
        return {m.op: m.out_fifo_depth for m in manifest.modules if m.out_fifo_depth}
    if not generates(prog, formats):
        return {}
    from ..rtl.depths import out_fifo_depths
    from ..rtl.generate import plan_formats

    lanes, _, made = plan_formats(prog, {k: tuple(v) for k, v in formats.items()})
    return out_fifo_depths(prog, lanes, made)[0]


def evaluate(prog: Program, models: list[model.LayerModel], formats, clock_ghz: float, *, pipeline: bool,
             npu: dict | NPUEntry | None = None, manifest: Manifest | None = None) -> dict:
    """Totals of a design. `pipeline`: add the tree pipeline registers the clock needs (model);
    `npu`: {"lanes", "batch"} (sized by the model), or the generator's counts: the manifest's npu
    entry or rtl.npu.NPUCounts (int8 classifier only)."""
    period = 1.0 / clock_ghz if pipeline else None
    depths = out_depths(prog, formats, manifest)
    layers = [m.estimate(*formats[m.op.name], period_ns=period, out_depth=depths.get(m.op.name, OUT_FIFO_DEPTH))
              for m in models]
    cycles = {L.name: L.cycles for L in layers}
    x = prog.tensors[prog.input]
    g0, v0 = formats[models[0].op.name]
    cycles["input"] = -(-x.shape[1] // v0) * -(-x.shape[2] // g0)
    stages = {m.op.name: m.stages() for m in models if m.pipeline_levels}   # as the generator cuts them
    layers += model.skip_fifo_layers(fifo_list(prog, formats, manifest, stages))
    converters = converter_layers(prog, formats)
    layers += converters
    cycles.update({L.name: L.cycles for L in converters if L.cycles})   # a port's beats can be the bottleneck
    nop = npu_op(prog)
    crit = model.critical(models)
    extra = {"rtl_parallelism": is_rtl(prog, formats), "rtl_generated": generates(prog, formats), "classifier": "po2" if nop is None else "int8-npu",
             "clock_critical_layer": crit[0], "clock_fmax_ghz": 1.0 / crit[1], "trees_pipelined": pipeline,
             "formats": {k: list(v) for k, v in formats.items()}}
    if nop is not None:
        n, k = (int(s) for s in prog.arrays[nop.weight].shape)
        fb = model.feat_bits(prog, nop)
        entry = npu if isinstance(npu, (NPUEntry, NPUCounts)) else None
        if npu is None:
            hard = max(cycles.values())
            npu_l = npu_cost.size_npu(n, k, hard, fb)
        elif entry is not None:
            npu_l = npu_cost.npu_estimate(n, k, entry.lanes, entry.batch, fb, entry)
        else:
            npu_l = npu_cost.npu_estimate(n, k, int(npu["lanes"]), int(npu["batch"]), fb)
        layers.append(npu_l)
        cycles["npu"] = npu_l.cycles
        extra["npu"] = {"lanes": npu_l.g, "batch": npu_l.v, "cycles_per_image": npu_l.cycles,
                        "area_mm2": npu_l.area_um2 / 1e6, "multipliers": npu_l.copies,
                        "memory_bits": npu_l.sram_bits, "from_manifest": entry is not None}
    return model.summarize(layers, cycles, clock_ghz, extra)


def clock_for(models, clock_ghz: float | None) -> tuple[float, bool]:
    """(clock, pipelined): the trees' own fmax unless a clock is asked (then pipelined to it)."""
    f = model.fmax_ghz(models)
    if clock_ghz is None:
        return f, False
    if not clock_ghz > 0:
        raise UserError(f"--clock-ghz must be > 0 (got {clock_ghz})")
    return clock_ghz, clock_ghz > f


def as_generated(prog: Program, manifest: Manifest | None, clock_ghz: float | None = None,
                 parallelism: int = 1, graphs: AdderGraphs | None = None) -> dict:
    """The build as generated: the manifest's P and counts (or, for an IR-only build,
    `parallelism` and the adder graphs of the sharing pass, counted as the RTL would emit them)."""
    models = model.models_for(prog, manifest, graphs)
    if manifest is not None:
        formats = manifest.formats()
    else:
        formats = rtl_formats(prog, parallelism)
    clock, pipe = clock_for(models, clock_ghz)
    npu_entry = manifest.npu if manifest is not None else None
    res = evaluate(prog, models, formats, clock, pipeline=pipe, npu=npu_entry, manifest=manifest)
    res["source"] = "manifest" if manifest is not None else ("ir+graphs" if graphs is not None else "ir")
    if manifest is not None:
        res["manifest_cycles_per_image"] = manifest.expected_cycles_per_image
        res["manifest_adders"], res["manifest_adder_bits"] = manifest.adders, manifest.adder_bits
        res["pipeline_levels"] = manifest.pipeline_levels
    return res
