"""Verilator harness: build the generated RTL with a C++ testbench, stream images through it and
compare every output with the golden simulator by exact integer equality."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from ..errors import UserError
from .testbench import testbench_cpp

VERILATOR_MISSING = "verilator not found: install it with 'apt-get install verilator'"
# Generated netlists are huge straight-line C++: -O0 plus --output-split (many small files for make -j)
# builds small-po2 in ~5 min instead of ~15 on 2 cores; simulation is slower but runs only ~1e5 cycles.
CXX_OPT = "-O0"
OUTPUT_SPLIT = "20000"
GLOBAL_OBJS = ("verilated.o", "verilated_threads.o")


def verilator() -> str:
    exe = shutil.which("verilator")
    if exe is None:
        raise UserError(VERILATOR_MISSING)
    return exe


def find_rtl(build_dir) -> tuple[Path, dict]:
    """The folder holding manifest.json: build_dir/rtl or build_dir itself."""
    base = Path(build_dir)
    for d in (base / "rtl", base):
        if (d / "manifest.json").is_file():
            return d, json.loads((d / "manifest.json").read_text())
    raise UserError(f"no RTL in {base}: run 'hashiflex compile --out {base}' first (manifest.json missing)")


def _run(cmd: list[str], cwd: Path, what: str, env=None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = (r.stdout + r.stderr).strip().splitlines()[-30:]
        raise UserError(f"{what} failed (exit {r.returncode}):\n" + "\n".join(tail))


def _cache_dir(version: str) -> Path:
    root = Path(os.environ.get("HASHIFLEX_CACHE", Path.home() / ".cache" / "hashiflex"))
    key = hashlib.sha256(f"{version}|{CXX_OPT}".encode()).hexdigest()[:16]
    return root / f"verilator-{key}"


def build(rtl_dir: Path, manifest: dict, work: Path, jobs: int = 2) -> tuple[Path, float, bool]:
    """Verilate and compile; returns (executable, seconds, reused). A build whose sources and
    flags are unchanged is reused. Verilator's runtime objects are compiled once and cached."""
    exe = verilator()
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    tb = testbench_cpp(manifest)
    h = hashlib.sha256(f"{version}|{CXX_OPT}|{OUTPUT_SPLIT}|{tb}".encode())
    for name in manifest["files"]:
        h.update((rtl_dir / name).read_bytes())
    stamp = h.hexdigest()
    work.mkdir(parents=True, exist_ok=True)
    binary = work / "obj" / "Vtop"
    if binary.is_file() and (work / "stamp").is_file() and (work / "stamp").read_text() == stamp:
        return binary, 0.0, True
    t0 = time.perf_counter()
    shutil.rmtree(work / "obj", ignore_errors=True)
    (work / "tb.cpp").write_text(tb)
    srcs = [str((rtl_dir / n).resolve()) for n in manifest["files"]]
    _run([exe, "--cc", "--exe", "-Wno-fatal", "--top-module", manifest["top"], "--prefix", "Vtop", "--Mdir", "obj",
          "--output-split", OUTPUT_SPLIT, "-CFLAGS", CXX_OPT, "tb.cpp", *srcs], work, "verilator")
    cache = _cache_dir(version)
    if all((cache / o).is_file() for o in GLOBAL_OBJS):
        for o in GLOBAL_OBJS:  # newer than Vtop.mk, so make keeps them
            shutil.copyfile(cache / o, work / "obj" / o)
    opt = [f"OPT_FAST={CXX_OPT}", f"OPT_SLOW={CXX_OPT}", f"OPT_GLOBAL={CXX_OPT}"]
    _run(["make", "-s", f"-j{jobs}", "-f", "Vtop.mk", *opt], work / "obj", "C++ build of the testbench")
    if not all((cache / o).is_file() for o in GLOBAL_OBJS):
        cache.mkdir(parents=True, exist_ok=True)
        for o in GLOBAL_OBJS:
            tmp = cache / f".{o}.{os.getpid()}"
            shutil.copyfile(work / "obj" / o, tmp)
            os.replace(tmp, cache / o)
    (work / "stamp").write_text(stamp)
    return binary, time.perf_counter() - t0, False


def simulate(binary: Path, manifest: dict, images: np.ndarray, stall_in: int = 0, stall_out: int = 0,
             seed: int = 1, max_idle: int = 100_000, load: bytes | None = None) -> dict:
    """Run the testbench; returns per-port outputs [N, C] and acceptance cycles. `load`: the NPU
    load file (verify.chip.load_file) for a chip view."""
    n = len(images)
    with tempfile.TemporaryDirectory(prefix="hf-sim-") as d:
        src, dst = Path(d) / "images.bin", Path(d) / "out.bin"
        with open(src, "wb") as f:
            f.write(np.array(images.shape, dtype="<i4").tobytes())
            f.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
        extra = []
        if load is not None:
            (Path(d) / "load.bin").write_bytes(load)
            extra = [str(Path(d) / "load.bin")]
        t0 = time.perf_counter()
        r = subprocess.run([str(binary), str(src), str(dst), str(stall_in), str(stall_out), str(seed), str(max_idle),
                            *extra], capture_output=True, text=True)
        secs = time.perf_counter() - t0
        if r.returncode != 0:
            raise UserError(f"RTL simulation failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()}")
        raw = np.fromfile(dst, dtype="<i8")
    outs, pos = {}, 0
    for o in manifest["outputs"]:
        k = n * o["beats"] * o["lanes"] * o["channels"]
        outs[o["port"]] = raw[pos:pos + k].reshape(n, o["beats"] * o["lanes"] * o["channels"])
        pos += k
    cycles = {}
    for o in manifest["outputs"]:  # the cycle each image's last beat left
        cycles[o["port"]] = raw[pos:pos + n * o["beats"]].reshape(n, o["beats"])[:, -1]
        pos += n * o["beats"]
    in_first, in_last, total = raw[pos:pos + n], raw[pos + n:pos + 2 * n], int(raw[pos + 2 * n])
    return {"outputs": outs, "cycles": cycles, "in_first": in_first, "in_last": in_last, "total_cycles": total,
            "seconds": secs}


def check_images(images_u8, manifest: dict) -> np.ndarray:
    images = np.asarray(images_u8)
    if images.dtype != np.uint8 or images.ndim != 4 or list(images.shape[1:]) != manifest["input"]["shape"]:
        raise UserError(f"images must be uint8 [N, {', '.join(map(str, manifest['input']['shape']))}], "
                        f"got {images.dtype} {list(images.shape)}")
    if len(images) == 0:
        raise UserError("verify needs at least one image")
    return images


def verify_build(build_dir, images_u8: np.ndarray, prog=None, stall_in: int = 0, stall_out: int = 0,
                 seed: int = 1, jobs: int = 2, target: str = "auto") -> dict:
    """Stream images through the RTL in build_dir and compare every output with the golden
    simulator. `prog` defaults to the IR saved in build_dir; stall_in/stall_out (percent) add
    random bubbles on the input and back-pressure on the outputs. `target`: "pipeline" (hf_top),
    "chip" (hf_chip with the NPU, loaded with the program's own classifier) or "auto" (the chip
    when the build has an NPU)."""
    from ..sim.golden import GoldenSimulator

    verilator()
    rtl_dir, manifest = find_rtl(build_dir)
    images = check_images(images_u8, manifest)
    if prog is None:
        from ..ir import serialize
        prog = serialize.load(Path(build_dir))
    if target == "chip" or (target == "auto" and "npu" in manifest):
        from ..finetune.image import image_from_program
        from .chip import verify_chip
        return verify_chip(build_dir, [(image_from_program(prog), images)], prog, stall_in, stall_out, seed, jobs)
    binary, build_s, reused = build(rtl_dir, manifest, Path(build_dir) / "verilator", jobs)
    sim = simulate(binary, manifest, images, stall_in, stall_out, seed)
    gold = GoldenSimulator(prog).run(images, keep_all=True)
    n = len(images)
    bad_images = np.zeros(n, dtype=bool)
    bad_values, ports, first = 0, {}, None
    for o in manifest["outputs"]:
        g = gold[o["tensor"]].numpy().astype(np.int64)
        want = (g.transpose(0, 2, 3, 1) if g.ndim == 4 else g).reshape(n, -1)  # beats in raster order
        got = sim["outputs"][o["port"]]
        if o["lanes"] > 1:  # drop the lanes past each row's end, which must carry zeros
            _, h, w = o["shape"]
            nb = o["beats"] // h
            full = got.reshape(n, h, nb * o["lanes"], o["channels"])
            tail = full[:, :, w:, :]
            got = full[:, :, :w, :].reshape(n, -1)
            bad_images |= (tail != 0).reshape(n, -1).any(axis=1)
            bad_values += int((tail != 0).sum())
        diff = want != got
        bad_images |= diff.any(axis=1)
        bad_values += int(diff.sum())
        ports[o["port"]] = {"tensor": o["tensor"], "mismatched_values": int(diff.sum())}
        if first is None and diff.any():
            i, k = map(int, np.argwhere(diff)[0])
            first = {"port": o["port"], "image": i, "beat": k // o["channels"], "channel": k % o["channels"],
                     "rtl": int(got[i, k]), "golden": int(want[i, k])}
    last = sim["cycles"][manifest["outputs"][-1]["port"]]
    latency = int(last[0] - sim["in_first"][0])
    cpi = float(last[-1] - last[0]) / (n - 1) if n > 1 else float(latency)
    return {"images": n, "mismatches": int(bad_images.sum()), "mismatched_values": bad_values,
            "first_mismatch": first, "ports": ports, "cycles_per_image": cpi, "latency_cycles": latency,
            "expected_cycles_per_image": manifest["expected_cycles_per_image"],
            "total_cycles": sim["total_cycles"], "build_seconds": round(build_s, 3), "build_reused": reused,
            "sim_seconds": round(sim["seconds"], 3),
            "sim_images_per_s": round(n / sim["seconds"], 3) if sim["seconds"] > 0 else None}
