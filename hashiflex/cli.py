"""The `hashiflex` command line: train, quantize, eval, sweep, compile and verify.

Heavy imports (torch, matplotlib) happen inside the subcommands, so `--help` and option errors
answer at once. Every subcommand returns (result dict, human summary); `--json` prints the dict.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import signal
import sys
import threading

from .commands.parser import build_parser
from .errors import UserError

STOP_SIGNALS = ("SIGTERM", "SIGHUP")


class Stopped(BaseException):
    """A termination signal: unwinds like Ctrl-C, so staged folders and temporary files go."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


def _install_stop_handlers() -> dict:
    """SIGTERM and SIGHUP raise Stopped (main thread only); returns the handlers to restore."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    old = {}
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            old[sig] = signal.signal(sig, _stop)
    return old


def _emit(text: str) -> int:
    """Print the result; a closed or full standard output is one line on stderr, exit 2."""
    try:
        print(text)
        sys.stdout.flush()
    except OSError as e:   # BrokenPipeError (closed reader), ENOSPC (/dev/full), ...
        try:   # Python would flush stdout again at exit and print a traceback: point it at /dev/null
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        print(f"hashiflex: error: cannot write the result to standard output ({e.strerror or type(e).__name__}); "
              "the command itself finished", file=sys.stderr)
        return 2
    return 0


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
    old = _install_stop_handlers()
    try:
        from .commands import common
        from .commands.parser import check_upper_bounds
        check_upper_bounds(args)
        common.set_threads()
        mod = importlib.import_module(f".commands.{args.module}", __package__)
        result, summary = mod.run(args)
    except UserError as e:
        print(f"hashiflex: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hashiflex: interrupted", file=sys.stderr)
        return 130
    except Stopped as e:
        print(f"hashiflex: stopped by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return _emit(json.dumps(_json_safe(result)) if args.json else summary)


if __name__ == "__main__":
    sys.exit(main())
