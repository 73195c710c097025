"""Calibrate the cost model on ASAP7 cells timed by OpenSTA (hashiflex synth's flow).

Timing: the cost model's calibration modules (hashiflex.cost.calibrate: depthwise, pointwise, full
and strided convs at P = 1 and 2, wide exponents, a stem, a residual add, two pools, and five of
them pipelined every K = 2 and 3 levels) are mapped for --timing-ghz (default 5: ABC maps for
speed) and timed by OpenSTA. With --build B (a build already synthesized by `hashiflex synth B`,
read from the cache), B's conv modules that miss --build-ghz join: even manifest indices to the fit,
odd ones held out. The layers of a small MobileNetV2 (mbv2s_*) are held out. T_FA is the carry arc
(not fitted), T_REG the median measured clock-to-output + setup, T_CTRL the slowest control path of
the fit set; T_LEVEL, T_REQUANT and T_SPREAD minimise the worst relative error of the fitted trees
(a linear program); each module's prediction is cost.model.LayerModel.delay_ns with the fitted
constants. Area: every calibration module mapped for --area-ghz (default 1); non-negative least
squares of the cells' area on the model's components (adder carry bits, register bits, flip-flop
array bits; the requantizer kept at its derived value; a per-module control term); the mbv2s_*
layers held out. Prints every module, the fits, and the errors by kind (docs/cost.md, "Real cells").

    python benchmarks/asap7_calibration.py [--out DIR] [--jobs N] [--build B]
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linprog, nnls

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from clock_calibration import cases  # noqa: E402
from hashiflex.cost import tech, timing  # noqa: E402
from hashiflex.synth import liberty  # noqa: E402
from hashiflex.synth.run import Job, ModuleSynth, synth_all  # noqa: E402

AREA_PARTS = ("adders", "requant", "registers", "arrays")
T_FA_PS = 29.0   # ps per ripple bit: FAx1's carry arc (29.3 ps at 2 fF) and the MAJIxp5 carry arcs OpenSTA reports


def area_fit(out: Path, lib, jobs: int, period_ps: float) -> None:
    """Cell area vs the model's components: fit on the calibration set, error on the held-out set."""
    from hashiflex.cost import calibrate

    fit_cases = [c for c in calibrate.calibration_set(out / "area") if c.detail]
    held_cases = calibrate.validation_set(out / "area")
    cs = fit_cases + held_cases
    res = synth_all([Job(c.top, tuple(c.files), period_ps) for c in cs], lib, jobs)

    def parts(c) -> list[float]:
        return [c.detail["area"].get(k, 0.0) for k in AREA_PARTS] + [1.0]

    def requant(c) -> float:   # kept at its derived value (tech.A_REQUANT_BIT): it moves with the adder bits
        return c.detail["area"].get("requant", 0.0)

    a = np.array([parts(c) for c in fit_cases])
    a[:, AREA_PARTS.index("requant")] = 0.0
    y = np.array([r.area_um2 - requant(c) for c, r in zip(fit_cases, res)])
    coef, _ = nnls(a, y)
    coef[AREA_PARTS.index("requant")] = 1.0
    print("\n| module | kind | cells um^2 | fitted model um^2 | error | current model um^2 | error |")
    print("|---|---|---|---|---|---|---|")
    worst = {"fit": 0.0, "held": 0.0}
    for i, (c, r) in enumerate(zip(cs, res)):
        pred = float(np.dot(parts(c), coef))
        e, e0 = pred / r.area_um2 - 1, c.model_um2 / r.area_um2 - 1
        key = "fit" if i < len(fit_cases) else "held"
        worst[key] = max(worst[key], abs(e))
        print(f"| {c.name} | {c.kind}{' (held out)' if key == 'held' else ''} | {r.area_um2:,.1f} | {pred:,.1f} | "
              f"{100 * e:+.1f} % | {c.model_um2:,.1f} | {100 * e0:+.1f} % |")
    scale = dict(zip(AREA_PARTS + ("control",), coef))
    print("\narea fit (scale on each model component; control in um^2 per module): "
          + ", ".join(f"{k} {v:.3f}" for k, v in scale.items()))
    print(f"new constants: A_CARRY_BIT = {tech.A_CARRY_BIT * scale['adders']:.4f}, "
          f"A_REQUANT_BIT = {tech.A_REQUANT_BIT * scale['requant']:.4f}, A_REG_BIT = {tech.A_REG_BIT * scale['registers']:.4f}, "
          f"MEM_FF_FACTOR = {tech.MEM_FF_FACTOR * scale['arrays']:.4f}, A_MODULE_CONTROL = {scale['control']:.2f}")
    print(f"worst area error: fit set {100 * worst['fit']:.1f} % ({len(fit_cases)} modules), held-out "
          f"{100 * worst['held']:.1f} % ({len(held_cases)} modules)")


@dataclass
class Row:
    name: str
    kind: str
    d: int
    w: int
    adders: int          # of one copy (the spread term's A)
    fit: bool
    control: bool        # an add or a pool: its path is the control's, not a tree's
    res: ModuleSynth
    model: object = None  # the cost model's LayerModel: its delay_ns with the fitted constants


def module_facts(files, top: str) -> tuple[int, bool, int | None]:
    """(adders of one copy, is an add or pool, multicycle) from the module's build manifest."""
    from hashiflex.rtl.readback import read_manifest

    man = read_manifest(Path(files[-1]).parent / "manifest.json")
    m = next(m for m in man.modules if m.name == top)
    return max(1, m.adders // m.copies()), m.kind != "conv", m.multicycle


def build_rows(build: Path, lib, period_ps: float) -> list[Row]:
    """The modules of a build already synthesized by `hashiflex synth BUILD --clock-ghz G` (read
    from the cache; nothing is synthesized here) whose worst path misses G, so that ABC mapped them
    for speed as it maps the calibration modules. Modules at an even manifest index join the fit (the
    calibration modules are small: without big ones the fit misses the fan-out of a 5,000-adder
    layer), the others are held out."""
    from hashiflex.cost.design import load_build
    from hashiflex.cost.model import models_for
    from hashiflex.synth.build import jobs_for
    from hashiflex.synth.run import job_key, read_cached

    prog, man, graphs = load_build(build)
    lms = {m.op.name: m for m in models_for(prog, man, graphs)}
    out = []
    for i, (m, job) in enumerate(zip(man.modules, jobs_for(Path(build) / "rtl", man, list(man.modules), period_ps))):
        r = read_cached(job_key(job, lib))
        if r is None or r.path is None or r.path.period_ps <= period_ps or m.kind != "conv":
            continue
        lm = lms[m.op]
        out.append(Row(f"{Path(build).name}:{m.op}", f"{lm.kind} ({m.adders:,} adders)", lm.timing_depth(),
                       lm.network().max_width, lm.fanout(), i % 2 == 0, False, r, lm))
    return out


def minimax_lp(x: np.ndarray, y: np.ndarray, fixed: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """Non-negative coefficients c minimising max_i |(x_i . c + fixed_i) / y_i - 1| (a linear program)."""
    n, k = x.shape
    f = np.zeros(n) if fixed is None else fixed
    cost = np.zeros(k + 1)
    cost[-1] = 1.0
    xs = x / y[:, None]
    a_ub = np.vstack([np.hstack([xs, -np.ones((n, 1))]), np.hstack([-xs, -np.ones((n, 1))])])
    b_ub = np.concatenate([1 - f / y, f / y - 1])
    r = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=[(0, None)] * (k + 1))
    return float(r.x[-1]), r.x[:k]


def stage_features(r: Row) -> list[float]:
    """(adder levels, requantizer 0/1, log4 fan-out) of the stage the measured worst path runs through:
    in a pipelined module (cut every K levels) an inner stage ends in a pipeline register (`*_p`)
    after K levels, the last one holds the levels left over and the requantizer (cost.model)."""
    k = r.model.pipeline_levels if r.model is not None else None
    if k:
        inner = r.res.path.end.split("[")[0].endswith("_p")
        levels, requant = (min(k, r.model.tree_depth()), 0.0) if inner else (r.model.tree_depth() % k, 1.0)
    else:
        levels, requant = r.d, 1.0
    return [levels, requant, math.log(r.adders, 4)]


def timing_fit(out: Path, lib, jobs: int, period_ps: float, build: Path | None, build_period_ps: float) -> dict:
    cs = list(cases(out))
    facts = [module_facts(c[2], c[3]) for c in cs]
    res = synth_all([Job(c[3], tuple(c[2]), period_ps, f[2]) for c, f in zip(cs, facts)], lib, jobs)
    rows = []
    for (name, kind, files, top, d, w, lm), r, (a, ctrl, _) in zip(cs, res, facts):
        rows.append(Row(name, kind, d, w, lm.fanout(), not name.startswith("mbv2s_"), ctrl,
                        r, lm))
    if build:
        rows += build_rows(build, lib, build_period_ps)
    t_reg = float(np.median([r.res.path.launch_ps + r.res.path.setup_ps for r in rows
                             if r.fit and r.res.path.launch_ps is not None]))
    data = [r for r in rows if r.fit and not r.control]
    # T_FA is not fitted: across the trees W barely varies (13-20 bits), so a free fit trades it for
    # the spread term; it is the carry arc ABC's adders chain (MAJIxp5 / FAx1 carry, about 29 ps in
    # the liberty and in the OpenSTA paths), which the wide pool scaling (31 bits) needs
    t_fa = T_FA_PS
    x = np.array([stage_features(r) for r in data])
    y = np.array([r.res.path.period_ps for r in data])
    e_data, (t_level, t_requant, t_spread) = minimax_lp(x, y, np.array([t_reg + r.w * t_fa for r in data]))
    limited = [r for r in rows if r.fit and r.control and "count" in r.res.path.start]
    t_ctrl = max(r.res.path.period_ps - t_reg for r in limited)
    fit = {"T_REG": t_reg, "T_FA": t_fa, "T_LEVEL": t_level, "T_REQUANT": t_requant, "T_SPREAD": t_spread,
           "T_CTRL": t_ctrl}

    def predict(r: Row) -> float:
        """The cost model's own delay_ns (cost.timing, cost.model) with the fitted constants."""
        saved = {k: getattr(tech, k) for k in fit}
        try:
            for k, v in fit.items():
                setattr(tech, k, v / 1e3)
            if r.model is not None:
                return 1e3 * r.model.delay_ns()
            return 1e3 * max(timing.stage_delay_ns(r.d, r.w, adders=r.adders), timing.control_delay_ns())
        finally:
            for k, v in saved.items():
                setattr(tech, k, v)

    print(f"timing: calibration modules mapped for {1e3 / period_ps:g} GHz ({period_ps:.0f} ps: ABC maps for "
          f"speed)" + (f", and {build}'s modules that miss {1e3 / build_period_ps:g} GHz" if build else "")
          + f"; timed by OpenSTA; {lib.corner}\n")
    print("| module | kind | d | W | fan-out A | OpenSTA worst path ps | model ps | error | start -> end |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst: dict[tuple[str, bool], float] = {}
    for r in rows:
        pred = predict(r)
        e = pred / r.res.path.period_ps - 1
        group = ("add" if "add" in r.kind else "pool" if "pool" in r.kind else
                 "conv, pipelined" if "pipelined" in r.kind else "conv")
        worst[(group, r.fit)] = max(worst.get((group, r.fit), 0.0), abs(e))
        print(f"| {r.name} | {r.kind}{'' if r.fit else ' (held out)'} | {r.d} | {r.w} | {r.adders:,} | "
              f"{r.res.path.period_ps:.0f} | {pred:.0f} | {100 * e:+.1f} % | {r.res.path.start} -> {r.res.path.end} |")
    print("\nfit (ps): " + ", ".join(f"{k} = {v:.1f}" for k, v in fit.items())
          + "; T_REG is the median measured clock-to-output + setup, T_CTRL the slowest control path of the fit set")
    print(f"minimax error of the fitted trees: {100 * e_data:.1f} %; worst |error| by kind: " + "; ".join(
        f"{g} {'fit' if f else 'held out'} {100 * v:.1f} %" for (g, f), v in sorted(worst.items())))
    print(f"current tech.py (ps): T_REG = {tech.T_REG * 1e3:.1f}, T_FA = {tech.T_FA * 1e3:.1f}, T_LEVEL = "
          f"{tech.T_LEVEL * 1e3:.1f}, T_REQUANT = {tech.T_REQUANT * 1e3:.1f}, T_SPREAD = "
          f"{getattr(tech, 'T_SPREAD', 0.0) * 1e3:.1f}, T_CTRL = {getattr(tech, 'T_CTRL', 0.0) * 1e3:.1f}")
    return fit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="folder for the generated modules (default: a temporary one)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timing-ghz", type=float, default=5.0,
                    help="clock ABC maps for in the timing fit (tight: the fastest mapping; default 5)")
    ap.add_argument("--area-ghz", type=float, default=1.0, help="clock ABC maps for in the area fit (default 1)")
    ap.add_argument("--build", help="also check the timing model on this build's modules, as already "
                                    "synthesized by 'hashiflex synth BUILD' (held out; read from the cache)")
    ap.add_argument("--build-ghz", type=float, default=1.0, help="the clock 'hashiflex synth BUILD' mapped for")
    a = ap.parse_args(argv)
    t0 = time.time()
    lib = liberty.load()
    with tempfile.TemporaryDirectory(prefix="hf_asap7_") as td:
        out = Path(a.out or td)
        out.mkdir(parents=True, exist_ok=True)
        timing_fit(out / "timing", lib, a.jobs, 1e3 / a.timing_ghz, Path(a.build) if a.build else None,
                   1e3 / a.build_ghz)
        area_fit(out, lib, a.jobs, 1e3 / a.area_ghz)
    print(f"\n{time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
