"""Calibrate the cost model on ASAP7 cells timed by OpenSTA (hashiflex synth's flow).

Fit set: the cost model's calibration modules (hashiflex.cost.calibrate: depthwise, pointwise,
full and strided convs at P = 1 and 2, wide exponents, a stem; random Po2 weights). Held-out set
(never fitted): layers of a small MobileNetV2 (width 0.25, 16x16, 50 % pruned, shared adders),
the residual add, the pools, and pipelined variants (every K = 2, 3 adder levels) of five modules.
Every module is mapped with ABC for --clock-ghz (default 1.0) and timed by OpenSTA (ideal clock).

Timing: the model's register-to-register stage is `T_REG + W * T_FA + d * T_LEVEL + T_REQUANT`
(d adder levels of the stage, W the widest adder); this script fits T_FA, T_LEVEL and the fixed
part (minimax relative error, non-negative), takes T_REG as the measured clock-to-output of the
launching flip-flop plus its setup (median over the fit set) and T_REQUANT as the rest of the fixed
part. Area: non-negative least squares of the measured cell area on the model's components
(adder carry bits, requantizer bits, register bits, flip-flop arrays) plus a per-module control
term. Prints every module, the fits, and the error on both sets with the fitted and the current
constants of hashiflex/cost/tech.py.

    python benchmarks/asap7_calibration.py [--out DIR] [--jobs N] [--clock-ghz F]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from clock_calibration import cases  # noqa: E402
from hashiflex.cost import model, tech  # noqa: E402
from hashiflex.synth import liberty  # noqa: E402
from hashiflex.synth.run import Job, synth_all  # noqa: E402

AREA_PARTS = ("adders", "requant", "registers", "arrays")


def area_fit(out: Path, lib, jobs: int, period_ps: float) -> None:
    """Cell area vs the model's components: fit on the calibration set, error on the held-out set."""
    from hashiflex.cost import calibrate

    fit_cases = [c for c in calibrate.calibration_set(out / "area") if c.detail]
    held_cases = calibrate.validation_set(out / "area")
    cs = fit_cases + held_cases
    res = synth_all([Job(c.top, tuple(c.files), period_ps) for c in cs], lib, jobs)

    def parts(c) -> list[float]:
        return [c.detail["area"].get(k, 0.0) for k in AREA_PARTS] + [1.0]

    a = np.array([parts(c) for c in fit_cases])
    y = np.array([r.area_um2 for r in res[:len(fit_cases)]])
    coef, _ = nnls(a, y)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="folder for the generated modules (default: a temporary one)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--clock-ghz", type=float, default=1.0)
    a = ap.parse_args(argv)
    t0 = time.time()
    lib = liberty.load()
    with tempfile.TemporaryDirectory(prefix="hf_asap7_") as td:
        out = Path(a.out or td)
        out.mkdir(parents=True, exist_ok=True)
        rows = list(cases(out))
        res = synth_all([Job(top, tuple(files), 1e3 / a.clock_ghz) for _, _, files, top, _, _ in rows], lib, a.jobs)
    fit = [i for i, r in enumerate(rows) if not r[0].startswith("mbv2s_") and "pipelined" not in r[1]
           and "add" not in r[1] and "pool" not in r[1] and res[i].path]
    held = [i for i, r in enumerate(rows) if i not in fit and res[i].path]
    x = np.array([[rows[i][5], rows[i][4], 1.0] for i in fit])
    y = np.array([res[i].path.period_ps for i in fit])
    best = None
    for c in np.arange(0.0, 600.0, 5.0):
        for kd in np.arange(0.0, 150.0, 1.0):
            kw = np.arange(0.0, 80.0, 0.5)
            pred = kw[:, None] * x[:, 0][None, :] + kd * x[:, 1][None, :] + c
            err = np.abs(pred / y[None, :] - 1).max(axis=1)
            j = int(np.argmin(err))
            if best is None or err[j] < best[0] - 1e-12:
                best = (err[j], float(kw[j]), float(kd), float(c))
    _, t_fa, t_level, fixed = best
    t_reg = float(np.median([res[i].path.launch_ps + res[i].path.setup_ps for i in fit
                             if res[i].path.launch_ps is not None]))
    print(f"{len(rows)} modules, {time.time() - t0:.0f} s; ABC target {a.clock_ghz:g} GHz; {lib.corner}\n")
    print("| module | kind | d | W | OpenSTA worst path ps | fitted model ps | error | current model ps | "
          "start -> end |")
    print("|---|---|---|---|---|---|---|---|---|")
    errs = {"fit": [], "held": []}
    for i, (name, kind, _, _, d, w) in enumerate(rows):
        r = res[i]
        if r.path is None:
            continue
        pred = t_fa * w + t_level * d + fixed
        cur = 1e3 * model.stage_delay_ns(d, w)
        e = pred / r.path.period_ps - 1
        errs["fit" if i in fit else "held"].append(abs(e))
        print(f"| {name} | {kind}{'' if i in fit else ' (held out)'} | {d} | {w} | {r.path.period_ps:.0f} | "
              f"{pred:.0f} | {100 * e:+.1f} % | {cur:.0f} | {r.path.start} -> {r.path.end} |")
    print(f"\ntiming fit: T_FA = {t_fa:.1f} ps, T_LEVEL = {t_level:.1f} ps, fixed = {fixed:.0f} ps "
          f"(T_REG = {t_reg:.1f} ps measured clock-to-output + setup, T_REQUANT = {fixed - t_reg:.1f} ps)")
    print(f"worst timing error: fit set {100 * max(errs['fit']):.1f} % ({len(errs['fit'])} modules), "
          f"held-out {100 * max(errs['held'] or [0]):.1f} % ({len(errs['held'])} modules)")
    with tempfile.TemporaryDirectory(prefix="hf_asap7_area_") as td:
        area_fit(Path(a.out or td), lib, a.jobs, 1e3 / a.clock_ghz)
    return 0


if __name__ == "__main__":
    sys.exit(main())
