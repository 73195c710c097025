"""Training and evaluation loops shared by FP32 training, QAT and head fine-tuning.

Images are raw uint8 tensors; models see x / 256 (fraction bits 8), the same
scaling the integer pipeline uses, so no normalization needs folding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..progress import bar

INPUT_FRAC_BITS = 8


def to_model_input(x_u8: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    return x_u8.to(dtype) * (2.0 ** -INPUT_FRAC_BITS)


def augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random shift (zero padding) and horizontal flip, per batch element, on uint8."""
    n, c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).view(n, 1, h, 1).expand(n, c, h, w)
    cols = (dx[:, None] + torch.arange(w)[None]).view(n, 1, 1, w).expand(n, c, h, w)
    out = xp[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def random_erase(x: torch.Tensor, gen: torch.Generator, p: float, max_frac: float = 0.4) -> torch.Tensor:
    """Zero one random rectangle (side up to max_frac of the image) in a fraction p of the images.

    Cutout-style regularisation: on Fashion-MNIST it is worth more than extra epochs for small nets.
    """
    n, c, h, w = x.shape
    hit = torch.rand(n, generator=gen) < p
    eh = (torch.rand(n, generator=gen) * max_frac * h).long() + 1
    ew = (torch.rand(n, generator=gen) * max_frac * w).long() + 1
    y0 = (torch.rand(n, generator=gen) * (h - eh + 1)).long()
    x0 = (torch.rand(n, generator=gen) * (w - ew + 1)).long()
    rows = torch.arange(h)[None]
    cols = torch.arange(w)[None]
    in_r = (rows >= y0[:, None]) & (rows < (y0 + eh)[:, None])
    in_c = (cols >= x0[:, None]) & (cols < (x0 + ew)[:, None])
    mask = (in_r[:, :, None] & in_c[:, None, :] & hit[:, None, None])[:, None]
    return x.masked_fill(mask, 0)


@dataclass
class TrainSettings:
    epochs: float = 8.0
    batch_size: int = 128
    lr: float = 0.1
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    seed: int = 0
    augment: bool = True
    optimizer: str = "sgd"
    erase: float = 0.0   # probability of random erasing per image (0 = off)
    distill: float = 0.0  # weight of the distillation loss when a teacher is given (0 = labels only)
    temperature: float = 2.0  # softmax temperature of the distillation loss
    device: str = "cpu"   # where the forward and backward passes run ("cpu" or "cuda"; batches are drawn on the CPU)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """Hinton's soft-target loss: T^2 * KL(softmax(teacher/T) || softmax(student/T)), batch mean."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)


def train(model: torch.nn.Module, x: np.ndarray, y: np.ndarray, s: TrainSettings,
          step_hook: Callable[[int, int], None] | None = None, desc: str = "train",
          teacher: torch.nn.Module | None = None) -> None:
    """One-cycle training; `step_hook(step, total)` runs before each step (pruning schedule).

    With a `teacher` and `s.distill` > 0 the loss is (1 - distill) * label loss + distill * soft-target
    loss against the teacher's outputs on the same augmented batch (the teacher runs in eval mode).
    """
    use_teacher = teacher is not None and s.distill > 0
    dev = torch.device(s.device)
    model.to(dev)
    if use_teacher:
        teacher.eval()
        teacher.to(dev)
    gen = torch.Generator().manual_seed(s.seed)
    torch.manual_seed(s.seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = len(xt)
    steps_per_epoch = max(1, n // s.batch_size)
    total = max(1, int(math.ceil(s.epochs * steps_per_epoch)))
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "adam":
        opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=s.lr, momentum=0.9, nesterov=True, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=total, pct_start=0.15)
    model.train()
    step = 0
    with bar(total=total, desc=desc, unit="step") as pb:
        while step < total:
            perm = torch.randperm(n, generator=gen)
            for i in range(steps_per_epoch):
                if step >= total:
                    break
                idx = perm[i * s.batch_size:(i + 1) * s.batch_size]
                xb = xt[idx]
                if s.augment:
                    xb = augment(xb, gen)
                if s.erase > 0:
                    xb = random_erase(xb, gen, s.erase)
                if step_hook is not None:
                    step_hook(step, total)
                xin = to_model_input(xb).to(dev)
                out = model(xin)
                loss = F.cross_entropy(out, yt[idx].to(dev), label_smoothing=s.label_smoothing)
                if use_teacher:
                    with torch.no_grad():
                        soft = teacher(xin)
                    loss = (1.0 - s.distill) * loss + s.distill * distill_loss(out, soft, s.temperature)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                pb.update(1)
                if step % 50 == 0:
                    pb.set_postfix(loss=f"{loss.item():.3f}")
    model.to("cpu")     # every later stage (calibration, export, the golden simulator) runs on the CPU
    if use_teacher:
        teacher.to("cpu")


@torch.no_grad()
def predict(model: torch.nn.Module, x: np.ndarray, batch_size: int = 500, dtype=torch.float32,
            desc: str = "eval") -> torch.Tensor:
    """Return the model's outputs for all images (eval mode), concatenated."""
    model.eval()
    outs = []
    for i in bar(range(0, len(x), batch_size), desc=desc, unit="batch"):
        xb = torch.from_numpy(x[i:i + batch_size])
        outs.append(model(to_model_input(xb, dtype)))
    return torch.cat(outs)


def accuracy(logits: torch.Tensor, y: np.ndarray) -> float:
    return float((logits.argmax(1).numpy() == y).mean())
