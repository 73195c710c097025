"""Magnitude pruning of hardened layers on a gradual (cubic) schedule.

Magnitudes are those of the BN-folded weights, the values that are Po2-rounded, so a global
threshold compares what the hardware would actually add.
"""
from __future__ import annotations

import torch

from .modules import QConvBN


def cubic_sparsity(step: int, total: int, target: float, end_frac: float = 0.6) -> float:
    """Zhu & Gupta schedule: ramps from 0 to `target` over the first end_frac of training."""
    end = max(1, int(total * end_frac))
    t = min(1.0, step / end)
    return target * (1.0 - (1.0 - t) ** 3)


@torch.no_grad()
def apply_masks(layers: list[QConvBN], sparsity: float, scope: str) -> None:
    """Recompute masks: zero the smallest folded weights so `sparsity` of them are pruned."""
    if sparsity <= 0:
        return
    mags = []
    for m in layers:
        m.mask.fill_(1.0)
        mags.append(m.folded()[0].abs().detach())
    if scope == "global":
        allm = torch.cat([x.flatten() for x in mags])
        k = int(sparsity * allm.numel())
        if k == 0:
            return
        thr = torch.kthvalue(allm, k).values
        for m, a in zip(layers, mags):
            m.mask.copy_((a > thr).to(m.mask.dtype))
    else:
        for m, a in zip(layers, mags):
            k = int(sparsity * a.numel())
            if k == 0:
                continue
            thr = torch.kthvalue(a.flatten(), k).values
            m.mask.copy_((a > thr).to(m.mask.dtype))


def sparsity_of(layers: list[QConvBN]) -> float:
    """Fraction of hardened weights that are zero after Po2 rounding (pruned or underflowed)."""
    zeros = total = 0
    for m in layers:
        p = m.integer_params()
        zeros += int((p["sign"] == 0).sum())
        total += p["sign"].numel()
    return zeros / max(1, total)
