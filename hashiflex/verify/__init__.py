"""RTL verification: Verilator builds of generated designs checked against the golden simulator."""
from .chip import verify_chip
from .harness import verify_build

__all__ = ["verify_build", "verify_chip"]
