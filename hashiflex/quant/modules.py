"""Quantized layers for QAT. Each keeps float parameters and computes the integer model exactly
when run in float64 (see docs/quantization.md). `integer_params()` returns the integer view the
IR lowering consumes; it calls the same code as forward, so the two cannot drift apart.

Scales are powers of two and stored as integer buffers:
  in_frac / out_frac   fraction bits of the input / output tensor (value = int * 2^-frac)
  e_max                top exponent of a layer's Po2 weights: a scalar (per-layer scale) or, with
                       weight_scale "channel", one per output channel
Activation scales are set by calibration (`calibrating = True`, float outputs, absmax recorded),
then frozen; `hashiflex.quant.graph.link_fracs` copies each producer's out_frac to its consumers.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .po2 import (act_range, best_e_max, best_e_max_per_channel, fake_quant, int8_channel_scales, po2_exponents,
                  po2_levels, po2_quantize, relu6_frac_bits, round_half_up, signed_frac_bits, unsigned_frac_bits)


def _int_buf(v: int = 0) -> torch.Tensor:
    return torch.tensor(int(v), dtype=torch.int64)


class QModule(nn.Module):
    """Common state: activation bits, fraction bits and the calibration observer."""

    def __init__(self, act_bits: int, signed_out: bool, relu6: bool, relu: bool = False):
        super().__init__()
        self.act_bits = act_bits
        self.signed_out = signed_out
        self.relu6 = relu6
        self.relu = relu          # unsigned with a calibrated scale (ReLU6 has a fixed one)
        self.calibrating = False
        self.register_buffer("in_frac", _int_buf(0))
        self.register_buffer("out_frac", _int_buf(relu6_frac_bits(act_bits) if relu6 else 0))
        self.register_buffer("absmax", torch.tensor(0.0, dtype=torch.float64))

    def out_range(self) -> tuple[int, int]:
        return act_range(self.act_bits, self.signed_out, int(self.out_frac) if self.relu6 else None)

    def finish_calibration(self) -> None:
        if self.signed_out:
            self.out_frac.fill_(signed_frac_bits(float(self.absmax), self.act_bits))
        elif self.relu:
            self.out_frac.fill_(unsigned_frac_bits(float(self.absmax), self.act_bits))
        self.calibrating = False

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        if self.calibrating:
            if self.relu6:
                y = torch.clamp(y, 0.0, 6.0)
            elif self.relu:
                y = torch.clamp_min(y, 0.0)
            self.absmax.fill_(max(float(self.absmax), float(y.detach().abs().max())))
            return y
        lo, hi = self.out_range()
        return fake_quant(y, int(self.out_frac), lo, hi)


class QInput(QModule):
    """Raw uint8 pixels scaled by 2^-8 (the model input convention): exact, no rounding."""

    def __init__(self, bits: int = 8, frac: int = 8):
        super().__init__(bits, signed_out=False, relu6=False)
        self.out_frac.fill_(frac)

    def forward(self, x):
        lo, hi = act_range(self.act_bits, False)
        return fake_quant(x, int(self.out_frac), lo, hi)


class QConvBN(QModule):
    """conv + folded BN (+ ReLU6): Po2 weights, integer bias on the accumulator grid, requantize.

    BN running statistics are frozen (folded from the FP32 model); gamma and beta are trained.
    """

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, relu6: bool, exp_bits: int, act_bits: int,
                 weight_scale: str = "layer", relu: bool = False):
        super().__init__(act_bits, signed_out=not (relu6 or relu), relu6=relu6, relu=relu)
        self.conv = conv
        self.bn = bn
        self.exp_bits = exp_bits
        self.weight_scale = weight_scale
        self.register_buffer("mask", torch.ones_like(conv.weight))
        if weight_scale == "channel":
            self.register_buffer("e_max", torch.zeros(conv.out_channels, dtype=torch.int64))
        else:
            self.register_buffer("e_max", _int_buf(0))

    def folded(self, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.conv.weight if dtype is None else self.conv.weight.to(dtype)
        b = torch.zeros(w.shape[0], dtype=w.dtype) if self.conv.bias is None else self.conv.bias.to(w.dtype)
        if self.bn is not None:
            bn = self.bn
            s = bn.weight.to(w.dtype) / torch.sqrt(bn.running_var.to(w.dtype) + bn.eps)
            w = w * s.view(-1, 1, 1, 1)
            b = (b - bn.running_mean.to(w.dtype)) * s + bn.bias.to(w.dtype)
        return w * self.mask.to(w.dtype), b

    @property
    def levels(self) -> int:
        return po2_levels(self.exp_bits)

    def e_min(self) -> int:
        """Smallest exponent any weight of the layer may have: the grid of the accumulator."""
        return int(self.e_max.min()) - self.levels + 1

    def acc_frac(self) -> int:
        return int(self.in_frac) - self.e_min()

    def quantized_wb(self, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Po2 weights and accumulator-grid bias as float tensors (STE to the float parameters)."""
        w, b = self.folded(dtype)
        if self.training:
            if self.weight_scale == "channel":
                self.e_max.copy_(best_e_max_per_channel(w, self.levels))
            else:
                self.e_max.fill_(best_e_max(w, self.levels))
        wq = w + (po2_quantize(w, self.e_max, self.levels) - w).detach()
        if self.calibrating:
            return wq, b
        f = self.acc_frac()
        bq = round_half_up(b * 2.0 ** f) / 2.0 ** f
        return wq, bq

    def forward(self, x):
        w, b = self.quantized_wb(x.dtype)
        c = self.conv
        y = F.conv2d(x, w, b, c.stride, c.padding, c.dilation, c.groups)
        return self._output(y)

    @torch.no_grad()
    def integer_params(self) -> dict:
        """Sign/exponent weights (int), integer bias, and the requantize constants."""
        w, b = self.folded(torch.float64)
        e, nz = po2_exponents(w, self.e_max, self.levels)
        e_min = self.e_min()
        sign = torch.sign(w).to(torch.int64) * nz.to(torch.int64)
        f = self.acc_frac()
        bias = torch.floor(b * 2.0 ** f + 0.5).to(torch.int64)
        lo, hi = self.out_range()
        return {"sign": sign, "exp": torch.where(nz, e - e_min, torch.zeros_like(e)), "e_min": e_min,
                "bias": bias, "acc_frac": f, "in_frac": int(self.in_frac), "out_frac": int(self.out_frac),
                "lo": lo, "hi": hi, "stride": tuple(self.conv.stride), "padding": tuple(self.conv.padding),
                "groups": self.conv.groups}


class QAdd(QModule):
    """Residual add (a ReLU after it with `relu`): both operands are exact on the finer grid; the
    sum is requantized."""

    def __init__(self, act_bits: int, relu: bool = False):
        super().__init__(act_bits, signed_out=not relu, relu6=False, relu=relu)
        self.register_buffer("in_frac_b", _int_buf(0))

    def forward(self, a, b):
        return self._output(a + b)


class QAvgPool(QModule):
    """Global average pool: sum, then multiply by round(2^k/N) and round-shift by k (k = log2 N and
    multiplier 1 when N is a power of two). Output keeps the input's fraction bits and its sign
    (`signed`: the input can be negative)."""

    def __init__(self, act_bits: int, signed: bool = False):
        super().__init__(act_bits, signed_out=signed, relu6=False)

    @staticmethod
    def constants(n: int) -> tuple[int, int]:
        if n & (n - 1) == 0:
            return 1, n.bit_length() - 1
        k = 16 + math.ceil(math.log2(n))
        return math.floor(2 ** k / n + 0.5), k

    def forward(self, x):
        n = x.shape[-1] * x.shape[-2]
        mult, k = self.constants(n)
        f = int(self.in_frac)
        s = x.sum(dim=(2, 3)) * 2.0 ** f
        lo, hi = act_range(self.act_bits, self.signed_out)
        y = torch.clamp(s * (mult / 2.0 ** k), lo, hi)
        return round_half_up(y) / 2.0 ** f


class QWindowPool(QModule):
    """A pool over kh x kw windows whose output stays on its input's grid and sign: the input's
    scale is set by link_fracs, so calibration records nothing."""

    def __init__(self, pool: nn.Module, act_bits: int, signed: bool):
        super().__init__(act_bits, signed_out=signed, relu6=False)
        self.pool = pool

    def finish_calibration(self) -> None:
        self.calibrating = False

    def window(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(kernel, stride, padding) as pairs (the stride defaults to the kernel)."""
        p = self.pool
        pair = lambda v: (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)  # noqa: E731
        return pair(p.kernel_size), pair(p.stride if p.stride is not None else p.kernel_size), pair(p.padding)


class QMaxPool(QWindowPool):
    """Max pooling: the maximum of values already on the input's grid, so exact with no rounding.
    Output keeps the input's fraction bits and sign; padding never wins (PyTorch's -inf)."""

    def forward(self, x):
        return self.pool(x)


class QAvgPoolWindow(QWindowPool):
    """Average pooling over a kh x kw window of N = kh*kw pixels (zero padding counted, PyTorch's
    default), on the input's grid, in integer units (value * 2^in_frac):
      N = 2^s:  y = clamp(rshift_round(sum, s)); in the IR a depthwise conv whose weights are all 1
                (Po2 code 1), so every later stage handles it;
      else:     y = clamp(rshift_round(sum * mult, shift)) with (mult, shift) = QAvgPool.constants(N),
                the IR's `avgpool2d` op; float64 computes it exactly (sum * mult < 2^53).
    While calibrating (the input's scale not linked yet) it passes the float average on."""

    def forward(self, x):
        if self.calibrating:   # the input's scale is not linked yet: pass the float average on
            return self.pool(x)
        f = int(self.in_frac)
        lo, hi = act_range(self.act_bits, self.signed_out)
        (kh, kw), stride, padding = self.window()
        n = kh * kw
        if n & (n - 1) == 0:
            y = self.pool(x) * 2.0 ** f
            return round_half_up(torch.clamp(y, lo, hi)) / 2.0 ** f
        mult, k = QAvgPool.constants(n)
        window_sum = F.avg_pool2d(x, (kh, kw), stride, padding, count_include_pad=True, divisor_override=1) * 2.0 ** f
        return round_half_up(torch.clamp(window_sum * (mult / 2.0 ** k), lo, hi)) / 2.0 ** f


class QLinearNPU(nn.Module):
    """The programmable final layer: int8 weights with per-output scale M_o * 2^-S, int32 bias.
    Output (float) = acc_o * M_o * 2^-(S + in_frac); its integer logits are acc_o * M_o."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.register_buffer("in_frac", _int_buf(0))

    def quantized(self, dtype):
        w = self.linear.weight.to(dtype)
        b = self.linear.bias.to(dtype)
        m, shift = int8_channel_scales(w)
        s = (m / 2.0 ** shift).view(-1, 1)
        wq = torch.clamp(round_half_up(w / s), -127, 127)
        f = int(self.in_frac)
        bq = round_half_up(b * 2.0 ** f / s.view(-1))
        return wq, bq, m, shift

    def forward(self, x):
        wq, bq, m, shift = self.quantized(x.dtype)
        f = int(self.in_frac)
        acc = F.linear(x * 2.0 ** f, wq, bq)
        return acc * m.detach() / 2.0 ** (shift + f)

    @torch.no_grad()
    def integer_params(self) -> dict:
        wq, bq, m, shift = self.quantized(torch.float64)
        return {"weight": wq.to(torch.int64), "bias": bq.to(torch.int64), "scale_mult": m.to(torch.int64),
                "scale_shift": shift, "in_frac": int(self.in_frac), "logit_frac": shift + int(self.in_frac)}


class QLinearPo2(nn.Module):
    """Fully hardened final layer: Po2 weights like QConvBN; integer logits = accumulator."""

    def __init__(self, linear: nn.Linear, exp_bits: int):
        super().__init__()
        self.linear = linear
        self.exp_bits = exp_bits
        self.register_buffer("in_frac", _int_buf(0))
        self.register_buffer("e_max", _int_buf(0))

    def acc_frac(self) -> int:
        return int(self.in_frac) - (int(self.e_max) - po2_levels(self.exp_bits) + 1)

    def forward(self, x):
        w = self.linear.weight.to(x.dtype)
        levels = po2_levels(self.exp_bits)
        if self.training:
            self.e_max.fill_(best_e_max(w, levels))
        wq = w + (po2_quantize(w, int(self.e_max), levels) - w).detach()
        f = self.acc_frac()
        bq = round_half_up(self.linear.bias.to(x.dtype) * 2.0 ** f) / 2.0 ** f
        return F.linear(x, wq, bq)

    @torch.no_grad()
    def integer_params(self) -> dict:
        w = self.linear.weight.to(torch.float64)
        levels = po2_levels(self.exp_bits)
        e, nz = po2_exponents(w, int(self.e_max), levels)
        e_min = int(self.e_max) - levels + 1
        f = self.acc_frac()
        return {"sign": torch.sign(w).to(torch.int64) * nz.to(torch.int64),
                "exp": torch.where(nz, e - e_min, torch.zeros_like(e)), "e_min": e_min,
                "bias": torch.floor(self.linear.bias.to(torch.float64) * 2.0 ** f + 0.5).to(torch.int64),
                "in_frac": int(self.in_frac), "logit_frac": f}
