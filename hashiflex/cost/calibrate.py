"""Calibration of the area model against Yosys gate-level synthesis of generated modules.

`calibration_set(out_dir)` generates single-op IR programs with random Po2 weights (depthwise 3x3,
pointwise 1x1, a stride-2 stem, residual add, average pools, a Po2 linear, P = 2 variants), runs
hashiflex.rtl on each, and adds two storage primitives (a skip FIFO and a line buffer). For each
module it gives the files, the top, and the model's area; `run(...)` adds Yosys' gate-level area.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from ..ir.builder import ProgBuilder
from ..ir.spec import AvgPool
from ..rtl import generate_rtl
from ..rtl.generate import plan_lanes
from ..rtl.prims import PRIMS_V
from . import model, storage, tech


@dataclass
class Case:
    name: str
    kind: str
    files: list
    top: str
    params: dict
    model_um2: float
    detail: dict


def _programs():
    """(case name, kind, program, index of the op to synthesize, P)."""
    out = []
    b = ProgBuilder((8, 8, 8), 1)
    b.conv("input", depthwise=True, shift=4, bias=300)
    out.append(("dw3x3_c8", "conv 3x3 depthwise", b.program(), 0, 1))
    b = ProgBuilder((8, 10, 10), 2)
    b.conv("input", depthwise=True, stride=2, shift=4, clamp=(-128, 127), bias=300)
    out.append(("dw3x3_s2_c8", "conv 3x3 depthwise stride 2", b.program(), 0, 1))
    b = ProgBuilder((8, 6, 6), 3)
    b.conv("input", 16, k=1, shift=7, bias=300)
    out.append(("pw1x1_8to16", "conv 1x1 pointwise", b.program(), 0, 1))
    b = ProgBuilder((16, 6, 6), 4)
    b.conv("input", 12, k=1, shift=8, max_code=7, prune=0.5, bias=300)
    out.append(("pw1x1_16to12_e7", "conv 1x1 pointwise, wide exponents", b.program(), 0, 1))
    b = ProgBuilder((8, 8, 8), 5)
    b.conv("input", 8, k=1, shift=7, bias=300)
    out.append(("pw1x1_8to8_P2", "conv 1x1 pointwise, P = 2", b.program(), 0, 2))
    b = ProgBuilder((3, 16, 16), 6)
    b.conv("input", 8, stride=2, shift=7, bias=300)
    out.append(("stem3x3_s2_3to8", "stem conv 3x3 stride 2", b.program(), 0, 1))
    b = ProgBuilder((1, 12, 12), 7)
    b.conv("input", 6, stride=2, shift=6, bias=300)
    out.append(("stem3x3_s2_1to6_P2", "stem conv 3x3 stride 2, P = 2", b.program(), 0, 2))
    b = ProgBuilder((8, 6, 6), 8)
    x = b.conv("input", 8, k=1, shift=7, clamp=(-128, 127), bias=300)
    b.add("input", x, align_a=1, align_b=0, shift=1)
    out.append(("add_c8", "residual add", b.program(), 1, 1))
    b = ProgBuilder((16, 7, 7), 9)
    b.pool("input")
    out.append(("avgpool_7x7_c16", "avgpool 7x7 (fixed-point 1/49)", b.program(), 0, 1))
    b = ProgBuilder((16, 4, 4), 10)
    b.pool("input")
    out.append(("avgpool_4x4_c16", "avgpool 4x4 (a shift)", b.program(), 0, 1))
    b = ProgBuilder((16, 2, 2), 11)
    x = b.pool("input")
    b.linear(x, 10)
    out.append(("linear_po2_16to10", "Po2 linear", b.program(), 1, 1))
    return out


LINEBUF_V = """// a conv line buffer as conv.py writes it: WORDS entries of W bits, one read and one write
// per step at the column counter's address
module hf_linebuf #(parameter integer W = 48, parameter integer WORDS = 18) (
    input wire clk, input wire rst, input wire adv, input wire [W-1:0] pix, output wire [W-1:0] col0
);
    localparam integer XW = $clog2(WORDS);
    reg [XW-1:0] x;
    reg [W-1:0] lb0 [0:WORDS-1];
    reg [W-1:0] lb1 [0:WORDS-1];
    assign col0 = lb0[x];
    always @(posedge clk) begin
        if (adv) begin
            lb0[x] <= lb1[x];
            lb1[x] <= pix;
        end
        if (rst) x <= {XW{1'b0}};
        else if (adv) x <= (x == WORDS - 1) ? {XW{1'b0}} : x + 1'b1;
    end
endmodule
"""


VALIDATION_OPS = ("features.0", "features.1.conv.0", "features.1.conv.1", "features.1.add", "features.3.conv.2",
                  "features.5.conv.1", "pool")


def _case(prog, man, idx: int, p: int, out: Path, name: str, kind: str) -> Case:
    mod = man.modules[idx]
    op = next(o for o in prog.ops if o.name == mod.op)
    g = plan_lanes(prog, p)[0][prog.op_inputs(op)[0]]
    k = storage.copies(prog, op, g, 1)
    shared = None if isinstance(op, AvgPool) else (mod.adders // k, mod.adder_bits // k, 0)
    L = model.LayerModel(prog, op, shared_per_copy=shared).estimate(g, 1, sram=False)
    return Case(name, kind, [out / "hf_prims.v", out / mod.file], mod.name, {}, L.area_um2,
                {"adders": L.adders, "adder_bits": L.adder_bits, "carry_bits": L.carry_bits, "area": L.area})


def validation_set(out_dir) -> list[Case]:
    """Validation modules: layers of a small MobileNetV2 (width 0.25, 16x16 input, random weights
    and BN statistics, 50 % pruned), shared adders. Added after the first fit of the [cal]
    constants; what they changed is in docs/cost.md (Calibration)."""
    from ..ir.build import program_from_qmodel, random_qmodel
    from ..models.mobilenetv2 import MobileNetV2Config
    from ..quant.config import QuantConfig

    cfg = MobileNetV2Config(width_mult=0.25, last_channel=32, input_size=16)
    prog = program_from_qmodel(random_qmodel(cfg, QuantConfig(exp_bits=3, prune=0.5), seed=0, calib_images=8))
    out = Path(out_dir) / "mbv2_small"
    man = generate_rtl(prog, out, 1)
    cases = []
    for i, m in enumerate(man.modules):
        if m.op in VALIDATION_OPS:
            op = next(o for o in prog.ops if o.name == m.op)
            cases.append(_case(prog, man, i, 1, out, f"mbv2s_{m.op}", f"validation: {model.kind_of(prog, op)}"))
    return cases


def calibration_set(out_dir, names=None) -> list[Case]:
    """The calibration modules (or the named ones), written under out_dir, with the model's area."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, kind, prog, idx, p in _programs():
        if names and name not in names:
            continue
        cases.append(_case(prog, generate_rtl(prog, out / name, p), idx, p, out / name, name, kind))
    prims = out / "hf_prims.v"
    prims.write_text(PRIMS_V)
    for w, d in ((64, 12), (24, 40)) if not names or any(n.startswith("fifo") for n in names) else ():
        st = storage.fifo_storage(w, d)
        a, _, _ = model.array_cost(d, w, 0, sram=False)
        m = a + st.reg_bits * tech.A_REG_BIT + tech.A_MODULE_CONTROL
        cases.append(Case(f"fifo_w{w}_d{d}", f"skip FIFO {d} x {w} bits", [prims], "hf_fifo",
                          {"W": w, "DEPTH": d}, m, {}))
    lb = out / "hf_linebuf.v"
    lb.write_text(LINEBUF_V)
    for w, d in ((48, 18), (16, 30)) if not names or any(n.startswith("linebuf") for n in names) else ():
        a, _, _ = model.array_cost(d, w, 0, sram=False)
        m = 2 * a + max(1, (d - 1).bit_length()) * tech.A_REG_BIT + tech.A_MODULE_CONTROL
        cases.append(Case(f"linebuf_w{w}_d{d}", f"line buffer 2 x {d} x {w} bits", [lb], "hf_linebuf",
                          {"W": w, "WORDS": d}, m, {}))
    return cases


def run(out_dir, names=None, use_cache: bool = True, validation: bool = True) -> list[dict]:
    """Model vs Yosys gate level for the calibration set (or the named cases), then the held-out
    validation set."""
    from .yosys import gate_stats

    rows = []
    cases = calibration_set(out_dir, names)
    if validation and (not names or any(n.startswith("mbv2s_") for n in names)):
        cases += validation_set(out_dir)
    for c in cases:
        if names and c.name not in names:
            continue
        g = gate_stats(c.files, c.top, c.params or None, use_cache=use_cache)
        err = 100.0 * (c.model_um2 - g["area_um2"]) / g["area_um2"]
        rows.append({"module": c.name, "kind": c.kind, "model_um2": c.model_um2, "yosys_um2": g["area_um2"],
                     "error_pct": err, "yosys_area": g["area"], "full_adders": g["full_adders"],
                     "half_adders": g["half_adders"], "model": c.detail})
    return rows


def run_asap7(out_dir, names=None, clock_ghz: float = 1.0, jobs: int = 1) -> list[dict]:
    """Model vs ASAP7 cells (hashiflex.synth: Yosys + ABC for `clock_ghz`, cells' own areas) for the
    calibration and validation modules (or the named ones); the modules Yosys needs parameters for
    (the FIFO and line-buffer primitives) are left out."""
    from ..synth import liberty
    from ..synth.run import Job, synth_all

    cases = [c for c in calibration_set(out_dir, names) + validation_set(out_dir)
             if not c.params and (not names or c.name in names)]
    res = synth_all([Job(c.top, tuple(c.files), 1e3 / clock_ghz) for c in cases], liberty.load(), jobs)
    return [{"module": c.name, "kind": c.kind, "model_um2": c.model_um2, "cells_um2": r.area_um2,
             "error_pct": 100.0 * (c.model_um2 - r.area_um2) / r.area_um2, "cells_by_class_um2": r.area_by_class_um2}
            for c, r in zip(cases, res)]
