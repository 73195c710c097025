"""The layer modules of a generated build as synthesis jobs, and the chip's totals.

Every layer module of the manifest (with the primitive library it instantiates) is one job. The
top-level glue (skip FIFOs, width converters, forks: hf_top) and the NPU are not synthesized here:
the NPU's weight memory is an SRAM macro, not standard cells, and the glue is priced by the cost
model (docs/cost.md says so beside every chip figure).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..rtl.manifest import Manifest, ModuleEntry
from ..rtl.readback import find_manifest
from ..verify.harness import check_files
from .run import Job, ModuleSynth

PRIMS_FILE = "hf_prims.v"


def build_rtl(build) -> tuple[Path, Manifest]:
    found = find_manifest(build)
    if found is None:
        raise UserError(f"no RTL in {build}: run 'hashiflex compile --out {build}' (without --no-rtl) first")
    return found


def select(man: Manifest, patterns: list[str] | None) -> list[ModuleEntry]:
    """The manifest's layer modules, or those matching any --module pattern (name or op, globs)."""
    mods = list(man.modules)
    if not patterns:
        return mods
    out = [m for m in mods if any(fnmatch.fnmatchcase(m.name, p) or fnmatch.fnmatchcase(m.op, p) for p in patterns)]
    if not out:
        names = ", ".join(m.name for m in mods[:4])
        raise UserError(f"--module {' '.join(patterns)} matches no module of this build (they are {names}, ...)")
    return out


def jobs_for(rtl_dir: Path, man: Manifest, modules: list[ModuleEntry], period_ps: float, flat: bool = True
             ) -> list[Job]:
    """One job per module; every file is checked against the manifest's checksum first (an edited
    or missing file is refused, as verify refuses it: verify.harness.check_files)."""
    check_files(rtl_dir, sorted({PRIMS_FILE, *(m.file for m in modules)}), man)
    return [Job(m.name, (rtl_dir / PRIMS_FILE, rtl_dir / m.file), period_ps, m.multicycle, flat) for m in modules]


@dataclass
class ChipTiming:
    area_um2: float
    critical_module: str | None
    min_period_ps: float | None
    failing: list[str]

    @property
    def fmax_ghz(self) -> float | None:
        return 1e3 / self.min_period_ps if self.min_period_ps else None


def chip_totals(results: list[ModuleSynth]) -> ChipTiming:
    timed = [r for r in results if r.path is not None]
    worst = max(timed, key=lambda r: r.path.period_ps, default=None)
    return ChipTiming(sum(r.area_um2 for r in results), worst.module if worst else None,
                      worst.path.period_ps if worst else None,
                      [r.module for r in timed if r.slack_ps < 0])
