"""`hashiflex report DIR`: one self-contained HTML file from a demo run's folder."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import output_file


def run(args):
    from ..report import write_report

    run_dir = Path(args.dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a folder: run 'hashiflex demo --out {run_dir}' first")
    out = output_file(args.out) if args.out else output_file(str(run_dir / "report.html"))
    path = write_report(run_dir, out)
    size = path.stat().st_size
    return {"report": str(path), "bytes": size}, f"wrote {path} ({size / 1024:.0f} KiB, self-contained HTML)"
