"""Verilator builds side by side: the flat build (the whole top level as one Verilated model) vs
the block-by-block build (one model per layer module, docs/verification.md), on small-po2,
default-po2 and one MobileNetV2-224 layer. Prints, per row: Verilator version, models, verilate
and C++ compile seconds (summed over models, CPU), wall seconds, peak memory of one model's build,
and simulation images/s on one core (one simulator process).

    python benchmarks/verilator_scaling.py [--images N] [--flat-default] [--skip-224]

Each row builds in a fresh cache folder, so nothing is reused. The flat default-po2 row is off by
default: it did not fit here (Verilator 5.048: 784 s and 15.8 GB before any C++ compile, 410 MB of
C++; Debian's 5.006 ran out of memory), --flat-default runs it anyway. A flat row for Debian's
Verilator 5.006 runs when $DEBIAN_VERILATOR names its executable."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hashiflex.data import load_fashion_mnist  # noqa: E402
from hashiflex.ir.build import compile_build, random_images  # noqa: E402
from hashiflex.rtl import generate_rtl  # noqa: E402
from hashiflex.rtl.npu import NPUConfig  # noqa: E402
from hashiflex.verify.harness import build, check_images, find_rtl, simulate  # noqa: E402
from hashiflex.verify.layers import verify_layers  # noqa: E402


def _row(name: str, build_dir: Path, images: np.ndarray, flat: bool, verilator_env: str | None = None) -> dict:
    old = {k: os.environ.get(k) for k in ("HASHIFLEX_CACHE", "HASHIFLEX_VERILATOR")}
    with tempfile.TemporaryDirectory(prefix="hf-bench-cache-") as cache:
        os.environ["HASHIFLEX_CACHE"] = cache
        if verilator_env:
            os.environ["HASHIFLEX_VERILATOR"] = verilator_env
        try:
            rtl_dir, man = find_rtl(build_dir)
            view = man.npu or man
            t0 = time.perf_counter()
            b = build(rtl_dir, man, build_dir / f"bench-{'flat' if flat else 'blocks'}", jobs=2, flat=flat,
                      chip=man.npu is not None)
            wall = time.perf_counter() - t0
            load = None
            if man.npu is not None:
                from hashiflex.finetune.image import image_from_program
                from hashiflex.ir import serialize
                from hashiflex.verify.chip import load_file
                load = load_file(view, [(image_from_program(serialize.load(build_dir)), len(images))])
            sim = simulate(b.binary, view, check_images(images, man), load=load)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return {"design": name, "build": "flat" if flat else "blocks", "verilator": b.verilator_version,
            "models": len(b.blocks), "verilate_s": sum(x["verilate_s"] for x in b.blocks),
            "compile_s": sum(x["compile_s"] for x in b.blocks), "wall_s": wall,
            "peak_mb": max(x["peak_mb"] for x in b.blocks), "images_per_s": len(images) / sim["seconds"]}


def _layer_row(build_dir: Path, n: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="hf-bench-cache-") as cache:
        os.environ["HASHIFLEX_CACHE"] = cache
        try:
            x = random_images((3, 224, 224), n, seed=1)
            t0 = time.perf_counter()
            r = verify_layers(build_dir, x, jobs=1)
            wall = time.perf_counter() - t0
        finally:
            os.environ.pop("HASHIFLEX_CACHE", None)
    big = max(r["per_layer"], key=lambda p: p["build_seconds"])
    return {"design": f"224 layer {big['op']}", "build": "block", "verilator": r["verilator_version"], "models": 1,
            "verilate_s": big["verilate_seconds"], "compile_s": big["compile_seconds"], "wall_s": wall,
            "peak_mb": big["build_peak_mb"], "images_per_s": n / big["sim_seconds"],
            "note": f"all {r['layers']} layers: {wall:.0f} s, {r['mismatches']} mismatches"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--flat-default", action="store_true")
    ap.add_argument("--skip-224", action="store_true")
    args = ap.parse_args()
    x, _ = load_fashion_mnist("test", limit=args.images)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hf-bench-") as d:
        for ckpt in ("small-po2", "default-po2"):
            bd = Path(d) / ckpt
            prog, _ = compile_build(bd, checkpoint=ckpt)
            generate_rtl(prog, bd / "rtl", npu=NPUConfig())
            for flat in (True, False):
                if flat and ckpt == "default-po2" and not args.flat_default:
                    continue
                rows.append(_row(ckpt, bd, x, flat))
                print(rows[-1], flush=True)
            if os.environ.get("DEBIAN_VERILATOR") and ckpt == "small-po2":
                rows.append(_row(ckpt, bd, x, True, os.environ["DEBIAN_VERILATOR"]))
        if not args.skip_224:
            bd = Path(d) / "b224"
            prog, _ = compile_build(bd, arch="mobilenetv2-224", prune=0.5)
            generate_rtl(prog, bd / "rtl", npu=NPUConfig())
            rows.append(_layer_row(bd, 2))
    print()
    print("| design | build | Verilator | models | verilate s (sum over models) | C++ compile s (sum) | build wall s | "
          "peak MB (one model) | images/s (1 core) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['design']} | {r['build']} | {r['verilator']} | {r['models']} | {r['verilate_s']:.0f} | "
              f"{r['compile_s']:.0f} | {r['wall_s']:.0f} | {r['peak_mb']:.0f} | {r['images_per_s']:.2f} |"
              + (f" {r['note']}" if "note" in r else ""))


if __name__ == "__main__":
    main()
