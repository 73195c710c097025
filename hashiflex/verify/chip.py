"""Verilator check of the chip (hf_chip = hardened pipeline + NPU): weight images are loaded
through the NPU's load port while the simulation runs, images stream through, and every logit is
compared with the golden simulator of the program carrying that image's head (exact equality)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .harness import build, check_images, find_rtl, simulate, verilator

KINDS = {"w": 0, "b": 1, "n": 2}


def _words(kind: str, vals: list[int]) -> np.ndarray:
    if kind == "w":  # int8 lanes, lane l in bits 8l+7..8l
        raw = np.array(vals, dtype=np.int64).astype(np.int8).view(np.uint8)
        raw = np.concatenate([raw, np.zeros(-len(raw) % 4, np.uint8)])
        return raw.view("<u4").astype(np.uint32)
    return np.array([v & 0xFFFFFFFF for v in vals], dtype=np.uint32)


def load_file(npu: dict, phases: list[tuple[object, int]]) -> bytes:
    """The testbench's load file: for each (NPUImage, image count) phase, the load-port writes
    (hashiflex.rtl.npu.load_writes) that program the image before that phase's images."""
    from ..rtl.npu import geometry_of, load_writes

    g = geometry_of(npu)
    out = [np.array([len(phases)], np.uint32)]
    for img, count in phases:
        writes = load_writes(g, img.weight, img.bias, img.scale_mult)
        out.append(np.array([count, len(writes)], np.uint32))
        for kind, addr, vals in writes:
            w = _words(kind, vals)
            out += [np.array([KINDS[kind], addr, len(w)], np.uint32), w]
    return np.concatenate(out).astype("<u4").tobytes()


def verify_chip(build_dir, phases: list, prog=None, stall_in: int = 0, stall_out: int = 0, seed: int = 1,
                jobs: int = 2, keep_logits: bool = False) -> dict:
    """phases: [(NPUImage, uint8 images [n, C, H, W]), ...], run in ONE simulation of one binary:
    before each phase the NPU is reloaded with its image. Every image is checked against the
    build's NPU (inputs, capacity) before anything runs. keep_logits: each phase's RTL logits
    [n, N] (int64) in its result as "logits"."""
    from ..finetune.image import apply_image, check_fits
    from ..sim.golden import GoldenSimulator

    verilator()
    rtl_dir, manifest = find_rtl(build_dir)
    npu = manifest.get("npu")
    if npu is None:
        raise UserError(f"{build_dir} has no NPU: compile it with RTL from a checkpoint with an int8 classifier")
    if not phases:
        raise UserError("verify needs at least one phase")
    phases = [(img, check_images(x, npu)) for img, x in phases]
    for i, (img, _) in enumerate(phases):
        check_fits(img, npu, f"NPU image {i + 1}")
    if prog is None:
        from ..ir import serialize
        prog = serialize.load(Path(build_dir))
    binary, build_s, reused = build(rtl_dir, npu, Path(build_dir) / "verilator-chip", jobs)
    images = np.concatenate([x for _, x in phases])
    sim = simulate(binary, npu, images, stall_in, stall_out, seed, load=load_file(npu, [(i, len(x)) for i, x in phases]))
    got_all, cyc_all = sim["outputs"]["logits"], sim["cycles"]["logits"]
    per, pos, first, bad_images, bad_values = [], 0, None, 0, 0
    for p, (img, x) in enumerate(phases):
        n = len(x)
        want = GoldenSimulator(apply_image(prog, img)).run(x)[prog.output].numpy().astype(np.int64)
        got = got_all[pos:pos + n]
        diff = np.concatenate([want != got[:, :img.n], got[:, img.n:] != 0], axis=1)
        bad_images += int(diff.any(axis=1).sum())
        bad_values += int(diff.sum())
        if first is None and diff.any():
            i, k = map(int, np.argwhere(diff)[0])
            first = {"phase": p, "image": pos + i, "logit": k, "rtl": int(got[i, k]),
                     "golden": int(want[i, k]) if k < img.n else 0}
        cyc = cyc_all[pos:pos + n]
        per.append({"images": n, "classes": img.n, "mismatches": int(diff.any(axis=1).sum()),
                    "cycles_per_image": float(cyc[-1] - cyc[0]) / (n - 1) if n > 1 else None})
        if keep_logits:
            per[-1]["logits"] = got[:, :img.n]
        pos += n
    n0 = len(phases[0][1])
    latency = int(cyc_all[0] - sim["in_first"][0])
    cpi = per[0]["cycles_per_image"] if n0 > 1 else float(latency)
    return {"images": int(len(images)), "mismatches": bad_images, "mismatched_values": bad_values,
            "first_mismatch": first, "ports": {"logits": {"tensor": prog.output, "mismatched_values": bad_values}},
            "phases": per, "cycles_per_image": cpi, "latency_cycles": latency, "target": "chip",
            "expected_cycles_per_image": npu["chip_cycles_per_image"], "npu": {k: npu[k] for k in (
                "lanes", "batch", "capacity", "in_features", "cycles_per_image", "keeps_pace")},
            "total_cycles": sim["total_cycles"], "build_seconds": round(build_s, 3), "build_reused": reused,
            "sim_seconds": round(sim["seconds"], 3),
            "sim_images_per_s": round(len(images) / sim["seconds"], 3) if sim["seconds"] > 0 else None}
