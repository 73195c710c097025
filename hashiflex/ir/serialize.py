"""IR files: `<stem>.json` (structure, versioned) + `<stem>.npz` (integer arrays, no pickle).

Arrays whose integers exceed int64 (possible only in bounds of very wide exponent fields) are
stored as decimal strings and restored as Python-int object arrays.
"""
from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write
from ..errors import UserError, os_error_hint
from .spec import IR_VERSION, OP_TYPES, Program, Tensor

FORMAT = "hashiflex-ir"


def _op_to_json(op) -> dict:
    d = dataclasses.asdict(op)
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def to_json(prog: Program) -> str:
    doc = {"format": FORMAT, "version": prog.version, "input": prog.input, "output": prog.output,
           "meta": prog.meta,
           "tensors": [dict(dataclasses.asdict(t), shape=list(t.shape)) for t in prog.tensors.values()],
           "ops": [_op_to_json(op) for op in prog.ops]}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    safe = {k: (v.astype(str) if v.dtype == object else v) for k, v in sorted(arrays.items())}
    np.savez(buf, **safe)
    return buf.getvalue()


def save(prog: Program, out_dir, stem: str = "model.ir") -> tuple[Path, Path]:
    out = Path(out_dir)
    js, npz = out / f"{stem}.json", out / f"{stem}.npz"
    data = _npz_bytes(prog.arrays)
    try:
        atomic_write(npz, lambda tmp: Path(tmp).write_bytes(data))
        atomic_write(js, lambda tmp: Path(tmp).write_text(to_json(prog)))
    except OSError as e:
        raise UserError(f"cannot write IR into {out}: {os_error_hint(e)}") from None
    return js, npz


def _restore(v: np.ndarray) -> np.ndarray:
    if v.dtype.kind == "U":
        return np.array([int(s) for s in v.flat], dtype=object).reshape(v.shape)
    return v


def _check_bounds(prog: Program) -> None:
    """The stored interval bounds are the ones the analysis derives from the stored ops and
    weights (the RTL sizes every adder from them): ValueError naming the first that differs."""
    from .intervals import analyze

    stored = [v for t in prog.tensors.values() for v in (t.lo, t.hi)] + [v for o in prog.ops for v in (o.acc_lo, o.acc_hi)]
    if all(v is None for v in stored):
        return   # not analyzed: nothing stored to disagree
    again = analyze(prog)
    for name, t in prog.tensors.items():
        u = again.tensors[name]
        if (t.lo, t.hi) != (u.lo, u.hi):
            raise ValueError(f"tensor {name}: stored bounds [{t.lo}, {t.hi}] are not the analysis' [{u.lo}, {u.hi}]")
    for op, o2 in zip(prog.ops, again.ops):
        if (op.acc_lo, op.acc_hi) != (o2.acc_lo, o2.acc_hi):
            raise ValueError(f"op {op.name}: stored accumulator bounds are not the analysis'")
    for key, v in again.arrays.items():
        if key.endswith((".acc_lo", ".acc_hi")) and (key not in prog.arrays or
                                                     not np.array_equal(prog.arrays[key], v)):
            raise ValueError(f"array {key} is not the analysis' per-channel bound")


def load(out_dir, stem: str = "model.ir") -> Program:
    d = Path(out_dir)
    js, npz = d / f"{stem}.json", d / f"{stem}.npz"
    if not js.is_file() or not npz.is_file():
        raise UserError(f"no IR in {d} ({js.name} and {npz.name} expected): run 'hashiflex compile --out {d}' first")
    try:
        doc = json.loads(js.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{js} is not valid JSON ({e}); re-run 'hashiflex compile'") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{js} is not a hashiflex IR file; re-run 'hashiflex compile'")
    if doc.get("version") != IR_VERSION:
        raise UserError(f"{js} has IR version {doc.get('version')}, this hashiflex reads version {IR_VERSION}: "
                        f"re-run 'hashiflex compile'")
    try:  # our own file handle: np.load leaks its own when the zip is corrupt
        with open(npz, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("not an npz archive")
            with z:
                arrays = {k: _restore(z[k]) for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise UserError(f"{npz} is corrupt ({type(e).__name__}); re-run 'hashiflex compile'") from None
    try:
        tensors = {t["name"]: Tensor(**dict(t, shape=tuple(t["shape"]))) for t in doc["tensors"]}
        ops = []
        for o in doc["ops"]:
            o = dict(o)
            cls = OP_TYPES[o.pop("kind")]
            o = {k: (tuple(v) if isinstance(v, list) else v) for k, v in o.items()}
            ops.append(cls(**o))
        prog = Program(tensors, tuple(ops), doc["input"], doc["output"], arrays, doc.get("meta", {}))
        prog.validate()
        _check_bounds(prog)
        for op in prog.ops:
            w = getattr(op, "weight", None)
            if w is not None and arrays[w].dtype != np.int8:
                raise ValueError(f"{w} must be int8")
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{js} / {npz} do not form a valid IR ({e}); re-run 'hashiflex compile'") from None
    return prog
