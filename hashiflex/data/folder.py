"""Image-folder datasets: one sub-folder per class, any image size, resized to a square."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError

# Larger images are refused from their header, before any pixel is decoded (a decompression bomb
# is a small file that claims an enormous image): 64 Mpixel is an 8k x 8k photo.
MAX_PIXELS = 1 << 26
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def _read(f: Path, size: int, mode: str) -> np.ndarray:
    """One image as uint8 [size, size(, 3)]. 16-bit grey images are scaled to 0..255 by their
    type's full range, not clipped at 255 (32-bit integer ones too: by 65535 when their values fit
    16 bits, as 16-bit PNGs often open, else by 2^31 - 1; float ones must lie in [0, 1]); the
    size is checked from the header first."""
    from PIL import Image

    pil_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None   # ours (smaller) is checked below
    try:
        with Image.open(f) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise UserError(f"image {f} claims {w}x{h} pixels, more than the {MAX_PIXELS:,} hashiflex reads "
                                "(a decompression bomb or a huge photo): shrink or remove it")
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
                a = np.asarray(im, dtype=np.float64)
                top = 1.0 if im.mode == "F" else 65535.0 if im.mode != "I" or a.max() <= 65535 else 2.0 ** 31 - 1
                if im.mode == "F" and not (np.isfinite(a).all() and a.max() <= 1.0):
                    raise UserError(f"image {f} holds floating-point pixels outside [0, 1]; save it as 8 or 16 bit")
                im = Image.fromarray(np.floor(np.clip(a, 0, None) * (255.0 / top) + 0.5).clip(0, 255)
                                     .astype(np.uint8), "L")
            im = im.convert(mode).resize((size, size), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except UserError:
        raise
    except Exception as e:  # PIL's plugins raise OSError, ValueError, SyntaxError, DecompressionBombError...
        raise UserError(f"cannot read image {f}: {' '.join(str(e).split())[:160] or type(e).__name__}; "
                        "remove or replace it") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pil_limit


def load_image_folder(root: str, size: int = 28, channels: int = 1, classes: list[str] | None = None):
    """Return (images uint8 [N,C,size,size], labels int64 [N], class names)."""
    rootp = Path(root)
    if not rootp.is_dir():
        raise UserError(f"image folder {root} does not exist: give a folder with one sub-folder per class")
    names = sorted(p.name for p in rootp.iterdir() if p.is_dir())
    if classes:
        missing = [c for c in classes if c not in names]
        if missing:
            raise UserError(f"classes {missing} not found in {root}; available: {names}")
        names = list(classes)
    if not names:
        raise UserError(f"{root} has no class sub-folders: put the images of each class in its own sub-folder")
    mode = "L" if channels == 1 else "RGB"
    xs, ys = [], []
    for label, name in enumerate(names):
        for f in sorted((rootp / name).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            arr = _read(f, size, mode)
            xs.append(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
            ys.append(label)
        if not ys or ys[-1] != label:
            raise UserError(f"class folder {rootp / name} has no images: remove it or add its images")
    if not xs:
        raise UserError(f"no images found under {root} (suffixes: {sorted(IMAGE_SUFFIXES)})")
    return np.stack(xs), np.asarray(ys, dtype=np.int64), names
