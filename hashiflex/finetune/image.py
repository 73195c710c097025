"""NPU weight images: the versioned binary file that programs the NPU (spec: docs/npu.md).

Layout (little endian):
    0   8  magic b"HFNPUIMG"
    8   4  u32 version (1)
    12  4  u32 N (outputs, classes)
    16  4  u32 K (inputs, the feature vector's length)
    20  4  i32 scale_shift S (float view: logit = int * 2^-(S + in_frac); not needed to compute)
    24  4  i32 in_frac (fraction bits of the feature vector; float view only)
    28  4  u32 M, length of the metadata
    32  M  metadata: UTF-8 JSON object, sorted keys (class names, source, settings)
    ..  N*K int8 weights, row-major (output o, then input k)
    ..  N*4 int32 biases
    ..  N*4 u32 scale multipliers M_o, 1..65535
    ..  32  SHA-256 of every byte before it
Integer semantics (the IR's int8 Linear): logits[o] = (bias[o] + sum_k W[o,k] * feat[k]) * M_o.
Reading validates everything before returning; any problem is a one-line UserError.
"""
from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..checkpoint import atomic_write
from ..rtl.manifest import NPUEntry
from ..errors import UserError
from ..ir.intervals import analyze
from ..ir.spec import Linear, Program

MAGIC = b"HFNPUIMG"
VERSION = 1
HEADER = struct.Struct("<8sIIIiiI")
DIGEST = 32
SCALE_MAX = (1 << 16) - 1
INT32 = (-(1 << 31), (1 << 31) - 1)
REMAKE = "re-create it with 'hashiflex npu-image' or 'hashiflex finetune'"


@dataclass(frozen=True)
class NPUImage:
    weight: np.ndarray          # int8 [N, K]
    bias: np.ndarray            # int64 [N], int32 range
    scale_mult: np.ndarray      # int64 [N], 1..65535
    scale_shift: int
    in_frac: int
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.weight.shape[0])

    @property
    def k(self) -> int:
        return int(self.weight.shape[1])

    def validate(self, what: str = "NPU image") -> "NPUImage":
        w, b, m = self.weight, self.bias, self.scale_mult
        if w.ndim != 2 or w.shape[0] < 1 or w.shape[1] < 1:
            raise UserError(f"{what}: weights must be a non-empty [N, K] matrix, got shape {list(w.shape)}; {REMAKE}")
        if w.dtype != np.int8:
            raise UserError(f"{what}: weights must be int8, got {w.dtype}; {REMAKE}")
        if b.shape != (w.shape[0],) or m.shape != (w.shape[0],):
            raise UserError(f"{what}: {w.shape[0]} outputs but {b.shape[0] if b.ndim else 0} biases and "
                            f"{m.shape[0] if m.ndim else 0} scales; {REMAKE}")
        if b.size and (int(b.min()) < INT32[0] or int(b.max()) > INT32[1]):
            raise UserError(f"{what}: a bias does not fit int32 (range {int(b.min())}..{int(b.max())}); "
                            f"the NPU holds 32-bit biases")
        if m.size and (int(m.min()) < 1 or int(m.max()) > SCALE_MAX):
            raise UserError(f"{what}: scale multipliers must be 1..{SCALE_MAX} (got {int(m.min())}..{int(m.max())}); "
                            f"{REMAKE}")
        return self

    def to_bytes(self) -> bytes:
        self.validate()
        meta = json.dumps(self.meta, sort_keys=True, separators=(",", ":")).encode()
        body = (HEADER.pack(MAGIC, VERSION, self.n, self.k, int(self.scale_shift), int(self.in_frac), len(meta))
                + meta + np.ascontiguousarray(self.weight, dtype=np.int8).tobytes()
                + self.bias.astype("<i4").tobytes() + self.scale_mult.astype("<u4").tobytes())
        return body + hashlib.sha256(body).digest()

    def integer_logits(self, feat: np.ndarray) -> np.ndarray:
        """The NPU's integer logits for integer feature vectors [n, K] (int64 arithmetic)."""
        acc = np.asarray(feat, dtype=np.int64) @ self.weight.astype(np.int64).T + self.bias.astype(np.int64)
        return acc * self.scale_mult.astype(np.int64)


def parse(raw: bytes, name: str = "NPU image") -> NPUImage:
    """Decode and validate an image; UserError (one line, what to do) on any problem."""
    if len(raw) < HEADER.size + DIGEST or raw[:8] != MAGIC:
        raise UserError(f"{name} is not an NPU weight image (bad magic or too short); {REMAKE}")
    _, version, n, k, shift, frac, mlen = HEADER.unpack_from(raw)
    if version != VERSION:
        raise UserError(f"{name} has NPU image version {version}, this hashiflex reads {VERSION}; {REMAKE}")
    if n < 1 or k < 1:
        raise UserError(f"{name} declares shape N={n}, K={k}; both must be at least 1; {REMAKE}")
    size = HEADER.size + mlen + n * k + 8 * n + DIGEST
    if len(raw) != size:
        state = "truncated" if len(raw) < size else "longer than its header says"
        raise UserError(f"{name} is {state} ({len(raw)} bytes, header says {size}); {REMAKE}")
    body, digest = raw[:-DIGEST], raw[-DIGEST:]
    if hashlib.sha256(body).digest() != digest:
        raise UserError(f"{name} is corrupt (SHA-256 checksum mismatch); {REMAKE}")
    pos = HEADER.size
    try:
        meta = json.loads(raw[pos:pos + mlen].decode()) if mlen else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UserError(f"{name} has unreadable metadata; {REMAKE}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{name} metadata is not a JSON object; {REMAKE}")
    pos += mlen
    w = np.frombuffer(raw, dtype=np.int8, count=n * k, offset=pos).reshape(n, k).copy()
    pos += n * k
    b = np.frombuffer(raw, dtype="<i4", count=n, offset=pos).astype(np.int64)
    m = np.frombuffer(raw, dtype="<u4", count=n, offset=pos + 4 * n).astype(np.int64)
    return NPUImage(w, b, m, shift, frac, meta).validate(name)


def read_image(path) -> NPUImage:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"NPU image {p} not found: write one with 'hashiflex npu-image' or 'hashiflex finetune'")
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read NPU image {p}: {e.strerror or e}") from None
    return parse(raw, f"NPU image {p}")


def write_image(path, image: NPUImage) -> Path:
    """Write atomically (temporary name, then rename): a reader never sees half an image."""
    data = image.to_bytes()
    p = Path(path)
    if p.is_dir():
        raise UserError(f"--out {p} is a folder: give a file name such as {p / 'head.npuimg'}")
    try:
        atomic_write(p, lambda tmp: Path(tmp).write_bytes(data))
    except OSError as e:
        raise UserError(f"cannot write NPU image {p}: {e.strerror or e}") from None
    return p


def check_fits(image: NPUImage, npu: NPUEntry, name: str = "NPU image") -> None:
    """The image must match the build's NPU: K = its feature length, N <= its capacity."""
    if image.k != npu.in_features:
        raise UserError(f"{name} has {image.k} inputs but this build's NPU takes {npu.in_features} features: "
                        f"fine-tune a head for this build with 'hashiflex finetune BUILD'")
    if image.n > npu.capacity:
        raise UserError(f"{name} has {image.n} classes but the NPU holds at most {npu.capacity}: use at most "
                        f"{npu.capacity} classes or recompile with 'hashiflex compile --npu-capacity {image.n}'")


def classifier_op(prog: Program) -> Linear:
    op = next((o for o in prog.ops if o.output == prog.output), None)
    if not (isinstance(op, Linear) and op.mode == "int8"):
        raise UserError("the program's classifier is not an int8 (NPU) layer: compile a checkpoint quantized "
                        "with --classifier npu")
    return op


def image_from_program(prog: Program, meta: dict | None = None) -> NPUImage:
    """The image of a program's own int8 classifier."""
    op = classifier_op(prog)
    x = prog.tensors[op.input]
    return NPUImage(prog.arrays[op.weight].astype(np.int8), prog.arrays[op.bias].astype(np.int64),
                    prog.arrays[op.scale_mult].astype(np.int64), -int(op.e_min), int(x.frac),
                    dict(meta or {})).validate("the program's classifier")


def apply_image(prog: Program, image: NPUImage) -> Program:
    """The program with its int8 classifier replaced by the image's (any N), re-analyzed."""
    op = classifier_op(prog)
    k = prog.tensors[op.input].shape[0]
    if image.k != k:
        raise UserError(f"NPU image has {image.k} inputs but the program's feature vector has {k}")
    arrays = dict(prog.arrays)
    arrays[op.weight] = image.weight.astype(np.int8)
    arrays[op.bias] = image.bias.astype(np.int64)
    arrays[op.scale_mult] = image.scale_mult.astype(np.int64)
    for key in (f"{op.name}.acc_lo", f"{op.name}.acc_hi"):
        arrays.pop(key, None)
    tensors = dict(prog.tensors)
    out = tensors[op.output]
    tensors[op.output] = replace(out, shape=(image.n,), frac=int(image.scale_shift) + int(image.in_frac),
                                 lo=None, hi=None)
    ops = [replace(o, e_min=-int(image.scale_shift)) if o is op else o for o in prog.ops]
    return analyze(prog.with_ops(ops, tensors, arrays))


def backbone(prog: Program) -> Program:
    """The program without its classifier: its output is the feature vector the NPU reads."""
    op = classifier_op(prog)
    ops = [o for o in prog.ops if o is not op]
    tensors = {k: v for k, v in prog.tensors.items() if k != op.output}
    arrays = {k: v for k, v in prog.arrays.items() if not k.startswith(f"{op.name}.")}
    return replace(prog.with_ops(ops, tensors, arrays), output=op.input)
