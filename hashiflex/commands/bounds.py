"""Upper bounds of numeric options: one table, shown in every option's --help and checked before
any command runs (docs/robustness.md, "numeric options"). argparse only, like parser.py."""
from __future__ import annotations

import argparse

# Upper bounds of the numeric options whose size multiplies time, memory, hardware or files: one
# table, shown in --help and checked before any command runs (lower bounds are each command's own
# checks). Each is well past any sensible value on the machines this targets.
UPPER = {"epochs": 1000, "batch_size": 1 << 16, "limit": 10 ** 8, "test_limit": 10 ** 8, "last_channel": 1 << 14,
         "jobs": 256, "parallelism": 4096, "npu_lanes": 1 << 14, "npu_batch": 1 << 12, "npu_capacity": 1 << 20,
         "compare_images": 10 ** 6, "cpu_images": 10 ** 5, "seed": (1 << 32) - 1, "target_ips": 1e15,
         "area_mm2": 1e6, "lr": 100.0, "images": 10 ** 6, "clock_ghz": 20.0}


def show_bounds(ap: argparse.ArgumentParser) -> None:
    for action in ap._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in action.choices.values():
                show_bounds(p)
        elif action.dest in UPPER and action.help and "at most" not in action.help:
            action.help += f"; at most {UPPER[action.dest]:g}"


def check_upper_bounds(args) -> None:
    """One line for a numeric option above its bound, or not a finite number (docs/robustness.md)."""
    import math

    from ..errors import UserError

    for dest, hi in UPPER.items():
        v = getattr(args, dest, None)
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        opt = f"--{dest.replace('_', '-')}"
        if not math.isfinite(v):
            raise UserError(f"{opt} must be a finite number (got {v})")
        if v > hi:
            raise UserError(f"{opt} must be at most {hi:g} (got {v:g})")


__all__ = ["UPPER", "check_upper_bounds", "show_bounds"]
