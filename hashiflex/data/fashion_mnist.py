"""Fashion-MNIST from the standard idx .gz files, as raw uint8 tensors.

Lookup order for the folder: `--data DIR`, then $HASHIFLEX_DATA, then where the
Debian package `dataset-fashion-mnist` installs the files.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
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


MAX_IDX_BYTES = 1 << 30     # Fashion-MNIST's largest file holds 47 MB; a header claiming more is refused


def _read_idx(path: Path, expect_dims: int) -> np.ndarray:
    """A uint8 idx.gz file, its header checked before its payload is read (a header claiming more
    than MAX_IDX_BYTES is refused, not inflated), and a damaged gzip stream refused."""
    head = 4 + 4 * expect_dims
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(head)
            if len(raw) < head or raw[0:2] != b"\0\0" or raw[2] != 0x08 or raw[3] != expect_dims:
                raise UserError(f"{path} is not a uint8 idx file with {expect_dims} dims; re-install the data files")
            dims = struct.unpack(">" + "I" * expect_dims, raw[4:head])
            size = int(np.prod(dims, dtype=object))
            if size > MAX_IDX_BYTES:
                raise UserError(f"{path} claims {size:,} bytes of data (dims {list(dims)}), more than any data set "
                                f"this reads ({MAX_IDX_BYTES:,}); re-install the data files")
            payload = f.read(size + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(f"cannot read {path}: {e}; re-install the data files") from None
    if len(payload) != size:
        state = "truncated" if len(payload) < size else "longer than its header says"
        raise UserError(f"{path} is {state} ({len(payload)} of {size} bytes); re-install the data files")
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def load_fashion_mnist(split: str, data: str | None = None, limit: int | None = None):
    """Return (images uint8 [N,1,28,28], labels int64 [N]) as numpy arrays."""
    if split not in FILES:
        raise UserError(f"unknown split {split!r}: use 'train' or 'test'")
    d = find_data_dir(data)
    img_f, lbl_f = FILES[split]
    images = _read_idx(d / img_f, 3)
    labels = _read_idx(d / lbl_f, 1).astype(np.int64)
    if images.shape[1:] != (28, 28):
        raise UserError(f"{d / img_f}: images are {images.shape[1]}x{images.shape[2]}, Fashion-MNIST's are 28x28; "
                        "re-install the data files")
    if len(images) != len(labels):
        raise UserError(f"{d}: {len(images)} images but {len(labels)} labels; re-install the data files")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASSES)):
        bad = int(np.argmax((labels < 0) | (labels >= len(CLASSES))))
        raise UserError(f"{d / lbl_f}: label {int(labels[bad])} of image {bad} is not a class 0..{len(CLASSES) - 1}; "
                        "re-install the data files")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    return images[:, None, :, :].copy(), labels.copy()
