"""Image-folder datasets: one sub-folder per class, any image size, resized to a square."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def load_image_folder(root: str, size: int = 28, channels: int = 1, classes: list[str] | None = None):
    """Return (images uint8 [N,C,size,size], labels int64 [N], class names)."""
    from PIL import Image, UnidentifiedImageError

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
            try:
                with Image.open(f) as im:
                    im = im.convert(mode).resize((size, size), Image.BILINEAR)
                    arr = np.asarray(im, dtype=np.uint8)
            except (UnidentifiedImageError, OSError) as e:
                raise UserError(f"cannot read image {f}: {e}; remove or replace it") from None
            xs.append(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
            ys.append(label)
    if not xs:
        raise UserError(f"no images found under {root} (suffixes: {sorted(IMAGE_SUFFIXES)})")
    return np.stack(xs), np.asarray(ys, dtype=np.int64), names
