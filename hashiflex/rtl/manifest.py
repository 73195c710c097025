"""The RTL manifest (BUILD/rtl/manifest.json) as typed objects: the contract between the RTL
generator and every reader (verification, the cost model, NPU images, fine-tuning, reports).

`Manifest.to_json()` writes the file; `Manifest.parse(obj)` checks a decoded file against the
schema below: types (strict: no "5" for 5, no 1 for true), finite numbers, bounds, unknown or
missing fields, the fields each module kind has, and cross-field consistency (stream widths and
beats, totals, the bottleneck, shell blocks = modules, checksums, the NPU's geometry). Files are
read through rtl.readback, which adds the checks that need the generator or the IR. A file that
fails gives one line naming the file, the field and what to do. Spec: docs/architecture.md.

Version history: 1 = the first typed manifest (same JSON as the untyped one before it).
"""
from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic import model_validator

from ..errors import UserError
from .common import fifo_register_bits
from .schedule import items

FORMAT = "hashiflex-rtl"
VERSION = 1
FILE = "manifest.json"

# upper bounds: far above any design this tool can write, low enough that no field can make a
# reader allocate or loop without limit
BIG = 1 << 48
Count = Annotated[StrictInt, Field(ge=0, le=BIG)]
Pos = Annotated[StrictInt, Field(ge=1, le=BIG)]
Dim = Annotated[StrictInt, Field(ge=1, le=1 << 20)]          # tensor dimensions, lanes
Bits = Annotated[StrictInt, Field(ge=1, le=64)]               # bits per value
Width = Annotated[StrictInt, Field(ge=1, le=1 << 26)]         # bits of a bus
Num = Annotated[StrictInt | StrictFloat, Field(gt=0, le=BIG)]  # JSON keeps what the generator wrote: 900 stays 900
Name = Annotated[StrictStr, Field(min_length=1, max_length=512)]
FileName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.]*\.v$")]


def first_error(e: ValidationError, whole: str) -> str:
    """`field.path: what is wrong` of a validation's first error (`whole` when it is the object's)."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "constrained-")))
    return f"{loc or whole}: {err['msg'].removeprefix('Value error, ')}"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Stream(_Entry):
    """How a tensor travels on a stream: `lanes` pixels of a row per beat, each `channels` x `bits`."""
    tensor: Name
    shape: list[Dim] = Field(min_length=1, max_length=3)
    lanes: Dim
    rows: Dim | None = None      # image rows per beat, when > 1 (a stem's input)
    bits: Bits
    signed: StrictBool
    beats: Pos

    @model_validator(mode="after")
    def _beats(self):
        if len(self.shape) == 2 or self.beats != items(self.shape, self.lanes, self.rows or 1) or self.rows == 1:
            raise ValueError(f"stream of {self.tensor}: beats {self.beats} do not follow from shape {self.shape}, "
                             f"lanes {self.lanes} and rows {self.rows} (absent, or > 1)")
        return self

    def bus_width(self) -> int:
        return self.lanes * (self.rows or 1) * self.shape[0] * self.bits


class PortStream(Stream):
    """A top-level stream port (`<port>_valid/_ready/_data`)."""
    port: Name
    channels: Dim
    width: Width

    @model_validator(mode="after")
    def _width(self):
        if self.channels != self.shape[0] or self.width != self.bus_width():
            raise ValueError(f"port {self.port}: width {self.width} is not lanes x channels x bits "
                             f"({self.lanes} x {self.channels} x {self.bits})")
        return self


class Port(_Entry):
    name: Name
    direction: Literal["input", "output"]
    width: Width


class BlockInput(Stream):
    port: Literal["in", "a", "b"]
    width: Width

    @model_validator(mode="after")
    def _width(self):
        if self.width != self.bus_width():
            raise ValueError(f"input {self.port} of {self.tensor}: width {self.width} is not lanes x channels x bits")
        return self


class Block(_Entry):
    """One layer instance of hf_top, cut out for block-by-block simulation."""
    instance: Annotated[StrictStr, Field(pattern=r"^u[0-9]+$")]
    module: Name
    file: FileName
    op: Name
    inputs: list[BlockInput] = Field(min_length=1, max_length=2)
    out_width: Width
    output: Stream

    @model_validator(mode="after")
    def _width(self):
        if self.out_width != self.output.bus_width() or [i.port for i in self.inputs] not in (["in"], ["a", "b"]):
            raise ValueError(f"block {self.instance}: ports or output width disagree with its streams")
        return self


class Shell(_Entry):
    """hf_top (or hf_chip) with every layer instance cut out: `file` (pipeline) or `files` (chip)."""
    top: Literal["hf_top_shell", "hf_chip_shell"]
    file: FileName | None = None
    files: list[FileName] | None = None
    blocks: list[Block]


class ModuleEntry(_Entry):
    """One generated layer module: its counts (from what was emitted) and its geometry."""
    name: Name
    op: Name
    kind: Literal["conv", "add", "avgpool", "maxpool", "avgpool2d", "linear"]
    file: FileName
    P: Pos
    in_width: list[Width] = Field(min_length=1, max_length=2)
    out_width: Width
    adders: Count
    adder_bits: Count
    register_bits: Count
    cycles_per_image: Pos
    shared: StrictBool
    adders_naive: Count
    adder_bits_naive: Count
    adder_depth: Count | None = None
    adder_depth_naive: Count | None = None
    lanes: Dim | None = None
    lanes_in: Dim | None = None
    lanes_out: Dim | None = None
    kernel: list[Dim] | None = Field(None, min_length=2, max_length=2)
    stride: list[Dim] | None = Field(None, min_length=2, max_length=2)
    padding: list[Annotated[StrictInt, Field(ge=0, le=1 << 20)]] | None = Field(None, min_length=2, max_length=2)
    groups: Dim | None = None
    traversal: list[Dim] | None = Field(None, min_length=2, max_length=2)
    mult: Count | None = None
    shift: Annotated[StrictInt, Field(ge=0, le=1 << 10)] | None = None
    pipeline_stages: Annotated[StrictInt, Field(ge=0, le=1 << 10)] | None = None   # pipelined convs
    lanes_src: Dim | None = None    # a conv fed through a width converter: its port's pixels per beat
    rows_in: Dim | None = None      # a stem conv fed several image rows per beat
    out_fifo_depth: Annotated[StrictInt, Field(ge=3, le=64)] | None = None   # deeper than the default (rtl.depths)
    comparators: Count | None = None          # a max pool's comparator trees (all lanes), rtl.pool
    comparator_bits: Count | None = None
    comparator_depth: Count | None = None
    # a global pool whose scaling is a multicycle path of this many cycles (rtl.layers.POOL_MULTICYCLE)
    multicycle: Annotated[StrictInt, Field(ge=2, le=64)] | None = None

    @model_validator(mode="after")
    def _kind_fields(self):
        if self.pipeline_stages is not None and self.kind != "conv":
            raise ValueError(f"module {self.name}: only convs are pipelined")
        if self.lanes_src is not None and (self.kind not in WALKS or self.lanes_src == self.lanes_in or
                                           (self.lanes_src % self.lanes_in and self.lanes_in % self.lanes_src)):
            raise ValueError(f"module {self.name}: a width converter is on a conv or windowed pool, from lanes that "
                             f"one of lanes_src and lanes_in divides")
        if self.out_fifo_depth is not None and self.kind not in ("conv", "add", "maxpool", "avgpool2d"):
            raise ValueError(f"module {self.name}: only convs, adds and windowed pools feed a conv through a sized "
                             f"output FIFO")
        if self.rows_in is not None and (self.kind != "conv" or self.rows_in < 2 or self.lanes_src is not None):
            raise ValueError(f"module {self.name}: rows_in (> 1) is for a stem conv fed by the chip input")
        if self.multicycle is not None and self.kind != "avgpool":
            raise ValueError(f"module {self.name}: only a global pool's scaling is a multicycle path")
        given = {k for k in KIND_FIELDS["all"] if getattr(self, k) is not None} - {"multicycle"}
        if given != KIND_FIELDS[self.kind]:
            diff = sorted(given ^ KIND_FIELDS[self.kind])
            raise ValueError(f"module {self.name} ({self.kind}): fields {', '.join(diff)} missing or not allowed")
        if not self.shared and (self.adders_naive, self.adder_bits_naive) != (self.adders, self.adder_bits):
            raise ValueError(f"module {self.name}: an unshared module's naive counts must equal its counts")
        return self

    def shareable(self) -> bool:
        """Layers the adder-sharing pass solves a graph for (ir.sharing)."""
        return self.kind == "linear" or (self.kind == "conv" and self.groups == 1)

    def copies(self) -> int:
        """Copies of the adder (comparator) network: one per output lane for convs, adds and windowed pools."""
        return self.P if self.kind in ("conv", "add", "maxpool", "avgpool2d") else 1


WALKS = ("conv", "maxpool", "avgpool2d")    # kinds that walk a window (rtl/window.py)
_WALK = {"kernel", "stride", "padding", "traversal", "lanes_in", "lanes_out"}
_CONV = _WALK | {"groups", "adder_depth", "adder_depth_naive"}
KIND_FIELDS = {"conv": _CONV, "add": {"lanes"}, "avgpool": {"mult", "shift", "lanes"},
               "maxpool": _WALK | {"comparators", "comparator_bits", "comparator_depth"},
               "avgpool2d": _WALK | {"mult", "shift", "adder_depth"},
               "linear": {"adder_depth", "adder_depth_naive"}}
KIND_FIELDS["all"] = set().union(*KIND_FIELDS.values())


class SkipFifo(_Entry):
    add: Name
    operand: Literal["a", "b"]
    tensor: Name
    depth: Annotated[StrictInt, Field(ge=1, le=1 << 24)]
    width: Width
    register_bits: Count

    @model_validator(mode="after")
    def _bits(self):
        if self.register_bits != fifo_register_bits(self.depth, self.width):
            raise ValueError(f"skip FIFO of {self.add}.{self.operand}: register_bits disagree with depth x width")
        return self


class LoadPort(_Entry):
    """How the NPU's load port is driven (text for people; the widths are in `ports`)."""
    weights: StrictStr
    bias_scale: StrictStr
    rows: StrictStr
    when: StrictStr


class NPUEntry(_Entry):
    """The programmable classifier and the chip top around it (docs/npu.md). Every figure follows
    from the geometry (lanes ... feature_range) and the pipeline's cycles; rtl.readback checks that
    it equals what the generator derives from them."""
    lanes: Annotated[StrictInt, Field(ge=1, le=1 << 14)]
    batch: Annotated[StrictInt, Field(ge=1, le=1 << 12)]
    in_features: Dim
    out_features: Annotated[StrictInt, Field(ge=1, le=1 << 16)]
    capacity: Annotated[StrictInt, Field(ge=1, le=1 << 16)]
    weight_bits: Bits
    bias_bits: Bits
    scale_bits: Bits
    feature_bits: Bits
    feature_range: list[Annotated[StrictInt, Field(ge=-(1 << 62), le=1 << 62)]] = Field(min_length=2, max_length=2)
    words_per_row: Pos
    memory_words: Pos
    word_bits: Pos
    multipliers: Pos
    scale_multipliers: Pos
    adders: Count
    acc_bits: Pos
    product_bits: Pos
    register_bits: Count
    memory_bits: Pos
    param_memory_bits: Pos
    cycles_per_image: Annotated[Num, Field(gt=0)]
    cycles_per_image_with_drain: Annotated[Num, Field(gt=0)]
    drain_cycles: Count
    cycles_per_batch: Annotated[Num, Field(gt=0)]
    cycles_per_image_at_capacity: Annotated[Num, Field(gt=0)]
    pipeline_cycles_per_image: Annotated[Num, Field(gt=0)]
    keeps_pace: StrictBool
    keeps_pace_at_capacity: StrictBool
    chip_cycles_per_image: Annotated[Num, Field(gt=0)]
    top: Literal["hf_chip"]
    files: list[FileName] = Field(min_length=1)
    ports: list[Port] = Field(min_length=1)
    input: PortStream
    outputs: list[PortStream] = Field(min_length=1, max_length=1)
    load_port: LoadPort
    shell: Shell

    @model_validator(mode="after")
    def _geometry(self):
        lo, hi = self.feature_range
        if lo > hi:
            raise ValueError(f"npu.feature_range [{lo}, {hi}] is empty")
        if self.lanes * self.batch > 1 << 16:
            raise ValueError(f"npu: {self.lanes} lanes x batch {self.batch} is more multipliers than any build has")
        if not self.shell.files or self.shell.file is not None:
            raise ValueError("npu.shell must list its files (and has no single file)")
        if self.out_features > self.capacity:
            raise ValueError(f"npu.out_features {self.out_features} exceeds its capacity {self.capacity}")
        if self.words_per_row != -(-self.in_features // self.lanes) or \
                self.memory_words != self.capacity * self.words_per_row or \
                self.word_bits != self.lanes * self.weight_bits or self.multipliers != self.lanes * self.batch:
            raise ValueError("npu geometry disagrees with itself (words_per_row, memory_words, word_bits and "
                             "multipliers follow from lanes, batch, in_features and capacity)")
        return self


class Manifest(_Entry):
    """BUILD/rtl/manifest.json."""
    format: Literal["hashiflex-rtl"]
    version: Literal[1]
    top: Literal["hf_top"]
    files: list[FileName] = Field(min_length=2)
    input: PortStream
    outputs: list[PortStream] = Field(min_length=1)
    ports: list[Port] = Field(min_length=5)
    handshake: StrictStr
    modules: list[ModuleEntry] = Field(min_length=1)
    skip_fifos: list[SkipFifo]
    parallelism: dict[Name, Pos]
    adders: Count
    adder_bits: Count
    shared: StrictBool
    adders_naive: Count
    adder_bits_naive: Count
    register_bits: Count
    expected_cycles_per_image: Pos
    bottleneck: Name
    out_fifo_depth: Literal[2]
    pipeline_levels: Annotated[StrictInt, Field(ge=1, le=64)] | None = None
    shell: Shell
    npu: NPUEntry | None = None
    sha256: dict[FileName, Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]]
    # SHA-256 of this file's own text without this field (to_json): an edit that the schema and the
    # cross-field rules accept still cannot change what a build says about itself
    seal: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")] | None = None   # None only while building

    @model_validator(mode="after")
    def _consistent(self):
        names = [m.name for m in self.modules]
        if len(set(names)) != len(names) or len({m.op for m in self.modules}) != len(names):
            raise ValueError("modules: names and ops must be unique")
        if self.files[0] != "hf_prims.v" or set(f"{m.name}.v" for m in self.modules) - set(self.files):
            raise ValueError("files must list hf_prims.v first and every module's file")
        if sum(m.adders for m in self.modules) != self.adders or \
                sum(m.adder_bits for m in self.modules) != self.adder_bits:
            raise ValueError("adders / adder_bits are not the sums over modules")
        if sum(m.adders_naive for m in self.modules) != self.adders_naive or \
                sum(m.adder_bits_naive for m in self.modules) != self.adder_bits_naive:
            raise ValueError("adders_naive / adder_bits_naive are not the sums over modules")
        if any((m.pipeline_stages is not None) != (self.pipeline_levels is not None and m.kind == "conv")
               for m in self.modules):
            raise ValueError("pipeline_stages: a pipelined build gives every conv its stages, others none")
        if any(m.shared != (self.shared and m.shareable()) for m in self.modules):
            raise ValueError("modules.shared: a shared build shares every full conv and Po2 linear, nothing else")
        if self.register_bits < sum(m.register_bits for m in self.modules) + sum(f.register_bits for f in
                                                                                  self.skip_fifos):
            raise ValueError("register_bits is below the modules' and skip FIFOs' register bits")
        cycles = [self.input.beats] + [m.cycles_per_image for m in self.modules]
        if max(cycles) != self.expected_cycles_per_image:
            raise ValueError("expected_cycles_per_image is not the slowest module's (or the input's) cycles")
        slowest = {"input": self.input.beats, **{m.op: m.cycles_per_image for m in self.modules}}
        if slowest.get(self.bottleneck) != self.expected_cycles_per_image:
            raise ValueError("bottleneck must name the slowest module (or 'input')")
        if self.input.port != "in" or self.input.bits != 8 or self.input.signed:
            raise ValueError("input must be the 8-bit unsigned port 'in'")
        if self.shell.file is None or self.shell.files is not None:
            raise ValueError("shell must name its file (and has no file list)")
        if len(self.shell.blocks) != len(self.modules) or any(
                (b.module, b.op, b.file, [i.width for i in b.inputs], b.out_width) !=
                (m.name, m.op, m.file, m.in_width, m.out_width) for b, m in zip(self.shell.blocks, self.modules)):
            raise ValueError("shell blocks must be the modules, in order, with the same ports")
        if set(self.parallelism) != set(m.op for m in self.modules) or \
                any(self.parallelism[m.op] != m.P for m in self.modules):
            raise ValueError("parallelism must give every module's P")
        ops = {m.op for m in self.modules}
        if any(f.add not in ops for f in self.skip_fifos) or any(b.op not in ops for b in self.shell.blocks):
            raise ValueError("skip_fifos and shell blocks must name generated layers")
        if self.sha256:
            listed = set(self.files) | {b.file for b in self.shell.blocks}
            if self.shell.file:
                listed.add(self.shell.file)
            if self.npu is not None:
                listed |= set(self.npu.files) | set(self.npu.shell.files or [])
            if listed - set(self.sha256):
                raise ValueError(f"sha256 lacks {', '.join(sorted(listed - set(self.sha256))[:3])}")
            if set(self.sha256) - listed:
                raise ValueError(f"sha256 names files the manifest does not list "
                                 f"({', '.join(sorted(set(self.sha256) - listed)[:3])})")
        return self

    def module(self, op: str) -> ModuleEntry | None:
        """The module generated for layer `op`, if any."""
        return next((m for m in self.modules if m.op == op), None)

    def first_p(self, first_op: str) -> int:
        return self.parallelism.get(first_op, 1)

    def formats(self) -> dict[str, tuple[int, int]]:
        """{op: (G, V)}: the lanes each layer's core takes (after its width converter, if any) and
        the rows per beat."""
        return {m.op: (m.lanes_in or m.lanes or 1, m.rows_in or 1) for m in self.modules}

    def to_json(self) -> str:
        """The file's text: sorted keys, one-space indent, absent optional fields left out, sealed
        (`seal`: the SHA-256 of the same text without it)."""
        body = self.model_dump(exclude_none=True, exclude={"seal"})
        return json.dumps(dict(body, seal=_seal_of(body)), indent=1, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, obj, where: str = FILE, redo: str = "re-run 'hashiflex compile'") -> "Manifest":
        """A manifest from a decoded JSON object, or UserError naming the field and what is wrong."""
        if not isinstance(obj, dict):
            raise UserError(f"{where} is not a hashiflex RTL manifest (not a JSON object); {redo}")
        if obj.get("format") != FORMAT:
            raise UserError(f"{where} is not a hashiflex RTL manifest (format is not {FORMAT!r}); {redo}")
        v = obj.get("version")
        if not isinstance(v, int) or isinstance(v, bool) or v != VERSION:
            newer = isinstance(v, int) and not isinstance(v, bool) and v > VERSION
            raise UserError(f"{where} has manifest version {v!r}; this hashiflex reads version {VERSION}"
                            + ("; upgrade hashiflex or " if newer else "; ") + redo)
        if "sha256" not in obj or "seal" not in obj:
            raise UserError(f"{where} has no file checksums or no seal (written by an older hashiflex); {redo}")
        try:
            man = cls.model_validate(obj)
        except ValidationError as e:
            raise UserError(f"{where}: {first_error(e, 'manifest')}; {redo}") from None
        if man.seal != _seal_of({k: v for k, v in obj.items() if k != "seal"}):
            raise UserError(f"{where} was edited after hashiflex wrote it (its seal does not match its text); {redo}")
        return man


def _seal_of(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, indent=1, sort_keys=True).encode()).hexdigest()


__all__ = ["FILE", "FORMAT", "VERSION", "Block", "BlockInput", "Manifest", "ModuleEntry", "NPUEntry", "Port",
           "PortStream", "Shell", "SkipFifo", "Stream"]
