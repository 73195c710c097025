"""User-facing errors: the CLI prints the message on one line and exits with code 2."""
from __future__ import annotations

import errno


class UserError(Exception):
    """Bad input or environment; the message says what to do."""


def os_error_hint(e: OSError, opt: str = "--out") -> str:
    """`<reason>: <what to do>` for an OSError met while writing an output."""
    reason = e.strerror or str(e) or type(e).__name__
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{reason}: free some disk space or choose another {opt}"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{reason}: choose a writable {opt}"
    if e.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return f"{reason}: a file is in the way; choose another {opt}"
    return f"{reason}: check {opt}"
