"""torch.fx view of a quantized model: the graph the lowering walks and the fraction-bit links.

Quantized layers are fx leaves; everything else (Sequential, the inverted-residual forward,
flatten) is traced through, so the graph shows real data flow, not module names.
"""
from __future__ import annotations

import operator

import torch
from torch import fx, nn

from ..errors import UserError
from .modules import QAdd, QAvgPool, QLinearNPU, QLinearPo2, QModule, QWindowPool

LEAVES = (QModule, QLinearNPU, QLinearPo2, nn.Dropout)
PASS_THROUGH_FUNCS = {torch.flatten}
PASS_THROUGH_METHODS = {"flatten", "view", "reshape"}


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAVES) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    try:
        graph = _Tracer().trace(model)
    except Exception as e:  # fx raises many types for untraceable code
        raise UserError(f"cannot capture the model graph with torch.fx: {str(e).splitlines()[0][:200]}") from None
    return fx.GraphModule(model, graph)


def is_pass_through(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_function" and node.target in PASS_THROUGH_FUNCS:
        return True
    if node.op == "call_method" and node.target in PASS_THROUGH_METHODS:
        return True
    return node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.Dropout)


def link_fracs(model: nn.Module) -> None:
    """Set every quantized layer's in_frac (and QAdd's in_frac_b) to its producer's out_frac."""
    gm = trace(model)
    frac: dict[fx.Node, int] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            continue
        if node.op == "output":
            break
        if is_pass_through(node, gm):
            frac[node] = frac[node.args[0]]
            continue
        if node.op != "call_module":
            if node.op == "call_function" and node.target in (operator.add, torch.add):
                raise UserError("an unquantized add was found: residual adds must be QAdd modules")
            raise UserError(f"unsupported operation {node.op} {getattr(node.target, '__name__', node.target)} "
                            f"in the quantized model")
        m = gm.get_submodule(node.target)
        if not isinstance(m, LEAVES):
            raise UserError(f"unsupported layer {node.target} ({type(m).__name__}): hashiflex lowers conv+BN(+ReLU/ReLU6), "
                            f"residual add(+ReLU), max and average pools and linear")
        if node.args and isinstance(node.args[0], fx.Node) and node.args[0].op != "placeholder":
            m.in_frac.fill_(frac[node.args[0]])
        if isinstance(m, QAdd):
            m.in_frac_b.fill_(frac[node.args[1]])
        if isinstance(m, (QAvgPool, QWindowPool)):   # pools keep their input's grid
            m.out_frac.fill_(int(m.in_frac))
        frac[node] = int(m.out_frac) if hasattr(m, "out_frac") else None
