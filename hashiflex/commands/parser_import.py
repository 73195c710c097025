"""The `hashiflex import` subparser (argparse only, like parser.py)."""
from __future__ import annotations

import argparse


def add_import(sub) -> None:
    p = sub.add_parser(
        "import", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="bring your own CNN: an ONNX file or a PyTorch factory -> an fp32 checkpoint",
        description="Read a float CNN (an ONNX file, opset 13+, or a Python factory returning an nn.Module), "
                    "capture its graph and weights, and write an fp32 checkpoint that records the architecture; "
                    "'train --init', 'quantize', 'eval' and 'compile' then take it without your code. The model "
                    "sees raw pixels scaled by 2^-8 (uint8 / 256).",
        epilog="example:\n  hashiflex import resnet.onnx --out resnet-fp32.pt\n"
               "  hashiflex import --model my_net.py:build --out net-fp32.pt\n"
               "  hashiflex import --model hashiflex.models.zoo:vgg_small --out vgg-fp32.pt")
    p.add_argument("source", nargs="?", metavar="MODEL.onnx", help="an ONNX model file")
    p.add_argument("--model", metavar="FILE.py:FACTORY", help="a Python factory instead of an ONNX file")
    p.add_argument("--input-shape", default="1,28,28", metavar="C,H,W",
                   help="image shape a --model takes (default 1,28,28: Fashion-MNIST)")
    p.add_argument("--seed", type=int, default=0, help="seed for the factory's initial weights (default 0)")
    p.add_argument("--out", required=True, metavar="PATH", help="checkpoint file to write (its folder must exist)")
    p.add_argument("--json", action="store_true",
                   help="print the results as one JSON object on the last line of stdout")
    p.set_defaults(module="import_model")
