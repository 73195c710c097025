"""Progress bars on stderr (tqdm), shown only when stderr is a terminal
(HASHIFLEX_PROGRESS=1 forces them on, =0 off)."""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


def bar(iterable=None, total=None, desc: str = "", unit: str = "it"):
    mode = os.environ.get("HASHIFLEX_PROGRESS", "auto")
    disable = True if mode == "0" else False if mode == "1" else None  # None: only on a terminal
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable,
                leave=False, dynamic_ncols=True, mininterval=1.0)
