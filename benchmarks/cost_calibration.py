"""Calibrate the 7nm area model against Yosys gate-level synthesis of generated modules.

    python benchmarks/cost_calibration.py [--out DIR] [--no-cache] [--json]

Generates the calibration modules (hashiflex.cost.calibrate: depthwise / pointwise / stem convs,
P = 2 variants, residual add, average pools, Po2 linear, a skip FIFO, a line buffer), synthesizes
each with Yosys (ripple-carry adders, full/half adders extracted, ABC gates priced with ASAP7
areas; hashiflex.cost.yosys) and prints a markdown table of model vs Yosys area.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="folder for the generated modules (default: a temporary folder)")
    ap.add_argument("--no-cache", action="store_true", help="re-run Yosys even when a cached result exists")
    ap.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    args = ap.parse_args(argv)
    from hashiflex.cost.calibrate import run

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="hf_cal_") as td:
        rows = run(args.out or td, use_cache=not args.no_cache)
    print("| module | kind | model um^2 | yosys um^2 | error % | yosys FA / HA | "
          "yosys adders / FFs / gates um^2 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        a = r["yosys_area"]
        print(f"| {r['module']} | {r['kind']} | {r['model_um2']:.1f} | {r['yosys_um2']:.1f} | "
              f"{r['error_pct']:+.1f} | {r['full_adders']} / {r['half_adders']} | "
              f"{a['adders']:.1f} / {a['flipflops']:.1f} / {a['gates']:.1f} |")
    worst = max(abs(r["error_pct"]) for r in rows)
    tot_m, tot_y = sum(r["model_um2"] for r in rows), sum(r["yosys_um2"] for r in rows)
    print(f"\n{len(rows)} modules; worst |error| {worst:.1f} %; total model {tot_m:.0f} um^2 vs Yosys "
          f"{tot_y:.0f} um^2 ({100 * (tot_m - tot_y) / tot_y:+.1f} %); {time.time() - t0:.0f} s")
    if args.json:
        print(json.dumps(rows))
    return 0 if worst <= 15.0 else 1


if __name__ == "__main__":
    sys.exit(main())
