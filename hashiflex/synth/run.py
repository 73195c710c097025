"""Synthesize and time the modules of a build, in parallel, cached by content hash.

`synth_module(job)` runs one module: Yosys maps it onto the library's cells (flow.yosys_script),
OpenSTA times the netlist (flow.sta_script). The result (a `ModuleSynth`) and the gzipped netlist
are cached under `$HASHIFLEX_CACHE/synth` (default `~/.cache/hashiflex/synth`), keyed by the
SHA-256 of the flow version, the module name, the clock period ABC maps for, the liberty files'
bytes and every Verilog file's bytes. A cached result is validated on read (pydantic: types,
ranges, the key it claims); one that fails is recomputed, never trusted. Cache entries are written
to a temporary name and renamed, so an interrupted run leaves nothing half-written.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import UserError
from ..progress import bar
from ..verify.verilator import cache_root
from . import flow
from .liberty import CellLibrary, write_into

PathReport = flow.WorstPath


class ModuleSynth(BaseModel):
    """One module on cells: area by cell class, counts, the worst register-to-register path."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str = Field(pattern=r"^[0-9a-f]{64}$")
    module: str
    period_ps: float = Field(gt=0, le=1e7)
    cells: int = Field(ge=0)
    flip_flops: int = Field(ge=0)
    area_um2: float = Field(ge=0, le=1e9)
    area_by_class_um2: dict[str, float]
    cells_by_type: dict[str, int]
    path: PathReport | None
    synth_s: float = Field(ge=0)
    sta_s: float = Field(ge=0)
    peak_rss_mb: float = Field(ge=0)

    @property
    def min_period_ps(self) -> float | None:
        return self.path.period_ps if self.path else None

    @property
    def slack_ps(self) -> float | None:
        return (self.period_ps - self.path.period_ps) * self.path.cycles if self.path else None


@dataclass(frozen=True)
class Job:
    module: str
    files: tuple[Path, ...]      # the primitives first, then the module's own file
    period_ps: float
    multicycle: int | None = None   # a global pool: its registered sums (sq_*) start a path of this many cycles
    flat: bool = True               # False: each distinct primitive mapped once (flow.yosys_script)


def cache_dir() -> Path:
    return cache_root() / "synth"


def job_key(job: Job, lib: CellLibrary) -> str:
    h = hashlib.sha256()
    for part in (flow.FLOW_VERSION, job.module, f"{job.period_ps:.1f}", lib.digest, str(flow.CONSTR_LOAD_FF),
                 *([f"multicycle {job.multicycle}"] if job.multicycle else []), *([] if job.flat else ["hier"])):
        h.update(part.encode() + b"\0")
    for f in job.files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def cell_class(name: str, lib: CellLibrary) -> str:
    """Flip-flops, buffers and inverters (drive and polarity), adder cells (MAJ / XOR / XNOR / FA /
    HA: the arithmetic), other logic."""
    if lib.cells[name].sequential:
        return "flip_flops"
    up = name.upper()
    if up.startswith(("INV", "BUF", "HB")):
        return "buffers"
    if up.startswith(("MAJ", "XOR", "XNOR", "FA", "HA")):
        return "arithmetic"
    return "logic"


def _run(cmd: list[str], cwd: str, timeout: float | None, what: str) -> tuple[int, str, float]:
    """Run a tool in `cwd`: (exit code, its output, peak resident MB of the process)."""
    log = Path(cwd) / f".{Path(cmd[0]).name}.log"
    with open(log, "w") as fh:
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        except OSError as e:
            raise UserError(f"cannot start {cmd[0]} ({e.strerror})") from None
        timed_out = threading.Event()

        def kill():
            timed_out.set()
            proc.kill()

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
        finally:
            if timer:
                timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if timed_out.is_set():
        raise UserError(f"{what} did not finish within {timeout:.0f} s: raise --timeout")
    return proc.returncode, log.read_text(errors="replace"), usage.ru_maxrss / 1024


def _tail(text: str, n: int = 300) -> str:
    lines = [ln for ln in text.splitlines() if "ERROR" in ln or "Error" in ln] or text.splitlines()[-3:]
    return " ".join(" ".join(lines).split())[-n:]


def synth_module(job: Job, lib: CellLibrary, timeout: float | None = None, key: str | None = None
                 ) -> tuple[ModuleSynth, bytes]:
    """Map and time one module (no cache): (result, netlist Verilog bytes); `key`: job_key(job, lib)
    when the caller has it."""
    yosys, sta = flow.yosys_exe(), flow.sta_exe()
    key = key or job_key(job, lib)
    with tempfile.TemporaryDirectory(prefix="hf_synth_") as td:
        tdp = Path(td)
        lib_files = write_into(lib, tdp)
        names = []
        for f in job.files:
            (tdp / f.name).write_bytes(f.read_bytes())
            names.append(f.name)
        (tdp / "constr.sdc").write_text(flow.constr_text(lib))
        (tdp / "run.ys").write_text(flow.yosys_script(names, job.module, lib, lib_files, job.period_ps, job.flat))
        t0 = time.monotonic()
        code, out, rss = _run([yosys, "-q", "-s", "run.ys"], td, timeout, f"yosys on {job.module}")
        synth_s = time.monotonic() - t0
        if code != 0 or not (tdp / "netlist.v").is_file():
            raise UserError(f"yosys could not map {job.module} onto the cells: {_tail(out)}")
        netlist = flow.clean_netlist((tdp / "netlist.v").read_text())
        (tdp / "netlist.v").write_text(netlist)
        stat = json.loads((tdp / "stat.json").read_text())
        (tdp / "sta.tcl").write_text(flow.sta_script(lib_files, job.module, job.period_ps, job.multicycle))
        t1 = time.monotonic()
        code, report, rss_sta = _run([sta, "-no_splash", "-exit", "sta.tcl"], td, timeout, f"OpenSTA on {job.module}")
        sta_s = time.monotonic() - t1
        if code != 0 or "Error" in report:
            raise UserError(f"OpenSTA could not time {job.module}: {_tail(report)}")
    path = flow.worst_of(report, job.module, job.period_ps)
    # the design's totals count every cell of the hierarchy (a flat module: its own)
    submodules = set(stat["modules"])
    by_type = {k: int(v) for k, v in stat["design"]["num_cells_by_type"].items() if k not in submodules}
    unknown = sorted(set(by_type) - set(lib.cells))
    if unknown:
        raise UserError(f"the netlist of {job.module} has cells outside the liberty files: {', '.join(unknown[:4])}")
    by_class: dict[str, float] = {}
    for name, n in by_type.items():
        c = cell_class(name, lib)
        by_class[c] = by_class.get(c, 0.0) + n * lib.area_of(name)
    res = ModuleSynth(
        key=key, module=job.module, period_ps=job.period_ps, cells=sum(by_type.values()),
        flip_flops=sum(n for k, n in by_type.items() if lib.cells[k].sequential),
        area_um2=sum(by_class.values()), area_by_class_um2=by_class, cells_by_type=by_type,
        path=path, synth_s=round(synth_s, 2), sta_s=round(sta_s, 2),
        peak_rss_mb=round(max(rss, rss_sta), 1))
    return res, netlist.encode()


def read_cached(key: str) -> ModuleSynth | None:
    """A cached result whose file passes the schema and claims this key, else None (recompute)."""
    p = cache_dir() / f"{key}.json"
    if not p.is_file() or not (cache_dir() / f"{key}.v.gz").is_file():
        return None
    try:
        res = ModuleSynth.model_validate_json(p.read_bytes())
    except (OSError, ValidationError):
        return None
    return res if res.key == key else None


def netlist_of(key: str) -> bytes:
    try:
        return gzip.decompress((cache_dir() / f"{key}.v.gz").read_bytes())
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise UserError(f"cached netlist {key[:12]} is unreadable ({type(e).__name__}): run again with --no-cache") \
            from None


def _store(res: ModuleSynth, netlist: bytes) -> None:
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        for name, data in ((f"{res.key}.v.gz", gzip.compress(netlist, mtime=0)),
                           (f"{res.key}.json", res.model_dump_json().encode())):   # the json last: it marks done
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=d)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, d / name)
    except OSError:
        pass   # a read-only cache only costs time


def synth_all(jobs: list[Job], lib: CellLibrary, n_jobs: int = 1, use_cache: bool = True,
              timeout: float | None = None, from_cache: list[str] | None = None) -> list[ModuleSynth]:
    """Every job's result, in the jobs' order; the largest modules start first. `from_cache`, when
    given, receives the names of the modules read from the cache."""
    results: dict[int, ModuleSynth] = {}
    keys = [job_key(j, lib) for j in jobs]
    todo = []
    for i, j in enumerate(jobs):
        hit = read_cached(keys[i]) if use_cache else None
        if hit is not None:
            results[i] = hit
            if from_cache is not None:
                from_cache.append(j.module)
        else:
            todo.append(i)
    todo.sort(key=lambda i: -sum(f.stat().st_size for f in jobs[i].files))

    def one(i: int) -> tuple[int, ModuleSynth]:
        res, net = synth_module(jobs[i], lib, timeout, keys[i])
        _store(res, net)
        return i, res

    with bar(total=len(jobs), desc="synth", unit="module") as pb, \
            ThreadPoolExecutor(max_workers=max(1, n_jobs)) as pool:
        pb.update(len(results))
        for i, res in pool.map(one, todo):
            results[i] = res
            pb.update(1)
    return [results[i] for i in range(len(jobs))]
