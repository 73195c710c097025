"""`hashiflex synth`: every layer module of a build on ASAP7 cells (Yosys + ABC) and timed by
OpenSTA, beside the cost model's figures (hashiflex.synth, docs/cost.md "Real cells")."""
from __future__ import annotations

import math
import time

from ..errors import UserError
from .common import check_count

DEFAULT_CLOCK_GHZ = 1.0


def _check(args) -> None:
    check_count(args.jobs, "--jobs")
    if not (math.isfinite(args.clock_ghz) and args.clock_ghz > 0):
        raise UserError(f"--clock-ghz must be a number > 0 (got {args.clock_ghz})")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise UserError(f"--timeout must be a number of seconds > 0 (got {args.timeout})")


def _model_areas(build, man) -> dict[str, float]:
    """The cost model's area per layer (um^2), keyed by op name, for the build as generated."""
    from ..cost.design import as_generated, load_build

    prog, man2, graphs = load_build(build)
    d = as_generated(prog, man2, graphs=graphs)
    return {L["name"]: L["area_um2"] for L in d["layers"]}


def _row(r, entry, model_um2) -> dict:
    p = r.path
    return {"module": r.module, "op": entry.op, "adders": entry.adders, "cells": r.cells, "flip_flops": r.flip_flops,
            "area_um2": r.area_um2, "area_by_class_um2": r.area_by_class_um2, "model_area_um2": model_um2,
            "worst_path_ps": p.period_ps if p else None, "arrival_ps": p.arrival_ps if p else None,
            "setup_ps": p.setup_ps if p else None, "start": p.start if p else None, "end": p.end if p else None,
            "worst_arc": p.worst_arc if p else None, "worst_arc_ps": p.worst_arc_ps if p else None,
            "slack_ps": r.slack_ps, "synth_s": r.synth_s, "sta_s": r.sta_s, "peak_rss_mb": r.peak_rss_mb,
            "cached_key": r.key}


def table(rows: list[dict]) -> str:
    out = ["| module | adders | cells | flip-flops | area um^2 (cells) | model um^2 | worst path ps | start -> end |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        wp = f"{r['worst_path_ps']:,.0f}" if r["worst_path_ps"] is not None else "-"
        model = f"{r['model_area_um2']:,.0f}" if r["model_area_um2"] is not None else "-"
        out.append(f"| {r['module']} | {r['adders']:,} | {r['cells']:,} | {r['flip_flops']:,} | {r['area_um2']:,.1f} | "
                   f"{model} | {wp} | {r['start'] or '-'} -> {r['end'] or '-'} |")
    return "\n".join(out)


def run(args):
    from ..synth import build as sb
    from ..synth import liberty
    from ..synth.flow import sta_exe, yosys_exe
    from ..synth.run import synth_all

    _check(args)
    t0 = time.monotonic()
    rtl_dir, man = sb.build_rtl(args.build)
    mods = sb.select(man, args.modules)
    lib = liberty.load(args.liberty)
    yosys_exe(), sta_exe()            # both tools present before any work starts
    period = 1e3 / args.clock_ghz
    jobs = sb.jobs_for(rtl_dir, man, mods, period, flat=not args.hierarchical)
    from_cache: list[str] = []
    results = synth_all(jobs, lib, args.jobs, use_cache=not args.no_cache, timeout=args.timeout,
                        from_cache=from_cache)
    model = _model_areas(args.build, man)
    rows = [_row(r, m, model.get(m.op)) for r, m in zip(results, mods)]
    chip = sb.chip_totals(results)
    # the largest tool process of the modules' own runs (recorded with each result, cached or not)
    peak = max((r.peak_rss_mb for r in results), default=0.0)
    crit = next((r for r in rows if r["module"] == chip.critical_module), None)
    res = {"build": str(args.build), "liberty": lib.corner, "clock_target_ghz": args.clock_ghz,
           "mapping": "hierarchical (each adder shape once)" if args.hierarchical else "flat",
           "modules": rows, "area_um2": chip.area_um2,
           "model_area_um2": sum(r["model_area_um2"] or 0.0 for r in rows),
           "fmax_ghz": chip.fmax_ghz, "critical_module": chip.critical_module,
           "critical_path": {k: crit[k] for k in ("start", "end", "worst_path_ps", "worst_arc", "worst_arc_ps")}
           if crit else None, "failing_modules": chip.failing, "seconds": round(time.monotonic() - t0, 1),
           "peak_tool_rss_mb": round(peak, 1),
           "scope": "layer modules only (hf_top glue and the NPU are not synthesized)"}
    lines = [table(rows), "",
             f"cells: {lib.corner}; {res['mapping']}; ABC mapped for {args.clock_ghz:g} GHz ({period:.0f} ps) with buffering and "
             "sizing; OpenSTA, ideal clock, no wires",
             f"area {chip.area_um2:,.1f} um^2 on cells, model {res['model_area_um2']:,.1f} um^2 "
             f"({len(rows)} layer modules; glue and NPU not synthesized)"]
    if crit:
        lines.append(f"clock: fmax {chip.fmax_ghz:.3f} GHz set by {chip.critical_module} "
                     f"({crit['worst_path_ps']:,.0f} ps from {crit['start']} to {crit['end']}; slowest arc "
                     f"{crit['worst_arc']} {crit['worst_arc_ps']:.0f} ps)")
    if chip.failing:
        lines.append(f"{len(chip.failing)} module(s) miss {args.clock_ghz:g} GHz: {', '.join(chip.failing[:5])}")
    cached = len(from_cache)
    lines.append(f"{res['seconds']:.0f} s ({cached} of {len(results)} modules from the cache); largest tool process "
                 f"{peak:,.0f} MB, {sum(r.synth_s + r.sta_s for r in results):,.0f} s of tool time when synthesized")
    return res, "\n".join(lines)
