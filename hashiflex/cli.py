"""The `hashiflex` command line: train, quantize, eval, sweep, compile and verify.

Heavy imports (torch, matplotlib) happen inside the subcommands, so `--help` and option errors
answer at once. Every subcommand returns (result dict, human summary); `--json` prints the dict.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import sys

from .commands.parser import build_parser
from .errors import UserError

def _json_safe(v):
    """Non-finite floats become null: bare NaN is not JSON."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help or an argparse error (already printed, code 2)
        return e.code if isinstance(e.code, int) else 2
    # Before torch loads OpenMP: sleeping (not spinning) idle threads keeps a shared 2-core machine usable.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from .commands import common
        common.set_threads()
        mod = importlib.import_module(f".commands.{args.module}", __package__)
        result, summary = mod.run(args)
    except UserError as e:
        print(f"hashiflex: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hashiflex: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(_json_safe(result)))
    else:
        print(summary)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
