"""The Verilog primitive library every generated design instantiates (written as hf_prims.v).

All width and sign handling lives here, in a few small parameterised modules; generated layer
modules only instantiate them, one line per operation:
- hf_add: y = (+-)(a << LA) (+-) (b << LB), operands zero- or sign-extended (SA/SB), result WO
  bits. Two's-complement arithmetic is exact modulo 2^WO, so it is exact whenever the true sum
  fits WO bits, which the generator proves from interval analysis.
- hf_requant: arithmetic right shift (or left shift when SHR < 0) of an optionally negated
  value, then optional saturation to [LO, HI]; the rounding constant of rshift_round is folded
  into the layer bias by the generator, so the shift here is a plain floor.
- hf_fifo: a DEPTH-entry stream FIFO with registered ready/valid (cuts combinational paths).
- hf_fork: an eager fork of one stream to N consumers (each takes the beat once).
"""

PRIMS_V = r"""// hashiflex primitive library (generated; do not edit)
// verilator lint_off DECLFILENAME
module hf_add #(
    parameter integer WA = 8, parameter integer SA = 0, parameter integer LA = 0,
    parameter integer WB = 8, parameter integer SB = 0, parameter integer LB = 0,
    parameter integer NA = 0, parameter integer SUB = 0, parameter integer WO = 9
) (
    input wire [WA-1:0] a,
    input wire [WB-1:0] b,
    output wire [WO-1:0] y
);
    // internal width holds both shifted operands with a sign bit; the unused top bits vanish
    localparam integer WI0 = (WA + LA > WB + LB) ? WA + LA + 1 : WB + LB + 1;
    localparam integer WI = (WI0 > WO) ? WI0 : WO;
    wire sa = (SA != 0) & a[WA-1];
    wire sb = (SB != 0) & b[WB-1];
    wire [WI-1:0] ae = {{(WI - WA){sa}}, a} << LA;
    wire [WI-1:0] be = {{(WI - WB){sb}}, b} << LB;
    wire [WI-1:0] an = (NA != 0) ? (~ae + {{(WI - 1){1'b0}}, 1'b1}) : ae;
    wire [WI-1:0] s = (SUB != 0) ? (an - be) : (an + be);
    assign y = s[WO-1:0];
    generate if (WI > WO) begin : g_trim
        wire _unused_ok = &{1'b0, s[WI-1:WO]};
    end endgenerate
endmodule

module hf_requant #(
    parameter integer WI = 8, parameter integer SI = 0, parameter integer NEG = 0,
    parameter integer SHR = 0, parameter integer WT = 10,
    parameter integer CLO = 0, parameter integer CHI = 0,
    parameter signed [WT-1:0] LO = 0, parameter signed [WT-1:0] HI = 0,
    parameter integer WO = 8
) (
    input wire [WI-1:0] x,
    output wire [WO-1:0] y
);
    localparam integer R = (SHR > 0) ? SHR : 0;
    localparam integer L = (SHR < 0) ? -SHR : 0;
    localparam integer WE = WT + R;
    wire sx = (SI != 0) & x[WI-1];
    wire [WE-1:0] xe = {{(WE - WI){sx}}, x};
    wire [WE-1:0] xn = (NEG != 0) ? (~xe + {{(WE - 1){1'b0}}, 1'b1}) : xe;
    wire signed [WT-1:0] t;
    generate if (R > 0) begin : g_shr
        assign t = xn[WE-1:R];
        wire _unused_ok = &{1'b0, xn[R-1:0]};
    end else begin : g_shl
        assign t = xn << L;
    end endgenerate
    wire signed [WT-1:0] c1 = (CLO != 0 && t < LO) ? LO : t;
    wire signed [WT-1:0] c2 = (CHI != 0 && c1 > HI) ? HI : c1;
    assign y = c2[WO-1:0];
    generate if (WT > WO) begin : g_trim
        wire _unused_ok = &{1'b0, c2[WT-1:WO]};
    end endgenerate
endmodule

module hf_fifo #(
    parameter integer W = 8, parameter integer DEPTH = 2
) (
    input wire clk,
    input wire rst,
    input wire in_valid,
    output wire in_ready,
    input wire [W-1:0] in_data,
    output wire out_valid,
    input wire out_ready,
    output wire [W-1:0] out_data
);
    localparam integer AW = (DEPTH > 1) ? $clog2(DEPTH) : 1;
    localparam integer CW = $clog2(DEPTH + 1);
    localparam integer LASTI = DEPTH - 1;
    localparam integer FULLI = DEPTH;
    localparam [AW-1:0] LAST = LASTI[AW-1:0];
    localparam [CW-1:0] FULL = FULLI[CW-1:0];
    reg [W-1:0] mem [0:DEPTH-1];
    reg [AW-1:0] rd;
    reg [AW-1:0] wr;
    reg [CW-1:0] count;
    wire push = in_valid && in_ready;
    wire pop = out_valid && out_ready;
    assign in_ready = count != FULL;
    assign out_valid = count != {CW{1'b0}};
    assign out_data = mem[rd];
    always @(posedge clk) begin
        if (push) mem[wr] <= in_data;
        if (rst) begin
            rd <= {AW{1'b0}};
            wr <= {AW{1'b0}};
            count <= {CW{1'b0}};
        end else begin
            if (push) wr <= (wr == LAST) ? {AW{1'b0}} : wr + 1'b1;
            if (pop) rd <= (rd == LAST) ? {AW{1'b0}} : rd + 1'b1;
            if (push && !pop) count <= count + 1'b1;
            else if (pop && !push) count <= count - 1'b1;
        end
    end
endmodule

module hf_fork #(
    parameter integer N = 2, parameter integer W = 8
) (
    input wire clk,
    input wire rst,
    input wire in_valid,
    output wire in_ready,
    input wire [W-1:0] in_data,
    output wire [N-1:0] out_valid,
    input wire [N-1:0] out_ready,
    output wire [W-1:0] out_data
);
    reg [N-1:0] done;
    assign out_valid = {N{in_valid}} & ~done;
    assign in_ready = &(done | out_ready);
    assign out_data = in_data;
    always @(posedge clk) begin
        if (rst || (in_valid && in_ready)) done <= {N{1'b0}};
        else done <= done | (out_valid & out_ready);
    end
endmodule
// verilator lint_on DECLFILENAME
"""
