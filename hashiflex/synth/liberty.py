"""Liberty cell libraries: the ASAP7 files shipped with the package, or the user's (`--liberty`).

A `CellLibrary` is read once per run: every file is decompressed (`.gz`) and scanned for its cells,
their areas and functions, and refused in one line when it is not a liberty file or when the set
lacks a cell the mapping needs (a flip-flop, an inverter, a buffer for ABC's drive constraint). The
scan is a screen, not a parser: Yosys and OpenSTA parse the files for real and their refusals are
reported in one line too (synth.run).
"""
from __future__ import annotations

import gzip
import hashlib
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import UserError

SHIPPED = ("asap7sc7p5t_SIMPLE_RVT_TT_nldm_211120.lib.gz", "asap7sc7p5t_INVBUF_RVT_TT_nldm_220122.lib.gz",
           "asap7sc7p5t_SEQ_RVT_TT_nldm_220123.lib.gz")
SHIPPED_CORNER = "ASAP7 RVT TT (0.7 V, 25 C), NLDM"
# Flip-flops dfflibmap must not pick: a QN flop plus an inverter is smaller than the x4 Q flop,
# and the negative-edge flops never apply (every generated register is posedge).
DFF_DONT_USE = ("DFFHQx4*", "DFFLQ*")
MAX_LIBERTY_BYTES = 256 << 20

_CELL = re.compile(r"\bcell\s*\(\s*\"?([A-Za-z0-9_$.\[\]-]+)\"?\s*\)\s*\{")
_AREA = re.compile(r"\barea\s*:\s*([0-9.eE+-]+)")
_PIN = re.compile(r"(?<![_a-z])pin\s*\(\s*\"?(\w+)\"?\s*\)\s*\{")
_FUNC = re.compile(r"\bfunction\s*:\s*\"([^\"]*)\"")
_FF = re.compile(r"\bff\s*\(")


@dataclass(frozen=True)
class Cell:
    name: str
    area: float
    outputs: tuple[tuple[str, str], ...]    # (pin, function) of each output pin with a function
    sequential: bool

    @property
    def functions(self) -> tuple[str, ...]:
        return tuple(f for _, f in self.outputs)


@dataclass
class CellLibrary:
    """The liberty files of one run: their bytes (decompressed), cells and a content hash."""
    names: list[str]
    texts: list[bytes]
    cells: dict[str, Cell] = field(default_factory=dict)
    shipped: bool = True

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for n, t in zip(self.names, self.texts):
            h.update(n.encode() + b"\0" + hashlib.sha256(t).digest())
        return h.hexdigest()

    @property
    def corner(self) -> str:
        return SHIPPED_CORNER if self.shipped else "user liberty: " + ", ".join(self.names)

    def buffer_cell(self) -> str:
        """The smallest non-inverting buffer: ABC's assumed driver of every module input."""
        bufs = [c for c in self.cells.values() if not c.sequential and c.functions and
                all(re.fullmatch(r"\(?\s*[A-Za-z_]\w*\s*\)?", f) for f in c.functions)]
        named = [c for c in bufs if c.name.upper().startswith("BUF")] or bufs   # not the hold buffers
        return min(named, key=lambda c: (c.area, c.name)).name

    def buffer_pins(self) -> tuple[str, str, str]:
        """(buffer cell, input pin, output pin): the cell `insbuf` puts where a netlist would
        otherwise need `assign` (an output port driven by another port's net)."""
        cell = self.cells[self.buffer_cell()]
        pin, fn = cell.outputs[0]
        return cell.name, fn.strip("() "), pin

    def tie_cells(self) -> tuple[str, str, str, str] | None:
        """(tie-high cell, its pin, tie-low cell, its pin) when the library has both (constants
        become cells, as a real netlist needs)."""
        hi = sorted((c.name, c.outputs[0][0]) for c in self.cells.values() if c.functions == ("1",))
        lo = sorted((c.name, c.outputs[0][0]) for c in self.cells.values() if c.functions == ("0",))
        return (*hi[0], *lo[0]) if hi and lo else None

    def area_of(self, cell: str) -> float:
        return self.cells[cell].area


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size
        if size > MAX_LIBERTY_BYTES:
            raise UserError(f"liberty file {path} is {size >> 20} MB, more than {MAX_LIBERTY_BYTES >> 20} MB")
        raw = path.read_bytes()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cannot read liberty file {path} ({type(e).__name__}: "
                        f"{' '.join(str(e).split()) or 'damaged'}); give a readable .lib or .lib.gz") from None


def _scan(name: str, text: bytes) -> dict[str, Cell]:
    try:
        s = text.decode("ascii")
    except UnicodeDecodeError:
        raise UserError(f"liberty file {name} is not ASCII text: is it a liberty (.lib) file?") from None
    if not re.search(r"\blibrary\s*\(", s):
        raise UserError(f"{name} has no 'library (...)' group: not a liberty file")
    starts = [(m.start(), m.group(1)) for m in _CELL.finditer(s)]
    cells = {}
    for i, (pos, cname) in enumerate(starts):
        body = s[pos:starts[i + 1][0] if i + 1 < len(starts) else len(s)]
        area = _AREA.search(body)
        if area is None:
            raise UserError(f"liberty file {name}: cell {cname} has no area; the file is damaged or not a "
                            "standard-cell library")
        outputs = []
        pins = list(_PIN.finditer(body))
        for k, pm in enumerate(pins):
            pin_body = body[pm.end():pins[k + 1].start() if k + 1 < len(pins) else len(body)]
            fn = _FUNC.search(pin_body)
            if fn and re.search(r"\bdirection\s*:\s*output", pin_body):
                outputs.append((pm.group(1), fn.group(1)))
        cells[cname] = Cell(cname, float(area.group(1)), tuple(outputs), bool(_FF.search(body)))
    if not cells:
        raise UserError(f"liberty file {name} has no cells")
    return cells


def load(paths: list[str] | None = None) -> CellLibrary:
    """The shipped ASAP7 RVT TT files, or the given ones; checked for the cells the flow needs."""
    if paths:
        files = [Path(p) for p in paths]
        for p in files:
            if not p.is_file():
                raise UserError(f"liberty file {p} not found: give existing .lib or .lib.gz files with --liberty")
        names = [p.name[:-3] if p.name.endswith(".gz") else p.name for p in files]
        if len(set(names)) != len(names):
            raise UserError("--liberty names two files with the same name: rename one")
        lib = CellLibrary(names, [_read(p) for p in files], shipped=False)
    else:
        base = resources.files(__package__) / "asap7"
        lib = CellLibrary([n[:-3] for n in SHIPPED], [_read(Path(str(base / n))) for n in SHIPPED])
    for n, t in zip(lib.names, lib.texts):
        for c in _scan(n, t).values():
            lib.cells.setdefault(c.name, c)
    where = "the --liberty files" if not lib.shipped else "the shipped ASAP7 files (reinstall hashiflex)"
    if not any(c.sequential for c in lib.cells.values()):
        raise UserError(f"{where} have no flip-flop cell: add the sequential library (e.g. ASAP7's SEQ .lib)")
    if not any(c.functions and re.fullmatch(r"\s*[!(]*\s*[A-Za-z_]\w*\s*'?\s*\)?\s*", c.functions[0]) and
               ("!" in c.functions[0] or "'" in c.functions[0]) for c in lib.cells.values()):
        raise UserError(f"{where} have no inverter: add the INVBUF (inverter and buffer) library")
    try:
        lib.buffer_cell()
    except ValueError:
        raise UserError(f"{where} have no buffer cell: add the INVBUF (inverter and buffer) library") from None
    return lib


def write_into(lib: CellLibrary, folder: Path) -> list[str]:
    """Write the decompressed files into `folder` (YoWASP's Yosys sees only its working folder);
    returns their names there."""
    for n, t in zip(lib.names, lib.texts):
        (folder / n).write_bytes(t)
    return list(lib.names)
