"""The per-layer plan: one source of truth for the RTL generator and the cost model.

A plan gives every hardware layer its stream format (G pixels of a row x V rows per beat), the
NPU's lanes and batch, the clock it was balanced for and the figures the cost model predicted for
it. `hashiflex estimate BUILD --target-ips X --write-plan FILE` (or `compile --target-ips X`)
writes one from the balancer (hashiflex.cost.balance); `hashiflex compile --plan FILE` generates
it, and keeps it as BUILD/plan.json, so `hashiflex estimate BUILD` prices the build at the plan's
clock and checks the prediction against what was generated.

What the generator supports today (`formats_of` refuses the rest with one line): V = 1, any
lanes per layer, with a width converter in front of a conv whose input arrives with other lanes
(one lane count dividing the other; rtl.convert); adder trees unpipelined, or every conv's network
cut every `pipeline_levels` levels (one K for the whole design). Spec: docs/cost.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError

from ..checkpoint import atomic_write
from ..errors import UserError, os_error_hint
from ..ir.spec import Program, npu_op
from .generate import plan_formats
from .manifest import first_error
from .schedule import hw_ops

FORMAT = "hashiflex-plan"
VERSION = 1
FILE = "plan.json"

Lanes = Annotated[StrictInt, Field(ge=1, le=1 << 12)]
Figure = Annotated[StrictInt | StrictFloat, Field(ge=0, le=1 << 60)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class LayerFormat(_Entry):
    op: Annotated[StrictStr, Field(min_length=1, max_length=512)]
    lanes: Lanes          # G: pixels of a row per beat of the layer's input stream
    rows: Lanes           # V: rows per beat


class NPUPlan(_Entry):
    lanes: Lanes
    batch: Annotated[StrictInt, Field(ge=1, le=1 << 12)]


class Predicted(_Entry):
    """The cost model's figures for the plan (hashiflex.cost), at `Plan.clock_ghz`."""
    cycles_per_image: Figure
    images_per_s: Figure
    area_mm2: Figure
    energy_pj_per_image: Figure
    adders: Figure
    adder_bits: Figure


class Plan(_Entry):
    format: Literal["hashiflex-plan"] = FORMAT
    version: Literal[1] = VERSION
    clock_ghz: Annotated[StrictInt | StrictFloat, Field(gt=0, le=20)]
    pipeline_levels: Annotated[StrictInt, Field(ge=1, le=64)] | None
    layers: list[LayerFormat] = Field(min_length=1, max_length=1 << 16)
    npu: NPUPlan | None
    predicted: Predicted

    def formats(self) -> dict[str, tuple[int, int]]:
        return {f.op: (f.lanes, f.rows) for f in self.layers}

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=1, sort_keys=True) + "\n"


def plan_from(formats: dict[str, tuple[int, int]], npu: dict | None, clock_ghz: float, pipeline_levels: int | None,
              figures: dict) -> Plan:
    """A plan from a design of the cost model (hashiflex.cost.design.evaluate's result fields)."""
    return Plan(clock_ghz=float(clock_ghz), pipeline_levels=pipeline_levels,
                layers=[LayerFormat(op=op, lanes=int(g), rows=int(v)) for op, (g, v) in formats.items()],
                npu=NPUPlan(lanes=int(npu["lanes"]), batch=int(npu["batch"])) if npu else None,
                predicted=Predicted(**{k: figures[k] for k in Predicted.model_fields}))


def write_plan(plan: Plan, path) -> Path:
    path = Path(path)
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(plan.to_json()))
    except OSError as e:
        raise UserError(f"cannot write {path}: {os_error_hint(e)}") from None
    return path


def read_plan(path, redo: str = "write it with 'hashiflex estimate BUILD --target-ips X --write-plan FILE'") -> Plan:
    """A plan file, checked against the schema on read (one line naming the field on failure)."""
    p = Path(path)
    try:
        obj = json.loads(p.read_text())
    except FileNotFoundError:
        raise UserError(f"plan {p} not found; {redo}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"plan {p} is not valid JSON ({type(e).__name__}); {redo}") from None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise UserError(f"{p} is not a hashiflex plan; {redo}")
    if obj.get("version") != VERSION:
        raise UserError(f"{p} has plan version {obj.get('version')!r}; this hashiflex reads version {VERSION}; {redo}")
    try:
        return Plan.model_validate(obj)
    except ValidationError as e:
        raise UserError(f"{p}: {first_error(e, 'plan')}; {redo}") from None


def formats_of(prog: Program, plan: Plan) -> dict[str, tuple[int, int]]:
    """The plan's per-layer formats once the generator has accepted them (rtl.generate.plan_formats),
    or a one-line UserError naming the first thing it does not build (never a different design)."""
    names = [op.name for op in hw_ops(prog)]
    if [f.op for f in plan.layers] != names:
        raise UserError(f"the plan's layers are not this network's hardware layers ({len(plan.layers)} in the plan, "
                        f"{len(names)} in the network, first: {names[0]}): write the plan for this build")
    if (plan.npu is None) != (npu_op(prog) is None):
        raise UserError("the plan's NPU does not match the network's classifier (an NPU exactly for an int8 one)")
    formats = plan.formats()
    plan_formats(prog, formats)
    return formats


__all__ = ["FILE", "LayerFormat", "NPUPlan", "Plan", "Predicted", "formats_of", "plan_from", "read_plan", "write_plan"]
