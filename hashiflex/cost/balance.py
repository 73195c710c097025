"""Pipeline balancing: the cheapest stream formats (and NPU) that reach a throughput, and the
Pareto front of (images/s, mm^2).

What the RTL generates today: V = 1 everywhere and the lanes `plan_lanes` derives from the first
layer's P (`hashiflex compile --parallelism P`); `rtl_front` sweeps P. What is modelled beyond it
(docs/cost.md): every resolution (the ops reading a feature map of one spatial size) gets its own
format, G pixels of a row x V rows per beat, with a width converter where a stride-2 conv's
output format differs from the next resolution's. Per resolution the cheapest (G, V) meeting the
cycle budget is found from a table computed once; a dynamic program over the chain of
resolutions adds the converters. The int8 classifier's NPU is sized (lanes L, batch B) to keep
pace; a Po2 classifier is hardened (one vector per image, never the bottleneck).
"""
from __future__ import annotations

import math

from ..errors import UserError
from ..ir.sharing import AdderGraphs
from ..ir.spec import Conv, Program, npu_op
from ..rtl.manifest import Manifest
from ..rtl.conv import conv_module
from ..rtl.convert import convertible
from ..rtl.npu import NPUConfig, npu_counts, plan_npu
from ..rtl.walk import windowed
from ..rtl.plan import Plan, plan_from
from ..rtl.schedule import hw_ops
from . import design, model, storage
from . import npu as npu_cost


def _groups(prog: Program) -> list[tuple[tuple, list]]:
    """Ops by the spatial shape of their (first) input, in order of first appearance."""
    out: dict[tuple, list] = {}
    for op in hw_ops(prog):
        shape = prog.tensors[prog.op_inputs(op)[0]].shape
        out.setdefault(tuple(shape[1:]) if len(shape) == 3 else ("vector",), []).append(op)
    return list(out.items())


def _valid(prog: Program, convs: list, g: int, v: int) -> bool:
    """Whether every windowed op (conv, max pool) of a resolution walks G lanes x V rows."""
    try:
        for op in convs:
            storage.conv_shape(op, prog, g, v)
    except UserError:
        return False
    return True


def _axis_options(prog: Program, convs, n: int, axis: int) -> list[int]:
    """Lane counts along an axis (1: columns, G; 0: rows, V) of size n worth trying: the fewest
    lanes for each number of steps per image along that axis."""
    best, opts = None, []
    for k in range(1, n + 3):
        g, v = (k, 1) if axis == 1 else (1, k)
        if not _valid(prog, convs, g, v):
            continue
        if convs:
            shapes = [storage.conv_shape(op, prog, g, v) for op in convs]
            c = max(sh[0].steps if axis == 1 else sh[2] for sh in shapes)
        else:
            c = -(-n // k)
        if best is None or c < best:
            best = c
            opts.append(k)
    return opts


class Balancer:
    def __init__(self, prog: Program, clock_ghz: float | None = None, manifest: Manifest | None = None,
                 max_rows: int | None = None, graphs: AdderGraphs | None = None, pipeline_levels: int | None = None,
                 models: list[model.LayerModel] | None = None, generated: bool = False):
        self.prog = prog
        self.generated = generated   # only what the RTL generates: its converters, V > 1 only at a stem
        self.budget = math.inf       # the cycle budget `cheapest` is solving for (converters must meet it too)
        self.models = models if models is not None else model.models_for(prog, manifest, graphs)
        self.by_name = {m.op.name: m for m in self.models}
        for m in self.models:   # one K for every conv, as the generator pipelines
            if pipeline_levels and isinstance(m.op, Conv):
                m.pipeline_levels = pipeline_levels
        self.clock, self.pipeline = design.clock_for(self.models, clock_ghz)
        self.period = 1.0 / self.clock if self.pipeline else None
        self.groups = _groups(prog)
        self.full: list[dict] = []     # per resolution: every valid (g, v) -> (g, v, cycles, area)
        self.tables = [self._table(shape, ops, max_rows) for shape, ops in self.groups]

    def _table(self, shape, ops, max_rows):
        """[(g, v, cycles, area um^2)] of one resolution, Pareto-pruned on (cycles, area)."""
        if shape == ("vector",):
            return [(1, 1, 1, sum(self.by_name[o.name].estimate(1, 1, self.period).area_um2 for o in ops))]
        convs = [o for o in ops if windowed(o)]
        h, w = shape
        gs = _axis_options(self.prog, convs, w, 1)
        vs = _axis_options(self.prog, convs, h, 0)[: max_rows or None]
        has_input = any(self.prog.op_inputs(o)[0] == self.prog.input for o in ops)
        stem = has_input and len(ops) == 1 and isinstance(ops[0], Conv)
        if self.generated:   # V > 1 only at a stem conv, as the generator walks it (rtl.walk.check_rows)
            vs = [1] + ([ops[0].stride[0]] if stem and ops[0].stride[0] > 1 else [])
        rows = []
        for v in vs:
            for g in gs:
                if not _valid(self.prog, convs, g, v):
                    continue
                if self.generated and v > 1 and not storage.stem_rows(ops[0], self.prog, g, v):
                    continue
                ls = [self.by_name[o.name].estimate(g, v, self.period) for o in ops]
                cyc = max(L.cycles for L in ls)
                if has_input:
                    cyc = max(cyc, -(-h // v) * -(-w // g))
                rows.append((g, v, cyc, sum(L.area_um2 for L in ls)))
        self.full.append({(r[0], r[1]): r for r in rows})
        front, best = [], math.inf
        for r in sorted(rows, key=lambda r: (r[3], r[2])):   # keep rows no cheaper row beats in cycles
            if r[2] < best:
                front.append(r)
                best = r[2]
        return front

    def _crossing(self, gi: int, fmt, nxt) -> float:
        """Converter area between resolution gi (format fmt) and the next one (format nxt); inf
        when the generator cannot build it (generated mode: only in front of convs, and only
        between lane counts one of which divides the other)."""
        area = 0.0
        for o in self.groups[gi][1]:
            if windowed(o) and o.stride != (1, 1):
                f_out = storage.out_format(self.prog, o, *fmt)
                if f_out != nxt:
                    if self.generated and not self._generates(o.output, f_out, nxt):
                        return math.inf
                    converter = design.converter(self.prog, o.output, f_out, nxt)
                    if converter.cycles > self.budget:   # its port's beats alone miss the budget
                        return math.inf
                    area += converter.area_um2
        return area

    def _generates(self, t: str, f_out, nxt) -> bool:
        consumers = [o for o in self.prog.ops if t in self.prog.op_inputs(o)]
        return convertible(f_out[0], nxt[0]) and all(windowed(o) for o in consumers)

    def cheapest(self, target_cycles: float) -> dict[str, tuple[int, int]] | None:
        """Formats of the cheapest design whose every layer (and converter) takes at most
        target_cycles."""
        self.budget = target_cycles
        states = [{}]
        for gi, table in enumerate(self.tables):
            opts = [r for r in table if r[2] <= target_cycles]
            if not opts:
                return None
            opts = sorted(opts, key=lambda r: r[3])[:24]
            if gi:   # also the formats the previous resolution's strided convs hand over (no converter)
                for prev_fmt in states[-1]:
                    for o in self.groups[gi - 1][1]:
                        if windowed(o) and o.stride != (1, 1):
                            r = self.full[gi].get(storage.out_format(self.prog, o, *prev_fmt))
                            if r is not None and r[2] <= target_cycles and r not in opts:
                                opts.append(r)
            nxt = {}
            for r in opts:
                fmt = (r[0], r[1])
                best = None
                for prev_fmt, (cost, path) in states[-1].items() if gi else [(None, (0.0, []))]:
                    c = cost + r[3] + (self._crossing(gi - 1, prev_fmt, fmt) if gi else 0.0)
                    if c < math.inf and (best is None or c < best[0]):
                        best = (c, path + [fmt])
                if best is not None:
                    nxt[fmt] = best
            if not nxt:
                return None
            states.append(nxt)
        _, path = min(states[-1].values(), key=lambda s: s[0])
        by_op = {o.name: fmt for (shape, ops), fmt in zip(self.groups, path) for o in ops}
        return {op.name: by_op[op.name] for op in hw_ops(self.prog)}   # in layer order (a plan's order)

    def evaluate(self, formats, npu: dict | None = None) -> dict:
        return design.evaluate(self.prog, self.models, formats, self.clock, pipeline=self.pipeline, npu=npu)

    def design_for(self, target_cycles: float) -> dict | None:
        f = self.cheapest(target_cycles)
        if f is None:
            return None
        nop = npu_op(self.prog)
        npu = None
        if nop is not None:
            n, k = (int(s) for s in self.prog.arrays[nop.weight].shape)
            try:
                L = npu_cost.size_npu(n, k, target_cycles, model.feat_bits(self.prog, nop))
            except UserError:
                return None     # no NPU keeps pace with this budget
            npu = {"lanes": L.g, "batch": L.v}
        res = self.evaluate(f, npu)
        res["target_cycles"] = target_cycles
        return res

    def min_cycles(self) -> float:
        return max(min(r[2] for r in t) for t in self.tables)

    def front(self, points: int = 24) -> list[dict]:
        """Pareto front of (images/s, mm^2) over cycle budgets from P = 1's down to the minimum
        (at most 1000x faster)."""
        top = max(max(r[2] for r in t) for t in self.tables)
        lo = max(self.min_cycles(), top / 1000)      # beyond 1000x the P = 1 speed is not worth listing
        budgets = sorted({int(round(lo * (top / lo) ** (i / max(points - 1, 1)))) for i in range(points)} | {int(lo)})
        designs = [d for d in (self.design_for(b) for b in budgets) if d is not None]
        return pareto(designs)

    def rtl_front(self) -> list[dict]:
        """Designs the RTL generates today: the first layer's P swept (V = 1, derived lanes)."""
        out, seen = [], set()
        w = self.prog.tensors[self.prog.input].shape[2]
        for p in range(1, w + 1):
            try:
                f = design.rtl_formats(self.prog, p)
            except UserError:
                continue
            key = tuple(sorted(f.items()))
            if key in seen:
                continue
            seen.add(key)
            cyc = max(storage.cycles(self.prog, self.by_name[n].op, *fm) for n, fm in f.items())
            if out and cyc >= out[-1]["cycles_per_image"]:
                continue
            nop = npu_op(self.prog)
            npu = None
            if nop is not None:
                n, k = (int(s) for s in self.prog.arrays[nop.weight].shape)
                L = npu_cost.size_npu(n, k, cyc, model.feat_bits(self.prog, nop))
                npu = {"lanes": L.g, "batch": L.v}
            d = self.evaluate(f, npu)
            d["parallelism"] = p
            out.append(d)
        return pareto(out)


def pareto(designs: list[dict]) -> list[dict]:
    """Designs no other is both faster and smaller than, by images/s."""
    out = []
    for d in sorted(designs, key=lambda d: (-d["images_per_s"], d["area_mm2"])):
        if not out or d["area_mm2"] < out[-1]["area_mm2"] - 1e-12:
            out.append(d)
    return sorted(out, key=lambda d: d["images_per_s"])


def balance(prog: Program, clock_ghz: float | None = None, target_ips: float | None = None,
            area_mm2: float | None = None, manifest: Manifest | None = None, graphs: AdderGraphs | None = None
            ) -> tuple[dict, list[dict], list[dict]]:
    """(chosen design, model Pareto front, RTL Pareto front) for a throughput or area target."""
    if target_ips is not None and area_mm2 is not None:
        raise UserError("give either --target-ips or --area-mm2, not both")
    b = Balancer(prog, clock_ghz, manifest, graphs=graphs)
    front = b.front()
    rtl = b.rtl_front()
    if target_ips is not None:
        if not target_ips > 0:
            raise UserError(f"--target-ips must be > 0 (got {target_ips})")
        budget = b.clock * 1e9 / target_ips
        best = b.design_for(budget)
        if best is None:
            best = max(front, key=lambda d: d["images_per_s"])
            best["target_met"] = False
        else:
            best["target_met"] = True
        best["target_ips"] = target_ips
    else:
        if not area_mm2 > 0:
            raise UserError(f"--area-mm2 must be > 0 (got {area_mm2})")
        best = fastest_within(front, area_mm2, "the model finds")
    return best, front, rtl


def fastest_within(front: list[dict], area_mm2: float, who: str) -> dict:
    """The fastest design of a Pareto front within an area budget (marked with it), or UserError."""
    fit = [d for d in front if d["area_mm2"] <= area_mm2]
    if not fit:
        raise UserError(f"the smallest design {who} needs {front[0]['area_mm2']:.3f} mm^2 (> --area-mm2 {area_mm2})")
    best = max(fit, key=lambda d: d["images_per_s"])
    best["target_area_mm2"] = area_mm2
    return best



def generated_design(prog: Program, clock_ghz: float | None = None, target_ips: float | None = None,
                     area_mm2: float | None = None, graphs: AdderGraphs | None = None) -> tuple[dict, Plan]:
    """The cheapest design the RTL generator builds that reaches target_ips (or the fastest within
    area_mm2) at the clock, and its plan (rtl.plan): per-resolution lanes, V = 1 except a stem
    that may take stride rows per beat, width converters only where the generator makes them (in
    front of convs, lane counts one of which divides the other). A clock above the unpipelined
    trees' fmax pipelines every conv with one K."""
    if (target_ips is None) == (area_mm2 is None):
        raise UserError("give one of --target-ips or --area-mm2")
    models = model.models_for(prog, None, graphs)
    levels = None
    if clock_ghz is not None and clock_ghz > model.fmax_ghz(models):   # pipeline every conv, one K
        levels = model.uniform_levels(models, 1.0 / clock_ghz)
    b = Balancer(prog, clock_ghz, pipeline_levels=levels, models=models, generated=True)
    if target_ips is not None:
        if not target_ips > 0:
            raise UserError(f"--target-ips must be > 0 (got {target_ips})")
        best = b.design_for(b.clock * 1e9 / target_ips)
        if best is None:
            top = max(b.front(), key=lambda d: d["images_per_s"])
            raise UserError(f"no design the RTL generates reaches {target_ips:,.0f} images/s at {b.clock:.3f} GHz: "
                            f"the fastest is {top['images_per_s']:,.0f} ({top['area_mm2']:.3f} mm^2)")
        best["target_ips"] = target_ips
    else:
        best = fastest_within(b.front(), area_mm2, "the RTL generates")
    formats = {k: tuple(v) for k, v in best["formats"].items()}
    npu = best.get("npu")
    if levels:   # the pipeline registers the generator declares for these lanes, counted by emitting them
        for m in b.models:
            if m.pipeline_levels:
                g, v = formats[m.op.name]
                solved = graphs.get(m.op.name) if graphs is not None else None
                emitted = conv_module("count", m.op, prog, g, solved, levels, rows=v).register_bits
                m.pipe_bits = emitted - storage.storage(prog, m.op, g, v, trim=False).total_bits
    keep = {k: best[k] for k in ("target_ips", "target_area_mm2") if k in best}
    counts = None
    if npu is not None:   # price the NPU as the generator builds it (its counted multipliers, registers, memories)
        counts = npu_counts(plan_npu(prog, NPUConfig(npu["lanes"], npu["batch"]), best["cycles_per_image"]))
    best = dict(b.evaluate(formats, counts), **keep)
    best["pipeline_levels"] = levels
    plan = plan_from(formats, npu, b.clock, levels, best)
    return best, plan
