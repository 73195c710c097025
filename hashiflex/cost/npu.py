"""The programmable NPU's cost (docs/cost.md, "NPU"): cycles per image, area and energy of an NPU
of L lanes and batch B, from the manifest's counts when the build has them, and the smallest NPU
that keeps pace with a pipeline."""
from __future__ import annotations

from ..errors import UserError
from ..rtl.manifest import NPUEntry
from ..rtl.npu import NPUCounts
from . import tech
from .model import Layer, sram_area


def npu_cycles(n: int, k: int, lanes: int, batch: int, drain: int = tech.DEFAULT_NPU_DRAIN) -> float:
    """Cycles per image: one pass over the N x ceil(K/L) weight words serves B images."""
    return (n * -(-k // lanes) + drain) / batch


def npu_estimate(n: int, k: int, lanes: int, batch: int, feat_bits: int = 8, entry: NPUEntry | NPUCounts | None = None
                 ) -> Layer:
    """The programmable NPU: L*B int8 multipliers, B adder trees over L products into int32
    accumulators, B scale multipliers, a single-port weight SRAM of N*K*8 bits (L*8 bits wide) plus
    int32 bias and 16-bit scale per output, double-buffered feature vectors and a logit buffer.
    With the manifest's "npu" entry its counted multipliers, adders, registers and memories."""
    L = Layer("npu", "npu", lanes, batch, lanes * batch)
    mults = lanes * batch
    if entry is not None:
        mults = entry.multipliers
        L.adders = entry.adders
        L.adder_bits = L.adders * entry.acc_bits
        L.reg_bits = entry.register_bits
        wbits, pbits = entry.memory_bits, entry.param_memory_bits
        scale_mults = entry.scale_multipliers
        L.cycles = float(entry.cycles_per_image_with_drain)
    else:
        L.adders = batch * lanes                            # L-1 tree adders + the accumulator
        L.adder_bits = batch * ((lanes - 1) * (16 + max(0, (lanes - 1).bit_length()) // 2) + 32)
        L.reg_bits = 2 * batch * k * feat_bits + batch * (32 + n * 32)
        wbits, pbits, scale_mults = -(-k // lanes) * lanes * n * 8, n * 48, batch
        L.cycles = npu_cycles(n, k, lanes, batch)
    L.carry_bits = L.adder_bits
    a_w = sram_area(wbits, lanes * 8, two_port=False)
    p_sram = pbits >= tech.SRAM_MIN_BITS and pbits // 48 >= tech.SRAM_MIN_WORDS
    a_p = sram_area(pbits, 48, two_port=False) if p_sram else pbits * tech.a_mem_ff_bit(-(-pbits // 48))
    L.sram_bits = wbits + (pbits if p_sram else 0)
    L.area = {"multipliers": mults * tech.A_MUL8 + scale_mults * tech.A_MUL32X16,
              "adders": L.carry_bits * tech.A_CARRY_BIT,
              "registers": L.reg_bits * tech.A_REG_BIT, "arrays": a_w + a_p, "control": 20 * tech.A_MODULE_CONTROL}
    # energy per image: every MAC once, each weight bit read once per batch, feature + logit traffic
    L.energy_pj = (n * k * tech.E_MAC + n * k * 8 / batch * tech.E_SRAM_BIT_LARGE + n * 32 * tech.E_FF_BIT
                   + k * feat_bits * 2 * tech.E_FF_BIT)
    return L


def size_npu(n: int, k: int, target_cycles: float, feat_bits: int = 8, max_batch: int = 64) -> Layer:
    """The smallest-area NPU (lanes L, batch B) whose cycles per image keep pace with the target."""
    best = None
    lanes_opts = sorted({-(-k // s) for s in range(1, k + 1)})     # fewest lanes for each words/row
    for lanes in lanes_opts:
        for batch in range(1, max_batch + 1):
            if npu_cycles(n, k, lanes, batch) > target_cycles:
                continue
            cand = npu_estimate(n, k, lanes, batch, feat_bits)
            if best is None or cand.area_um2 < best.area_um2:
                best = cand
            break   # more batch only adds buffers at these lanes
    if best is None:
        raise UserError(f"no NPU up to batch {max_batch} keeps pace with {target_cycles:.0f} cycles per image")
    return best
