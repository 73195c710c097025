"""The programmable NPU for the int8 final layer, and the chip top (`hf_chip` = `hf_top` + NPU).

logits[o] = (bias[o] + sum_k W[o, k] * feat[k]) * scale_mult[o], exactly as the IR's int8 Linear
(docs/ir.md). Weights live in a memory of L-wide int8 words (one output row is ceil(K/L) words),
written through a load port; for a batch of up to B buffered feature vectors the NPU walks all
weight words of the N loaded rows once, one word per cycle, doing L MACs for each of the B
vectors. Every width comes from intervals that hold for ANY loadable weights (int8 weights,
int32 biases, SCALE_BITS-bit unsigned scales, the feature range of the hardened pipeline), so
the generated files do not depend on the weights. Spec: docs/npu.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..ir.intervals import bits_for
from ..ir.spec import Linear, Program
from .common import stream_bits, stream_range
from .emit import lit

WEIGHT_BITS, BIAS_BITS, SCALE_BITS = 8, 32, 16
W_RANGE = (-(1 << (WEIGHT_BITS - 1)), (1 << (WEIGHT_BITS - 1)) - 1)
B_RANGE = (-(1 << (BIAS_BITS - 1)), (1 << (BIAS_BITS - 1)) - 1)
S_RANGE = (1, (1 << SCALE_BITS) - 1)
DRAIN = 3          # cycles between the last weight word of a pass and the next pass's start
NPU_FILE, CHIP_FILE, NPU_PRIMS_FILE = "hf_npu.v", "hf_chip.v", "hf_npu_prims.v"
CHIP = "hf_chip"
CHIP_SHELL = "hf_chip_shell"
CHIP_SHELL_FILE = f"{CHIP_SHELL}.v"

NPU_PRIMS_V = r"""// hashiflex NPU primitives (generated; do not edit)
// verilator lint_off DECLFILENAME
module hf_mul #(
    parameter integer WA = 8, parameter integer SA = 1, parameter integer WB = 8, parameter integer SB = 0,
    parameter integer WO = 16
) (
    input wire [WA-1:0] a,
    input wire [WB-1:0] b,
    output wire [WO-1:0] y
);
    // y = a * b, each operand zero- or sign-extended; exact when the product fits WO bits
    wire signed [WA:0] ae = {(SA != 0) & a[WA-1], a};
    wire signed [WB:0] be = {(SB != 0) & b[WB-1], b};
    wire signed [WA+WB+1:0] p = ae * be;
    assign y = p[WO-1:0];
    generate if (WA + WB + 2 > WO) begin : g_trim
        wire _unused_ok = &{1'b0, p[WA+WB+1:WO]};
    end endgenerate
endmodule
// verilator lint_on DECLFILENAME
"""


def _corners(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    v = [x * y for x in a for y in b]
    return min(v), max(v)


@dataclass(frozen=True)
class NPUConfig:
    """What `hashiflex compile` asks for: lanes L, batch B, capacity (max outputs). None = auto."""
    lanes: int | None = None
    batch: int = 1
    capacity: int | None = None


@dataclass(frozen=True)
class NPUGeometry:
    lanes: int
    batch: int
    k: int                   # in_features (fixed by the hardened pipeline)
    capacity: int            # max out_features a weight image may have
    out_features: int        # the program's classifier
    feat_lo: int
    feat_hi: int

    @property
    def kw(self) -> int:     # weight words per output row
        return -(-self.k // self.lanes)

    @property
    def feat_bits(self) -> int:
        return bits_for(self.feat_lo, self.feat_hi)

    @property
    def prod(self) -> tuple[int, int]:
        return _corners(W_RANGE, (self.feat_lo, self.feat_hi))

    @property
    def acc(self) -> tuple[int, int]:
        plo, phi = self.prod
        return B_RANGE[0] + self.k * plo, B_RANGE[1] + self.k * phi

    @property
    def logit(self) -> tuple[int, int]:
        return _corners(self.acc, (0, S_RANGE[1]))

    @property
    def logit_bits(self) -> int:
        return bits_for(*self.logit)

    @property
    def depth(self) -> int:  # weight memory words
        return self.capacity * self.kw

    def cycles_per_batch(self, n: int) -> int:
        return n * self.kw + DRAIN


def _pow2_ceil(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())


def npu_op(prog: Program) -> Linear | None:
    """The int8 classifier the NPU runs (the program's output op), or None."""
    op = next((o for o in prog.ops if o.output == prog.output), None)
    return op if isinstance(op, Linear) and op.mode == "int8" else None


def plan_npu(prog: Program, cfg: NPUConfig, pipeline_cycles: float) -> NPUGeometry:
    """Lanes, batch and capacity. With lanes None: the smallest power of two L (up to the next
    power of two >= K) whose pass at full capacity, drain included, keeps pace with the pipeline."""
    op = npu_op(prog)
    if op is None:
        raise UserError("the program's classifier is not int8: the NPU runs int8 classifiers only")
    x = prog.tensors[op.input]
    n, k = (int(v) for v in prog.arrays[op.weight].shape)
    cap = n if cfg.capacity is None else int(cfg.capacity)
    if cfg.batch < 1 or (cfg.lanes is not None and cfg.lanes < 1):
        raise UserError(f"--npu-lanes and --npu-batch must be at least 1 (got {cfg.lanes}, {cfg.batch})")
    if cap < n:
        raise UserError(f"--npu-capacity {cap} is below the classifier's {n} outputs: give at least {n}")
    lanes = cfg.lanes
    if lanes is None:
        lanes = 1
        while lanes < _pow2_ceil(k) and (cap * -(-k // lanes) + DRAIN) / cfg.batch > pipeline_cycles:
            lanes *= 2
    lo, hi = stream_range(x)
    g = NPUGeometry(int(lanes), int(cfg.batch), k, cap, n, lo, hi)
    if g.logit_bits > 63:
        raise UserError(f"NPU logits would need {g.logit_bits} bits (> 63): the feature vector is too long")
    return g


def _rng(w: int) -> str:
    return f"[{w - 1}:0] " if w > 1 else ""


def _aw(n: int) -> int:
    return max(1, (n - 1).bit_length())


def _tree(lines: list[str], names: list[tuple[str, int, int]], prefix: str) -> tuple[str, int, int]:
    """Balanced hf_add tree over (wire, lo, hi) leaves; every adder as wide as its interval."""
    level, n = list(names), 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            (a, alo, ahi), (b, blo, bhi) = level[i], level[i + 1]
            lo, hi = alo + blo, ahi + bhi
            n += 1
            y, w = f"{prefix}{n}", bits_for(alo + blo, ahi + bhi)
            lines.append(f"wire {_rng(w)}{y};")
            lines.append(f"hf_add #(.WA({bits_for(alo, ahi)}),.SA({int(alo < 0)}),.LA(0),.WB({bits_for(blo, bhi)}),"
                         f".SB({int(blo < 0)}),.LB(0),.NA(0),.SUB(0),.WO({w})) u_{y} (.a({a}),.b({b}),.y({y}));")
            nxt.append((y, lo, hi))
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def npu_verilog(g: NPUGeometry) -> tuple[str, dict]:
    """The hf_npu module and its statistics (multipliers, adders, register bits)."""
    L, B, K, KW, NM = g.lanes, g.batch, g.k, g.kw, g.capacity
    fb, fs = g.feat_bits, int(g.feat_lo < 0)
    W, KP = L * fb, KW * L * fb                   # feature bits per word, per padded vector
    aw, lb = bits_for(*g.acc), g.logit_bits
    waw, naw, nw, jw, cw = _aw(g.depth), _aw(NM), bits_for(0, NM), _aw(KW), bits_for(0, B)
    plo, phi = g.prod
    pw = bits_for(plo, phi)
    x = []  # body lines
    x += [f"reg {_rng(L * 8)}wmem [0:{g.depth - 1}];", f"reg signed [{BIAS_BITS - 1}:0] bmem [0:{NM - 1}];",
          f"reg {_rng(SCALE_BITS)}smem [0:{NM - 1}];", f"reg {_rng(nw)}nrows;",
          "reg busy;", f"reg {_rng(naw)}n;", f"reg {_rng(jw)}j;", f"reg {_rng(waw)}wa;", f"reg {_rng(cw)}nb;",
          f"reg {_rng(cw)}fill_count;", "reg v1, first1, last1, end1, v2, end2, rp;", f"reg {_rng(naw)}n1;",
          f"reg {_rng(naw)}n2;", f"reg {_rng(L * 8)}w1;", f"reg signed [{BIAS_BITS - 1}:0] bias1;",
          f"reg {_rng(SCALE_BITS)}scale1;", f"reg {_rng(SCALE_BITS)}scale2;", f"reg {_rng(cw)}r_nb;",
          f"reg {_rng(cw)}o_n;", f"reg {_rng(cw)}o_i;"]
    regs = nw + 1 + 3 * naw + jw + waw + 5 * cw + 7 + L * 8 + BIAS_BITS + 2 * SCALE_BITS  # control, stage regs
    x += ["wire o_empty = o_i == o_n;", "wire accept = in_valid & in_ready;",
          f"wire start = ~busy & ~v1 & ~v2 & (fill_count != {lit(0, cw)}) & (~rp | o_empty);",
          "wire xfer = rp & o_empty;", "wire pop = out_valid & out_ready;",
          f"wire row_last = j == {lit(KW - 1, jw)};",
          f"wire {_rng(nw)}nx = {{{{{nw - naw}{{1'b0}}}}, n}};" if nw > naw else f"wire {_rng(nw)}nx = n;",
          f"wire pass_last = row_last & (nx == nrows - {lit(1, nw)});",
          f"assign in_ready = fill_count != {lit(B, cw)};", "assign out_valid = ~o_empty;",
          f"assign idle = (fill_count == {lit(0, cw)}) & ~busy & ~v1 & ~v2 & ~rp & o_empty;",
          f"wire [{fb * K - 1}:0] fin = in_data;"]
    pad = f"{{{KP - K * fb}'d0, fin}}" if KP > K * fb else "fin"
    mults, adders, sums = 0, 0, []
    for b in range(B):
        x += [f"reg {_rng(K * fb)}fill_{b};", f"reg {_rng(KP)}act_{b};", f"reg {_rng(W)}f1_{b};",
              f"reg signed [{aw - 1}:0] acc_{b};", f"reg {_rng(NM * lb)}r_{b};", f"reg {_rng(NM * lb)}o_{b};"]
        regs += K * fb + KP + W + aw + 2 * NM * lb
        leaves = []
        for i in range(L):
            p = f"p_{b}_{i}"
            x.append(f"wire {_rng(pw)}{p};")
            x.append(f"hf_mul #(.WA(8),.SA(1),.WB({fb}),.SB({fs}),.WO({pw})) u_{p} (.a(w1[{8 * i + 7}:{8 * i}]),"
                     f".b(f1_{b}[{fb * i + fb - 1}:{fb * i}]),.y({p}));")
            leaves.append((p, plo, phi))
            mults += 1
        s, slo, shi = _tree(x, leaves, f"t{b}_")
        adders += L - 1
        x.append(f"wire signed [{aw - 1}:0] ain_{b} = first1 ? {{{{{aw - BIAS_BITS}{{bias1[{BIAS_BITS - 1}]}}}}, bias1}} : acc_{b};"
                 if aw > BIAS_BITS else f"wire signed [{aw - 1}:0] ain_{b} = first1 ? bias1 : acc_{b};")
        (sn, _, _) = _tree(x, [(f"ain_{b}", *g.acc), (s, slo, shi)], f"as{b}_")
        sw_ = bits_for(g.acc[0] + slo, g.acc[1] + shi)
        adders += 1
        sums.append((sn, sw_))
        x.append(f"wire {_rng(lb)}lg_{b};")
        x.append(f"hf_mul #(.WA({aw}),.SA(1),.WB({SCALE_BITS}),.SB(0),.WO({lb})) u_lg_{b} (.a(acc_{b}),.b(scale2),"
                 f".y(lg_{b}));")
        mults += 1
    unused = [f"{sn}[{w - 1}:{aw}]" for sn, w in sums if w > aw]
    x.append("always @(posedge clk) begin")
    x += ["    if (w_we) wmem[w_addr] <= w_data;", "    if (b_we) begin", "        bmem[b_addr] <= b_bias;",
          "        smem[b_addr] <= b_scale;", "    end"]
    x += ["    w1 <= wmem[wa];", "    bias1 <= bmem[n];", "    scale1 <= smem[n];", "    scale2 <= scale1;",
          "    n1 <= n;", "    n2 <= n1;", f"    first1 <= j == {lit(0, jw)};", "    last1 <= row_last;",
          "    end1 <= pass_last;"]
    for b in range(B):
        rot = f"{{act_{b}[{W - 1}:0], act_{b}[{KP - 1}:{W}]}}" if KW > 1 else f"act_{b}"
        x += [f"    if (start) act_{b} <= {pad.replace('fin', f'fill_{b}')};", f"    else if (busy) act_{b} <= {rot};",
              f"    f1_{b} <= act_{b}[{W - 1}:0];", f"    if (v1) acc_{b} <= {sums[b][0]}[{aw - 1}:0];",
              f"    if (v2) r_{b}[n2 * {lb} +: {lb}] <= lg_{b};", f"    if (xfer) o_{b} <= r_{b};"]
        x.append(f"    if (accept && (start ? {lit(0, cw)} : fill_count) == {lit(b, cw)}) fill_{b} <= fin;")
    x += ["    if (rst) begin", f"        nrows <= {lit(NM, nw)};", "        busy <= 1'b0;", "        v1 <= 1'b0;",
          "        v2 <= 1'b0;", "        end2 <= 1'b0;", "        rp <= 1'b0;",
          f"        fill_count <= {lit(0, cw)};", f"        o_n <= {lit(0, cw)};", f"        o_i <= {lit(0, cw)};",
          "    end else begin",
          f"        if (n_we && n_data != {lit(0, nw)} && n_data <= {lit(NM, nw)}) nrows <= n_data;",
          "        v1 <= busy;", "        v2 <= v1 & last1;", "        end2 <= v1 & end1;",
          "        if (start) begin", "            busy <= 1'b1;", f"            n <= {lit(0, naw)};",
          f"            j <= {lit(0, jw)};", f"            wa <= {lit(0, waw)};", "            nb <= fill_count;",
          f"            fill_count <= accept ? {lit(1, cw)} : {lit(0, cw)};",
          "        end else begin", "            if (accept) fill_count <= fill_count + 1'b1;",
          "            if (busy) begin", "                wa <= wa + 1'b1;",
          f"                j <= row_last ? {lit(0, jw)} : j + 1'b1;",
          "                if (row_last) n <= n + 1'b1;", "                if (pass_last) busy <= 1'b0;",
          "            end", "        end",
          "        if (end2) begin", "            rp <= 1'b1;", "            r_nb <= nb;", "        end",
          "        if (xfer) begin", "            rp <= 1'b0;", "            o_n <= r_nb;",
          f"            o_i <= {lit(0, cw)};", "        end else if (pop) o_i <= o_i + 1'b1;", "    end", "end"]
    # output: the slot o_i, rows at or past nrows forced to zero
    sel = f"o_{B - 1}"
    for b in range(B - 2, -1, -1):
        sel = f"(o_i == {lit(b, cw)}) ? o_{b} : {sel}"
    x.append(f"wire {_rng(NM * lb)}osel = {sel};")
    for r in range(NM):
        x.append(f"assign out_data[{r * lb + lb - 1}:{r * lb}] = (nrows > {lit(r, nw)}) ? osel[{r * lb + lb - 1}:{r * lb}]"
                 f" : {lit(0, lb)};")
    if unused:
        x.append("wire _unused_ok = &{1'b0, " + ", ".join(unused) + "};")
    ports = ["input wire clk", "input wire rst", "input wire in_valid", "output wire in_ready",
             f"input wire {_rng(K * fb)}in_data", "output wire out_valid", "input wire out_ready",
             f"output wire {_rng(NM * lb)}out_data"] + [f"{d} wire {_rng(w)}{nm}" for nm, d, w in load_ports(g)]
    text = ("// generated by hashiflex.rtl.npu; do not edit\nmodule hf_npu (\n" +
            ",\n".join("    " + p for p in ports) + "\n);\n" + "\n".join("    " + ln for ln in x) + "\nendmodule\n")
    stats = {"multipliers": L * B, "scale_multipliers": B, "adders": adders, "acc_bits": aw, "product_bits": pw,
             "register_bits": regs, "memory_bits": g.depth * L * WEIGHT_BITS,
             "param_memory_bits": NM * (BIAS_BITS + SCALE_BITS)}
    return text, stats


def load_ports(g: NPUGeometry) -> list[tuple[str, str, int]]:
    """(name, direction, width) of the load port and the idle flag."""
    return [("w_we", "input", 1), ("w_addr", "input", _aw(g.depth)), ("w_data", "input", g.lanes * WEIGHT_BITS),
            ("b_we", "input", 1), ("b_addr", "input", _aw(g.capacity)), ("b_bias", "input", BIAS_BITS),
            ("b_scale", "input", SCALE_BITS), ("n_we", "input", 1), ("n_data", "input", bits_for(0, g.capacity)),
            ("idle", "output", 1)]


def load_writes(g: NPUGeometry, weight, bias, scale) -> list[tuple[str, int, list[int]]]:
    """The load-port writes that program an image: (port 'w' | 'b' | 'n', address, values).
    Weight word `row * kw + j` holds W[row, j*L + l] in lane l (bits 8l+7..8l), zero past K;
    bias/scale word `row`; then the number of rows."""
    n, k = len(weight), g.k
    out = []
    for r in range(n):
        for j in range(g.kw):
            out.append(("w", r * g.kw + j, [int(weight[r][c]) if c < k else 0
                                            for c in range(j * g.lanes, (j + 1) * g.lanes)]))
    out += [("b", r, [int(bias[r]), int(scale[r])]) for r in range(n)]
    out.append(("n", 0, [n]))
    return out


def chip_verilog(g: NPUGeometry, top_ports: list[dict]) -> tuple[str, list[dict]]:
    """hf_chip: hf_top's input, the NPU's logits output and load port. Returns (text, ports)."""
    ins = [p for p in top_ports if not p["name"].startswith("feat_")]
    feat_w = next(p["width"] for p in top_ports if p["name"] == "feat_data")
    lw = g.capacity * g.logit_bits
    ports = ins + [{"name": "logits_valid", "direction": "output", "width": 1},
                   {"name": "logits_ready", "direction": "input", "width": 1},
                   {"name": "logits_data", "direction": "output", "width": lw}]
    ports += [{"name": nm if nm != "idle" else "npu_idle", "direction": d, "width": w} for nm, d, w in load_ports(g)]
    decl = ",\n".join(f"    {'input' if p['direction'] == 'input' else 'output'} wire {_rng(p['width'])}{p['name']}"
                      for p in ports)
    top_conn = [f".{p['name']}({p['name']})" for p in ins] + [".feat_valid(f_valid)", ".feat_ready(f_ready)",
                                                             ".feat_data(f_data)"]
    npu_conn = [".clk(clk)", ".rst(rst)", ".in_valid(f_valid)", ".in_ready(f_ready)", ".in_data(f_data)",
                ".out_valid(logits_valid)", ".out_ready(logits_ready)", ".out_data(logits_data)"]
    npu_conn += [f".{nm}({nm if nm != 'idle' else 'npu_idle'})" for nm, _, _ in load_ports(g)]
    text = (f"// generated by hashiflex.rtl.npu; do not edit\nmodule {CHIP} (\n{decl}\n);\n"
            f"    wire f_valid;\n    wire f_ready;\n    wire {_rng(feat_w)}f_data;\n"
            f"    hf_top u_top ({', '.join(top_conn)});\n    hf_npu u_npu ({', '.join(npu_conn)});\nendmodule\n")
    return text, ports


def block_ports(blocks: list[dict]) -> list[tuple[str, str, int]]:
    """(name, direction, width) of the ports hf_top_shell has for its cut-out layer blocks."""
    ps = []
    for b in blocks:
        for i in b["inputs"]:
            p = f"{b['instance']}_{i['port']}"
            ps += [(f"{p}_valid", "output", 1), (f"{p}_ready", "input", 1), (f"{p}_data", "output", i["width"])]
        p = f"{b['instance']}_out"
        ps += [(f"{p}_valid", "input", 1), (f"{p}_ready", "output", 1), (f"{p}_data", "input", b["out_width"])]
    return ps


def chip_shell_verilog(chip_text: str, blocks: list[dict]) -> str:
    """hf_chip with hf_top replaced by hf_top_shell: the chip's ports plus every layer block's
    ports, passed through (block-by-block simulation, docs/verification.md)."""
    extra = block_ports(blocks)
    decl = "".join(f",\n    {d} wire {_rng(w)}{n}" for n, d, w in extra)
    text = chip_text.replace(f"module {CHIP} (", f"module {CHIP_SHELL} (", 1).replace("\n);\n", decl + "\n);\n", 1)
    conn = "".join(f", .{n}({n})" for n, _, _ in extra)
    head, tail = text.split("    hf_top u_top (", 1)
    inst, rest = tail.split(");\n", 1)
    return head + "    hf_top_shell u_top (" + inst + conn + ");\n" + rest


def npu_manifest(g: NPUGeometry, stats: dict, pipeline_cycles: float, files: list[str], top_manifest: dict,
                 ports: list[dict]) -> dict:
    """The manifest's "npu" entry (also a manifest-like view of the chip for the testbench)."""
    cpi = g.out_features * g.kw / g.batch
    cpi_drain = g.cycles_per_batch(g.out_features) / g.batch
    cap_drain = g.cycles_per_batch(g.capacity) / g.batch
    lb = g.logit_bits
    return {
        "lanes": g.lanes, "batch": g.batch, "in_features": g.k, "out_features": g.out_features,
        "capacity": g.capacity, "weight_bits": WEIGHT_BITS, "bias_bits": BIAS_BITS, "scale_bits": SCALE_BITS,
        "feature_bits": g.feat_bits, "feature_range": [g.feat_lo, g.feat_hi], "words_per_row": g.kw,
        "memory_words": g.depth, "word_bits": g.lanes * WEIGHT_BITS, **stats,
        "cycles_per_image": cpi, "cycles_per_image_with_drain": cpi_drain, "drain_cycles": DRAIN,
        "cycles_per_batch": g.cycles_per_batch(g.out_features),
        "cycles_per_image_at_capacity": cap_drain,
        "pipeline_cycles_per_image": pipeline_cycles,
        "keeps_pace": cpi_drain <= pipeline_cycles, "keeps_pace_at_capacity": cap_drain <= pipeline_cycles,
        "chip_cycles_per_image": max(pipeline_cycles, cpi_drain),
        "top": CHIP, "files": files, "ports": ports, "input": top_manifest["input"],
        "outputs": [{"port": "logits", "tensor": "logits", "channels": g.capacity, "bits": lb, "signed": True,
                     "width": g.capacity * lb, "shape": [g.capacity], "beats": 1, "lanes": 1}],
        "load_port": {"weights": "w_we, w_addr, w_data: word row*words_per_row + j holds W[row, j*lanes + l] "
                                 "in bits 8l+7..8l (int8), zero past in_features",
                      "bias_scale": "b_we, b_addr, b_bias (int32), b_scale (uint16, >= 1): row b_addr",
                      "rows": "n_we, n_data: number of loaded outputs, 1..capacity (other values ignored)",
                      "when": "write only while npu_idle is 1; reset sets rows = capacity"},
    }


def emit_npu(prog: Program, out, manifest: dict, cfg: NPUConfig, write) -> dict:
    """Write hf_npu_prims.v, hf_npu.v and hf_chip.v into `out` with `write(path, text)`; return the
    manifest's "npu" entry. Nothing here reads the classifier's weights."""
    pipeline = float(manifest["expected_cycles_per_image"])
    g = plan_npu(prog, cfg, pipeline)
    text, stats = npu_verilog(g)
    chip, ports = chip_verilog(g, manifest["ports"])
    write(out / NPU_PRIMS_FILE, NPU_PRIMS_V)
    write(out / NPU_FILE, text)
    write(out / CHIP_FILE, chip)
    files = list(manifest["files"]) + [NPU_PRIMS_FILE, NPU_FILE, CHIP_FILE]
    write(out / CHIP_SHELL_FILE, chip_shell_verilog(chip, manifest["shell"]["blocks"]))
    entry = npu_manifest(g, stats, pipeline, files, manifest, ports)
    entry["shell"] = {"top": CHIP_SHELL, "files": [manifest["files"][0], manifest["shell"]["file"], NPU_PRIMS_FILE,
                                                  NPU_FILE, CHIP_SHELL_FILE], "blocks": manifest["shell"]["blocks"]}
    return entry


def geometry_of(entry: dict) -> NPUGeometry:
    """The geometry recorded in a manifest's "npu" entry."""
    lo, hi = entry["feature_range"]
    return NPUGeometry(entry["lanes"], entry["batch"], entry["in_features"], entry["capacity"],
                       entry["out_features"], lo, hi)


__all__ = ["NPUConfig", "NPUGeometry", "emit_npu", "geometry_of", "load_writes", "plan_npu", "npu_op"]
