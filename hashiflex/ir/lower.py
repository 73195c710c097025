"""Lowering: quantized PyTorch model -> IR Program, via torch.fx graph capture.

Assumes the model was calibrated (fractions linked) and is in eval mode; every node must be a
quantized leaf (QInput, QConvBN, QAdd, QAvgPool, QMaxPool, QAvgPoolWindow, QLinearNPU, QLinearPo2),
a Dropout, or a flatten. The first other node is named in a UserError.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import fx

from ..errors import UserError
from ..quant.graph import is_pass_through, link_fracs, trace
from ..quant.modules import QAdd, QAvgPool, QAvgPoolWindow, QConvBN, QInput, QLinearNPU, QLinearPo2, QMaxPool
from ..quant.po2 import act_range
from .spec import Add, AvgPool, AvgPoolWindow, Conv, Linear, MaxPool, Program, Tensor, window_out


def _codes(sign: torch.Tensor, exp: torch.Tensor, name: str) -> np.ndarray:
    """Po2 codes sign * (k + 1) as int8: k (exponent above the layer's e_min) must stay below 127."""
    codes = (sign * (exp + 1)).numpy()
    if codes.size and int(np.abs(codes).max()) > 127:
        raise UserError(f"{name}: its Po2 exponents span {int(np.abs(codes).max())} steps, more than the IR's int8 "
                        f"codes hold (127); use fewer --exp-bits")
    return codes.astype(np.int8)


def _maxpool(name: str, x: Tensor, m) -> tuple[Tensor, MaxPool]:
    kernel, stride, padding = m.window()
    c, h, w = x.shape
    t = Tensor(name, (c, *window_out(h, w, kernel, stride, padding)), x.signed, x.bits, x.frac)
    return t, MaxPool(name, x.name, name, kernel, stride, padding)


def _window_pool(name: str, x: Tensor, m) -> tuple[Tensor, Conv | AvgPoolWindow, np.ndarray | None]:
    """A windowed average over N = kh*kw pixels, on the input's grid (the QAT module's arithmetic):
    N = 2^s: a depthwise conv whose weights are all 1 (Po2 code 1 at e_min = -s) requantized by a
    round-half-up shift of s, floor(sum / N + 1/2), returned with its weights; otherwise an
    `avgpool2d` op, clamp(rshift_round(sum * mult, shift)) with (mult, shift) = QAvgPool.constants(N),
    and no weights."""
    (kh, kw), (sh, sw), (ph, pw) = m.window()
    c, h, w = x.shape
    lo, hi = act_range(m.act_bits, m.signed_out)
    t = Tensor(name, (c, *window_out(h, w, (kh, kw), (sh, sw), (ph, pw))), m.signed_out, m.act_bits, x.frac)
    n = kh * kw
    if n & (n - 1):
        mult, k = QAvgPool.constants(n)
        return t, AvgPoolWindow(name, x.name, name, (kh, kw), (sh, sw), (ph, pw), mult, k, lo, hi), None
    s = n.bit_length() - 1
    op = Conv(name, x.name, name, f"{name}.weight", f"{name}.bias", (sh, sw), (ph, pw), c, -s, s, lo, hi)
    return t, op, np.ones((c, 1, kh, kw), np.int8)


def lower(model: torch.nn.Module, input_shape: tuple[int, int, int], meta: dict | None = None) -> Program:
    """Return the IR of a quantized model for raw uint8 input images of shape (C, H, W)."""
    model.eval()
    link_fracs(model)  # fractions are a property of the graph; make them consistent first
    gm = trace(model)
    tensors: dict[str, Tensor] = {"input": Tensor("input", tuple(input_shape), False, 8, 8)}
    arrays: dict[str, np.ndarray] = {}
    ops = []
    name_of: dict[fx.Node, str] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            name_of[node] = "input"
            continue
        if node.op == "output":
            out = node.args[0]
            break
        if is_pass_through(node, gm):
            src = name_of[node.args[0]]
            t = tensors[src]
            if node.op != "call_module" and len(t.shape) == 3 and t.shape[1:] == (1, 1):
                raise UserError("flatten of a feature map is only supported after global average pooling")
            name_of[node] = src
            continue
        if node.op != "call_module":
            raise UserError(f"unsupported operation in the model graph: {node.op} {getattr(node.target, '__name__', node.target)}")
        m = gm.get_submodule(node.target)
        name = str(node.target)
        if isinstance(m, QInput):
            if int(m.out_frac) != 8 or m.act_bits != 8:
                raise UserError("the input quantizer must be uint8 with 8 fraction bits")
            name_of[node] = name_of[node.args[0]]
            continue
        if isinstance(m, QConvBN):
            x = tensors[name_of[node.args[0]]]
            p = m.integer_params()
            c, h, w = x.shape
            oh, ow = window_out(h, w, m.conv.kernel_size, m.conv.stride, m.conv.padding)
            if c != m.conv.in_channels:
                raise UserError(f"{name}: expects {m.conv.in_channels} input channels, gets {c}")
            lo, hi = p["lo"], p["hi"]
            t = Tensor(name, (m.conv.out_channels, oh, ow), lo < 0, m.act_bits, p["out_frac"])
            arrays[f"{name}.weight"] = _codes(p["sign"], p["exp"], name)
            arrays[f"{name}.bias"] = p["bias"].numpy()
            ops.append(Conv(name, x.name, name, f"{name}.weight", f"{name}.bias", p["stride"], p["padding"],
                            p["groups"], p["e_min"], p["acc_frac"] - p["out_frac"], lo, hi))
        elif isinstance(m, QAdd):
            a, b = (tensors[name_of[n]] for n in node.args[:2])
            if a.shape != b.shape:
                raise UserError(f"{name}: residual operands have shapes {a.shape} and {b.shape}")
            fc = max(a.frac, b.frac)
            lo, hi = m.out_range()
            t = Tensor(name, a.shape, lo < 0, m.act_bits, int(m.out_frac))
            ops.append(Add(name, a.name, b.name, name, fc - a.frac, fc - b.frac, fc - int(m.out_frac), lo, hi))
        elif isinstance(m, QAvgPool):
            x = tensors[name_of[node.args[0]]]
            c, h, w = x.shape
            mult, k = QAvgPool.constants(h * w)
            lo, hi = act_range(m.act_bits, m.signed_out)
            t = Tensor(name, (c,), m.signed_out, m.act_bits, x.frac)
            ops.append(AvgPool(name, x.name, name, mult, k, lo, hi))
        elif isinstance(m, QMaxPool):
            x = tensors[name_of[node.args[0]]]
            t, op = _maxpool(name, x, m)
            ops.append(op)
        elif isinstance(m, QAvgPoolWindow):
            x = tensors[name_of[node.args[0]]]
            t, op, w = _window_pool(name, x, m)
            if w is not None:
                arrays[f"{name}.weight"], arrays[f"{name}.bias"] = w, np.zeros(x.shape[0], np.int64)
            ops.append(op)
        elif isinstance(m, (QLinearNPU, QLinearPo2)):
            x = tensors[name_of[node.args[0]]]
            if len(x.shape) != 1:
                raise UserError(f"{name}: a linear layer needs a pooled vector input, got shape {x.shape}")
            p = m.integer_params()
            arrays[f"{name}.bias"] = p["bias"].numpy()
            if isinstance(m, QLinearNPU):
                arrays[f"{name}.weight"] = p["weight"].numpy().astype(np.int8)
                arrays[f"{name}.scale_mult"] = p["scale_mult"].numpy()
                op = Linear(name, x.name, name, "int8", f"{name}.weight", f"{name}.bias", f"{name}.scale_mult",
                            -p["scale_shift"])
            else:
                arrays[f"{name}.weight"] = _codes(p["sign"], p["exp"], name)
                op = Linear(name, x.name, name, "po2", f"{name}.weight", f"{name}.bias", None, p["e_min"])
            t = Tensor(name, (m.linear.out_features,), True, 64, p["logit_frac"])
            ops.append(op)
        else:
            raise UserError(f"unsupported layer {name} ({type(m).__name__}): hashiflex lowers conv+BN(+ReLU6), "
                            f"residual add, global average pool and linear")
        tensors[name] = t
        name_of[node] = name
    prog = Program(tensors, tuple(ops), "input", name_of[out], arrays, dict(meta or {}))
    prog.validate()
    return prog
