"""Calibrate the clock model against gate-level logic depth measured by Yosys.

For every module of the cost model's calibration and validation sets (hashiflex.cost.calibrate:
depthwise, pointwise, full and strided convs at P = 1 and 2, a residual add, pools, on random Po2
weights of several exponent ranges, plus layers of a small MobileNetV2), the RTL generator writes
the module and Yosys measures its longest register-to-register path in gates (ripple-carry adders,
ABC mapping onto two-input gates, `ltp -noff`; hashiflex.cost.yosys.path_depth). The model's
path is `W * T_FA + d * T_LEVEL + T_REQUANT` (d adder levels, W the widest adder; docs/cost.md)
on top of T_REG. In gates that is `a * W + b * d + c`; this script fits a, b, c (minimax relative error,
non-negative), prints every module with the measured depth, the fit's gates and error, and the
ASAP7-fitted model's delay (the clock constants are fitted on real cells by
benchmarks/asap7_calibration.py; this gate-depth view is kept for comparison). The Po2 linear is
left out: it runs once per image and is a multicycle path, which the model does not time.

    python benchmarks/clock_calibration.py [--out DIR] [--no-cache]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hashiflex.cost import calibrate, model  # noqa: E402
from hashiflex.cost.yosys import path_depth  # noqa: E402
from hashiflex.ir.spec import Linear  # noqa: E402
from hashiflex.rtl import generate_rtl  # noqa: E402


PIPELINED = ("dw3x3_c8", "pw1x1_16to12_e7", "stem3x3_s2_3to8", "mbv2s_features.0", "mbv2s_features.3.conv.2")


def cases(out: Path):
    """(name, kind, verilog files, top, adder levels d, widest adder W, its cost.model.LayerModel) per module."""
    from hashiflex.ir.build import program_from_qmodel, random_qmodel
    from hashiflex.models.mobilenetv2 import MobileNetV2Config
    from hashiflex.quant.config import QuantConfig

    progs = [(name, kind, prog, idx, p) for name, kind, prog, idx, p in calibrate._programs()]
    cfg = MobileNetV2Config(width_mult=0.25, last_channel=32, input_size=16)
    mb = program_from_qmodel(random_qmodel(cfg, QuantConfig(exp_bits=3, prune=0.5), seed=0, calib_images=8))
    for i, op in enumerate(o for o in mb.ops if not isinstance(o, Linear)):
        if op.name in calibrate.VALIDATION_OPS:
            progs.append((f"mbv2s_{op.name}", f"MobileNetV2 layer ({model.kind_of(mb, op)})", mb, i, 1))
    # pipelined variants (every K adder levels): validation only, never fitted
    piped = [(f"{n}_K{k}", f"{kind}, pipelined every {k} levels", prog, idx, p, k)
             for n, kind, prog, idx, p in progs if n in PIPELINED for k in (2, 3)]
    built: dict[tuple, tuple] = {}
    for name, kind, prog, idx, p, k in [(*c, None) for c in progs] + piped:
        key = (id(prog), p, k)
        if key not in built:
            d = out / f"{name}_P{p}"
            built[key] = (d, generate_rtl(prog, d, p, pipeline_levels=k))
        d, man = built[key]
        mod = man.modules[idx]
        if mod.kind == "linear":
            continue
        lm = next(m for m in model.models_for(prog, man) if m.op.name == mod.op)
        g = man.input.lanes if idx == 0 else mod.lanes_in or mod.lanes or 1
        net = lm.network(g, 1)
        depth = lm.timing_depth() if k else (lm.shared[2] if lm.shared else net.depth)
        if k:
            lm.pipeline_levels = k
        yield name, kind, [d / "hf_prims.v", d / mod.file], mod.name, int(depth), int(net.max_width), lm


def minimax_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(gates per bit of W, per adder level, fixed) minimising the worst relative error, on a grid
    (0.02 / 0.05 / 1 gate steps; non-negative, so every constant stays a delay)."""
    best = None
    for c in range(0, 9):
        for kd in np.arange(0.0, 6.0, 0.05):
            kw = np.arange(0.5, 3.0, 0.02)
            pred = kw[:, None] * x[:, 0][None, :] + kd * x[:, 1][None, :] + c
            err = np.abs(pred / y[None, :] - 1).max(axis=1)
            i = int(np.argmin(err))
            if best is None or err[i] < best[0] - 1e-12:
                best = (err[i], float(kw[i]), float(kd), float(c))
    return best[1], best[2], best[3]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="folder for the generated modules (default: a temporary one)")
    ap.add_argument("--no-cache", action="store_true", help="re-run Yosys even when a cached result exists")
    a = ap.parse_args(argv)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="hf_clock_") as td:
        out = Path(a.out or td)
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for name, kind, files, top, d, w, _ in cases(out):
            rows.append((name, kind, d, w, path_depth(files, top, use_cache=not a.no_cache)))
    timed = [r for r in rows if "add" not in r[1] and "pipelined" not in r[1]]
    x = np.array([[r[3], r[2], 1.0] for r in timed])
    y = np.array([r[4] for r in timed], dtype=float)
    kw, kd, c = minimax_fit(x, y)
    print(f"fit (minimax relative error over {len(timed)} modules; {time.time() - t0:.0f} s): "
          f"gate depth = {kw:.2f} x W + {kd:.2f} x d + {c:.0f}")
    print("the clock model's constants are now fitted on ASAP7 cells and OpenSTA (benchmarks/asap7_calibration.py); "
          "this table is the Yosys gate depth beside that model's ps\n")
    print("| module | kind | adder levels d | widest adder W | Yosys gate depth | fitted gates | model ps (ASAP7) | error |")
    print("|---|---|---|---|---|---|---|---|")
    worst, worst_val = 0.0, 0.0
    for name, kind, d, w, meas in rows:
        pred = kw * w + kd * d + c                                           # the gate-depth fit
        err = pred / meas - 1
        note = " (not fitted)" if "add" in kind else " (validation)" if "pipelined" in kind else ""
        if "pipelined" in kind:
            worst_val = max(worst_val, abs(err))
        elif "add" not in kind:
            worst = max(worst, abs(err))
        print(f"| {name} | {kind} | {d} | {w} | {meas} | {pred:.1f} | {1e3 * model.stage_delay_ns(d, w):.0f} | "
              f"{100 * err:+.1f} %{note} |")
    print(f"\nworst error: {100 * worst:.1f} % over the {len(timed)} fitted modules (limit 15 %), "
          f"{100 * worst_val:.1f} % over the pipelined modules (validation: fitted on none of them; d is the most "
          "levels of one stage, min(depth, K)). Residual adds are left out: a two-operand sum plus the rounding "
          "constant, never a layer chain's slowest path.")
    print(f"gate-depth fit: {kw:.2f} gates per bit of W, {kd:.2f} per level, {c:.0f} fixed")
    return 0 if worst <= 0.15 else 1


if __name__ == "__main__":
    sys.exit(main())
