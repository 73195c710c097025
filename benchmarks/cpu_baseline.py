"""Float32 PyTorch throughput of the networks hashiflex hardens, on this machine's CPU (and GPU
when torch.cuda is available): the programmable-processor baseline beside the cost model.

    python benchmarks/cpu_baseline.py [--threads T] [--batches N] [--json]

Rows: MobileNetV2-224 (ImageNet shape: 3x224x224, 1000 classes, width 1.0; random weights, the
speed does not depend on them) and the Fashion-MNIST default model (`default-fp32`: width 0.5,
1x28x28, 10 classes). Each: one warm-up batch, then N timed batches of eval-mode inference under
torch.inference_mode. The paper's GPU figure is printed as a cited reference, never as ours.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from hashiflex import checkpoint  # noqa: E402
from hashiflex.ir.build import ARCHS  # noqa: E402
from hashiflex.models.mobilenetv2 import MobileNetV2, MobileNetV2Config  # noqa: E402

# HaShiFlex (arXiv 2512.12847), abstract: 1.21 M images/s is 20x a GPU and 4 M is 67x, so the
# GPU ran about 60 k images/s (1.21 M / 20 = 60.5 k; 4 M / 67 = 59.7 k). Derived, not measured.
PAPER_GPU_IPS = 60_000


def bench(model: torch.nn.Module, shape, batch: int, batches: int, device: str) -> float:
    model = model.to(device).eval()
    x = torch.rand((batch, *shape), device=device)
    with torch.inference_mode():
        model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(batches):
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()
        return batch * batches / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch CPU threads (default 2)")
    ap.add_argument("--batches", type=int, default=3, help="timed batches per network (default 3)")
    ap.add_argument("--json", action="store_true", help="also print the rows as one JSON line")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    blob = checkpoint.load("default-fp32")
    nets = [("MobileNetV2-224 (1000 classes)", MobileNetV2(ARCHS["mobilenetv2-224"]), (3, 224, 224), 16),
            ("default-fp32 (Fashion-MNIST, width 0.5)",
             MobileNetV2(MobileNetV2Config.from_dict(blob["model_config"])), (1, 28, 28), 256)]
    nets[1][1].load_state_dict(blob["state_dict"])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    cpu = platform.processor() or platform.machine()
    rows = []
    for name, net, shape, batch in nets:
        for dev in devices:
            ips = bench(net, shape, batch, args.batches, dev)
            where = f"CPU {cpu}, {args.threads} threads" if dev == "cpu" else torch.cuda.get_device_name(0)
            rows.append({"network": name, "device": where, "batch": batch, "images_per_s": ips, "measured": True})
    rows.append({"network": "MobileNetV2-224 (paper's GPU baseline)", "device": "GPU (not ours)", "batch": None,
                 "images_per_s": PAPER_GPU_IPS, "measured": False})
    print(f"torch {torch.__version__}, float32 eval, {os.cpu_count()} logical CPUs, {args.batches} timed batches\n")
    print("| network | device | batch | images/s | source |")
    print("|---|---|---|---|---|")
    for r in rows:
        src = "measured here" if r["measured"] else "derived from the HaShiFlex abstract (1.21 M / 20, 4 M / 67)"
        print(f"| {r['network']} | {r['device']} | {r['batch'] or '-'} | {r['images_per_s']:,.0f} | {src} |")
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
