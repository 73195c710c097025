"""Every technology constant of the cost model, in one place, each with its source.

Sources:
  [ref]  ../shared/reference/hashiflex.md (ASAP7 7nm cells, RVT: FAx1, HAxp5, DFFHQNx1, NAND2xp33,
         INVx1 areas; N7 SRAM bitcell; 7nm INT8 add / multiply energy; Horowitz 2014 45nm energies).
  [geo]  derived from ASAP7 geometry: 7.5-track cells are 0.270 um high and a multiple of the
         0.054 um gate pitch (CPP) wide, so a cell of n CPP has n * 0.01458 um^2. The [ref] areas
         fit it exactly (INVx1 3 CPP, NAND2xp33 4, HAxp5 9, FAx1 14, DFFHQNx1 20). The CPP widths
         of the cells the reference does not list are OUR ASSUMPTION (marked "assumed").
  [drv]  derived here from [ref] numbers by the arithmetic stated next to it.
  [asm]  assumed: no source; the value is a stated modelling choice (docs/cost.md).
  [asap7] fitted to ASAP7 RVT TT standard cells mapped by Yosys/ABC and timed by OpenSTA
         (hashiflex synth; benchmarks/asap7_calibration.py; tables in docs/cost.md, "Real cells").
  [cal]  calibrated against Yosys gate-level synthesis of generated modules (areas:
         benchmarks/cost_calibration.py; path delays: benchmarks/clock_calibration.py; the tables
         are in docs/cost.md).
"""
from __future__ import annotations

# -- areas (um^2) ----------------------------------------------------------------------------
CPP_UM, ROW_UM = 0.054, 0.270                 # [geo]
CELL_UM2 = CPP_UM * ROW_UM                    # 0.01458 um^2 per gate pitch

A_FA = 0.204          # [ref] FAx1 full adder (14 CPP)
A_HA = 0.131          # [ref] HAxp5 half adder (9 CPP)
A_DFF = 0.292         # [ref] DFFHQNx1 flip-flop (20 CPP)
A_NAND2 = 0.058       # [ref] NAND2xp33 (4 CPP)
A_INV = 0.044         # [ref] INVx1 (3 CPP)
A_NOR2 = 4 * CELL_UM2     # [geo, assumed 4 CPP like NAND2]
A_AND2 = 6 * CELL_UM2     # [geo, assumed 6 CPP: NAND2 + inverter] (also OR2, ANDNOT, ORNOT)
A_XOR2 = 6 * CELL_UM2     # [geo, assumed 6 CPP] (also XNOR2)
A_MUX2 = 8 * CELL_UM2     # [geo, assumed 8 CPP]
A_SRAM_BITCELL = 0.027    # [ref] N7 6T SRAM bitcell

# Yosys gate-level cell -> area (um^2). Flip-flop variants are a DFF plus the gate their extra
# function needs (ASAP7 has no enable / sync-reset flops): enable = MUX2, reset = AND2. [drv]
GATE_AREA = {
    "$_NOT_": A_INV, "$_BUF_": A_INV,
    "$_NAND_": A_NAND2, "$_NOR_": A_NOR2,
    "$_AND_": A_AND2, "$_OR_": A_AND2, "$_ANDNOT_": A_AND2, "$_ORNOT_": A_AND2,
    "$_XOR_": A_XOR2, "$_XNOR_": A_XOR2, "$_MUX_": A_MUX2,
    "$fa": A_FA, "$ha": A_HA,                 # full adder; "$ha" = a $fa with a constant input
}
DFF_EXTRA = {"E": A_MUX2, "R": A_AND2, "S": A_AND2}   # per enable / reset / set pin [drv]

# -- model coefficients: area per counted bit (um^2) -----------------------------------------
# Adder trees: an adder's "carry bits" are its result bits minus the low bits of its shifted
# operand that pass straight through (no carry chain). Per carry bit on ASAP7 cells as `hashiflex
# synth` maps them (ABC maps an adder bit to XNOR2 + MAJ gates, not to FAx1; with the buffers and
# upsizing its 1 GHz mapping adds), fitted with the register and array factors below on the
# calibration modules (benchmarks/asap7_calibration.py; held-out error in docs/cost.md): [asap7]
A_CARRY_BIT = 0.3079
CARRY_BIT_FA = A_CARRY_BIT / A_FA
# Requantize / clamp / negate logic, per bit of hf_requant's internal width and active function
# (counts.py): comparisons against constants and saturation to constants reduce to about one
# two-input gate per 3-4 bits. [cal]
A_REQUANT_BIT = 0.3 * A_AND2
# A plain register bit with a load enable (DFF + enable logic, ASAP7 has no enable flop), with its
# share of the buffer trees that drive the enables: [asap7], fitted as A_CARRY_BIT is
A_REG_BIT = 0.4702
# A max pool's comparator (rtl/pool.py: y = a > b ? a : b), per bit: a subtractor's carry bit (priced
# as a tree adder's) and a 2:1 mux. [drv; not calibrated: no max pool in the calibration set]
A_CMP_BIT = A_CARRY_BIT + A_MUX2
# A storage bit of a flip-flop array (line buffer, FIFO) of `words` words: DFF + write-enable
# mux + its share of a words:1 read mux tree ((words - 1) / words MUX2 per bit), times a factor
# for address decoding and enable buffering. [drv, factor asap7]
MEM_FF_FACTOR = 1.2486     # [asap7], fitted as A_CARRY_BIT is


def a_mem_ff_bit(words: int) -> float:
    return MEM_FF_FACTOR * (A_DFF + A_MUX2 * (1.0 + (words - 1) / max(words, 1)))


# Arrays of at least this many bits and words are SRAM macros instead of flip-flops. [asm]
SRAM_MIN_BITS = 4096
SRAM_MIN_WORDS = 16
# Macro area per bit = bitcell / array efficiency (periphery: decoders, sense amps, IO). [asm]
SRAM_ARRAY_EFFICIENCY = 0.6
# Line buffers and FIFOs read and write every cycle: a two-port (1R1W, 8T) cell, assumed 1.6x the
# 6T bitcell. The NPU's weight memory is single-port (written only when reprogrammed). [asm]
SRAM_TWO_PORT_FACTOR = 1.6
A_SRAM_BIT_1P = A_SRAM_BITCELL / SRAM_ARRAY_EFFICIENCY
A_SRAM_BIT_2P = A_SRAM_BITCELL * SRAM_TWO_PORT_FACTOR / SRAM_ARRAY_EFFICIENCY
SRAM_MACRO_MAX_BITS = 256 * 1024        # [asm] largest macro; bigger arrays are banked
SRAM_MACRO_MAX_WIDTH = 256              # [asm] widest macro word; wider reads are banked
A_SRAM_MACRO_FIXED = 150.0              # [asm] fixed periphery per macro (um^2)
# Control per layer module (handshake, masks) beyond its counted registers and requantizers:
# fitted 0 on the calibration set (the counted registers already cover it). [cal]
A_MODULE_CONTROL = 0.0

# NPU (int8 weights x features, int32 accumulate) [drv]: an 8x8 array multiplier is 64 AND2
# partial products + 56 full adders + 8 half adders (Baugh-Wooley); the per-output scale
# multiplier (int32 x uint16) 512 AND2 + 480 full adders. The adders reducing the L products of a
# vector are priced like tree adders (A_CARRY_BIT per bit).
A_MUL8 = 64 * A_AND2 + 56 * A_FA + 8 * A_HA
A_MUL32X16 = 32 * 16 * A_AND2 + 32 * 15 * A_FA

# -- energy (pJ) -----------------------------------------------------------------------------
E_ADD8 = 0.007                      # [ref] 7nm INT8 add
E_MUL8 = 0.07                       # [ref] 7nm INT8 multiply
SCALE_45_TO_7 = E_ADD8 / 0.03       # [drv] 7nm / 45nm ratio of the two INT8-add figures = 0.233
E_ADD32 = 0.1 * SCALE_45_TO_7       # [drv] Horowitz 45nm 32-bit add 0.1 pJ, scaled
E_SRAM64_8KB = 10.0 * SCALE_45_TO_7     # [drv] Horowitz 45nm 64-bit read, 8 KB array
E_SRAM64_1MB = 100.0 * SCALE_45_TO_7    # [drv] same, 1 MB array
E_ADDER_BIT = E_ADD8 / 8            # [drv] per adder bit per evaluation (the per-op figure
                                    # averages switching on random data; no glitch factor) [asm]
E_REQUANT_BIT = 0.5 * E_ADDER_BIT   # [asm] one simple gate per bit
E_CMP_BIT = E_ADDER_BIT + E_REQUANT_BIT   # [drv] a comparator bit: an adder bit and a mux bit
E_FF_BIT = 2 * E_ADDER_BIT          # [asm] a clocked flip-flop (clock pin + data toggle at 50 %)
E_SRAM_BIT_SMALL = E_SRAM64_8KB / 64    # [drv] per bit read or written, line buffers / FIFOs
E_SRAM_BIT_LARGE = E_SRAM64_1MB / 64    # [drv] per bit, the NPU's ~1 MB weight memory
E_MAC = E_MUL8 + E_ADD32            # [drv] one int8 multiply + int32 accumulate

# -- timing (ns) -----------------------------------------------------------------------------
# The clock model (cost.timing): t_stage = T_REG + W * T_FA + d * T_LEVEL + T_REQUANT + T_SPREAD *
# log4(adders of one copy), never less than T_REG + T_CTRL. Every constant is fitted to OpenSTA's
# worst register-to-register paths of generated modules on ASAP7 RVT TT cells, mapped by ABC for
# speed (benchmarks/asap7_calibration.py; the modules, the fit and the held-out errors are in
# docs/cost.md, "Real cells"). No wire delay (no placement) and an ideal clock: both are left out.
T_REG = 0.0804      # [asap7] clock-to-output of the launching flip-flop + setup of the capturing one (median)
T_FA = 0.0290       # [asap7] per bit of the widest adder: the carry arc ABC's adders chain (MAJIxp5 / FAx1
                    # carry, 29 ps in the liberty), not fitted (W barely varies across the fitted trees)
T_LEVEL = 0.0611    # [asap7] per adder level
T_REQUANT = 0.0862  # [asap7] the requantizer and the output FIFO's write, in the last stage only
T_SPREAD = 0.0      # [asap7] per factor of 4 in a copy's adders (fan-out): fitted 0 on the fit set; the big
                    # modules of small-po2 it misses are in docs/cost.md ("Real cells")
T_CTRL = 0.2274     # [asap7] control: counters / FIFO occupancy through the buffered enable tree

DEFAULT_NPU_DRAIN = 3   # cycles between passes over the weights (hashiflex.rtl.npu.DRAIN)
