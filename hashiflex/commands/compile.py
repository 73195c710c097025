"""`hashiflex compile`: lower a po2 checkpoint (or a random-weight architecture) to the IR."""
from __future__ import annotations

import time
from pathlib import Path

from ..errors import UserError
from .common import staged_folder


RTL_FIGURES = ("adders", "adder_bits", "register_bits", "expected_cycles_per_image", "parallelism", "shared",
               "adders_naive", "adder_bits_naive")


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
        if not args.no_rtl:
            from ..rtl import generate_rtl

            m = generate_rtl(prog, stage / "rtl", args.parallelism, share=graphs is not None,
                             npu=_npu_config(args, prog), graphs=graphs)
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
    result["seconds"] = round(time.time() - t0, 2)
    return result, summary + f" ({result['seconds']} s)"
