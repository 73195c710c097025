"""Beats: the words a stream carries. A beat holds `per_beat` values of `bits` bits each (value j
in bits j*bits .. j*bits + bits - 1, two's complement), little-endian 32-bit words, the unused top
bits zero. Images are streamed in raster order with G pixels of a row per beat (all channels of a
pixel together, lane-major), each row padded to whole beats with zeros."""
from __future__ import annotations

import numpy as np


def words_of(width: int) -> int:
    return (width + 31) // 32


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """values [..., per_beat] (integers that fit `bits` bits, signed or not) -> u32 words
    [..., words_of(per_beat * bits)]."""
    v = np.asarray(values, dtype=np.int64)
    lead, per = v.shape[:-1], v.shape[-1]
    u = (v & ((1 << bits) - 1)).astype(np.uint64)
    bitm = ((u[..., None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8)
    bitm = bitm.reshape(*lead, per * bits)
    nw = words_of(per * bits)
    pad = np.zeros((*lead, nw * 32 - per * bits), np.uint8)
    by = np.packbits(np.concatenate([bitm, pad], axis=-1), axis=-1, bitorder="little")
    return np.ascontiguousarray(by).view("<u4").reshape(*lead, nw)


def unpack(words: np.ndarray, per_beat: int, bits: int, signed: bool) -> np.ndarray:
    """u32 words [..., nw] -> int64 values [..., per_beat] (inverse of pack)."""
    w = np.ascontiguousarray(words, dtype="<u4")
    lead = w.shape[:-1]
    bitm = np.unpackbits(w.view(np.uint8).reshape(*lead, -1), axis=-1, bitorder="little")
    bitm = bitm[..., :per_beat * bits].reshape(*lead, per_beat, bits).astype(np.int64)
    v = bitm @ (np.int64(1) << np.arange(bits, dtype=np.int64))
    if signed:
        v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
    return v


def tensor_beats(x: np.ndarray, lanes: int, rows: int = 1) -> np.ndarray:
    """A [N, C, H, W] tensor (or [N, C] vector, one beat) as [N, beats, rows * lanes * C] values in
    stream order: rows padded to whole beats of `lanes` pixels, the image to whole beats of `rows`
    rows, with zeros; within a beat row q, lane l, channel c is slot (q * lanes + l) * C + c."""
    x = np.asarray(x)
    if x.ndim == 2:
        return x[:, None, :]
    n, c, h, w = x.shape
    nb, nr = -(-w // lanes), -(-h // rows)
    pix = np.zeros((n, nr * rows, nb * lanes, c), dtype=np.int64)
    pix[:, :h, :w, :] = x.transpose(0, 2, 3, 1)
    pix = pix.reshape(n, nr, rows, nb, lanes, c).transpose(0, 1, 3, 2, 4, 5)
    return pix.reshape(n, nr * nb, rows * lanes * c)


def beats_tensor(v: np.ndarray, shape: list[int], lanes: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of tensor_beats: [N, beats, lanes * C] -> ([N, C, H, W] or [N, C], the padding lanes'
    values [N, ...] which must be zero)."""
    n = v.shape[0]
    if len(shape) == 1:
        return v[:, 0, :shape[0]], v[:, 0, shape[0]:]
    c, h, w = shape
    nb = v.shape[1] // h
    full = v.reshape(n, h, nb * lanes, c)
    return full[:, :, :w, :].transpose(0, 3, 1, 2), full[:, :, w:, :]
