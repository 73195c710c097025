"""Verilator check of the chip (hf_chip = hardened pipeline + NPU): weight images are loaded
through the NPU's load port while the simulation runs, images stream through, and every logit is
compared with the golden simulator of the program carrying that image's head (exact equality)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from ..rtl.readback import check_program
from ..finetune.image import apply_image, check_fits
from ..rtl.chip import geometry_of
from ..rtl.manifest import NPUEntry
from ..rtl.npu import load_writes
from .harness import (build, build_fields, check_images, cycles_per_image, distinct_rows, find_rtl, flat_mode,
                      sim_fields, simulate_sharded)
from .verilator import find_verilator

KINDS = {"w": 0, "b": 1, "n": 2}


def _words(kind: str, vals: list[int]) -> np.ndarray:
    if kind == "w":  # int8 lanes, lane l in bits 8l+7..8l
        raw = np.array(vals, dtype=np.int64).astype(np.int8).view(np.uint8)
        raw = np.concatenate([raw, np.zeros(-len(raw) % 4, np.uint8)])
        return raw.view("<u4").astype(np.uint32)
    return np.array([v & 0xFFFFFFFF for v in vals], dtype=np.uint32)


def load_file(npu: NPUEntry, phases: list[tuple[object, int]]) -> bytes:
    """The testbench's load file: for each (NPUImage, image count) phase, the load-port writes
    (hashiflex.rtl.npu.load_writes) that program the image before that phase's images."""
    g = geometry_of(npu)
    out = [np.array([len(phases)], np.uint32)]
    for img, count in phases:
        writes = load_writes(g, img.weight, img.bias, img.scale_mult)
        out.append(np.array([count, len(writes)], np.uint32))
        for kind, addr, vals in writes:
            w = _words(kind, vals)
            out += [np.array([KINDS[kind], addr, len(w)], np.uint32), w]
    return np.concatenate(out).astype("<u4").tobytes()


def _shard_phases(phases: list[tuple[object, int]], a: int, b: int) -> list[tuple[object, int]]:
    """The phases of images [a, b): each phase's NPU image with the count of its images in range."""
    out, pos = [], 0
    for img, n in phases:
        k = max(0, min(b, pos + n) - max(a, pos))
        if k:
            out.append((img, k))
        pos += n
    return out


def verify_chip(build_dir, phases: list, prog=None, stall_in: int = 0, stall_out: int = 0, seed: int = 1,
                jobs: int = 2, keep_logits: bool = False, flat: bool | None = None, ray=None) -> dict:
    """phases: [(NPUImage, uint8 images [n, C, H, W]), ...], run through one binary: before each
    phase the NPU is reloaded with its image (with `jobs` > 1 the images are split into contiguous
    shards, one simulator process each, and each shard loads the images of its phases first).
    Every image is checked against the build's NPU (inputs, capacity) before anything runs.
    keep_logits: each phase's RTL logits [n, N] (int64) in its result as "logits"."""
    from ..sim.golden import GoldenSimulator

    if jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {jobs})")
    find_verilator()
    rtl_dir, manifest = find_rtl(build_dir)
    npu = manifest.npu
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
    check_program(manifest, prog, rtl_dir / "manifest.json")
    flat = flat_mode(manifest, flat)
    b = build(rtl_dir, manifest, Path(build_dir) / ("verilator-chip-flat" if flat else "verilator-chip"), jobs, flat,
              chip=True)
    images = np.concatenate([x for _, x in phases])
    counts = [(i, len(x)) for i, x in phases]
    sim = simulate_sharded(b.binary, npu, images, jobs, loads=lambda a, z: load_file(npu, _shard_phases(counts, a, z)),
                           stall_in=stall_in, stall_out=stall_out, seed=seed, ray=ray)
    got_all = sim["outputs"]["logits"]
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
        per.append({"images": n, "classes": img.n, "mismatches": int(diff.any(axis=1).sum()),
                    "distinct_outputs": distinct_rows(got[:, :img.n]),
                    "top1": [int(v) for v in np.argmax(got[:, :img.n], axis=1)]})
        if keep_logits:
            per[-1]["logits"] = got[:, :img.n]
        pos += n
    return {"images": int(len(images)), "mismatches": bad_images, "mismatched_values": bad_values,
            "first_mismatch": first, "ports": {"logits": {"tensor": prog.output, "mismatched_values": bad_values,
                                                          "distinct_outputs": distinct_rows(got_all)}},
            "phases": per, "cycles_per_image": cycles_per_image(sim), "latency_cycles": sim["latency"],
            "target": "chip", "expected_cycles_per_image": npu.chip_cycles_per_image, "npu": {k: getattr(npu, k) for k in (
                "lanes", "batch", "capacity", "in_features", "cycles_per_image", "keeps_pace")},
            "total_cycles": sim["total_cycles"], **build_fields(b), **sim_fields(sim, len(images))}
