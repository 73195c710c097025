"""Number formats of the quantized model: Po2 weights, fixed-point activations, rounding.

All functions work in the dtype they are given. The integer semantics (docs/quantization.md) are
those of the float64 evaluation, where every value below is exact; training runs the same code in
float32 with straight-through estimators (STE).
"""
from __future__ import annotations

import math

import torch


def round_half_up(v: torch.Tensor) -> torch.Tensor:
    """floor(v + 1/2) with a straight-through gradient."""
    return v + (torch.floor(v + 0.5) - v).detach()


def fake_quant(y: torch.Tensor, frac: int, lo: int, hi: int) -> torch.Tensor:
    """Quantize to the grid 2^-frac, clamp to [lo, hi] in integer units; STE inside the range."""
    scale = 2.0 ** frac
    v = torch.clamp(y * scale, lo, hi)
    return round_half_up(v) / scale


def act_range(bits: int, signed: bool, relu6_frac: int | None = None) -> tuple[int, int]:
    if signed:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    hi = 2 ** bits - 1
    if relu6_frac is not None:
        hi = min(hi, math.floor(6 * 2.0 ** relu6_frac))
    return 0, hi


def relu6_frac_bits(bits: int) -> int:
    """Largest fraction bits f with 6 * 2^f <= 2^bits - 1 (ReLU6 fits the unsigned range)."""
    return math.floor(math.log2((2 ** bits - 1) / 6.0))


def signed_frac_bits(absmax: float, bits: int) -> int:
    """Largest fraction bits f with absmax * 2^f <= 2^(bits-1) - 1."""
    if absmax <= 0 or not math.isfinite(absmax):
        return bits - 1
    return math.floor(math.log2((2 ** (bits - 1) - 1) / absmax))


def unsigned_frac_bits(absmax: float, bits: int) -> int:
    """Largest fraction bits f with absmax * 2^f <= 2^bits - 1 (a ReLU output's calibrated scale)."""
    if absmax <= 0 or not math.isfinite(absmax):
        return bits
    return math.floor(math.log2((2 ** bits - 1) / absmax))


def po2_levels(exp_bits: int) -> int:
    """Nonzero magnitudes a sign + exp_bits exponent field encodes (code 0 means zero)."""
    return 2 ** exp_bits - 1


def _per_row(e_max, w: torch.Tensor) -> torch.Tensor:
    """e_max (an int, or one per output channel) as an int64 tensor that broadcasts over w."""
    e = torch.as_tensor(e_max, dtype=torch.int64)
    return e.view(-1, *([1] * (w.dim() - 1))) if e.dim() > 0 else e


def po2_exponents(w: torch.Tensor, e_max, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest power of two (linear domain, ties up) of |w|, clamped to [e_max-levels+1, e_max].

    e_max is an int (per-layer scale) or an int tensor with one entry per output channel (row of w).
    Returns (exponent, nonzero) as integer/bool tensors; |w| < 2^(e_min-1) rounds to zero.
    frexp is exact, so float32 and float64 agree on every input they both represent.
    """
    e_max = _per_row(e_max, w)
    e_min = e_max - (levels - 1)
    a = w.detach().abs()
    mant, ex = torch.frexp(a)
    e = ex.to(torch.int64) - 1 + (mant >= 0.75).to(torch.int64)
    e = torch.clamp(e, e_min, e_max)
    nonzero = a >= torch.pow(2.0, (e_min - 1).to(a.dtype))
    return e, nonzero


def po2_quantize(w: torch.Tensor, e_max, levels: int) -> torch.Tensor:
    """Po2-rounded copy of w (values 0 or +-2^e), no gradient."""
    e, nz = po2_exponents(w, e_max, levels)
    q = torch.sign(w.detach()) * torch.pow(2.0, e.to(w.dtype))
    return torch.where(nz, q, torch.zeros_like(q))


def best_e_max(w: torch.Tensor, levels: int) -> int:
    """Per-layer scale: the top exponent (of 3 around max|w|) with least squared error."""
    return int(best_e_max_per_channel(w.reshape(1, -1), levels)[0])


# A channel's scale may sit at most this far below its layer's top one: it keeps the Po2 codes
# (int8 in the IR) and the accumulator grid of the layer bounded.
CHANNEL_SCALE_SPAN = 16


def best_e_max_per_channel(w: torch.Tensor, levels: int) -> torch.Tensor:
    """Per-output-channel scale (int64 tensor [rows]): for each row of w, the top exponent among
    round(log2 max|row|) and one and two below with least squared error (ties: the higher one).

    All-zero rows (fully pruned channels) take the layer's top scale."""
    a = w.detach().abs().flatten(1)
    m = a.amax(dim=1)
    mant, ex = torch.frexp(m)
    e0 = ex.to(torch.int64) - 1 + (mant >= 0.75).to(torch.int64)
    top = int(e0[m > 0].max()) if bool((m > 0).any()) else 0
    e0 = torch.where(m > 0, e0, torch.full_like(e0, top))
    best, best_err = e0, None
    for d in (0, 1, 2):
        cand = e0 - d
        err = ((po2_quantize(a, cand, levels) - a) ** 2).sum(dim=1)
        if best_err is None:
            best_err = err
        else:
            better = err < best_err
            best = torch.where(better, cand, best)
            best_err = torch.where(better, err, best_err)
    return torch.clamp(best, top - CHANNEL_SCALE_SPAN, top)


def int8_channel_scales(w: torch.Tensor, mant_bits: int = 15) -> tuple[torch.Tensor, int]:
    """Per-output-channel scale of int8 weights as M_o * 2^-S (M_o < 2^mant_bits integers)."""
    s = w.detach().abs().amax(dim=1).clamp_min(1e-12) / 127.0
    shift = math.floor(math.log2((2 ** mant_bits - 1) / float(s.max())))
    m = torch.clamp(torch.floor(s * 2.0 ** shift + 0.5), 1, 2 ** mant_bits - 1)
    return m, shift
