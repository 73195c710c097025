"""Progress bars on stderr (tqdm), silent when stderr is not a terminal unless forced."""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


def bar(iterable=None, total=None, desc: str = "", unit: str = "it"):
    disable = os.environ.get("HASHIFLEX_PROGRESS", "auto") == "0"
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, disable=disable,
                leave=False, dynamic_ncols=True, mininterval=1.0)
