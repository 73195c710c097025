"""Area, energy and throughput of a HaShiFlex design at 7nm (constants: cost.tech; spec:
docs/cost.md).

A design is the IR plus a stream format per hardware layer: G pixels of a row per beat (the
RTL's lanes) and V rows per beat (V > 1 is modelled, not generated), and an NPU (lanes L,
batch B) for an int8 classifier. Per layer:
  area   = adder carry bits x A_CARRY_BIT + requantizer bits x A_REQUANT_BIT + register bits x A_REG_BIT
           + comparator bits x A_CMP_BIT (max pools: a subtractor and a mux per bit)
           + arrays (flip-flops below tech.SRAM_MIN_BITS, two-port SRAM macros above)
           + pipeline registers (when the clock needs them) + a fixed control budget
  energy = per image: adder bits x output pixels x E_ADDER_BIT + requantizer bits x output pixels
           x E_REQUANT_BIT + comparator bits x output pixels x E_CMP_BIT + clocked register bits x
           cycles x E_FF_BIT + array bits read and written x E per bit (SRAM or flip-flop)
  cycles = the generator's cycles per image; the design runs at its slowest layer (or the NPU).
Counts come from the manifest when the build has RTL (adders after sharing), else from the IR
(cost.counts: the generator's naive trees, replayed).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..errors import UserError
from ..ir.spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, csd_digits
from ..ir.sharing import AdderGraphs
from ..rtl.common import OUT_FIFO_DEPTH, fifo_pointer_bits, stream_bits
from ..rtl.convert import converter_register_bits
from ..rtl.layers import POOL_MULTICYCLE, graph_counts
from ..rtl.manifest import Manifest
from ..rtl.schedule import hw_ops
from . import counts, storage, tech
from .timing import (compare_delay_ns, compare_levels_per_stage, control_delay_ns, levels_per_stage,  # noqa: F401
                     stage_delay_ns)


@dataclass
class Layer:
    name: str
    kind: str
    g: int = 1
    v: int = 1
    copies: int = 1
    adders: int = 0
    adder_bits: int = 0
    carry_bits: int = 0
    requant_bits: int = 0
    reg_bits: int = 0
    ff_array_bits: int = 0
    sram_bits: int = 0
    pipe_reg_bits: int = 0
    cycles: float = 0
    depth: int = 0
    max_width: int = 0
    comparators: int = 0
    comparator_bits: int = 0
    area: dict = field(default_factory=dict)
    energy_pj: float = 0.0

    @property
    def area_um2(self) -> float:
        return sum(self.area.values())

    def row(self) -> dict:
        d = asdict(self)
        d["area_um2"] = self.area_um2
        return d


def kind_of(prog: Program, op) -> str:
    if isinstance(op, Conv):
        kh, kw = prog.arrays[op.weight].shape[2:]
        if op.groups > 1 and op.groups == prog.tensors[op.input].shape[0]:
            return f"dw{kh}x{kw}" + (f"/s{op.stride[0]}" if op.stride[0] > 1 else "")
        if kh == kw == 1:
            return "pw1x1"
        return f"conv{kh}x{kw}" + (f"/s{op.stride[0]}" if op.stride[0] > 1 else "")
    if isinstance(op, (MaxPool, AvgPoolWindow)):
        (kh, kw), s = op.kernel, op.stride[0]
        return f"{'maxpool' if isinstance(op, MaxPool) else 'avgpool'}{kh}x{kw}" + (f"/s{s}" if s > 1 else "")
    return {Add: "add", AvgPool: "avgpool", Linear: "linear-po2"}[type(op)]


def sram_area(bits: int, width: int, two_port: bool) -> float:
    """Macro area: bitcells / array efficiency, plus fixed periphery per macro (banked by size
    and by word width)."""
    per_bit = tech.A_SRAM_BIT_2P if two_port else tech.A_SRAM_BIT_1P
    macros = max(math.ceil(bits / tech.SRAM_MACRO_MAX_BITS), math.ceil(width / tech.SRAM_MACRO_MAX_WIDTH), 1)
    return bits * per_bit + macros * tech.A_SRAM_MACRO_FIXED


def array_cost(words: int, width: int, accesses: float, two_port: bool = True, sram: bool = True
               ) -> tuple[float, float, bool]:
    """(area um^2, energy pJ per image, is_sram) of a words x width array accessed `accesses`
    words per image (each a read or a write of `width` bits); sram=False: flip-flops always."""
    bits = words * width
    if sram and bits >= tech.SRAM_MIN_BITS and words >= tech.SRAM_MIN_WORDS:
        return sram_area(bits, width, two_port), accesses * width * tech.E_SRAM_BIT_SMALL, True
    return bits * tech.a_mem_ff_bit(words), accesses * width * tech.E_FF_BIT, False


def pool_multicycle(prog: Program, op) -> int | None:
    """The cycles a global pool's scaling path has (rtl.layers.pool_module) at one lane, None for
    other ops (models_for takes a build's from its manifest)."""
    if not isinstance(op, AvgPool):
        return None
    _, h, w = prog.tensors[op.input].shape
    return POOL_MULTICYCLE if h * w >= POOL_MULTICYCLE else None


class LayerModel:
    """Per-op invariants (the adder network of one copy), then any format's cost."""

    def __init__(self, prog: Program, op, network: counts.Network | None = None, shared_per_copy=None):
        self.prog, self.op = prog, op
        self.kind = kind_of(prog, op)
        self._net = network
        self.shared = shared_per_copy      # (adders, adder_bits, depth) of one copy from the manifest
        self.pipeline_levels = None        # conv trees cut every K levels (a pipelined build or plan)
        self.pipe_bits = None              # the pipeline register bits emitted for them (None: modelled)
        self._pool_nets: dict[int, counts.Network] = {}
        # a global pool with two or more beats per image scales its registered sum over POOL_MULTICYCLE cycles
        self.multicycle = pool_multicycle(prog, op)
        self._taps = None
        # once-per-image logic (the Po2 classifier) has a whole image's cycles: a multicycle path
        self.timed = not isinstance(op, Linear)

    def network(self, g: int = 1, v: int = 1) -> counts.Network:
        if isinstance(self.op, AvgPool):
            k = g * v
            if k not in self._pool_nets:
                self._pool_nets[k] = counts.adder_network(self.prog, self.op, k)
            return self._pool_nets[k]
        if self._net is None:
            self._net = counts.adder_network(self.prog, self.op)
        return self._net

    def tree_depth(self) -> int:
        """Adder levels of one copy's network: the manifest's or the graphs' (shared), else the naive trees'."""
        return self.shared[2] if self.shared else self.network().depth

    def stages(self) -> int:
        """Pipeline stages of a conv cut every K levels: one register per K levels of its depth."""
        return self.tree_depth() // self.pipeline_levels if self.pipeline_levels else 0

    def timing_depth(self) -> int:
        """Adder levels on the layer's longest register-to-register path, as generated."""
        d = self.tree_depth()
        return min(d, self.pipeline_levels) if self.pipeline_levels else d

    def copy_adders(self) -> int:
        """Adders of one copy as generated (shared), else the naive trees'."""
        return self.shared[0] if self.shared else self.network().adders

    def fanout(self) -> int:
        """The spread term's A (cost.timing): the adders of one copy, which a conv's or linear's window
        registers fan out to; an add's operands feed one adder each; a pool's sum feeds one adder per
        digit of mult."""
        if isinstance(self.op, Add):
            return 1
        if isinstance(self.op, AvgPool):
            return len(csd_digits(self.op.mult)) + 1
        return self.copy_adders()

    def delay_ns(self, depth: int | None = None) -> float:
        """The layer's slowest register-to-register path (cost.timing), through `depth` levels of its
        network (default: as generated): adder levels ending in the requantizer, or a max pool's
        comparator levels; never less than the control path."""
        depth = self.timing_depth() if depth is None else depth
        if isinstance(self.op, MaxPool):
            data = compare_delay_ns(depth, self.network().max_width)
        elif isinstance(self.op, AvgPool) and self.multicycle:
            acc, mult, _ = counts.pool_parts(self.prog, self.op)
            data = max(stage_delay_ns(acc.depth, acc.max_width, requant=False),
                       stage_delay_ns(mult.depth, mult.max_width, adders=self.fanout()) / self.multicycle)
        elif self.pipeline_levels and depth == self.timing_depth():
            # cut every K levels (rtl.emit): the inner stages end in a pipeline register, the last
            # holds the levels left over (depth mod K) and the requantizer
            k, w, a = self.pipeline_levels, self.network().max_width, self.fanout()
            data = max(stage_delay_ns(min(k, self.tree_depth()), w, requant=False, adders=a),
                       stage_delay_ns(self.tree_depth() % k, w, adders=a))
        else:
            data = stage_delay_ns(depth, self.network().max_width, adders=self.fanout())
        return max(data, control_delay_ns())

    def levels_for(self, period_ns: float) -> int:
        """Most levels of the layer's network one stage holds at this clock (0: not reachable,
        also when the control path alone misses it)."""
        if control_delay_ns() > period_ns:
            return 0
        if isinstance(self.op, MaxPool):
            return compare_levels_per_stage(period_ns, self.network().max_width)
        return levels_per_stage(period_ns, self.network().max_width, self.fanout())

    def out_pixels(self) -> int:
        t = self.prog.tensors[self.op.output]
        return int(t.shape[1] * t.shape[2]) if len(t.shape) == 3 else 1

    def estimate(self, g: int = 1, v: int = 1, period_ns: float | None = None, sram: bool = True,
                 out_depth: int = OUT_FIFO_DEPTH) -> Layer:
        """The layer fed G lanes x V rows per beat; period_ns: pipeline its trees for this clock;
        sram=False: every array in flip-flops (as Yosys maps them, for calibration); out_depth: its
        output FIFO's words (rtl.depths)."""
        prog, op = self.prog, self.op
        net = self.network(g, v)
        k = storage.copies(prog, op, g, v)
        cyc = storage.cycles(prog, op, g, v)
        adders, bits, depth = net.adders, net.adder_bits, net.depth
        carry = net.carry_bits
        if self.shared is not None:   # the manifest's (shared) network; carry bits in the naive ratio
            adders, bits, depth = self.shared
            carry = round(bits * net.carry_bits / max(net.adder_bits, 1))
        L = Layer(op.name, self.kind, g, v, k, adders * k, bits * k, carry * k, net.requant_bits * k, cycles=cyc,
                  depth=depth, max_width=net.max_width, comparators=net.comparators * k,
                  comparator_bits=net.comparator_bits * k)
        if isinstance(op, Conv) and self._taps is None:
            self._taps = (storage.used_taps(prog, op), int(storage.live_outputs(prog, op).sum()))
        st = storage.storage(prog, op, g, v, taps=self._taps, out_depth=out_depth)
        L.reg_bits = st.reg_bits
        evals = self.out_pixels() if not isinstance(op, AvgPool) else cyc
        e = carry * evals * tech.E_ADDER_BIT + net.requant_bits * (self.out_pixels()) * tech.E_REQUANT_BIT
        if net.comparator_bits:
            e += net.comparator_bits * self.out_pixels() * tech.E_CMP_BIT
        e += st.reg_bits * cyc * tech.E_FF_BIT
        a_arr = 0.0
        out_beats = 1 if len(prog.tensors[op.output].shape) == 1 else cyc
        for name, words, width in st.arrays:
            acc = 2 * cyc if name == "linebuf" else 2 * out_beats
            a, en, is_sram = array_cost(words, width, acc, sram=sram)
            a_arr += a
            e += en
            if is_sram:
                L.sram_bits += words * width
            else:
                L.ff_array_bits += words * width
        if self.pipeline_levels:   # cut every K levels: the registers the emitter declared, or modelled
            kk = self.pipeline_levels  # (live node bits after each cut level, as for --clock-ghz below)
            L.pipe_reg_bits = self.pipe_bits if self.pipe_bits is not None else k * sum(
                net.level_bits[c - 1] for c in range(kk, depth + 1, kk) if c - 1 < len(net.level_bits))
            e += L.pipe_reg_bits * self.out_pixels() / max(k, 1) * tech.E_FF_BIT
        elif period_ns is not None and self.timed and depth and self.delay_ns(depth) > period_ns:
            per = self.levels_for(period_ns)
            if per < 1:
                what = "comparators" if isinstance(op, MaxPool) else "ripple adders"
                raise UserError(f"layer {op.name}: {net.max_width}-bit {what} cannot meet a {period_ns:.3f} ns "
                                f"clock (the model's limit is {1 / self.delay_ns(1):.2f} GHz)")
            cuts = [lv for lv in range(per, depth, per)]
            L.pipe_reg_bits = sum(net.level_bits[c - 1] for c in cuts if c - 1 < len(net.level_bits)) * k
            e += L.pipe_reg_bits * self.out_pixels() / max(k, 1) * tech.E_FF_BIT
        L.area = {"adders": L.carry_bits * tech.A_CARRY_BIT, "requant": L.requant_bits * tech.A_REQUANT_BIT,
                  "registers": (L.reg_bits + L.pipe_reg_bits) * tech.A_REG_BIT, "arrays": a_arr,
                  "control": tech.A_MODULE_CONTROL}
        if L.comparator_bits:
            L.area["comparators"] = L.comparator_bits * tech.A_CMP_BIT
        L.energy_pj = e
        return L


# -- whole designs ---------------------------------------------------------------------------
def skip_fifo_layers(fifos: list[dict]) -> list[Layer]:
    out = []
    for f in fifos:
        words, width = int(f["depth"]), int(f["width"])
        a, e, sram = array_cost(words, width, 0)
        L = Layer(f"skip:{f['add']}", "skip-fifo", reg_bits=fifo_pointer_bits(words))
        L.sram_bits, L.ff_array_bits = (words * width, 0) if sram else (0, words * width)
        L.area = {"arrays": a, "registers": L.reg_bits * tech.A_REG_BIT}
        L.energy_pj = 2 * width * float(f.get("beats_per_image", 0)) * (
            tech.E_SRAM_BIT_SMALL if sram else tech.E_FF_BIT)
        out.append(L)
    return out


def summarize(layers: list[Layer], cycles: dict[str, float], clock_ghz: float, extra: dict | None = None) -> dict:
    """Totals of a design: images/s at the clock, mm^2, pJ/image, and the per-layer list."""
    bottleneck = max(cycles, key=lambda n: cycles[n])
    cpi = cycles[bottleneck]
    area = sum(L.area_um2 for L in layers)
    by = {}
    for L in layers:
        for k, v in L.area.items():
            by[k] = by.get(k, 0.0) + v
    hard = [L for L in layers if L.kind not in ("npu",)]
    return {
        "images_per_s": clock_ghz * 1e9 / cpi, "cycles_per_image": cpi, "bottleneck": bottleneck,
        "clock_ghz": clock_ghz, "area_mm2": area / 1e6, "area_breakdown_mm2": {k: v / 1e6 for k, v in by.items()},
        "energy_pj_per_image": sum(L.energy_pj for L in layers),
        "adders": sum(L.adders for L in hard), "adder_bits": sum(L.adder_bits for L in hard),
        "comparators": sum(L.comparators for L in hard), "comparator_bits": sum(L.comparator_bits for L in hard),
        "register_bits": sum(L.reg_bits + L.ff_array_bits + L.pipe_reg_bits for L in hard),
        "sram_bits": sum(L.sram_bits for L in hard),
        "npu_area_mm2": sum(L.area_um2 for L in layers if L.kind == "npu") / 1e6,
        "layers": [L.row() for L in layers], **(extra or {}),
    }


def critical(models: list[LayerModel]) -> tuple[str, float]:
    """(layer, ns) of the slowest unpipelined register-to-register path (trees as generated)."""
    return max(((m.op.name, m.delay_ns()) for m in models if m.timed), key=lambda t: t[1])


def uniform_levels(models: list[LayerModel], period_ns: float) -> int | None:
    """The most adder levels per stage (one K for every conv, as `compile --pipeline-levels K`
    generates) that meets the period, None when the unpipelined trees already do; the layers that
    are not pipelined (adds, pools) must meet it as they are."""
    ks = []
    for m in models:
        if not m.timed:
            continue
        net = m.network()
        t = m.delay_ns(m.tree_depth())
        if t <= period_ns:
            continue
        if not isinstance(m.op, Conv):
            raise UserError(f"layer {m.op.name} ({m.kind}) is not pipelined and its path takes {t:.3f} ns: ask for at "
                            f"most {1 / t:.3f} GHz")
        per = m.levels_for(period_ns)
        if per < 1:
            raise UserError(f"layer {m.op.name}: {net.max_width}-bit ripple adders cannot meet a {period_ns:.3f} ns "
                            f"clock even with one adder level per stage")
        ks.append(per)
    return min(ks) if ks else None


def fmax_ghz(models: list[LayerModel]) -> float:
    """Clock of the trees as generated (unpipelined): the slowest layer's register-to-register path."""
    return 1.0 / critical(models)[1]


def feat_bits(prog: Program, op) -> int:
    return stream_bits(prog.tensors[op.input])


def models_for(prog: Program, manifest: Manifest | None = None, graphs: AdderGraphs | None = None
               ) -> list[LayerModel]:
    """One LayerModel per hardware op. Each copy's adders come from the manifest (what was
    emitted), else from the sharing pass's graphs (counted as the emitter would), else from the
    naive trees (cost.counts)."""
    out = []
    for op in hw_ops(prog):
        m = manifest.module(op.name) if manifest is not None else None
        shared = None
        if m is not None and not isinstance(op, (AvgPool, MaxPool, AvgPoolWindow)):   # pools: no shared adders
            k = m.copies()
            shared = (m.adders // k, m.adder_bits // k, m.adder_depth or 0)
        elif m is None and graphs is not None and graphs.get(op.name) is not None:
            shared = graph_counts(prog, op, graphs.get(op.name))
        lm = LayerModel(prog, op, shared_per_copy=shared)
        if m is not None and isinstance(op, AvgPool):   # as generated (its lanes decide the beats)
            lm.multicycle = m.multicycle
        if shared is not None and not shared[2]:
            lm.shared = (shared[0], shared[1], lm.network().depth)
        if m is not None and m.pipeline_stages is not None:   # registers beyond the unpipelined module's
            g, v = m.lanes_in or 1, m.rows_in or 1
            lm.pipeline_levels = manifest.pipeline_levels
            unpiped = storage.storage(prog, op, g, v, trim=False, out_depth=m.out_fifo_depth or OUT_FIFO_DEPTH)
            conv_bits = 0
            if m.lanes_src:   # its width converter is priced as its own layer (design.converter)
                x = prog.tensors[op.input]
                conv_bits = converter_register_bits(x.shape[2], x.shape[0] * stream_bits(x), m.lanes_src, g)
            lm.pipe_bits = m.register_bits - unpiped.total_bits - conv_bits
        out.append(lm)
    return out
