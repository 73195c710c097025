"""`hashiflex import`: a user's CNN (an ONNX file, or a Python factory) -> an fp32 checkpoint
that records the architecture (hashiflex.models.graph), so later commands need no user code."""
from __future__ import annotations

import torch

from .. import checkpoint
from ..errors import UserError
from ..models.capture import capture, load_factory
from ..models.graph import GraphNet
from ..train.loop import to_model_input
from .common import output_file, parse_input_shape


def run(args):
    if (args.source is None) == (args.model is None):
        raise UserError("give exactly one of MODEL.onnx or --model FILE.py:FACTORY")
    out = output_file(args.out, inputs=[args.source] if args.source else [])
    if args.source is not None:
        from ..models.onnx_import import import_onnx
        spec, state = import_onnx(args.source)
        source = args.source
    else:
        torch.manual_seed(args.seed)   # the factory's initial weights
        shape = parse_input_shape(args.input_shape)
        example = to_model_input(torch.zeros((2, *shape), dtype=torch.uint8))
        spec, state = capture(load_factory(args.model), example)
        source = args.model
    net = GraphNet(spec)
    net.load_state_dict(state)
    checkpoint.save(out, "fp32", {"graph": spec.to_dict()}, net.state_dict(),
                    meta={"command": "hashiflex import", "source": source})
    params = sum(p.numel() for p in net.parameters())
    layers = sum(n.op in ("conv", "linear") for n in spec.nodes)
    result = {"checkpoint": str(out), "kind": "fp32", "source": source, "input_shape": spec.input_shape,
              "classes": spec.num_classes, "nodes": len(spec.nodes), "weight_layers": layers, "parameters": params}
    summary = (f"wrote {out}: FP32 graph from {source} ({len(spec.nodes)} nodes, {layers} conv/linear layers, "
               f"{params:,} parameters, input {'x'.join(map(str, spec.input_shape))}, {spec.num_classes} classes)")
    return result, summary
