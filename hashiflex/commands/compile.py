"""`hashiflex compile`: lower a po2 checkpoint (or a random-weight architecture) to the IR."""
from __future__ import annotations

import math
import time
from pathlib import Path

from ..errors import UserError
from .common import staged_folder


RTL_FIGURES = ("adders", "adder_bits", "register_bits", "expected_cycles_per_image", "parallelism", "shared",
               "adders_naive", "adder_bits_naive", "pipeline_levels")


def _npu_config(args, prog):
    """The NPU settings (docs/npu.md) when the classifier is int8; None for a hardened classifier."""
    from ..ir.spec import npu_op
    from ..rtl.npu import NPUConfig

    asked = [o for o, v in (("--npu-lanes", getattr(args, "npu_lanes", None)),
                            ("--npu-batch", getattr(args, "npu_batch", None)),
                            ("--npu-capacity", getattr(args, "npu_capacity", None))) if v is not None]
    if npu_op(prog) is None:
        if asked:
            raise UserError(f"{', '.join(asked)}: the classifier is hardened (Po2), there is no NPU to configure")
        return None
    return NPUConfig(getattr(args, "npu_lanes", None), getattr(args, "npu_batch", None) or 1,
                     getattr(args, "npu_capacity", None))


def _check_plan_options(args) -> bool:
    """Whether the build follows a plan (--plan, --target-ips or --area-mm2); refuses mixes."""
    target = getattr(args, "target_ips", None), getattr(args, "area_mm2", None)
    plan, clock = getattr(args, "plan", None), getattr(args, "clock_ghz", None)
    for opt, v in (("--target-ips", target[0]), ("--area-mm2", target[1]), ("--clock-ghz", clock)):
        if v is not None and not (math.isfinite(v) and v > 0):
            raise UserError(f"{opt} must be a number > 0 (got {v})")
    if target[0] is not None and target[1] is not None:
        raise UserError("give either --target-ips or --area-mm2, not both")
    planned = plan is not None or any(v is not None for v in target)
    if plan is not None and (any(v is not None for v in target) or clock is not None):
        raise UserError("--plan carries its own formats and clock: drop --target-ips / --area-mm2 / --clock-ghz")
    if clock is not None and not planned:
        raise UserError("--clock-ghz applies to --target-ips / --area-mm2 (the clock to balance for)")
    if planned:
        if args.no_rtl:
            raise UserError("--plan / --target-ips / --area-mm2 generate RTL: drop --no-rtl")
        clash = [o for o, v in (("--parallelism", args.parallelism != 1), ("--npu-lanes", args.npu_lanes is not None),
                                ("--npu-batch", args.npu_batch is not None)) if v]
        if clash:
            raise UserError(f"{', '.join(clash)}: the plan sets the formats and the NPU; drop them")
    return planned


def _plan_for(args, prog, graphs):
    """The plan to generate: read (--plan) or balanced for the generator (--target-ips / --area-mm2)."""
    from ..rtl.plan import read_plan

    if args.plan is not None:
        return None, read_plan(args.plan)
    from ..cost.balance import generated_design
    return generated_design(prog, args.clock_ghz, args.target_ips, args.area_mm2, graphs)


MAX_ADDERS = 20_000_000     # about 3 GB of Verilog (155 bytes per shared adder, measured on a 2.2 M-adder build)
VERILOG_BYTES_PER_ADDER = 155


def _check_size(prog, graphs, parallelism: int, formats, plan) -> None:
    """Refuse, before writing anything, RTL whose adders (the cost model's count, which equals the
    generator's) would exceed MAX_ADDERS; say the estimate and what to do."""
    if plan is not None:
        adders, how = plan.predicted.adders, "the plan"
    elif parallelism > 1:
        from ..cost.design import as_generated
        adders, how = as_generated(prog, None, parallelism=parallelism, graphs=graphs)["adders"], \
            f"--parallelism {parallelism}"
    else:
        return
    if adders > MAX_ADDERS:
        gb = adders * VERILOG_BYTES_PER_ADDER / 1e9
        raise UserError(f"{how} would generate about {adders / 1e6:.1f} M adders (about {gb:.1f} GB of Verilog), "
                        f"over the limit of {MAX_ADDERS:,}: lower --parallelism, or balance with --target-ips")


def run(args):
    from ..ir.build import ARCHS, compile_build, summarize

    for opt in ("npu_lanes", "npu_batch", "npu_capacity"):
        if getattr(args, opt, None) is not None and getattr(args, opt) < 1:
            raise UserError(f"--{opt.replace('_', '-')} must be at least 1 (got {getattr(args, opt)})")

    if args.arch is None and (args.prune is not None or args.exp_bits is not None
                              or getattr(args, "classifier", None) is not None):
        raise UserError("--prune, --exp-bits and --classifier apply to --arch builds; a checkpoint carries its own "
                        "settings")
    if args.arch is not None and args.arch not in ARCHS:
        raise UserError(f"unknown --arch {args.arch!r}: choose from {sorted(ARCHS)}")
    if args.parallelism < 1:
        raise UserError(f"--parallelism must be at least 1 (got {args.parallelism})")
    if args.seed is not None and args.seed < 0:
        raise UserError(f"--seed must be >= 0 (got {args.seed})")
    planned = _check_plan_options(args)
    k = getattr(args, "pipeline_levels", None)
    if k is not None and not 1 <= k <= 64:
        raise UserError(f"--pipeline-levels must be 1..64 (got {k})")
    if k is not None and (planned or args.no_rtl):
        raise UserError("--pipeline-levels applies to RTL built with --parallelism (plans do not pipeline yet)")
    t0 = time.time()
    out = Path(args.out)
    with staged_folder(out) as stage:  # IR and RTL move into --out only once all of them are written
        prog, files = compile_build(stage, checkpoint=None if args.arch else args.checkpoint, arch=args.arch,
                                    prune=args.prune or 0.0, exp_bits=3 if args.exp_bits is None else args.exp_bits,
                                    seed=args.seed or 0, classifier=getattr(args, "classifier", None) or "npu")
        graphs = None
        if getattr(args, "share", True):   # the adder-sharing pass: solved once, saved beside the IR
            from ..ir.sharing import save_graphs, solve_adder_graphs

            graphs = solve_adder_graphs(prog)
            files["graphs"] = str(save_graphs(graphs, stage))
        plan = None
        if planned:
            from ..rtl.npu import NPUConfig
            from ..rtl.plan import FILE as PLAN_FILE
            from ..rtl.plan import formats_of, write_plan

            _, plan = _plan_for(args, prog, graphs)
            formats = formats_of(prog, plan)    # refuses what the generator does not support
            parallelism = 1
            npu = None if plan.npu is None else NPUConfig(plan.npu.lanes, plan.npu.batch,
                                                          getattr(args, "npu_capacity", None))
            files["plan"] = str(write_plan(plan, stage / PLAN_FILE))
        else:
            parallelism, npu, formats = args.parallelism, None, None
        if not args.no_rtl:
            from ..rtl import generate_rtl

            _check_size(prog, graphs, parallelism, formats, plan)
            m = generate_rtl(prog, stage / "rtl", parallelism, share=graphs is not None,
                             npu=npu if planned else _npu_config(args, prog), graphs=graphs,
                             pipeline_levels=plan.pipeline_levels if plan is not None else
                             getattr(args, "pipeline_levels", None), formats=formats)
    files = {k: str(out / Path(v).name) for k, v in files.items()}
    result = dict(summarize(prog), **files, build=str(args.out), source=args.arch or args.checkpoint)
    summary = (f"compiled {result['source']} into {args.out}: {result['ops']} ops, "
               f"{result['nonzero_weights']:,} nonzero of {result['weights']:,} weights, widest accumulator "
               f"{result['max_acc_bits']} bits")
    if not args.no_rtl:
        result.update(rtl=str(out / "rtl"), **{k: getattr(m, k) for k in RTL_FIGURES})
        naive = f" (shared; {m.adders_naive:,} / {m.adder_bits_naive:,} without)" if m.shared else ""
        summary += (f"; RTL in {result['rtl']}: {m.adders:,} adders, {m.adder_bits:,} adder "
                    f"bits{naive}, {m.expected_cycles_per_image} cycles per image")
        if m.npu is not None:
            n = m.npu
            result["npu"] = n.model_dump(exclude={"ports", "files", "input", "outputs", "load_port"}, exclude_none=True)
            summary += (f"; NPU {n.lanes} lanes x batch {n.batch}, capacity {n.capacity} x "
                        f"{n.in_features}: {n.cycles_per_image:g} cycles per image, "
                        f"{'keeps' if n.keeps_pace else 'does NOT keep'} pace")
    if plan is not None:
        pr = plan.predicted
        result.update(clock_ghz=plan.clock_ghz, plan_predicted=pr.model_dump())
        summary += (f"; planned for {plan.clock_ghz:.3f} GHz: {pr.images_per_s:,.0f} images/s predicted "
                    f"({pr.cycles_per_image:g} cycles per image, {pr.area_mm2:.3f} mm^2; check with "
                    f"'hashiflex estimate {args.out}')")
    result["seconds"] = round(time.time() - t0, 2)
    return result, summary + f" ({result['seconds']} s)"
