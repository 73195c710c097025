"""A float PyTorch CNN -> GraphSpec + weights, by torch.fx.

fx traces the model down to standard layers (Conv2d, BatchNorm2d, ReLU, ...), each becomes a
node of the spec, and the weights are copied under GraphNet's names. The rebuilt GraphNet is run
next to the original on the example input, so a capture that changed what the network computes
is refused rather than trained on. Anything outside the supported list is one UserError naming
the operation and the fx node.
"""
from __future__ import annotations

import contextlib
import io
import operator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..errors import UserError
from .graph import GraphNet, GraphSpec, Node

SUPPORTED = ("Conv2d, BatchNorm2d, ReLU, ReLU6, Hardtanh(0, 6), Identity, residual add, MaxPool2d, AvgPool2d, "
             "AdaptiveAvgPool2d(1) or a mean over H and W, Flatten/view, Dropout, Linear")
ADDS = {operator.add, operator.iadd, torch.add}
RELUS = {F.relu, torch.relu}
FLATTENS = {"view", "reshape", "flatten"}
ALIASES = {"contiguous"}


def _unsupported(what: str, node: fx.Node) -> UserError:
    return UserError(f"unsupported operation {what} at node {node.name}: hashiflex takes {SUPPORTED}")


def _pair(v) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _conv_attrs(m: nn.Conv2d, node: fx.Node) -> dict:
    if _pair(m.dilation) != [1, 1]:
        raise _unsupported(f"a dilated Conv2d (dilation {tuple(m.dilation)})", node)
    if m.padding_mode != "zeros":
        raise _unsupported(f"Conv2d with padding_mode '{m.padding_mode}'", node)
    pad = m.padding
    if isinstance(pad, str):   # 'valid' or 'same' (stride 1, odd kernels: symmetric)
        if pad == "same" and any(k % 2 == 0 for k in m.kernel_size):
            raise _unsupported("Conv2d padding='same' with an even kernel", node)
        pad = [0, 0] if pad == "valid" else [(k - 1) // 2 for k in m.kernel_size]
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel": _pair(m.kernel_size),
            "stride": _pair(m.stride), "padding": _pair(pad), "groups": m.groups, "bias": m.bias is not None}


def _pool_attrs(m, node: fx.Node, kind: str) -> dict:
    if getattr(m, "ceil_mode", False):
        raise _unsupported(f"{type(m).__name__} with ceil_mode=True", node)
    if kind == "maxpool" and (_pair(m.dilation) != [1, 1] or m.return_indices):
        raise _unsupported("MaxPool2d with dilation or return_indices", node)
    if kind == "avgpool" and (not m.count_include_pad or m.divisor_override is not None):
        raise _unsupported("AvgPool2d with count_include_pad=False or a divisor_override", node)
    k = _pair(m.kernel_size)
    return {"kernel": k, "stride": _pair(m.stride if m.stride is not None else k), "padding": _pair(m.padding)}


def _module_node(m: nn.Module, node: fx.Node) -> tuple[str, dict] | None:
    """(op, attrs) of a leaf module, or None for an identity."""
    if isinstance(m, nn.Conv2d):
        return "conv", _conv_attrs(m, node)
    if isinstance(m, nn.BatchNorm2d):
        if not (m.affine and m.track_running_stats):
            raise _unsupported("BatchNorm2d without affine parameters or running statistics", node)
        return "bn", {"channels": m.num_features, "eps": float(m.eps)}
    if isinstance(m, nn.ReLU6) or isinstance(m, nn.Hardtanh) and (m.min_val, m.max_val) == (0.0, 6.0):
        return "relu6", {}
    if isinstance(m, nn.ReLU):
        return "relu", {}
    if isinstance(m, nn.Identity):
        return None
    if isinstance(m, nn.Dropout):
        return "dropout", {"p": float(m.p)}
    if isinstance(m, nn.MaxPool2d):
        return "maxpool", _pool_attrs(m, node, "maxpool")
    if isinstance(m, nn.AvgPool2d):
        return "avgpool", _pool_attrs(m, node, "avgpool")
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if _pair(m.output_size) != [1, 1]:
            raise _unsupported(f"AdaptiveAvgPool2d({m.output_size}) (only output size 1)", node)
        return "gap", {}
    if isinstance(m, nn.Flatten):
        if (m.start_dim, m.end_dim) != (1, -1):
            raise _unsupported("Flatten other than from dim 1", node)
        return "flatten", {}
    if isinstance(m, nn.Linear):
        return "linear", {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}
    what = "a Hardtanh other than (0, 6)" if isinstance(m, nn.Hardtanh) else type(m).__name__
    raise _unsupported(what, node)


def _function_node(node: fx.Node) -> tuple[str, dict] | None:
    t, args = node.target, node.args
    tensors = [a for a in args if isinstance(a, fx.Node)]
    if node.op == "call_function" and t in ADDS or node.op == "call_method" and t in ("add", "add_"):
        if len(tensors) != 2 or len(args) != 2 or node.kwargs:
            raise _unsupported("an add that is not of two tensors", node)
        return "add", {}
    if node.op == "call_function" and t in RELUS or node.op == "call_method" and t == "relu":
        return "relu", {}
    if node.op == "call_function" and t is F.relu6:
        return "relu6", {}
    if node.op == "call_function" and t is F.hardtanh and tuple(args[1:3]) == (0.0, 6.0):
        return "relu6", {}
    if node.op == "call_function" and t is torch.flatten or node.op == "call_method" and t in FLATTENS:
        return "flatten", {}
    if node.op == "call_function" and t is F.adaptive_avg_pool2d and _pair(args[1]) == [1, 1]:
        return "gap", {}
    if _is_spatial_mean(node):   # x.mean((2, 3)): a global pool (then a flatten, unless keepdim)
        return "gap", {}
    if node.op == "call_function" and t is F.dropout or node.op == "call_method" and t in ALIASES:
        return None
    name = getattr(t, "__name__", str(t))
    raise _unsupported(f"{node.op} {name}", node)


def _is_spatial_mean(node: fx.Node) -> bool:
    if not (node.op == "call_method" and node.target == "mean" or node.op == "call_function" and
            node.target is torch.mean):
        return False
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    dims = [dims] if isinstance(dims, int) else dims
    return isinstance(dims, (list, tuple)) and sorted(int(d) % 4 for d in dims) == [2, 3]


def capture(model: nn.Module, example_input: torch.Tensor) -> tuple[GraphSpec, dict]:
    """(spec, GraphNet state_dict) of a float CNN that takes [N, C, H, W] images."""
    if not isinstance(example_input, torch.Tensor) or example_input.dim() != 4:
        raise UserError("the example input must be one [N, C, H, W] float tensor")
    model = model.eval()
    try:
        gm = fx.symbolic_trace(model)
        inputs = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise UserError(f"the model takes {len(inputs)} inputs ({', '.join(inputs)}); hashiflex takes one image "
                            "input (a model with more than one input is not supported)")
        with contextlib.redirect_stderr(io.StringIO()):   # ShapeProp prints the traceback of a failure itself
            ShapeProp(gm).propagate(example_input)
    except UserError:
        raise
    except Exception as e:  # fx raises many types for untraceable code
        raise UserError(f"cannot capture the model graph with torch.fx: {' '.join(str(e).split())[:200]}") from None
    name_of: dict[fx.Node, str] = {}
    nodes, state = [], {}
    out = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if name_of:
                raise UserError(f"the model takes more than one input (node {node.name}); hashiflex takes one image")
            name_of[node] = "input"
            continue
        if node.op == "output":
            out = node.args[0]
            break
        if node.op == "get_attr":
            raise _unsupported(f"a constant tensor ({node.target})", node)
        if node.op == "call_method" and node.target == "size" or node.op == "call_function" and \
                node.target is getattr:
            continue   # shape arithmetic of a view(x.size(0), -1)
        if node.op == "call_module":
            m = gm.get_submodule(node.target)
            got = _module_node(m, node)
        else:
            got = _function_node(node)
        src = [a for a in node.args if isinstance(a, fx.Node)]
        if got is None:
            name_of[node] = name_of[src[0]]
            continue
        op, attrs = got
        name = node.name if node.name != "input" else "input_"
        ins = [name_of[a] for a in src[: 2 if op == "add" else 1]]
        if op == "flatten" and node.meta["tensor_meta"].shape.__len__() != 2:
            raise _unsupported("a reshape to other than [N, features]", node)
        if op == "gap" and len(node.meta["tensor_meta"].shape) == 2:   # a mean without keepdim
            nodes.append(Node(name=f"{name}_pool", op="gap", inputs=ins, attrs={}))
            op, ins = "flatten", [f"{name}_pool"]
        nodes.append(Node(name=name, op=op, inputs=ins, attrs=attrs))
        name_of[node] = name
        if node.op == "call_module":
            for k, v in gm.get_submodule(node.target).state_dict().items():
                state[f"layers.{name}.{k}"] = v.detach().clone()
    if not isinstance(out, fx.Node) or out not in name_of or not nodes:
        raise UserError("the model must return one tensor of class scores")
    shape = tuple(out.meta["tensor_meta"].shape)
    if len(shape) != 2 or name_of[out] != nodes[-1].name:
        raise UserError(f"the model's output must be its last layer's [N, classes] scores (got shape {list(shape)})")
    try:
        spec = GraphSpec(input_shape=list(example_input.shape[1:]), num_classes=shape[1], nodes=nodes).check()
    except ValueError as e:
        raise UserError(f"the captured graph is not valid: {' '.join(str(e).split())[:200]}") from None
    _check_same(model, spec, state, example_input)
    return spec, state


@torch.no_grad()
def _check_same(model: nn.Module, spec: GraphSpec, state: dict, x: torch.Tensor) -> None:
    """The rebuilt network computes what the original does (float: same kernels, so a difference
    beyond float32 rounding means the capture lost something)."""
    net = GraphNet(spec).eval()
    net.load_state_dict(state)
    a, b = model(x), net(x)
    if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-4, atol=1e-5):
        raise UserError("the captured graph does not compute what the model does; the model uses an operation "
                        "fx cannot see (e.g. data-dependent Python control flow)")


def load_factory(ref: str) -> nn.Module:
    """Call `path/to/file.py:factory` or `package.module:factory` (no arguments) and return the
    float model it builds; one UserError when the reference does not lead to an nn.Module."""
    import importlib
    import importlib.util
    from pathlib import Path

    mod_ref, sep, attr = ref.rpartition(":")
    if not sep or not mod_ref or not attr.isidentifier():
        raise UserError(f"--model {ref!r}: write FILE.py:FACTORY or package.module:FACTORY")
    try:
        if mod_ref.endswith(".py") or Path(mod_ref).is_file():
            if not Path(mod_ref).is_file():
                raise UserError(f"--model: file {mod_ref} not found")
            spec = importlib.util.spec_from_file_location(f"hashiflex_user_{Path(mod_ref).stem}", mod_ref)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(mod_ref)
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise UserError(f"--model: {mod_ref} has no callable {attr}")
        model = factory()
    except UserError:
        raise
    except Exception as e:  # the user's code can raise anything
        raise UserError(f"--model {ref}: loading it failed ({type(e).__name__}: {' '.join(str(e).split())[:160]})") \
            from None
    if not isinstance(model, nn.Module):
        raise UserError(f"--model {ref}: {attr}() returned {type(model).__name__}, not a torch.nn.Module")
    return model
