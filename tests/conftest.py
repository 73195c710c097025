"""Shared settings and fixtures: a synthetic Fashion-MNIST folder and tiny fp32/po2 checkpoints."""
from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

# Tests share two cores with each other and with other jobs: OpenMP threads that spin while
# waiting make oversubscribed torch runs many times slower, so let them sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HASHIFLEX_PROGRESS", "0")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402  (after the OpenMP setting above)
import pytest  # noqa: E402
import torch  # noqa: E402

from hashiflex import checkpoint  # noqa: E402
from hashiflex.models.mobilenetv2 import MobileNetV2, MobileNetV2Config  # noqa: E402

# first_stride 2 quarters the compute of the tiny model; everything else is the default layout.
TINY = MobileNetV2Config(width_mult=0.25, last_channel=64, first_stride=2)
N_TRAIN, N_TEST = 256, 64


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 idx file (gzip), the format of the Fashion-MNIST distribution."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def synthetic_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class k draws a bright bar at rows 2k..2k+5 on noise, so the images are not all alike."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n).astype(np.uint8)
    x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(y):
        x[i, 2 * k:2 * k + 6, 4:24] = 220
    return x, y


def png_claiming(path: Path, w: int, h: int) -> None:
    """A valid 4x4 PNG whose header (with a correct CRC) claims w x h pixels: a decompression bomb's
    header, without its payload."""
    import zlib

    from PIL import Image

    Image.new("L", (4, 4), 7).save(path)
    raw = bytearray(path.read_bytes())
    i = raw.index(b"IHDR")
    raw[i + 4:i + 12] = struct.pack(">II", w, h)
    raw[i + 17:i + 21] = struct.pack(">I", zlib.crc32(bytes(raw[i:i + 17])))
    path.write_bytes(bytes(raw))


def write_fashion_mnist(d: Path, n_train: int = N_TRAIN, n_test: int = N_TEST) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for (img, lbl), n, seed in ((("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"), n_train, 0),
                                (("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"), n_test, 1)):
        x, y = synthetic_split(n, seed)
        write_idx(d / img, x)
        write_idx(d / lbl, y)
    return d


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory) -> Path:
    return write_fashion_mnist(tmp_path_factory.mktemp("fmnist"))


@pytest.fixture(scope="session")
def tiny_fp32(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = MobileNetV2(TINY)
    path = tmp_path_factory.mktemp("ckpt") / "tiny-fp32.pt"
    checkpoint.save(path, "fp32", TINY.to_dict(), model.state_dict(), meta={"test": "random init"})
    return path


@pytest.fixture(scope="session")
def tiny_po2(tiny_fp32, fmnist_dir) -> Path:
    from hashiflex.data import load_fashion_mnist
    from hashiflex.quant.qat import QATSettings, quantize_from_fp32
    from hashiflex.train.loop import TrainSettings

    x, y = load_fashion_mnist("train", str(fmnist_dir))
    s = QATSettings(train=TrainSettings(epochs=0.1, batch_size=64, lr=0.01, weight_decay=0.0, seed=1),
                    calib_batches=2)
    r = quantize_from_fp32(str(tiny_fp32), x, y, None, None, s)
    path = tiny_fp32.parent / "tiny-po2.pt"
    r.save(path)
    return path
