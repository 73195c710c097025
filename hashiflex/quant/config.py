"""Quantization settings, validated with errors that say what to change."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import UserError


@dataclass(frozen=True)
class QuantConfig:
    exp_bits: int = 3          # Po2 exponent field of hardened weights (plus a sign; code 0 = zero)
    act_bits: int = 8          # activation bits (unsigned after ReLU6, signed elsewhere)
    prune: float = 0.0         # target fraction of zero weights in hardened layers
    prune_scope: str = "global"  # "global" (one threshold) or "layer" (same rate per layer)
    classifier: str = "npu"    # "npu": int8 programmable; "po2": fully hardened
    weight_scale: str = "layer"  # Po2 scale of hardened weights: one per "layer" or per output "channel"

    def validate(self) -> "QuantConfig":
        if not isinstance(self.exp_bits, int) or not 1 <= self.exp_bits <= 8:
            raise UserError(f"--exp-bits must be an integer from 1 to 8 (got {self.exp_bits})")
        if not isinstance(self.act_bits, int) or not 2 <= self.act_bits <= 16:
            raise UserError(f"--act-bits must be an integer from 2 to 16 (got {self.act_bits})")
        if not 0.0 <= self.prune < 1.0:
            raise UserError(f"--prune must be in [0, 1) (got {self.prune})")
        if self.prune_scope not in ("global", "layer"):
            raise UserError(f"--prune-scope must be 'global' or 'layer' (got {self.prune_scope!r})")
        if self.classifier not in ("npu", "po2"):
            raise UserError(f"--classifier must be 'npu' or 'po2' (got {self.classifier!r})")
        if self.weight_scale not in ("layer", "channel"):
            raise UserError(f"--weight-scale must be 'layer' or 'channel' (got {self.weight_scale!r})")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "QuantConfig":
        try:
            return QuantConfig(**d).validate()
        except TypeError as e:
            raise UserError(f"bad quantization settings in checkpoint: {e}") from None
