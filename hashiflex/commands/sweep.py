"""`hashiflex sweep`: accuracy for every (exponent bits, pruning rate, seed) point, as CSV and a
plot; points run here one after another or as Ray tasks (`--ray`, hashiflex.cluster), and a re-run
with the same --out skips the points already finished (OUT/points/)."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

from .. import checkpoint
from ..errors import UserError, os_error_hint
from ..progress import bar
from ..sim.golden import golden_accuracy
from ..quant.qat import quantize_from_fp32
from .common import check_finite, dataset_splits, writable_dir
from .quantize import check_training_options, load_fp32_source, qat_settings

FIELDS = ("exp_bits", "prune", "seed", "accuracy", "sparsity", "accuracy_mean", "accuracy_spread")
POINTS = "points"     # OUT/points/<point>.json: each finished point, so a re-run skips it


def point_name(e: int, p: float, seed: int) -> str:
    return f"e{e}_p{p:g}_s{seed}"


def run_point(ckpt: bytes, data: tuple, settings, keep: bool) -> dict:
    """One sweep point: QAT from the FP32 checkpoint `ckpt` (its bytes, so a Ray worker on another
    node needs no shared disk) on one CPU thread, the unit a Ray task runs; the serial sweep calls
    it too, so both give the same numbers. Returns accuracy, sparsity, seconds and, with `keep`,
    the quantized checkpoint's bytes."""
    import tempfile

    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory(prefix="hf-sweep-") as d:
            src = Path(d) / "fp32.pt"
            src.write_bytes(ckpt)
            r = quantize_from_fp32(str(src), *data, settings, evaluate=golden_accuracy)
            q = settings.quant
            check_finite(r.model.state_dict(), f"QAT with --exp-bits {q.exp_bits} --prune {q.prune}")
            rec = {"accuracy": r.accuracy, "sparsity": r.sparsity, "seconds": round(r.seconds, 1)}
            if keep:
                r.save(Path(d) / "q.pt", extra_meta={"command": "hashiflex sweep"})
                rec["checkpoint"] = (Path(d) / "q.pt").read_bytes()
        return rec
    finally:
        torch.set_num_threads(threads)


def _plot(path: Path, rows: list[dict], title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for e in sorted({r["exp_bits"] for r in rows}):   # the mean over seeds, the spread as an error bar
        pts = sorted({(r["prune"], r["accuracy_mean"], r["accuracy_spread"]) for r in rows if r["exp_bits"] == e})
        ax.errorbar([p for p, _, _ in pts], [a for _, a, _ in pts], yerr=[s / 2 for _, _, s in pts], marker="o",
                    capsize=3, label=f"{e}-bit exponent")
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
    w.writerows({k: r[k] for k in FIELDS} for r in rows)
    checkpoint.atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))


def _with_seed_stats(rows: list[dict]) -> list[dict]:
    """Each row plus the mean and spread (max - min) of the accuracy over its point's seeds."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["exp_bits"], r["prune"]), []).append(r["accuracy"])
    return [dict(r, accuracy_mean=round(sum(a) / len(a), 6), accuracy_spread=round(max(a) - min(a), 6))
            for r in rows for a in [groups[(r["exp_bits"], r["prune"])]]]


def finished_point(out: Path, name: str, config: dict) -> dict | None:
    """A point a previous run with the same --out and settings finished, or None."""
    f = out / POINTS / f"{name}.json"
    try:
        rec = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    def number(k: str, hi: float) -> bool:
        v = rec.get(k)
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= hi

    ok = isinstance(rec, dict) and rec.get("config") == config and number("accuracy", 1) and \
        number("sparsity", 1) and number("seconds", 1e9)
    return rec if ok else None


def _record(out: Path, keep: Path | None, name: str, config: dict, rec: dict) -> None:
    """Keep a finished point: its checkpoint (with --keep-checkpoints) and OUT/points/<name>.json,
    each written atomically (a full disk is one line; the points already kept stay valid)."""
    blob = rec.pop("checkpoint", None)
    points = out / POINTS
    made = not points.exists()
    try:
        if keep is not None and blob is not None:
            checkpoint.atomic_write(keep / f"{name}.pt", lambda tmp: Path(tmp).write_bytes(blob))
        points.mkdir(exist_ok=True)
        text = json.dumps(dict(rec, config=config), sort_keys=True)
        checkpoint.atomic_write(points / f"{name}.json", lambda tmp: Path(tmp).write_text(text))
    except OSError as e:
        if made and points.is_dir() and not any(points.iterdir()):
            points.rmdir()     # nothing half-made is left behind
        raise UserError(f"cannot write the sweep results into {out}: {os_error_hint(e)}") from None


def run(args):
    if not args.exp_bits_list or not args.prune_list or not args.seeds:
        raise UserError("--exp-bits-list, --prune-list and --seeds need at least one value each")
    if any(x < 0 for x in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds takes distinct seeds >= 0 (got {args.seeds})")
    if args.seed is not None:
        raise UserError("sweep takes --seeds LIST (one QAT run per seed), not --seed")
    grid = [(e, p, sd) for e in args.exp_bits_list for p in args.prune_list for sd in args.seeds]
    check_training_options(args)
    try:  # validate every point before any work
        settings = [replace(qat_settings(args, e, p), train=replace(qat_settings(args, e, p).train, seed=sd))
                    for e, p, sd in grid]
    except UserError as err:
        raise UserError(f"{err} (in --exp-bits-list/--prune-list)") from None
    out = writable_dir(args.out)
    keep = writable_dir(args.keep_checkpoints, "--keep-checkpoints") if args.keep_checkpoints else None
    ray = None
    if args.ray:   # before any data is read: an unreachable cluster is one line at once
        from ..cluster import connect
        ray = connect(args.ray)
    blob = load_fp32_source(args.checkpoint)
    ckpt = Path(blob["path"]).read_bytes()
    cfg = blob["model_config"]
    (xtr, ytr), (xte, yte) = dataset_splits(args.dataset, {"train": args.limit, "test": args.test_limit}, args.data,
                                            cfg, args.checkpoint)
    digest = hashlib.sha256(ckpt).hexdigest()
    other_data = {"dataset": args.dataset} if args.dataset not in (None, "fashion-mnist") else {}
    configs = [{"checkpoint_sha256": digest, "train_images": len(xtr), "test_images": len(xte), **other_data,
                "settings": json.loads(json.dumps(asdict(s), default=str))} for s in settings]
    names = [point_name(*g) for g in grid]

    t0 = time.time()
    recs: list[dict | None] = [finished_point(out, n, c) for n, c in zip(names, configs)]
    if keep is not None:   # a point kept without its checkpoint is run again
        recs = [r if r is None or (keep / f"{n}.pt").is_file() else None for n, r in zip(names, recs)]
    todo = [i for i, r in enumerate(recs) if r is None]
    with bar(total=len(grid), desc="sweep", unit="run") as pb:
        pb.update(len(grid) - len(todo))

        def done(k: int, rec: dict) -> None:
            i = todo[k]
            _record(out, keep, names[i], configs[i], rec)
            recs[i] = rec
            pb.update(1)

        if ray is not None:
            from ..cluster import ray_map
            ref_ckpt, ref_data = ray.put(ckpt), ray.put((xtr, ytr, xte, yte))
            gpus = 1 if settings[0].train.device == "cuda" else 0     # one CPU, or one GPU, per point
            ray_map(ray, run_point, [(ref_ckpt, ref_data, settings[i], keep is not None) for i in todo],
                    on_result=done, num_gpus=gpus)
        else:
            for k, i in enumerate(todo):
                done(k, run_point(ckpt, (xtr, ytr, xte, yte), settings[i], keep is not None))
    rows = _with_seed_stats([{"exp_bits": e, "prune": p, "seed": sd, "accuracy": r["accuracy"],
                              "sparsity": r["sparsity"], "seconds": r["seconds"]} for (e, p, sd), r in zip(grid, recs)])
    epochs = settings[0].train.epochs
    csv_path, png_path = out / "sweep.csv", out / "sweep.png"
    try:  # each file is written to a temporary name and renamed
        _write_csv(csv_path, rows)
        _plot(png_path, rows, f"Po2 QAT from {Path(args.checkpoint).name}: {epochs:g} epochs on {len(xtr)} images, "
                              f"{len(xte)} test images, seeds {','.join(map(str, args.seeds))}")
    except OSError as e:
        raise UserError(f"cannot write the sweep results into {out}: {os_error_hint(e)}") from None
    result = {"csv": str(csv_path), "png": str(png_path), "checkpoint": args.checkpoint, "epochs": epochs,
              "train_images": len(xtr), "images": len(xte), "seeds": args.seeds, "results": rows,
              "points_run": len(todo), "points_reused": len(grid) - len(todo), "ray": args.ray,
              "seconds": round(time.time() - t0, 1)}
    table = "\n".join(f"  {r['exp_bits']:>8} {r['prune']:>6.2f} {r['seed']:>5} {r['accuracy']:>9.4f} "
                      f"{r['accuracy_mean']:>9.4f} {r['accuracy_spread']:>7.4f} {r['sparsity']:>9.1%}" for r in rows)
    summary = (f"exp_bits  prune  seed  accuracy      mean  spread  sparsity\n{table}\n"
               f"{len(todo)} points run, {len(grid) - len(todo)} reused from {out / POINTS}; wrote {csv_path} and {png_path}")
    return result, summary
