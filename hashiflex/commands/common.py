"""Checks and loaders shared by the subcommands: bad input becomes a one-line UserError, early."""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import load_fashion_mnist
from ..checkpoint import state_dict_problem
from ..errors import UserError, os_error_hint
from ..models.registry import fp32_from_config, input_shape_of, is_graph, num_classes_of


def set_threads() -> None:
    """At most 2 intra-op threads (more only contends on the small machines this targets), unless
    OMP_NUM_THREADS says otherwise: on a busy machine 1 thread avoids OpenMP spin-wait stalls."""
    n = min(2, os.cpu_count() or 1)
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) >= 1:
        n = int(env)
    torch.set_num_threads(n)


def resolve_device(name: str | None) -> str:
    """--device: 'cpu', 'cuda', or 'auto' (CUDA when torch sees a GPU, else the CPU)."""
    name = name or "cpu"
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA GPU here (a CPU build of torch, or no driver); "
                        "use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise UserError(f"--device takes auto, cpu or cuda (got {name!r})")
    return name


def check_count(value: int | None, opt: str) -> None:
    if value is not None and value < 1:
        raise UserError(f"{opt} must be at least 1 (got {value})")


def check_epochs(value: float | None, opt: str = "--epochs") -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise UserError(f"{opt} must be a number >= 0 (got {value})")


def check_lr(value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value > 0):
        raise UserError(f"--lr must be a number > 0 (got {value})")


def writable_dir(path, opt: str = "--out") -> Path:
    """Fail before any work if the folder is missing or not writable (a probe file, removed at once)."""
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise UserError(f"{opt}: {d} is a file, not a folder: choose another {opt}")
    if not d.is_dir():
        blocker = next((a for a in d.parents if a.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise UserError(f"{opt}: {blocker} is a file, not a folder: choose another {opt}")
        raise UserError(f"{opt}: output folder {d} does not exist: create it first")
    try:
        with tempfile.TemporaryFile(dir=d):
            pass
    except OSError as e:
        raise UserError(f"{opt}: cannot write in folder {d} ({os_error_hint(e, opt)})") from None
    return d


@contextlib.contextmanager
def staged_folder(path, opt: str = "--out"):
    """Yield a hidden temporary folder inside the output folder `path` (created with its parents if
    missing). When the block completes, each entry moves into `path` by a rename (a sub-folder such as
    rtl/ is swapped whole), so `path` never holds a half-written build; on an error or an interrupt the
    temporary folder goes, and so do the folders this call created."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{opt} {out} is a file, not a folder: choose another {opt}")
    blocker = next((a for a in out.parents if a.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise UserError(f"{opt}: {blocker} is a file, not a folder: choose another {opt}")
    created = [d for d in (out, *out.parents) if not d.exists()]
    done, stage, old = False, None, []
    try:
        try:
            out.mkdir(parents=True, exist_ok=True)
            stage = Path(tempfile.mkdtemp(prefix=".hashiflex-tmp-", dir=out))
        except OSError as e:
            raise UserError(f"{opt}: cannot create build folder {out} ({os_error_hint(e, opt)})") from None
        try:
            try:
                yield stage
            except UserError as e:  # name the output folder, not the temporary one
                raise UserError(str(e).replace(str(stage), str(out))) from None
            for entry in sorted(stage.iterdir()):
                dst = out / entry.name
                if dst.is_dir() and not dst.is_symlink():
                    old.append(out / f".{entry.name}.old-{os.getpid()}")
                    os.replace(dst, old[-1])
                os.replace(entry, dst)
            done = True
        except OSError as e:
            raise UserError(f"cannot write the build into {out}: {os_error_hint(e, opt)}") from None
    finally:
        for d in ([stage] if stage else []) + old:
            shutil.rmtree(d, ignore_errors=True)
        if not done:
            for d in created:  # deepest first; only folders this call made, and only if empty
                try:
                    d.rmdir()
                except OSError:
                    break


def output_file(path: str, opt: str = "--out", inputs=()) -> Path:
    """An output file path: a new file or a regular file to replace (never a folder, a device, a
    pipe, or one of the command's own `inputs`)."""
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{opt} {p} is a folder: give a file name such as {p / 'model.pt'}")
    if p.exists() and not p.is_file():
        raise UserError(f"{opt} {p} is not a regular file (a device or a pipe): give a file name to write")
    for i in inputs:
        if i is not None and Path(i).exists() and p.exists() and os.path.samefile(p, i):
            raise UserError(f"{opt} {p} is also an input of this command: write the result to another file")
    writable_dir(p.parent, opt)
    return p


def load_split(split: str, data: str | None, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_fashion_mnist(split, data, limit)
    if len(x) == 0:
        raise UserError(f"the Fashion-MNIST {split} split has no images")
    return x, y


def _first_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:240] or type(e).__name__


FASHION_SHAPE = (1, 28, 28)


def model_config(blob: dict) -> dict:
    """The checkpoint's declared architecture (MobileNetV2 or a graph), checked to build."""
    cfg = blob.get("model_config")
    try:
        fp32_from_config(cfg)
    except (ValueError, TypeError, AttributeError) as e:
        raise UserError(f"checkpoint {blob['path']} has a bad model_config ({_first_line(e)})") from None
    return cfg


def parse_input_shape(text: str) -> tuple[int, int, int]:
    """--input-shape C,H,W of a --model factory's images."""
    try:
        c, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"--input-shape {text!r}: write C,H,W, e.g. 1,28,28") from None
    if not (1 <= c <= 64 and 1 <= h <= 4096 and 1 <= w <= 4096):
        raise UserError(f"--input-shape {text}: C must be 1..64 and H, W 1..4096")
    return c, h, w


def check_fashion_fits(cfg: dict, where: str) -> None:
    shape, classes = input_shape_of(cfg), num_classes_of(cfg)
    if shape != FASHION_SHAPE or classes != 10:
        raise UserError(f"{where} is for {'x'.join(map(str, shape))} images and {classes} classes; "
                        f"Fashion-MNIST has 1x28x28 images and 10 classes: pass the model's own --dataset")


def dataset_splits(dataset: str | None, limits: dict[str, int | None], data: str | None, cfg: dict,
                   where: str = "the checkpoint") -> list[tuple[np.ndarray, np.ndarray]]:
    """[(uint8 images, labels)] of each split in `limits` ({"train"|"test": first N or all}), in that
    order, from --dataset (Fashion-MNIST by default; digits and folder:PATH resized to the model's
    input shape, as finetune and verify take them, read once for all splits), checked against the
    model's input shape and classes."""
    shape, classes = input_shape_of(cfg), num_classes_of(cfg)
    if dataset in (None, "fashion-mnist"):
        check_fashion_fits(cfg, where)
        return [load_split(split, data, limit) for split, limit in limits.items()]
    from ..finetune.datasets import load_dataset

    ds = load_dataset(dataset, shape, data)
    if len(ds.classes) != classes:
        raise UserError(f"--dataset {dataset} has {len(ds.classes)} classes and {where} has {classes}: "
                        "pass the dataset the model was built for")
    out = []
    for split, limit in limits.items():
        x, y = (ds.xtr, ds.ytr) if split == "train" else (ds.xte, ds.yte)
        if len(x) == 0:
            raise UserError(f"--dataset {dataset} has no {split} images")
        out.append((x[:limit], y[:limit]))
    return out


def fp32_model(blob: dict) -> nn.Module:
    """Build the declared network and load the weights strictly."""
    cfg = model_config(blob)
    model = fp32_from_config(cfg)
    what = "graph" if is_graph(cfg) else "MobileNetV2 architecture"
    try:
        model.load_state_dict(blob["state_dict"])
    except (RuntimeError, ValueError, TypeError) as e:
        raise UserError(f"checkpoint {blob['path']} does not match the {what} it declares "
                        f"({state_dict_problem(e)}); re-create it with 'hashiflex train'") from None
    return model


def check_finite(state_dict: dict, what: str) -> None:
    """Refuse to write weights that diverged: the checkpoint loader would reject them anyway."""
    for k, v in state_dict.items():
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise UserError(f"{what} diverged (NaN/inf in {k}); nothing written: try a lower --lr")
