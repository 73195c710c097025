"""Po2 quantization-aware training (with optional gradual pruning) from an FP32 checkpoint."""
from __future__ import annotations

import time
from typing import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from .. import checkpoint
from ..errors import UserError
from ..models.registry import fp32_from_config
from ..train.loop import TrainSettings, accuracy, predict, to_model_input, train
from .config import QuantConfig
from .convert import build_qmodel
from .qnet import QNetBase, calibrate
from .prune import apply_masks, cubic_sparsity, sparsity_of


@dataclass
class QATSettings:
    quant: QuantConfig = field(default_factory=QuantConfig)
    train: TrainSettings = field(default_factory=lambda: TrainSettings(
        epochs=6.0, batch_size=128, lr=0.01, weight_decay=0.0, label_smoothing=0.1, seed=1, distill=0.5))
    calib_batches: int = 10
    prune_every: int = 25


@dataclass
class QATResult:
    model: QNetBase
    settings: QATSettings
    accuracy: float
    sparsity: float
    seconds: float
    source: str

    def save(self, path, extra_meta: dict | None = None) -> None:
        meta = {"test_accuracy": self.accuracy, "sparsity": self.sparsity, "qat_seconds": round(self.seconds, 1),
                "source": self.source, "train_settings": asdict(self.settings.train),
                "calib_batches": self.settings.calib_batches}
        meta.update(extra_meta or {})
        checkpoint.save(path, "po2", self.model.model_config(), self.model.state_dict(),
                        quant_config=self.settings.quant.to_dict(), meta=meta)


def load_qmodel(name_or_path: str | None) -> tuple[QNetBase, dict]:
    """Load a po2 checkpoint as a ready-to-run quantized model."""
    blob = checkpoint.load(name_or_path)
    if blob["kind"] != "po2":
        raise UserError(f"{blob['path']} is an FP32 checkpoint: quantize it first with 'hashiflex quantize'")
    qc = QuantConfig.from_dict(blob["quant_config"] or {})
    q = build_qmodel(blob["model_config"], qc, q_state=blob["state_dict"])
    q.eval()
    return q, blob


def quantize_from_fp32(source: str, xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray | None,
                       yte: np.ndarray | None, s: QATSettings,
                       evaluate: Callable[[QNetBase, np.ndarray, np.ndarray], float] | None = None) -> QATResult:
    """QAT from an FP32 checkpoint. Test accuracy comes from `evaluate(model, x, y)` when given
    (the CLI passes the golden simulator, which is exact and faster), else from the quantized
    model run in float64."""
    s.quant.validate()
    blob = checkpoint.load(source)
    if blob["kind"] != "fp32":
        raise UserError(f"{blob['path']} is already quantized: pass an FP32 checkpoint to 'hashiflex quantize'")
    t0 = time.time()
    q = build_qmodel(blob["model_config"], s.quant, fp32_state=blob["state_dict"])
    gen = torch.Generator().manual_seed(s.train.seed)
    idx = torch.randperm(len(xtr), generator=gen)[: s.calib_batches * s.train.batch_size].numpy()
    bs = s.train.batch_size
    calibrate(q, [to_model_input(torch.from_numpy(xtr[idx[i:i + bs]])) for i in range(0, len(idx), bs)])
    layers = [m for _, m in q.hardened_convs()]

    def hook(step: int, total: int) -> None:
        if s.quant.prune > 0 and (step % s.prune_every == 0):
            apply_masks(layers, cubic_sparsity(step, total, s.quant.prune), s.quant.prune_scope)

    teacher = None
    if s.train.distill > 0 and s.train.epochs > 0:
        # A separate copy: the quantized model wraps (and trains) the FP32 modules it was built from.
        teacher = fp32_from_config(blob["model_config"])
        teacher.load_state_dict(blob["state_dict"])
        teacher.requires_grad_(False)
    if s.train.epochs > 0:
        train(q, xtr, ytr, s.train, step_hook=hook, desc="qat", teacher=teacher)
    if s.quant.prune > 0:
        apply_masks(layers, s.quant.prune, s.quant.prune_scope)
    q.eval()
    if xte is None:
        acc = float("nan")
    elif evaluate is not None:
        acc = evaluate(q, xte, yte)
    else:
        acc = accuracy(predict(q, xte, dtype=torch.float64), yte)
    return QATResult(q, s, acc, sparsity_of(layers), time.time() - t0, blob["path"])
