"""`hashiflex sweep`: accuracy for every (exponent bits, pruning rate) pair, as CSV and a plot."""
from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from .. import checkpoint
from ..errors import UserError, os_error_hint
from ..progress import bar
from ..sim.golden import golden_accuracy
from ..quant.qat import quantize_from_fp32
from .common import check_finite, load_split, writable_dir
from .quantize import check_training_options, load_fp32_source, qat_settings

FIELDS = ("exp_bits", "prune", "accuracy", "sparsity", "seconds")


def _plot(path: Path, rows: list[dict], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for e in sorted({r["exp_bits"] for r in rows}):
        pts = sorted((r["prune"], r["accuracy"]) for r in rows if r["exp_bits"] == e)
        ax.plot([p for p, _ in pts], [a for _, a in pts], marker="o", label=f"{e}-bit exponent")
    ax.set_xlabel("pruned fraction of hardened weights (target)")
    ax.set_ylabel("test accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    checkpoint.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def _write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    checkpoint.atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def run(args):
    if not args.exp_bits_list or not args.prune_list:
        raise UserError("--exp-bits-list and --prune-list need at least one value each")
    grid = [(e, p) for e in args.exp_bits_list for p in args.prune_list]
    check_training_options(args)
    try:  # validate every point before any work
        settings = [qat_settings(args, e, p) for e, p in grid]
    except UserError as err:
        raise UserError(f"{err} (in --exp-bits-list/--prune-list)") from None
    out = writable_dir(args.out)
    load_fp32_source(args.checkpoint)
    xtr, ytr = load_split("train", args.data, args.limit)
    xte, yte = load_split("test", args.data, args.test_limit)

    t0 = time.time()
    rows = []
    with bar(total=len(grid), desc="sweep", unit="run") as pb:
        for (e, p), s in zip(grid, settings):
            r = quantize_from_fp32(args.checkpoint, xtr, ytr, xte, yte, s, evaluate=golden_accuracy)
            check_finite(r.model.state_dict(), f"QAT with --exp-bits {e} --prune {p}")
            rows.append({"exp_bits": e, "prune": p, "accuracy": r.accuracy, "sparsity": r.sparsity,
                         "seconds": round(r.seconds, 1)})
            pb.update(1)
    epochs = settings[0].train.epochs
    csv_path, png_path = out / "sweep.csv", out / "sweep.png"
    try:  # each file is written to a temporary name and renamed
        _write_csv(csv_path, rows)
        _plot(png_path, rows, f"Po2 QAT from {Path(args.checkpoint).name}: {epochs:g} epochs on {len(xtr)} images, "
                              f"{len(xte)} test images")
    except OSError as e:
        raise UserError(f"cannot write the sweep results into {out}: {os_error_hint(e)}") from None
    result = {"csv": str(csv_path), "png": str(png_path), "checkpoint": args.checkpoint, "epochs": epochs,
              "train_images": len(xtr), "images": len(xte), "results": rows, "seconds": round(time.time() - t0, 1)}
    table = "\n".join(f"  {r['exp_bits']:>8} {r['prune']:>6.2f} {r['accuracy']:>9.4f} {r['sparsity']:>9.1%}"
                      for r in rows)
    summary = (f"exp_bits  prune  accuracy  sparsity\n{table}\nwrote {csv_path} and {png_path}")
    return result, summary
