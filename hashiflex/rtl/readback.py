"""Reading back what `compile` wrote: BUILD/rtl/manifest.json checked against its schema
(rtl.manifest) and against what the generator derives from it: the top's ports from its streams,
the NPU entry from its geometry, and (with the IR) every stream and module from the program.
Every reader of a build's RTL goes through here."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..ir.spec import Program, npu_op
from .chip import chip_verilog, geometry_of, npu_entry
from .common import stream_bits
from .generate import top_ports
from .manifest import FILE, Manifest, NPUEntry
from .npu import npu_verilog
from .schedule import hw_ops


def derived_errors(man: Manifest) -> list[str]:
    """What in `man` disagrees with what the generator derives from the rest of it."""
    if man.ports != top_ports(man.input.width, man.outputs):
        return ["ports disagree with input and outputs"]
    errs = []
    n = man.npu
    if n is not None and [o.port for o in man.outputs] != ["feat"]:
        return ["a chip with an NPU streams only the feature vector ('feat') out of its pipeline"]
    if n is not None:
        g = geometry_of(n)
        _, stats = npu_verilog(g)
        _, ports = chip_verilog(g, man.ports)
        want = npu_entry(g, stats, float(man.expected_cycles_per_image), n.files, man, ports, n.shell)
        bad = [k for k in NPUEntry.model_fields if getattr(want, k) != getattr(n, k)]
        if bad:
            errs.append(f"npu.{bad[0]} disagrees with the NPU's geometry")
        if n.files[:len(man.files)] != man.files or n.shell.blocks != man.shell.blocks:
            errs.append("npu.files / npu.shell.blocks disagree with the pipeline's")
    return errs


def read_manifest(path, redo: str | None = None) -> Manifest:
    """Read and check a manifest.json file."""
    p = Path(path)
    redo = redo or f"re-run 'hashiflex compile --out {p.parent.parent if p.parent.name == 'rtl' else p.parent}'"
    try:
        obj = json.loads(p.read_text())
    except (OSError, ValueError) as e:   # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise UserError(f"{p} is not valid JSON ({type(e).__name__}); {redo}") from None
    man = Manifest.parse(obj, str(p), redo)
    errs = derived_errors(man)
    if errs:
        raise UserError(f"{p}: {errs[0]}; {redo}")
    return man


def find_manifest(build_dir) -> tuple[Path, Manifest] | None:
    """(folder, manifest) of a build's RTL: build_dir/rtl or build_dir itself; None when neither
    holds a manifest.json (an IR-only build). The manifest is checked as it is read."""
    base = Path(build_dir)
    for d in (base / "rtl", base):
        if (d / FILE).is_file():
            return d, read_manifest(d / FILE, f"re-run 'hashiflex compile --out {base}'")
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


def program_errors(man: Manifest, prog: Program) -> list[str]:
    """What in `man` disagrees with the program it claims to implement: one module per hardware
    op, in order, of the right kind, and every stream's shape, bits and signedness."""
    ops = hw_ops(prog)
    kinds = {"Conv": "conv", "Add": "add", "AvgPool": "avgpool", "MaxPool": "maxpool", "AvgPoolWindow": "avgpool2d",
             "Linear": "linear"}
    if [m.op for m in man.modules] != [op.name for op in ops] or \
            any(m.kind != kinds[type(op).__name__] for m, op in zip(man.modules, ops)):
        return ["its modules are not the program's hardware layers"]
    if man.npu is not None and npu_op(prog) is None:
        return ["it has an NPU but the classifier is hardened (Po2)"]
    adds = {op.name: op for op in ops if type(op).__name__ == "Add"}
    if any(f.add not in adds or getattr(adds[f.add], f.operand) != f.tensor for f in man.skip_fifos):
        return ["a skip FIFO is not on an operand of a residual add"]
    streams = [man.input, *man.outputs] + [s for b in man.shell.blocks for s in (*b.inputs, b.output)]
    for s in streams:
        t = prog.tensors.get(s.tensor)
        if t is None or list(t.shape) != s.shape:
            return [f"stream {s.tensor} is not a tensor of this shape in the program"]
        if s.tensor != prog.input and (s.bits, s.signed) != (stream_bits(t), bool(t.lo < 0)):
            return [f"stream {s.tensor}: bits / signedness disagree with the program's interval"]
    return []


def check_program(man: Manifest, prog: Program, where) -> None:
    """UserError unless the manifest belongs to `prog` (the IR saved beside it)."""
    errs = program_errors(man, prog)
    if errs:
        raise UserError(f"{where}: the RTL does not match the IR beside it ({errs[0]}); re-run 'hashiflex compile'")


__all__ = ["build_npu", "check_program", "derived_errors", "find_manifest", "program_errors", "read_manifest"]
