"""Greedy common-subexpression elimination (CSE) on a constant Po2 matrix: the solver core of
`adder_graph`.

Each output row o of M [O, N] starts as a set of terms sign * (node << shift), one per nonzero
weight (nodes 0..N-1 are the inputs). A *pattern* is a pair of terms that occur together in a
row, normalised for the row's own shift and sign: `x_low + g * (x_high << s)` with s >= 0 (the
operand with the smaller shift is `low`; on equal shifts, the smaller node id). Greedy loop: take
the pattern that occurs in the most rows (ties: the smaller relative shift, i.e. a narrower
adder, then the shallower node), make it a new node t, and in every row holding it
replace the two terms by one term of t (shift and sign of the row's `low` term). Stop when no
pattern occurs twice (a pattern used once saves nothing).

Why it scales (MobileNetV2-224 1280x320: ~10 s, 320x960: ~2 min, both < 1 GB):
- Every row holds a node at most once (true for inputs, and a new node replaces its two operands),
  so a pattern occurs at most once per row and its count is a number of rows.
- Counts are kept exactly, incrementally: accepting a pattern only changes the pairs formed with
  its two operands in the rows that hold it (decrements) and creates the pairs of the new node
  (counted once, with np.unique). Old patterns never gain occurrences.
- Patterns live in one sorted int64 key array that is append-only: the key puts the larger node
  id first and every pattern created at a step involves the newest node, so appending keeps the
  array sorted and lookups are np.searchsorted. Patterns seen once are never stored.
- The best pattern is searched among a cached top-K candidate set with a threshold: counts only
  fall and new patterns above the threshold join the set, so the set holds the maximum until its
  best drops below the threshold; then it is rebuilt with one argpartition.
- A dense column-major int8 code matrix [O, nodes] (0 absent, else sign * (shift + 1)) finds the
  rows of a pattern with a few vector operations; a row-major id table lists each row's nodes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_TOPK = 4096


@dataclass(frozen=True)
class CseResult:
    """Shared nodes N.. (node = a + sign * (b << shift)) and the terms left in every row."""
    n_inputs: int
    a: np.ndarray          # int64 [S]
    b: np.ndarray
    shift: np.ndarray
    sign: np.ndarray       # +1 / -1
    depth: np.ndarray      # int64 [N + S]: adder levels from the inputs to each node
    rows: list             # per output: (node ids, shifts, signs) int64 arrays


def po2_terms(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shift, sign) of every entry of an integer Po2 matrix (shift -1 where the entry is 0)."""
    flat = np.asarray(m).ravel()
    shifts = np.full(flat.shape, -1, dtype=np.int64)
    signs = np.zeros(flat.shape, dtype=np.int64)
    nz = np.flatnonzero(flat != 0)
    for i in nz if flat.dtype == object else ():
        v = int(flat[i])
        if abs(v) & (abs(v) - 1):
            raise ValueError(f"matrix entry {v} is not zero or a power of two")
        shifts[i], signs[i] = abs(v).bit_length() - 1, (1 if v > 0 else -1)
    if flat.dtype != object:
        v = np.abs(flat[nz].astype(np.int64))
        if np.any(v & (v - 1)):
            raise ValueError("matrix entries must be zero or +-2^k")
        pow2 = np.left_shift(np.int64(1), np.arange(63, dtype=np.int64))
        shifts[nz] = np.searchsorted(pow2, v)
        signs[nz] = np.sign(flat[nz].astype(np.int64))
    return shifts.reshape(np.shape(m)), signs.reshape(np.shape(m))


class _Solver:
    def __init__(self, shifts: np.ndarray, signs: np.ndarray, max_depth: int | None):
        O, N = shifts.shape
        nnz = int((signs != 0).sum())
        self.O, self.N, self.max_depth = O, N, max_depth
        smax = int(shifts.max(initial=0))
        if smax > 32000:
            raise ValueError("Po2 exponents above 32000 are not supported")
        self.SB = smax + 1                                   # relative shifts are 0..smax
        self.NB = N + nnz // 2 + 2                           # each new node removes >= 2 terms
        if self.NB ** 2 * self.SB * 4 >= 2 ** 63:
            raise ValueError("matrix too large for 64-bit pattern keys")
        dt = np.int8 if smax < 127 else np.int16
        self.code = np.zeros((O, N + max(16, min(nnz // 2, 4 * N))), dtype=dt, order="F")
        self.code[:, :N] = np.where(signs != 0, signs * (shifts + 1), 0)
        self.depth = np.zeros(self.NB, dtype=np.int64)
        self.n_nodes = N
        k = max(1, int((signs != 0).sum(axis=1).max(initial=1)))
        order = np.argsort(signs == 0, axis=1, kind="stable")[:, :k]   # nonzero columns first
        self.R = np.where(np.take_along_axis(signs, order, 1) != 0, order, -1).astype(np.int64)
        self.new_a, self.new_b, self.new_s, self.new_g = [], [], [], []
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)
        self.tb = np.zeros(0, np.int64)
        self.n_keys = 0

    # -- pattern keys ------------------------------------------------------------------------
    def _pair_keys(self, x, cx, u, cu):
        """Keys and depths of the patterns formed by terms (x, cx) and (u, cu), elementwise."""
        sx, su = np.abs(cx).astype(np.int64) - 1, np.abs(cu).astype(np.int64) - 1
        x_low = (sx < su) | ((sx == su) & (x < u))
        hi, lo = np.maximum(x, u), np.minimum(x, u)
        orient = (np.where(x_low, x, u) == hi) & (sx != su)
        neg = (cx < 0) != (cu < 0)
        key = (((hi * self.NB + lo) * self.SB + np.abs(su - sx)) * 2 + orient) * 2 + neg
        return key, np.maximum(self.depth[x], self.depth[u]) + 1

    def _decode(self, key: int):
        neg, key = key & 1, key >> 1
        orient, key = key & 1, key >> 1
        s, key = key % self.SB, key // self.SB
        lo, hi = key % self.NB, key // self.NB
        return (hi, lo) if orient else (lo, hi), s, -1 if neg else 1

    def _append(self, keys, depth):
        """Store the patterns among `keys` (occurrences; all above every stored key) seen >= 2 times."""
        uk, first, cnt = np.unique(keys, return_index=True, return_counts=True)
        keep = cnt >= 2
        if self.max_depth is not None:
            keep &= depth[first] <= self.max_depth
        return self._store(uk[keep], cnt[keep], depth[first][keep])

    def _store(self, uk, cnt, d):
        s = (uk >> 2) % self.SB
        tb = (255 - np.minimum(s, 255)) * 256 + (255 - np.minimum(d, 255))  # narrower, then shallower
        n, m = self.n_keys, len(uk)
        if n + m > len(self.keys):
            cap = max(2 * len(self.keys), n + m, 1024)
            for name in ("keys", "counts", "tb"):
                buf = np.zeros(cap, np.int64)
                buf[:n] = getattr(self, name)[:n]
                setattr(self, name, buf)
        self.keys[n:n + m], self.counts[n:n + m], self.tb[n:n + m] = uk, cnt, tb
        self.n_keys = n + m
        return np.arange(n, n + m)

    def _initial_patterns(self):
        """Count every pattern of two inputs, one input column against the later ones at a time.

        Keys of pairs (i, j > i) have the larger id j first, so chunks of different i interleave;
        one final sort orders them."""
        N, code = self.N, self.code
        keys, counts = [], []
        for i in range(N - 1):
            ci = code[:, i]
            rows = np.flatnonzero(ci)
            if len(rows) < 2:
                continue
            sub = code[rows, i + 1:N]
            r, c = np.nonzero(sub)
            key, _ = self._pair_keys(np.full(len(r), i), ci[rows][r], c + i + 1, sub[r, c])
            uk, cnt = np.unique(key, return_counts=True)
            keys.append(uk[cnt >= 2])
            counts.append(cnt[cnt >= 2])
        if not keys or (self.max_depth is not None and self.max_depth < 1):
            return
        keys, counts = np.concatenate(keys), np.concatenate(counts)
        order = np.argsort(keys)
        self._store(keys[order], counts[order], np.ones(len(keys), np.int64))

    def _rows_of(self, low, high, s, g):
        cl, ch = self.code[:, low], self.code[:, high]
        m = (cl != 0) & (ch != 0) & ((np.abs(ch.astype(np.int64)) - np.abs(cl.astype(np.int64))) == s)
        return np.flatnonzero(m & (((cl < 0) != (ch < 0)) == (g < 0)))

    # -- the greedy loop -------------------------------------------------------------------
    def _accept(self, idx: int):
        (low, high), s, g = self._decode(int(self.keys[idx]))
        C = self._rows_of(low, high, s, g)
        Rc = self.R[C]
        valid = Rc >= 0
        rr, cc = np.nonzero(valid)
        u = Rc[rr, cc]
        cu = self.code[C[rr], u]
        dec = []
        for x, excl in ((low, -1), (high, low)):
            m = (u != x) & (u != excl)
            k, _ = self._pair_keys(np.full(int(m.sum()), x), self.code[C[rr[m]], x], u[m], cu[m])
            dec.append(k)
        dec = np.concatenate(dec)
        if self.n_keys:  # patterns seen once were never stored: skip the keys not found
            dec.sort()   # sorted needles: searchsorted walks the key array once, cache-friendly
            pos = np.minimum(np.searchsorted(self.keys[:self.n_keys], dec), self.n_keys - 1)
            np.subtract.at(self.counts, pos[self.keys[pos] == dec], 1)
        t = self.n_nodes
        if t >= self.code.shape[1]:
            grown = np.zeros((self.O, 2 * self.code.shape[1]), dtype=self.code.dtype, order="F")
            grown[:, :t] = self.code
            self.code = grown
        self.n_nodes += 1
        self.depth[t] = max(self.depth[low], self.depth[high]) + 1
        self.new_a.append(low), self.new_b.append(high), self.new_s.append(s), self.new_g.append(g)
        self.code[C, t] = self.code[C, low]
        self.code[C, low] = 0
        self.code[C, high] = 0
        Rc = np.where(Rc == low, t, np.where(Rc == high, -1, Rc))
        self.R[C] = Rc
        m = (u != low) & (u != high)
        key, depth = self._pair_keys(np.full(int(m.sum()), t), self.code[C[rr[m]], t], u[m], cu[m])
        return self._append(key, depth)

    def run(self):
        self._initial_patterns()
        cand, thresh = np.zeros(0, np.int64), None
        while True:
            prio = (self.counts[cand] << 16) | self.tb[cand]
            j = int(np.argmax(prio)) if len(cand) else -1
            if j < 0 or self.counts[cand[j]] < 2 or (thresh is not None and prio[j] < thresh):
                live = np.flatnonzero(self.counts[:self.n_keys] >= 2)
                if len(live) == 0:
                    break
                if 2 * len(live) < self.n_keys:   # drop dead patterns: they can never be chosen
                    for name in ("keys", "counts", "tb"):
                        getattr(self, name)[:len(live)] = getattr(self, name)[live]
                    self.n_keys, live = len(live), np.arange(len(live))
                p = (self.counts[live] << 16) | self.tb[live]
                if len(live) > _TOPK:
                    top = np.argpartition(-p, _TOPK)[:_TOPK]
                    cand, thresh = live[top], int(p[top].min())
                else:
                    cand, thresh = live, None
                continue
            new = self._accept(int(cand[j]))
            if len(new):
                if thresh is not None:
                    new = new[((self.counts[new] << 16) | self.tb[new]) >= thresh]
                cand = np.concatenate([cand, new])
            if (len(self.new_a) & 255) == 0:
                self._compact()
        return self._result()

    def _compact(self):
        """Drop the empty slots of the row table once rows have shrunk."""
        valid = self.R >= 0
        k = max(1, int(valid.sum(axis=1).max(initial=1)))
        if k < self.R.shape[1] // 2:
            order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
            self.R = np.take_along_axis(self.R, order, 1)

    def _result(self) -> CseResult:
        rows = []
        for o in range(self.O):
            ids = self.R[o][self.R[o] >= 0]
            c = self.code[o, ids].astype(np.int64)
            rows.append((ids, np.abs(c) - 1, np.sign(c)))
        arr = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
        return CseResult(self.N, arr(self.new_a), arr(self.new_b), arr(self.new_s), arr(self.new_g),
                         self.depth[:self.n_nodes].copy(), rows)


def eliminate(m: np.ndarray, max_depth: int | None = None, cse: bool = True) -> CseResult:
    """Greedy CSE of the integer Po2 matrix m [O, N] (see the module docstring).

    max_depth caps the adder depth of every shared node (None: no cap). cse=False returns the
    rows unchanged (one term per nonzero weight), for the naive baseline.
    """
    shifts, signs = po2_terms(m)
    if shifts.ndim != 2:
        raise ValueError("expected a 2-D matrix [outputs, inputs]")
    solver = _Solver(shifts, signs, max_depth)
    if cse and solver.N > 1 and solver.O > 1:
        return solver.run()
    return solver._result()
