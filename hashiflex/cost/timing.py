"""The clock model: register-to-register paths of the generated modules on ASAP7 cells.

Every constant is fitted to OpenSTA's worst paths on ASAP7 RVT TT cells, with the modules mapped by
ABC for speed (benchmarks/asap7_calibration.py; tech.py tags them [asap7]; the fit and the held-out
errors are in docs/cost.md, "Real cells"). A stage of d adder levels whose widest adder is W bits, in
a module whose copy holds A adders, ending in the requantizer:

    t_stage   = T_REG + W * T_FA + d * T_LEVEL + T_REQUANT + T_SPREAD * log4(A)
    t_control = T_REG + T_CTRL            (counters and handshake to the buffered enables)
    t_layer   = max(t_stage, t_control)

The carry waves of successive ripple levels overlap (W * T_FA once, not per level); the log4(A) term
is the fan-out a larger network puts on its window registers and shared adders, which ABC drives
through buffer trees. A max pool's comparator levels do not overlap (each mux waits for its
comparator's carry chain): `T_REG + d * (W * T_FA + T_LEVEL)`.
"""
from __future__ import annotations

import math

from . import tech


def spread_ns(adders: int) -> float:
    return tech.T_SPREAD * math.log(max(adders, 1), 4)


def stage_delay_ns(depth: int, width: int, requant: bool = True, adders: int = 1) -> float:
    """A register-to-register stage of `depth` adder levels whose widest adder is `width` bits, in a
    network of `adders` adders per copy, ending in the requantizer."""
    return (tech.T_REG + width * tech.T_FA + depth * tech.T_LEVEL + (tech.T_REQUANT if requant else 0.0)
            + spread_ns(adders))


def levels_per_stage(period_ns: float, width: int, adders: int = 1) -> int:
    """Most adder levels a stage can hold at this clock (0: not reachable)."""
    free = period_ns - tech.T_REG - tech.T_REQUANT - width * tech.T_FA - spread_ns(adders)
    return int(math.floor(free / tech.T_LEVEL + 1e-9))


def compare_delay_ns(depth: int, width: int) -> float:
    """A stage of `depth` comparator levels of `width` bits (a max pool)."""
    return tech.T_REG + depth * (width * tech.T_FA + tech.T_LEVEL)


def compare_levels_per_stage(period_ns: float, width: int) -> int:
    """Most comparator levels a stage can hold at this clock (0: not reachable)."""
    return int(math.floor((period_ns - tech.T_REG) / (width * tech.T_FA + tech.T_LEVEL) + 1e-9))


def control_delay_ns() -> float:
    """A module's control path: a counter or the output FIFO's occupancy through the enable logic
    and ABC's buffer tree to the registers it enables."""
    return tech.T_REG + tech.T_CTRL
