"""Data sets for head fine-tuning, as raw uint8 images of the build's input shape.

- fashion-mnist: the train / test splits (hashiflex.data).
- digits: scikit-learn's 8x8 handwritten digits (1,797 images, shipped with the package), values
  0..16 scaled to 0..255 and upscaled (bilinear) to the build's input size; a fixed split
  (permutation with seed 0) keeps 20 % for testing.
- folder:PATH: one sub-folder per class (hashiflex.data.load_image_folder); PATH/train and
  PATH/test when both exist, else the same fixed 80/20 split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError

SPLIT_SEED, TEST_FRACTION = 0, 0.2


@dataclass
class Dataset:
    xtr: np.ndarray
    ytr: np.ndarray
    xte: np.ndarray
    yte: np.ndarray
    classes: list[str]
    name: str


def resize_u8(x: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 [N, C, H, W] -> uint8 [N, *shape]: bilinear resize, round, channels repeated or averaged."""
    c, h, w = shape
    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.float32)
    if t.shape[1] != c:
        t = t.mean(dim=1, keepdim=True).expand(-1, c, -1, -1) if c != 1 else t.mean(dim=1, keepdim=True)
    if tuple(t.shape[2:]) != (h, w):
        t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
    return torch.floor(t + 0.5).clamp_(0, 255).to(torch.uint8).numpy()


def _split(x: np.ndarray, y: np.ndarray):
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(x))
    n_te = max(1, int(round(TEST_FRACTION * len(x))))
    te, tr = perm[:n_te], perm[n_te:]
    return x[tr], y[tr], x[te], y[te]


def digits_u8() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as uint8 [1797, 1, 8, 8] in 0..255 and labels 0..9."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.floor(d.images * (255.0 / 16.0) + 0.5).clip(0, 255).astype(np.uint8)[:, None]
    return x, d.target.astype(np.int64)


def load_dataset(spec: str, shape: tuple[int, int, int], data: str | None = None) -> Dataset:
    from ..data import CLASSES, load_fashion_mnist, load_image_folder

    if spec == "fashion-mnist":
        xtr, ytr = load_fashion_mnist("train", data)
        xte, yte = load_fashion_mnist("test", data)
        names = list(CLASSES)
    elif spec == "digits":
        x, y = digits_u8()
        xtr, ytr, xte, yte = _split(x, y)
        names = [str(i) for i in range(10)]
    elif spec.startswith("folder:"):
        root = Path(spec[len("folder:"):])
        c, h, _ = shape
        if (root / "train").is_dir() and (root / "test").is_dir():
            xtr, ytr, names = load_image_folder(str(root / "train"), h, c)
            xte, yte, _ = load_image_folder(str(root / "test"), h, c, classes=names)
        else:
            x, y, names = load_image_folder(str(root), h, c)
            xtr, ytr, xte, yte = _split(x, y)
    else:
        raise UserError(f"unknown --dataset {spec!r}: use fashion-mnist, digits or folder:PATH")
    return Dataset(resize_u8(xtr, shape), ytr, resize_u8(xte, shape), yte, list(names), spec)


def select_classes(ds: Dataset, classes: list[int] | None, limit: int | None = None,
                   test_limit: int | None = None) -> Dataset:
    """Keep the listed class indices (labels become their position in the list), then the first
    `limit` training and `test_limit` test images."""
    names = ds.classes
    if classes:
        bad = [c for c in classes if not 0 <= c < len(names)]
        if bad:
            raise UserError(f"--classes {bad} out of range: {ds.name} has classes 0..{len(names) - 1}")
        if len(set(classes)) != len(classes):
            raise UserError("--classes lists a class twice")
        remap = np.full(len(names), -1, np.int64)
        remap[classes] = np.arange(len(classes))
        keep_tr, keep_te = remap[ds.ytr] >= 0, remap[ds.yte] >= 0
        ds = Dataset(ds.xtr[keep_tr], remap[ds.ytr[keep_tr]], ds.xte[keep_te], remap[ds.yte[keep_te]],
                     [names[c] for c in classes], ds.name)
    if len(ds.classes) < 2:
        raise UserError("fine-tuning needs at least 2 classes")
    ds = Dataset(ds.xtr[:limit], ds.ytr[:limit], ds.xte[:test_limit], ds.yte[:test_limit], ds.classes, ds.name)
    if len(ds.xtr) == 0 or len(ds.xte) == 0:
        raise UserError(f"{ds.name}: no training or test images left for the chosen classes")
    return ds
