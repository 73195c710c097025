"""Verilog generation: an analyzed IR Program -> a streaming HaShiFlex pipeline (docs/architecture.md)."""
from .generate import generate_rtl

__all__ = ["generate_rtl"]
