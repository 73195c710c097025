"""The RTL manifest (BUILD/rtl/manifest.json) as typed objects: the contract between the RTL
generator and every reader (verification, the cost model, NPU images, fine-tuning, reports).

`Manifest.to_json()` writes the file; `Manifest.read(path)` reads it back and checks it against
the schema below on every read: types (strict: no "5" for 5, no 1 for true), finite numbers,
ranges, unknown or missing fields, and cross-field consistency (stream widths = lanes x channels x
bits, files covered by checksums, module names unique, the NPU's geometry). A file that fails
gives one line naming the file, the field and what to do. Spec: docs/architecture.md.

Version history: 1 = the first typed manifest (same JSON as the untyped one before it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, ValidationError
from pydantic import model_validator

from ..errors import UserError

FORMAT = "hashiflex-rtl"
VERSION = 1
FILE = "manifest.json"

Count = Annotated[StrictInt, Field(ge=0)]
Pos = Annotated[StrictInt, Field(ge=1)]
Num = StrictInt | StrictFloat            # JSON keeps what the generator wrote: 900 stays 900, 12.5 stays 12.5
Name = Annotated[StrictStr, Field(min_length=1, max_length=512)]
FileName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.]*\.v$")]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Stream(_Entry):
    """How a tensor travels on a stream: `lanes` pixels of a row per beat, each `channels` x `bits`."""
    tensor: Name
    shape: list[Pos] = Field(min_length=1, max_length=3)
    lanes: Pos
    bits: Pos
    signed: StrictBool
    beats: Pos


class PortStream(Stream):
    """A top-level stream port (`<port>_valid/_ready/_data`)."""
    port: Name
    channels: Pos
    width: Pos

    @model_validator(mode="after")
    def _width(self):
        if self.channels != self.shape[0] or self.width != self.lanes * self.channels * self.bits:
            raise ValueError(f"port {self.port}: width {self.width} is not lanes x channels x bits "
                             f"({self.lanes} x {self.channels} x {self.bits})")
        return self


class Port(_Entry):
    name: Name
    direction: Literal["input", "output"]
    width: Pos


class BlockInput(Stream):
    port: Name
    width: Pos


class Block(_Entry):
    """One layer instance of hf_top, cut out for block-by-block simulation."""
    instance: Annotated[StrictStr, Field(pattern=r"^u[0-9]+$")]
    module: Name
    file: FileName
    op: Name
    inputs: list[BlockInput] = Field(min_length=1, max_length=2)
    out_width: Pos
    output: Stream


class Shell(_Entry):
    """hf_top (or hf_chip) with every layer instance cut out: `file` (pipeline) or `files` (chip)."""
    top: Name
    file: FileName | None = None
    files: list[FileName] | None = None
    blocks: list[Block]


class ModuleEntry(_Entry):
    """One generated layer module: its counts (from what was emitted) and its geometry."""
    name: Name
    op: Name
    kind: Literal["conv", "add", "avgpool", "linear"]
    file: FileName
    P: Pos
    in_width: list[Pos] = Field(min_length=1, max_length=2)
    out_width: Pos
    adders: Count
    adder_bits: Count
    register_bits: Count
    cycles_per_image: Pos
    shared: StrictBool
    adders_naive: Count
    adder_bits_naive: Count
    adder_depth: Count | None = None
    adder_depth_naive: Count | None = None
    lanes: Pos | None = None
    lanes_in: Pos | None = None
    lanes_out: Pos | None = None
    kernel: list[Pos] | None = Field(None, min_length=2, max_length=2)
    stride: list[Pos] | None = Field(None, min_length=2, max_length=2)
    padding: list[Count] | None = Field(None, min_length=2, max_length=2)
    groups: Pos | None = None
    traversal: list[Pos] | None = Field(None, min_length=2, max_length=2)
    mult: Count | None = None
    shift: Count | None = None

    def copies(self) -> int:
        """Copies of the adder network: one per output lane for convs and adds."""
        return self.P if self.kind in ("conv", "add") else 1


class SkipFifo(_Entry):
    add: Name
    operand: Literal["a", "b"]
    tensor: Name
    depth: Pos
    width: Pos
    register_bits: Count


class NPUEntry(_Entry):
    """The programmable classifier and the chip top around it (docs/npu.md)."""
    lanes: Pos
    batch: Pos
    in_features: Pos
    out_features: Pos
    capacity: Pos
    weight_bits: Pos
    bias_bits: Pos
    scale_bits: Pos
    feature_bits: Pos
    feature_range: list[StrictInt] = Field(min_length=2, max_length=2)
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
    top: Name
    files: list[FileName] = Field(min_length=1)
    ports: list[Port] = Field(min_length=1)
    input: PortStream
    outputs: list[PortStream] = Field(min_length=1, max_length=1)
    load_port: dict[Name, StrictStr]
    shell: Shell

    @model_validator(mode="after")
    def _geometry(self):
        lo, hi = self.feature_range
        if lo > hi:
            raise ValueError(f"npu.feature_range [{lo}, {hi}] is empty")
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
    top: Name
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
    out_fifo_depth: Pos
    shell: Shell
    npu: NPUEntry | None = None
    sha256: dict[FileName, Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(default_factory=dict)

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
        if max(m.cycles_per_image for m in self.modules) > self.expected_cycles_per_image:
            raise ValueError("expected_cycles_per_image is below a module's cycles_per_image")
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
        return self

    def module(self, op: str) -> ModuleEntry | None:
        """The module generated for layer `op`, if any."""
        return next((m for m in self.modules if m.op == op), None)

    def first_p(self, first_op: str) -> int:
        return self.parallelism.get(first_op, 1)

    def to_json(self) -> str:
        """The file's text: sorted keys, one-space indent, absent optional fields left out."""
        return json.dumps(self.model_dump(exclude_none=True), indent=1, sort_keys=True) + "\n"

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
        try:
            return cls.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "constrained-")))
            msg = err["msg"].removeprefix("Value error, ")
            raise UserError(f"{where}: {loc or 'manifest'}: {msg}; {redo}") from None

    @classmethod
    def read(cls, path, redo: str | None = None) -> "Manifest":
        """Read and check BUILD/rtl/manifest.json."""
        p = Path(path)
        redo = redo or f"re-run 'hashiflex compile --out {p.parent.parent if p.parent.name == 'rtl' else p.parent}'"
        try:
            obj = json.loads(p.read_text())
        except (OSError, ValueError) as e:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise UserError(f"{p} is not valid JSON ({type(e).__name__}); {redo}") from None
        return cls.parse(obj, str(p), redo)


def find_manifest(build_dir) -> tuple[Path, Manifest] | None:
    """(folder, manifest) of a build's RTL: build_dir/rtl or build_dir itself; None when neither
    holds a manifest.json (an IR-only build). The manifest is checked as it is read."""
    base = Path(build_dir)
    for d in (base / "rtl", base):
        if (d / FILE).is_file():
            return d, Manifest.read(d / FILE, f"re-run 'hashiflex compile --out {base}'")
    return None


def build_npu(build_dir) -> NPUEntry:
    """The NPU entry of a build's manifest, or a UserError saying how to get one."""
    found = find_manifest(build_dir)
    if found is None:
        raise UserError(f"no RTL in {build_dir}: run 'hashiflex compile --out {build_dir}' first (manifest.json "
                        "missing)")
    if found[1].npu is None:
        raise UserError(f"{build_dir} has no NPU: recompile it with 'hashiflex compile' from a checkpoint with an "
                        "int8 classifier")
    return found[1].npu


__all__ = ["FILE", "build_npu", "find_manifest", "FORMAT", "VERSION", "Block", "BlockInput", "Manifest", "ModuleEntry", "NPUEntry", "Port",
           "PortStream", "Shell", "SkipFifo", "Stream"]
