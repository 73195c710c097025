"""`hashiflex compile`: lower a po2 checkpoint (or a random-weight architecture) to the IR."""
from __future__ import annotations

import time

from ..errors import UserError


RTL_FIGURES = ("adders", "adder_bits", "register_bits", "expected_cycles_per_image", "parallelism")


def run(args):
    from ..ir.build import ARCHS, compile_build, summarize

    if args.arch is None and (args.prune is not None or args.exp_bits is not None):
        raise UserError("--prune and --exp-bits apply to --arch builds; a checkpoint carries its own settings")
    if args.arch is not None and args.arch not in ARCHS:
        raise UserError(f"unknown --arch {args.arch!r}: choose from {sorted(ARCHS)}")
    if args.parallelism < 1:
        raise UserError(f"--parallelism must be at least 1 (got {args.parallelism})")
    if args.seed is not None and args.seed < 0:
        raise UserError(f"--seed must be >= 0 (got {args.seed})")
    t0 = time.time()
    prog, files = compile_build(args.out, checkpoint=None if args.arch else args.checkpoint, arch=args.arch,
                                prune=args.prune or 0.0, exp_bits=3 if args.exp_bits is None else args.exp_bits,
                                seed=args.seed or 0)
    result = dict(summarize(prog), **files, build=str(args.out), source=args.arch or args.checkpoint)
    summary = (f"compiled {result['source']} into {args.out}: {result['ops']} ops, "
               f"{result['nonzero_weights']:,} nonzero of {result['weights']:,} weights, widest accumulator "
               f"{result['max_acc_bits']} bits")
    if not args.no_rtl:
        from pathlib import Path

        from ..rtl import generate_rtl

        m = generate_rtl(prog, Path(args.out) / "rtl", args.parallelism)
        result.update(rtl=str(Path(args.out) / "rtl"), **{k: m[k] for k in RTL_FIGURES if k in m})
        summary += (f"; RTL in {result['rtl']}: {m.get('adders', 0):,} adders, {m.get('adder_bits', 0):,} adder "
                    f"bits, {m.get('expected_cycles_per_image')} cycles per image")
    result["seconds"] = round(time.time() - t0, 2)
    return result, summary + f" ({result['seconds']} s)"
