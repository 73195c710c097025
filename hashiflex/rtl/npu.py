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
from ..ir.spec import Program, npu_op
from .common import stream_range
from .emit import Net, lit

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
    net = Net()
    x = net.lines  # body lines; registers declared with net.reg are counted as they are declared
    net.mem("wmem", L * 8, g.depth)
    net.mem("bmem", BIAS_BITS, NM, signed=True)
    net.mem("smem", SCALE_BITS, NM)
    for name, width in (("nrows", nw), ("busy", 1), ("n", naw), ("j", jw), ("wa", waw), ("nb", cw),
                        ("fill_count", cw)):
        net.reg(name, width)
    net.reg(["v1", "first1", "last1", "end1", "v2", "end2", "rp"])
    net.reg("n1", naw)
    net.reg("n2", naw)
    net.reg("w1", L * 8)
    net.reg("bias1", BIAS_BITS, signed=True)
    for name, width in (("scale1", SCALE_BITS), ("scale2", SCALE_BITS), ("r_nb", cw), ("o_n", cw), ("o_i", cw)):
        net.reg(name, width)
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
        net.reg(f"fill_{b}", K * fb)
        net.reg(f"act_{b}", KP)
        net.reg(f"f1_{b}", W)
        net.reg(f"acc_{b}", aw, signed=True)
        net.reg(f"r_{b}", NM * lb)
        net.reg(f"o_{b}", NM * lb)
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
             "register_bits": net.reg_bits, "memory_bits": g.depth * L * WEIGHT_BITS,
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


@dataclass(frozen=True)
class NPUCounts:
    """What the generator builds for an NPU geometry, counted from the emitted Verilog (the same
    fields as the manifest's "npu" entry): the cost model prices a planned NPU from these."""
    lanes: int
    batch: int
    multipliers: int
    scale_multipliers: int
    adders: int
    acc_bits: int
    register_bits: int
    memory_bits: int
    param_memory_bits: int
    cycles_per_image_with_drain: float


def npu_counts(g: NPUGeometry) -> NPUCounts:
    _, st = npu_verilog(g)
    return NPUCounts(g.lanes, g.batch, st["multipliers"], st["scale_multipliers"], st["adders"], st["acc_bits"],
                     st["register_bits"], st["memory_bits"], st["param_memory_bits"],
                     g.cycles_per_batch(g.out_features) / g.batch)


__all__ = ["NPUConfig", "NPUCounts", "NPUGeometry", "load_ports", "load_writes", "npu_counts", "npu_verilog",
           "plan_npu"]
