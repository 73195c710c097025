"""Random small programs (any kernel, stride, padding, depthwise, residual, head) in RTL equal
the golden simulator exactly, with and without random stalls."""
import numpy as np
import pytest

from hashiflex.errors import UserError
from hashiflex.rtl.generate import plan_lanes
from rtl_progs import ProgBuilder, rtl_check


def random_program(seed: int):
    rng = np.random.default_rng(seed)
    c, size = int(rng.integers(1, 4)), int(rng.integers(5, 10))
    b = ProgBuilder((c, size, size), seed=seed)
    x, hw = "input", size
    for _ in range(int(rng.integers(1, 4))):
        k = int(rng.choice([1, 3, 5]))
        stride, pad = int(rng.integers(1, 3)), int(rng.integers(0, k // 2 + 1))
        if (hw + 2 * pad - k) // stride + 1 < 1:
            continue
        dw = bool(rng.integers(0, 2)) and x != "input"
        signed = bool(rng.integers(0, 2))
        clamp = (-int(rng.integers(1, 128)), int(rng.integers(1, 128))) if signed else (0, int(rng.integers(1, 256)))
        y = b.conv(x, int(rng.integers(1, 6)), k=k, stride=stride, pad=pad, depthwise=dw, clamp=clamp,
                   max_code=int(rng.integers(1, 7)), prune=float(rng.choice([0.0, 0.3, 0.7])))
        hw = (hw + 2 * pad - k) // stride + 1
        if b.tensors[y].shape == b.tensors[x].shape and x != "input" and rng.integers(0, 2):
            y = b.add(x, y, align_a=int(rng.integers(0, 3)), align_b=int(rng.integers(0, 3)),
                      shift=int(rng.integers(-1, 3)), clamp=(-100, 100))
        x = y
    head = rng.integers(0, 3)
    if head > 0:
        x = b.pool(x, clamp=(0, 255) if head == 1 else (0, 63))
        b.linear(x, int(rng.integers(1, 5)), mode="po2" if head == 1 else "int8")
    return b.program()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_random_program(seed, tmp_path):
    prog = random_program(seed)
    p = 1 + seed % 3
    try:
        plan_lanes(prog, p)
    except UserError:  # this kernel/stride/padding cannot take p lanes
        p = 1
    rtl_check(prog, tmp_path, n_images=3, seed=seed, stall_in=(seed % 2) * 25, stall_out=(seed % 4) * 15,
              parallelism=p)
