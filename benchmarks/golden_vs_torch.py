"""Golden simulator throughput vs float32 PyTorch eval of the same network, side by side.

Usage: python benchmarks/golden_vs_torch.py [--images N] [--threads T]
Rows: default-po2 (28x28 Fashion-MNIST, real test images) and mobilenetv2-224 (random Po2
weights, random images). Columns: the golden simulator, the plain FP32 MobileNetV2 of the same
shape in float32 (the baseline the ratio uses), and the fake-quantized model in float32.
Also times `hashiflex compile --arch mobilenetv2-224 --prune 0.5` (IR + RTL) in a child process,
with the child's peak memory. Prints markdown tables.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from hashiflex.ir.build import input_shape, program_from_qmodel, random_images, random_qmodel
from hashiflex.models.mobilenetv2 import MobileNetV2
from hashiflex.quant.config import QuantConfig
from hashiflex.quant.qat import load_qmodel
from hashiflex.sim.golden import GoldenSimulator
from hashiflex.train.loop import predict


def _rate(fn, n: int, repeats: int = 2) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


def row(name: str, q, images: np.ndarray, batch: int) -> str:
    prog = program_from_qmodel(q)
    sim = GoldenSimulator(prog)
    fp32 = MobileNetV2(q.cfg).eval()  # the same network unquantized: what users run today
    g = _rate(lambda: sim.logits(images, batch_size=batch), len(images))
    f = _rate(lambda: predict(fp32, images, batch_size=batch, dtype=torch.float32), len(images))
    fq = _rate(lambda: predict(q, images, batch_size=batch, dtype=torch.float32), len(images))
    return f"| {name} | {len(images)} | {g:,.0f} | {f:,.0f} | {fq:,.0f} | {g / f:.2f} |"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--images-224", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.environ.setdefault("HASHIFLEX_PROGRESS", "0")
    lines = ["| network | images | golden sim (img/s) | FP32 torch (img/s) | fake-quant float32 torch (img/s) "
             "| golden / FP32 |", "|---|---|---|---|---|---|"]
    try:
        from hashiflex.data import load_fashion_mnist
        q, _ = load_qmodel("default-po2")
        x, _ = load_fashion_mnist("test", limit=a.images)
        lines.append(row("default-po2 (28x28)", q, x, 500))
    except Exception as e:  # the 224 row is still worth printing
        print(f"default-po2 row skipped: {e}", file=sys.stderr)
    q224 = random_qmodel("mobilenetv2-224", QuantConfig(exp_bits=3, prune=0.5))
    lines.append(row("mobilenetv2-224 (random Po2, 50 % pruned)", q224,
                     random_images(input_shape(q224.cfg), a.images_224), 16))
    print("\n".join(lines))
    with tempfile.TemporaryDirectory() as d:
        for extra, what in ((["--no-rtl"], "IR only"), ([], "IR + RTL")):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hashiflex", "compile", "--arch", "mobilenetv2-224", "--prune",
                            "0.5", "--out", os.path.join(d, what.replace(" ", "")), *extra], check=True,
                           stdout=subprocess.DEVNULL)
            dt = time.perf_counter() - t
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6  # max over children so far
            print(f"\ncompile --arch mobilenetv2-224 --prune 0.5 ({what}): {dt:.1f} s wall, "
                  f"peak RSS <= {rss:.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
