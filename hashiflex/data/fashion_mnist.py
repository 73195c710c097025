"""Fashion-MNIST from the standard idx .gz files, as raw uint8 tensors.

Lookup order for the folder: `--data DIR`, then $HASHIFLEX_DATA, then where the
Debian package `dataset-fashion-mnist` installs the files.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

from ..errors import UserError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def find_data_dir(data: str | None = None) -> Path:
    candidates = []
    if data:
        candidates.append(("--data", Path(data)))
    elif os.environ.get("HASHIFLEX_DATA"):
        candidates.append(("HASHIFLEX_DATA", Path(os.environ["HASHIFLEX_DATA"])))
    else:
        candidates.append(("Debian package", DEBIAN_DIR))
    for _, d in candidates:
        if all((d / f).is_file() for pair in FILES.values() for f in pair):
            return d
    src, d = candidates[0]
    raise UserError(
        f"Fashion-MNIST idx .gz files not found in {d} (from {src}): pass --data DIR, "
        f"set HASHIFLEX_DATA=DIR, or install the Debian package (apt-get install dataset-fashion-mnist)")


def _read_idx(path: Path, expect_dims: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e}; re-install the data files") from None
    if len(raw) < 4 or raw[0:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != expect_dims:
        raise UserError(f"{path} is not a uint8 idx file with {expect_dims} dims; re-install the data files")
    dims = struct.unpack(">" + "I" * expect_dims, raw[4:4 + 4 * expect_dims])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * expect_dims)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path} is truncated ({body.size} of {int(np.prod(dims))} bytes); re-install the data files")
    return body.reshape(dims)


def load_fashion_mnist(split: str, data: str | None = None, limit: int | None = None):
    """Return (images uint8 [N,1,28,28], labels int64 [N]) as numpy arrays."""
    if split not in FILES:
        raise UserError(f"unknown split {split!r}: use 'train' or 'test'")
    d = find_data_dir(data)
    img_f, lbl_f = FILES[split]
    images = _read_idx(d / img_f, 3)
    labels = _read_idx(d / lbl_f, 1).astype(np.int64)
    if len(images) != len(labels):
        raise UserError(f"{d}: {len(images)} images but {len(labels)} labels; re-install the data files")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images[:, None, :, :].copy(), labels.copy()
