"""Head-only fine-tuning: train the int8 NPU classifier on the features the chip produces.

The integer domain: the backbone (every op but the classifier) runs in the golden simulator, so
the training features are exactly the integers the hardened pipeline streams into the NPU. The
float view: those integers times 2^-in_frac feed a QLinearNPU (the same int8 + per-output
scale quantizer the IR's int8 Linear is lowered from, trained through its straight-through
rounding); its integer_params are the image. Test accuracy is the golden simulator's argmax of
the integer logits of the whole program with the new head.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..ir.spec import Program
from ..progress import bar
from .datasets import Dataset
from .image import NPUImage, apply_image, backbone, classifier_op


@dataclass
class HeadSettings:
    epochs: float = 30.0
    lr: float = 0.01
    batch_size: int = 256
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    seed: int = 0


MIN_STEPS = 500        # small data sets: at least this many steps, whatever --epochs says
QAT_FRACTION = 0.2     # quantization-aware epochs, as a fraction of the float epochs


def golden_features(prog: Program, images: np.ndarray, batch_size: int = 500, desc: str = "features") -> np.ndarray:
    """The integer feature vectors [n, K] the hardened pipeline gives the NPU."""
    from ..sim.golden import GoldenSimulator

    sim = GoldenSimulator(backbone(prog))
    out = [sim.run(images[i:i + batch_size])[sim.prog.output]
           for i in bar(range(0, len(images), batch_size), desc=desc, unit="batch")]
    return torch.cat(out).to(torch.int64).numpy()


def golden_logits(prog: Program, image: NPUImage, images: np.ndarray, desc: str = "golden") -> np.ndarray:
    """Integer logits of the whole program with the image's head, from the golden simulator."""
    from ..sim.golden import GoldenSimulator

    return GoldenSimulator(apply_image(prog, image)).logits(images, desc=desc)


def _fit(model, x, y, s: HeadSettings, epochs: float, lr: float, gen, desc: str) -> None:
    n = len(x)
    bs = min(s.batch_size, n)
    per_epoch = max(1, n // bs)
    total = max(MIN_STEPS if epochs > 0 else 0, int(math.ceil(epochs * per_epoch)))
    if total == 0:
        return
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.1)
    model.train()
    step = 0
    with bar(total=total, desc=desc, unit="step") as pb:
        while step < total:
            perm = torch.randperm(n, generator=gen)
            for i in range(per_epoch):
                if step >= total:
                    break
                idx = perm[i * bs:(i + 1) * bs]
                loss = F.cross_entropy(model(x[idx]), y[idx], label_smoothing=s.label_smoothing)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                pb.update(1)
    model.eval()


def train_head(feat: np.ndarray, labels: np.ndarray, n_classes: int, in_frac: int, s: HeadSettings):
    """A QLinearNPU trained on integer features (float view feat * 2^-in_frac): a float linear
    layer on standardized features first (well conditioned), folded back onto the raw features,
    then a short quantization-aware pass through the int8 quantizer itself."""
    from ..quant.modules import QLinearNPU

    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    x = torch.from_numpy(feat).to(torch.float32) * 2.0 ** -int(in_frac)
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-3)
    lin = torch.nn.Linear(feat.shape[1], n_classes)
    _fit(lin, (x - mu) / sd, y, s, s.epochs, s.lr, gen, "head")
    with torch.no_grad():  # w (x - mu) / sd + b  ==  (w / sd) x + (b - w mu / sd)
        w = lin.weight / sd
        lin.bias -= w @ mu
        lin.weight.copy_(w)
    head = QLinearNPU(lin)
    head.in_frac.fill_(int(in_frac))
    _fit(head, x, y, s, s.epochs * QAT_FRACTION, s.lr * 0.1, gen, "head qat")
    return head


def head_image(head, meta: dict | None = None) -> NPUImage:
    p = head.integer_params()
    return NPUImage(p["weight"].numpy().astype(np.int8), p["bias"].numpy().astype(np.int64),
                    p["scale_mult"].numpy().astype(np.int64), int(p["scale_shift"]), int(p["in_frac"]),
                    dict(meta or {})).validate("the fine-tuned head")


def finetune_head(prog: Program, ds: Dataset, s: HeadSettings, meta: dict | None = None) -> tuple[NPUImage, dict]:
    """Train a new head for `ds` on `prog`'s backbone; return its image and the figures."""
    t0 = time.time()
    op = classifier_op(prog)
    in_frac = int(prog.tensors[op.input].frac)
    ftr = golden_features(prog, ds.xtr, desc="train features")
    head = train_head(ftr, ds.ytr, len(ds.classes), in_frac, s)
    train_acc_int = None
    info = {"dataset": ds.name, "classes": ds.classes, "settings": asdict(s), "train_images": int(len(ds.xtr)),
            "test_images": int(len(ds.xte))}
    image = head_image(head, dict(meta or {}, **info))
    train_acc_int = float((image.integer_logits(ftr).argmax(1) == ds.ytr).mean())
    logits = golden_logits(prog, image, ds.xte, desc="test (golden)")
    acc = float((logits.argmax(1) == ds.yte).mean())
    image = NPUImage(image.weight, image.bias, image.scale_mult, image.scale_shift, image.in_frac,
                     dict(image.meta, test_accuracy=acc))
    return image, dict(info, test_accuracy=acc, train_accuracy=train_acc_int, seconds=round(time.time() - t0, 1))
