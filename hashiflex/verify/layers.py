"""Layer-by-layer verification, for designs too big to simulate whole: every layer module is built
alone (the same cached Verilated model the block-by-block chip build links), the golden
simulator's input tensor(s) of that layer are streamed into it for N images, and its output
stream is compared with the golden output tensor by exact integer equality, beat by beat
(padding lanes included, which must be zero). The top-level wiring between layers (forks, skip
FIFOs) is checked by the whole-chip path on builds small enough for it.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..rtl.readback import check_program
from ..rtl.manifest import Block, ModuleEntry
from .beats import tensor_beats, unpack
from .harness import build_blocks, check_images, distinct_rows, find_rtl, layer_blocks, run_bench
from .testbench import Bench, Stream, testbench_cpp
from .verilator import BuiltBlock, find_verilator, link


def _bench(b: Block) -> Bench:
    ins = tuple(Stream(i.port, i.width, i.beats) for i in b.inputs)
    return Bench(ins, (Stream("out", b.out_width, b.output.beats),))


def _binary(b: Block, built: BuiltBlock, work: Path) -> tuple[Path, float]:
    """The layer's own testbench linked with its block (reused while both are unchanged)."""
    v = find_verilator()
    tb = testbench_cpp(_bench(b), top_prefix=built.prefix)
    stamp = hashlib.sha256(f"{tb}|{built.dir}".encode()).hexdigest()
    d = work / b.instance
    exe = d / "sim"
    if exe.is_file() and (d / "stamp").is_file() and (d / "stamp").read_text() == stamp:
        return exe, 0.0
    d.mkdir(parents=True, exist_ok=True)
    (d / "stamp").unlink(missing_ok=True)
    secs = link(tb, [built], v, exe)
    (d / "stamp").write_text(stamp)
    return exe, secs


def _check_layer(b: Block, module: ModuleEntry | None, exe: Path, gold: dict, stall_in: int, stall_out: int, seed: int) -> dict:
    ins = [tensor_beats(gold[i.tensor], i.lanes, i.rows or 1) for i in b.inputs]
    o = b.output
    r = run_bench(exe, _bench(b), ins, [i.bits for i in b.inputs], stall_in, stall_out, seed)
    got = unpack(r["words"][0], o.lanes * o.shape[0], o.bits, o.signed)
    want = tensor_beats(gold[o.tensor], o.lanes)
    diff = got != want
    n = len(got)
    cyc = r["cycles"][0][:, -1]
    res = {"instance": b.instance, "module": b.module, "op": b.op, "images": n,
           "mismatches": int(diff.reshape(n, -1).any(axis=1).sum()), "mismatched_values": int(diff.sum()),
           "distinct_outputs": distinct_rows(want), "constant_output": bool(distinct_rows(want) < min(n, 2)),
           "cycles_per_image": float(cyc[-1] - cyc[0]) / (n - 1) if n > 1 else None,
           "expected_cycles_per_image": module.cycles_per_image if module else None, "sim_seconds": round(r["seconds"], 3)}
    if diff.any():
        i, beat, k = map(int, np.argwhere(diff)[0])
        res["first_mismatch"] = {"image": i, "beat": beat, "value": k, "rtl": int(got[i, beat, k]),
                                 "golden": int(want[i, beat, k])}
    return res


def verify_layers(build_dir, images_u8: np.ndarray, prog=None, jobs: int = 2, stall_in: int = 0,
                  stall_out: int = 0, seed: int = 1) -> dict:
    """Check every layer module of build_dir alone against the golden simulator on `images_u8`."""
    from ..sim.golden import GoldenSimulator

    if jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {jobs})")
    find_verilator()
    rtl_dir, manifest = find_rtl(build_dir)
    images = check_images(images_u8, manifest)
    pairs = layer_blocks(rtl_dir, manifest)   # reads and checks every module before anything runs
    if prog is None:
        from ..ir import serialize
        prog = serialize.load(Path(build_dir))
    check_program(manifest, prog, rtl_dir / "manifest.json")
    t0 = time.perf_counter()
    gold = {k: v.numpy().astype(np.int64) for k, v in GoldenSimulator(prog).run(images, keep_all=True).items()}
    gold[prog.input] = images.astype(np.int64)
    golden_s = time.perf_counter() - t0
    blocks = manifest.shell.blocks
    t0 = time.perf_counter()
    built = build_blocks([m for m, _ in pairs], jobs, make_jobs=jobs)
    work = Path(build_dir) / "verilator-layers"
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        exes = list(ex.map(lambda i: _binary(blocks[i], built[i], work), range(len(blocks))))
    build_s = time.perf_counter() - t0
    mods = {m.name: m for m in manifest.modules}
    with ThreadPoolExecutor(max_workers=jobs) as ex:
        results = list(ex.map(lambda i: _check_layer(blocks[i], mods.get(blocks[i].module), exes[i][0], gold,
                                                     stall_in, stall_out, seed), range(len(blocks))))
    for r, bb, (_, link_s) in zip(results, built, exes):
        r.update({"build_seconds": round(bb.seconds + link_s, 2), "verilate_seconds": round(bb.verilate_s, 2),
                  "compile_seconds": round(bb.compile_s, 2), "build_peak_mb": round(bb.peak_kb / 1024, 1),
                  "cached": bb.seconds == 0})
    bad = [r for r in results if r["mismatches"]]
    return {"images": int(len(images)), "layers": len(results), "layers_in_build": len(manifest.modules),
            "mismatches": sum(r["mismatches"] for r in results), "layers_mismatching": len(bad),
            "first_mismatch": ({"layer": bad[0]["op"], **bad[0]["first_mismatch"]} if bad else None),
            "constant_layers": [r["op"] for r in results if r["constant_output"]],
            "build_seconds": round(build_s, 2), "golden_seconds": round(golden_s, 2),
            "build_peak_mb": max((r["build_peak_mb"] for r in results), default=0.0),
            "verilator_version": find_verilator().version, "per_layer": results, "target": "layers"}
