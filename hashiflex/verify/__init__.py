"""RTL verification: Verilator builds of generated designs checked against the golden simulator
(whole chip block by block or flat, or every layer module alone; docs/verification.md)."""
from .chip import verify_chip
from .pipeline import verify_build
from .layers import verify_layers

__all__ = ["verify_build", "verify_chip", "verify_layers"]
