"""RTL verification: Verilator builds of generated designs checked against the golden simulator."""
from .harness import verify_build

__all__ = ["verify_build"]
