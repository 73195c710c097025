"""Verilator harness: build the generated RTL with the C++ testbench, stream images through it and
compare every output with the golden simulator by exact integer equality.

Two builds of the same Verilog (docs/verification.md):
- block by block (the default): every layer module is its own Verilated model, built from its own
  file and the primitives only (cached by content hash, built in parallel with `jobs`), and the
  rest of the top level (forks, skip FIFOs, the NPU) is the shell `hf_top_shell` / `hf_chip_shell`;
  the testbench wires them every cycle. This is what scales to the default chip.
- flat (`flat=True`): the whole top level verilated as one model, as the synthesis tool sees it;
  the small builds' tests check that both give the same outputs on the same cycles.
"""
from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..progress import bar
from ..errors import UserError
from ..rtl.manifest import Manifest, NPUEntry, PortStream
from ..rtl.readback import find_manifest
from .beats import pack, tensor_beats, unpack
from .testbench import Bench, BlockPorts, Stream, testbench_cpp
from .verilator import VERILATOR_MISSING, Block, BuiltBlock, build_block, find_verilator, link

__all__ = ["VERILATOR_MISSING", "BuildResult", "build", "check_images", "find_rtl", "simulate", "verilator"]


# Below this many adders a design is verilated flat by default: one model builds faster than the
# per-model overhead of many tiny ones (verilate, make, the Verilator headers in every compile).
FLAT_MAX_ADDERS = 20_000


def flat_mode(manifest: Manifest, flat: bool | None) -> bool:
    """flat=None (auto): flat for small designs, block by block otherwise."""
    return manifest.adders < FLAT_MAX_ADDERS if flat is None else bool(flat)


def verilator() -> str:
    """The Verilator executable (a UserError saying how to get one when there is none)."""
    return find_verilator().exe


def find_rtl(build_dir) -> tuple[Path, Manifest]:
    """The folder holding manifest.json (build_dir/rtl or build_dir itself) and its manifest,
    checked on read (rtl.manifest)."""
    base = Path(build_dir)
    found = find_manifest(base)
    if found is not None:
        return found
    raise UserError(f"no RTL in {base}: run 'hashiflex compile --out {base}' first (manifest.json missing)")


def _checksums(rtl_dir: Path, manifest: Manifest) -> dict[str, str]:
    sums = manifest.sha256
    if not sums:
        raise UserError(f"{rtl_dir / 'manifest.json'} has no file checksums (written by an older hashiflex); "
                        f"re-run 'hashiflex compile' to regenerate {rtl_dir}")
    return sums


def read_checked(rtl_dir: Path, name: str, sums: dict) -> bytes:
    """A generated file's bytes, refused unless it exists and is the one compile wrote (its sha256)."""
    p = rtl_dir / name
    redo = f"re-run 'hashiflex compile' to regenerate {rtl_dir}"
    if not p.is_file() or Path(name).name != name:
        raise UserError(f"RTL file {p} is missing; {redo}")
    data = p.read_bytes()
    if sums.get(name) != hashlib.sha256(data).hexdigest():
        raise UserError(f"{p} was changed after compile (checksum differs from manifest.json); {redo}")
    return data


def check_files(rtl_dir: Path, names: list[str], manifest: Manifest) -> None:
    """Every file in `names` exists and is the one compile wrote (its sha256 in the manifest)."""
    sums = _checksums(rtl_dir, manifest)
    for n in names:
        read_checked(rtl_dir, n, sums)


def _stream(o: PortStream) -> Stream:
    return Stream(o.port, o.width, o.beats)


def bench_of(view: Manifest | NPUEntry, blocks: list[BlockPorts] = ()) -> Bench:
    """The testbench of the pipeline (a Manifest) or of the chip (its NPU entry, with load ports)."""
    load = tuple((p.name, p.width) for p in view.ports) if isinstance(view, NPUEntry) else ()
    return Bench((_stream(view.input),), tuple(_stream(o) for o in view.outputs), tuple(blocks), load)


def sources_of(rtl_dir: Path, names: list[str], sums: dict) -> tuple[tuple[str, str], ...]:
    """(name, text) of generated files, each checked against its checksum as it is read."""
    return tuple((n, read_checked(rtl_dir, n, sums).decode()) for n in names)


def layer_blocks(rtl_dir: Path, manifest: Manifest) -> list[tuple[Block, BlockPorts]]:
    """Every layer module of the build as its own Verilated model (from its file and the primitives)."""
    sums, prims = _checksums(rtl_dir, manifest), manifest.files[0]
    out = []
    for b in manifest.shell.blocks:
        prefix = "V" + b.instance.replace("u", "b", 1)
        blk = Block(prefix, b.module, sources_of(rtl_dir, [prims, b.file], sums))
        out.append((blk, BlockPorts(prefix, b.instance, tuple(i.port for i in b.inputs))))
    return out


@dataclass
class BuildResult:
    binary: Path
    seconds: float
    reused: bool
    verilator_version: str
    mode: str                                   # "blocks" or "flat"
    models: int                                 # Verilated models linked into the binary
    blocks: list[dict] = field(default_factory=list)   # per model built now: name, seconds, peak MB, cached


def build_blocks(blocks: list[Block], jobs: int, make_jobs: int = 1) -> list[BuiltBlock]:
    """Build (or reuse) every block, `jobs` at a time, the largest first (they dominate the wall time)."""
    v = find_verilator()
    order = sorted(range(len(blocks)), key=lambda i: -sum(len(t) for _, t in blocks[i].sources))
    built: list[BuiltBlock | None] = [None] * len(blocks)
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as ex, \
            bar(total=len(blocks), desc="verilator build", unit="block") as pb:
        futs = {i: ex.submit(build_block, blocks[i], v, make_jobs) for i in order}
        for i, f in futs.items():
            built[i] = f.result()
            pb.update(1)
    return built  # type: ignore[return-value]


def build(rtl_dir: Path, manifest: Manifest, work: Path, jobs: int = 2, flat: bool = False,
          chip: bool = False) -> BuildResult:
    """Verilate and compile the pipeline (or, `chip`, the chip with its NPU) of the build's manifest
    with the testbench into work/; every file is checked against its checksum as it is read. A
    build whose models and testbench are unchanged is reused."""
    if jobs < 1:
        raise UserError(f"--jobs must be >= 1 (got {jobs})")
    v = find_verilator()
    t0 = time.perf_counter()
    view, sums = (manifest.npu if chip else manifest), _checksums(rtl_dir, manifest)
    if view is None:
        raise UserError(f"{rtl_dir} has no NPU: compile with an int8 classifier (--classifier npu)")
    if flat:
        top = Block("Vtop", view.top, sources_of(rtl_dir, view.files, sums))
        pairs = []
        bench = bench_of(view)
    else:
        shell = view.shell
        files = shell.files if shell.files else [view.files[0], shell.file]
        top = Block("Vtop", shell.top, sources_of(rtl_dir, files, sums))
        pairs = layer_blocks(rtl_dir, manifest)
        bench = bench_of(view, [p for _, p in pairs])
    models = [top] + [b for b, _ in pairs]
    tb = testbench_cpp(bench)
    stamp = hashlib.sha256("|".join([tb] + [m.key(v) for m in models]).encode()).hexdigest()
    work.mkdir(parents=True, exist_ok=True)
    binary = work / "sim"
    if binary.is_file() and (work / "stamp").is_file() and (work / "stamp").read_text() == stamp:
        return BuildResult(binary, 0.0, True, v.version, "flat" if flat else "blocks", len(models))
    (work / "stamp").unlink(missing_ok=True)
    built = build_blocks(models, jobs, make_jobs=jobs)  # -j per block too: no idle core while one big block compiles
    link(tb, built, v, binary)
    (work / "stamp").write_text(stamp)
    info = [{"model": m.top, "seconds": round(b.seconds, 2), "verilate_s": round(b.verilate_s, 2),
             "compile_s": round(b.compile_s, 2), "peak_mb": round(b.peak_kb / 1024, 1), "cached": b.seconds == 0}
            for m, b in zip(models, built)]
    return BuildResult(binary, time.perf_counter() - t0, False, v.version, "flat" if flat else "blocks", len(models),
                       info)


def run_bench(binary: Path, bench: Bench, inputs: list[np.ndarray], bits: list[int], stall_in: int = 0,
              stall_out: int = 0, seed: int = 1, max_idle: int = 100_000, load: bytes | None = None) -> dict:
    """One testbench process. inputs[k]: [N, beats, per_beat] values of input stream k (`bits[k]`
    bits each). Returns each output's raw words [N, beats, words], acceptance cycles [N, beats],
    the first input's first/last beat cycles, the total cycles and the wall seconds."""
    n = len(inputs[0])
    with tempfile.TemporaryDirectory(prefix="hf-sim-") as d:
        src, dst = Path(d) / "in.bin", Path(d) / "out.bin"
        with open(src, "wb") as f:
            f.write(np.array([n], "<u4").tobytes())
            for s, x, b in zip(bench.inputs, inputs, bits):
                w = pack(x, b)
                assert w.shape == (n, s.beats, s.words), (w.shape, s)
                f.write(w.tobytes())
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
        raw = np.fromfile(dst, dtype=np.uint8)
    pos, words, cycles = 0, [], []
    for o in bench.outputs:
        k = n * o.beats * o.words * 4
        words.append(raw[pos:pos + k].view("<u4").reshape(n, o.beats, o.words))
        pos += k
    rest = raw[pos:].view("<i8")
    pos = 0
    for o in bench.outputs:
        cycles.append(rest[pos:pos + n * o.beats].reshape(n, o.beats))
        pos += n * o.beats
    return {"words": words, "cycles": cycles, "in_first": rest[pos:pos + n], "in_last": rest[pos + n:pos + 2 * n],
            "total_cycles": int(rest[pos + 2 * n]), "seconds": secs}


def simulate(binary: Path, view: Manifest | NPUEntry, images: np.ndarray, stall_in: int = 0, stall_out: int = 0,
             seed: int = 1, max_idle: int = 100_000, load: bytes | None = None) -> dict:
    """Stream uint8 images through a built design; returns per-port outputs [N, beats*lanes*C]
    (int64), the cycle each image's last beat left per port, and the input cycles. `load`: the NPU
    load file (verify.chip.load_file) for a chip view."""
    bench = bench_of(view)
    x = tensor_beats(images.astype(np.int64), view.input.lanes, view.input.rows or 1)
    r = run_bench(binary, bench, [x], [8], stall_in, stall_out, seed, max_idle, load)
    n = len(images)
    outs, cycles = {}, {}
    for o, w, c in zip(view.outputs, r["words"], r["cycles"]):
        outs[o.port] = unpack(w, o.lanes * o.channels, o.bits, o.signed).reshape(n, -1)
        cycles[o.port] = c[:, -1]
    return {"outputs": outs, "cycles": cycles, "in_first": r["in_first"], "in_last": r["in_last"],
            "total_cycles": r["total_cycles"], "seconds": r["seconds"]}


MIN_SHARD = 4   # images per simulator process at least: a shard's first images fill the pipeline


def shards_of(n: int, jobs: int) -> list[tuple[int, int]]:
    """Contiguous image ranges [a, b), one per simulator process, each of MIN_SHARD images or more."""
    k = max(1, min(jobs, n // MIN_SHARD))
    cuts = [round(i * n / k) for i in range(k + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(k)]


def _simulate_shipped(binary: bytes, view, images: np.ndarray, load: bytes | None, kw: dict) -> dict:
    """simulate() on a Ray worker: the simulator binary arrives as bytes (it links every block
    statically, so it runs on any node of the same platform)."""
    with tempfile.TemporaryDirectory(prefix="hf-ray-sim-") as d:
        exe = Path(d) / "sim"
        exe.write_bytes(binary)
        exe.chmod(0o755)
        return simulate(exe, view, images, load=load, **kw)


def simulate_sharded(binary: Path, view: Manifest | NPUEntry, images: np.ndarray, jobs: int, loads=None, ray=None,
                     **kw) -> dict:
    """simulate() over `jobs` processes of the same binary, each a contiguous shard of the images;
    results merged in image order (outputs identical to one process). loads(a, b): the load file
    of shard [a, b). `ray`: a connected ray module (hashiflex.cluster.connect): the shards are Ray
    tasks and the binary is shipped to them once. The cycle figures are per shard; "spans" holds
    (last - first exit cycle, images - 1) of each shard so steady-state cycles per image can be
    pooled."""
    parts = shards_of(len(images), jobs)
    if ray is not None:
        from ..cluster import ray_map

        exe = ray.put(Path(binary).read_bytes())
        res = ray_map(ray, _simulate_shipped, [(exe, view, images[a:b], loads(a, b) if loads else None, kw)
                                               for a, b in parts])
    else:
        with ThreadPoolExecutor(max_workers=len(parts)) as ex:
            futs = [ex.submit(simulate, binary, view, images[a:b], load=loads(a, b) if loads else None, **kw)
                    for a, b in parts]
            res = [f.result() for f in futs]
    ports = list(res[0]["outputs"])
    last = view.outputs[-1].port
    return {"outputs": {p: np.concatenate([r["outputs"][p] for r in res]) for p in ports},
            "cycles": {p: np.concatenate([r["cycles"][p] for r in res]) for p in ports},
            "in_first": np.concatenate([r["in_first"] for r in res]),
            "spans": [(int(r["cycles"][last][-1] - r["cycles"][last][0]), len(r["cycles"][last]) - 1) for r in res],
            "latency": int(res[0]["cycles"][last][0] - res[0]["in_first"][0]),
            "total_cycles": max(r["total_cycles"] for r in res), "seconds": max(r["seconds"] for r in res),
            "cpu_seconds": sum(r["seconds"] for r in res), "shards": len(parts)}


def cycles_per_image(sim: dict) -> float:
    """Steady-state cycles between consecutive images' last output beats, pooled over shards
    (the latency when every shard has one image)."""
    span = sum(s for s, _ in sim["spans"])
    gaps = sum(g for _, g in sim["spans"])
    return span / gaps if gaps else float(sim["latency"])


def check_images(images_u8, manifest: Manifest) -> np.ndarray:
    images = np.asarray(images_u8)
    if images.dtype != np.uint8 or images.ndim != 4 or list(images.shape[1:]) != manifest.input.shape:
        raise UserError(f"images must be uint8 [N, {', '.join(map(str, manifest.input.shape))}], "
                        f"got {images.dtype} {list(images.shape)}")
    if len(images) == 0:
        raise UserError("verify needs at least one image")
    return images


def distinct_rows(x: np.ndarray) -> int:
    """How many different output vectors (rows) an [N, ...] array holds."""
    return int(len(np.unique(np.asarray(x).reshape(len(x), -1), axis=0))) if len(x) else 0


def build_fields(b: BuildResult) -> dict:
    return {"build_seconds": round(b.seconds, 3), "build_reused": b.reused, "build_mode": b.mode, "binary": str(b.binary),
            "verilator_version": b.verilator_version, "build_models": b.models,
            "build_peak_mb": max((x["peak_mb"] for x in b.blocks), default=None)}


def sim_fields(sim: dict, n: int) -> dict:
    s = sim["seconds"]
    return {"sim_seconds": round(s, 3), "sim_processes": sim["shards"],
            "sim_images_per_s": round(n / s, 3) if s > 0 else None,
            "sim_images_per_cpu_s": round(n / sim["cpu_seconds"], 3) if sim["cpu_seconds"] > 0 else None}
