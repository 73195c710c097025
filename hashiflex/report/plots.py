"""Plots for the HTML report, returned as PNG bytes (matplotlib, Agg backend, no display needed).

Each function takes plain lists/dicts (the JSON the demo writes) and returns None when it has
nothing to draw, so a report of a partial run still renders.
"""
from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # Fixed metadata keeps the PNG bytes independent of the matplotlib build date.
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def sweep_plot(rows: list[dict]) -> bytes | None:
    """Accuracy vs pruning rate, one line per exponent width."""
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for bits in sorted({int(r["exp_bits"]) for r in rows}):
        by: dict[float, list[float]] = {}     # the mean over seeds (sweep --seeds) at each pruning rate
        for r in rows:
            if int(r["exp_bits"]) == bits:
                by.setdefault(float(r["prune"]), []).append(100 * float(r["accuracy"]))
        pts = sorted((p, sum(a) / len(a)) for p, a in by.items())
        ax.plot([p for p, _ in pts], [a for _, a in pts], marker="o", label=f"{bits}-bit exponent")
    ax.set_xlabel("pruning rate (fraction of zero weights)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Po2 accuracy vs exponent bits and pruning")
    ax.grid(alpha=0.3)
    ax.legend()
    return _png(fig)


def area_by_layer_plot(layers: list[dict]) -> bytes | None:
    """Horizontal bars of area per layer (mm^2), in pipeline order."""
    layers = [l for l in layers if l.get("area_mm2") is not None]
    if not layers:
        return None
    names = [str(l["name"]) for l in layers]
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.16 * len(names) + 1)))
    ax.barh(range(len(names)), [float(l["area_mm2"]) for l in layers], color="#4477aa")
    ax.set_yticks(range(len(names)), names, fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("area (mm^2, 7nm model)")
    ax.set_title("area by layer")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def pareto_plot(points: list[dict], chosen: dict | None = None) -> bytes | None:
    """Images/s vs area of the balancer's design points (log-log)."""
    pts = [p for p in points if p.get("images_per_s") and p.get("area_mm2")]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    pts = sorted(pts, key=lambda p: float(p["area_mm2"]))
    ax.plot([float(p["area_mm2"]) for p in pts], [float(p["images_per_s"]) for p in pts], marker="o", ms=3)
    if chosen and chosen.get("images_per_s") and chosen.get("area_mm2"):
        ax.plot([float(chosen["area_mm2"])], [float(chosen["images_per_s"])], "r*", ms=12, label="as built")
        ax.legend()
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("area (mm^2)")
    ax.set_ylabel("images/s")
    ax.set_title("throughput vs area (Pareto front)")
    ax.grid(alpha=0.3, which="both")
    return _png(fig)


def comparison_plot(bars: list[tuple[str, float, str]]) -> bytes | None:
    """Images/s bars: (label, value, kind) with kind 'ours' (model), 'measured' or 'cited'."""
    bars = [b for b in bars if b[1]]
    if not bars:
        return None
    colors = {"ours": "#228833", "measured": "#4477aa", "cited": "#bbbbbb"}
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.bar(range(len(bars)), [b[1] for b in bars], color=[colors.get(b[2], "#999999") for b in bars])
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], rotation=20, ha="right", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("images/s")
    ax.set_title("MobileNetV2-224: ours (model), paper (cited), CPU (measured)")
    ax.grid(axis="y", alpha=0.3, which="both")
    return _png(fig)
