"""Checkpoints: one torch file holding plain dicts and tensors, loaded with weights_only=True.

Layout: {"format": "hashiflex-checkpoint", "version": 2, "kind": "fp32" | "po2",
         "model_config": {...}, "quant_config": {...} | None, "meta": {...}, "state_dict": {...},
         "checksum": sha256 of the configs and the state_dict's names, dtypes, shapes and bytes}
torch's zip reader does not check tensor data, so a flipped weight byte would load silently: the
checksum is what catches it. Version 1 files (no checksum) are still read.
The weights are checked for what no trained network has: non-float parameters or statistics,
negative BatchNorm variances.
`default-fp32` / `default-po2` (and `small-fp32` / `small-po2`) name the committed checkpoints
under hashiflex/checkpoints/.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing import Annotated, Literal

from .errors import UserError, os_error_hint

FORMAT = "hashiflex-checkpoint"
VERSION = 2
READS = (1, 2)
FLOAT_KEYS = (".weight", ".bias", ".running_mean", ".running_var")
BUILTIN_DIR = Path(__file__).parent / "checkpoints"
# small-*: the width-reduced network used for end-to-end RTL checks (scripts/make_default_models.py)
BUILTIN = {name: f"{name}.pt" for name in ("default-fp32", "default-po2", "small-fp32", "small-po2")}


def resolve(name_or_path: str | None) -> Path:
    name = name_or_path or "default-po2"
    if name in BUILTIN:
        return BUILTIN_DIR / BUILTIN[name]
    return Path(name)


def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then rename onto `path`: no half-written file on failure."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UserError(f"output folder {path.parent} does not exist: create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path, kind: str, model_config: dict, state_dict: dict, quant_config: dict | None = None,
         meta: dict | None = None) -> None:
    sd = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    blob = {"format": FORMAT, "version": VERSION, "kind": kind, "model_config": dict(model_config),
            "quant_config": dict(quant_config) if quant_config else None, "meta": dict(meta or {}),
            "state_dict": sd}
    blob["checksum"] = checksum(blob)
    try:
        atomic_write(Path(path), lambda tmp: torch.save(blob, tmp))
    except OSError as e:
        raise UserError(f"cannot write checkpoint {path}: {os_error_hint(e)}") from None


def checksum(blob: dict) -> str:
    """sha256 over a checkpoint's fields (canonical JSON: kind, configs, meta) and every tensor's
    name, dtype, shape and bytes, in name order."""
    fields = {k: v for k, v in blob.items() if k not in ("state_dict", "checksum", "path")}
    h = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
    state_dict = blob["state_dict"]
    for k in sorted(state_dict):
        v = state_dict[k].detach().cpu().contiguous()
        h.update(f"{k}\0{v.dtype}\0{list(v.shape)}\0".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes() if v.numel() else b"")
    return h.hexdigest()


def _check_weights(path: Path, sd: dict) -> None:
    """Values no trained network has: non-finite numbers, integer-typed parameters or BN
    statistics, negative variances."""
    for k, v in sd.items():
        if k.endswith(FLOAT_KEYS) and not v.is_floating_point():
            raise UserError(f"checkpoint {path}: {k} is {str(v.dtype).replace('torch.', '')}, not a float tensor; "
                            "re-create the checkpoint")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UserError(f"checkpoint {path} has NaN/inf values in {k}; retrain or use another checkpoint")
        if k.endswith(".running_var") and bool((v < 0).any()):
            raise UserError(f"checkpoint {path}: {k} has negative variances; re-create the checkpoint")


class _Header(BaseModel):
    """The fields around the state_dict: types and ranges (the architecture inside model_config
    is checked by the model registry when it is built; quant_config by QuantConfig)."""
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=True, populate_by_name=True)
    format: Literal["hashiflex-checkpoint"]
    version: Literal[1, 2]
    kind: Literal["fp32", "po2"]
    arch: dict = Field(alias="model_config")
    quant_config: dict | None
    meta: dict
    checksum: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    state_dict: dict
    path: str | None = None


def _check_header(path: Path, blob: dict) -> None:
    try:
        _Header.model_validate(blob)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "the file"
        raise UserError(f"checkpoint {path}: {where}: {err['msg']}; re-create it with 'hashiflex train' or "
                        "'hashiflex quantize'") from None


def load(name_or_path: str | None) -> dict:
    """Load and validate a checkpoint; never unpickles arbitrary objects."""
    path = resolve(name_or_path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found: pass a file written by 'hashiflex train/quantize' "
                        f"or one of {sorted(BUILTIN)}")
    try:
        with warnings.catch_warnings():   # a damaged file can make torch warn (e.g. an odd pickle protocol):
            warnings.simplefilter("error")   # a refusal, not an extra stderr line
            blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged zip or pickle stream raises almost any type (IndexError, KeyError, ...)
        # torch's own text talks about weights_only defaults; the cause that matters is the file
        kind = "truncated" if "central directory" in str(e) or isinstance(e, EOFError) else "unreadable"
        raise UserError(f"checkpoint {path} is corrupt or not a hashiflex checkpoint ({kind} torch file); "
                        f"re-create it with 'hashiflex train' or 'hashiflex quantize'") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path} is not a hashiflex checkpoint; re-create it with 'hashiflex train'")
    if type(blob.get("version")) is not int or blob["version"] not in READS:
        raise UserError(f"{path} has checkpoint version {blob.get('version')}, this hashiflex reads "
                        f"{' and '.join(map(str, READS))}")
    if blob.get("kind") not in ("fp32", "po2"):
        raise UserError(f"{path} has unknown kind {blob.get('kind')!r}")
    _check_header(path, blob)
    sd = blob.get("state_dict")
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{path} has no valid state_dict")
    if blob["version"] >= 2 and blob.get("checksum") != checksum(blob):
        raise UserError(f"checkpoint {path} is corrupt (its weights or settings do not match the checksum it was "
                        "written with); re-create it or restore a good copy")
    _check_weights(path, sd)
    blob["path"] = str(path)
    return blob


def state_dict_problem(e: BaseException) -> str:
    """First concrete problem of a load_state_dict error (its first line is only a heading)."""
    lines = [" ".join(ln.split()) for ln in str(e).splitlines()[1:] if ln.strip()]
    if not lines:
        return (" ".join(str(e).split())[:240] or type(e).__name__)
    first = re.sub(r"torch\.Size\((\[[^\]]*\])\)", r"\1", lines[0]).rstrip(".")
    first = first.replace("copying a param with shape ", "").replace("the shape in current model is", "model needs")
    more = f", and {len(lines) - 1} more" if len(lines) > 1 else ""
    return first[:200] + more
