"""The HTML report: `write_report(run_dir)` renders DIR/summary.json (written by `hashiflex demo`)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ..checkpoint import BUILTIN_DIR, atomic_write
from ..errors import UserError

# The committed sweep (hashiflex sweep on the default FP32 model); a run folder's own sweep.csv wins.
SHIPPED_SWEEP = BUILTIN_DIR / "sweep.csv"


def read_sweep(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for r in rows:
            int(r["exp_bits"]), float(r["prune"]), float(r["accuracy"])
    except (OSError, KeyError, ValueError, TypeError) as e:
        raise UserError(f"sweep table {path} is unreadable ({' '.join(str(e).split())}): rerun 'hashiflex sweep'") from None
    return rows


def load_summary(run_dir: Path) -> dict:
    p = Path(run_dir) / "summary.json"
    if not p.is_file():
        raise UserError(f"{p} not found: run 'hashiflex demo --out {run_dir}' first")
    try:
        s = json.loads(p.read_text())
        if not isinstance(s, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{p} is corrupt ({' '.join(str(e).split())[:120]}): rerun 'hashiflex demo'") from None
    return s


def write_report(run_dir, out=None) -> Path:
    from .html import render

    run_dir = Path(run_dir)
    summary = load_summary(run_dir)
    own = run_dir / "sweep.csv"
    sweep = read_sweep(own) if own.is_file() else (read_sweep(SHIPPED_SWEEP) if SHIPPED_SWEEP.is_file() else [])
    out = Path(out) if out else run_dir / "report.html"
    text = render(summary, sweep)
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return out
