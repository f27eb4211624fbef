"""Fixed index arrays of a model's random-effects design for the compiled GLMM kernels.

Built once per model: the blocks (first-term level j, rest column c) where Z'Z couples the
first term with the others, grouped by level; the symbolic Cholesky pattern of the Schur
complement S over the rest columns (its entries from rows and from shared levels, plus the fill
of eliminating the columns in order); and the rest terms' unscaled model matrices by slot, for
the gradient. A one-term model has no rest (every rest array empty).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .restructure import ReStructure

#: the kernels keep S dense (q_r x q_r): above this many rest columns the blocked numpy path runs
KERNEL_MAX_QR = 400


class KernelPattern:
    """The arrays `fit/_glmm.pyx` takes besides the per-theta values of Z Lambda; with
    ``first_only`` those of the first term alone (the GLM start, where Lambda = 0)."""

    def __init__(self, rs: ReStructure, first_only: bool = False):
        t0, rest = rs.terms[0], ([] if first_only else rs.terms[1:])
        n, l1 = rs.n, t0.nlevels
        m, qr = (rs._rest_m, rs.qr) if rest else (0, 0)
        self.codes = np.ascontiguousarray(t0.codes, dtype=np.int64)
        self.X1 = np.ascontiguousarray(t0.X, dtype=np.float64)
        # each level's rows when they are contiguous (GLMM rows are sorted by the first term):
        # the kernels then sum a level's rows in registers; else empty (row-by-row scatter)
        grouped = bool(n == 0 or (self.codes[1:] >= self.codes[:-1]).all())
        self.seg = (np.searchsorted(self.codes, np.arange(l1 + 1)).astype(np.int64) if grouped
                    else np.zeros(0, dtype=np.int64))
        self.ntheta1 = t0.ntheta
        if not rest:
            self.cols = self.blk_of = np.zeros((n, 0), dtype=np.int64)
            self.blk_col = self.nzi = np.zeros(0, dtype=np.int64)
            self.blk_ptr = np.zeros(l1 + 1, dtype=np.int64)
            self.nzp = np.zeros(1, dtype=np.int64)
            self.Xr = np.zeros((n, 0))
            self.slot_term = np.zeros(0, dtype=np.int64)
            self.slot_off = np.zeros(1, dtype=np.int64)
            self.qr, self.l1 = 0, l1
            return
        self.cols = np.ascontiguousarray(rs._rest_indices.reshape(n, m), dtype=np.int64)
        keys = self.codes[:, None] * qr + self.cols               # blocks sorted by level, column
        uniq, inv = np.unique(keys.ravel(), return_inverse=True)
        self.blk_of = np.ascontiguousarray(inv.reshape(n, m), dtype=np.int64)
        self.blk_col = (uniq % qr).astype(np.int64)
        self.blk_ptr = np.searchsorted(uniq // qr, np.arange(l1 + 1)).astype(np.int64)
        self.nzp, self.nzi = _symbolic_cholesky(qr, self.cols, self.blk_col, uniq // qr, l1)
        self.Xr = np.ascontiguousarray(np.column_stack([t.X for t in rest]), dtype=np.float64)
        self.slot_term = np.repeat(np.arange(len(rest)), [t.p for t in rest]).astype(np.int64)
        self.slot_off = np.concatenate([[0], np.cumsum([t.p for t in rest])]).astype(np.int64)
        self.qr, self.l1 = qr, l1


def kernel_pattern(rs: ReStructure, first_only: bool = False) -> KernelPattern | None:
    """The model's pattern (made once, kept on rs), or None when the kernels do not take it (more
    than KERNEL_MAX_QR rest columns)."""
    if rs.qr > KERNEL_MAX_QR and not first_only:
        return None
    cache = rs.__dict__.setdefault("_kernel_patterns", {})
    first_only = first_only and len(rs.terms) > 1        # one term: the same pattern
    if first_only not in cache:
        cache[first_only] = KernelPattern(rs, first_only)
    return cache[first_only]


def _symbolic_cholesky(qr: int, cols: np.ndarray, blk_col: np.ndarray, blk_lev: np.ndarray,
                       l1: int) -> tuple[np.ndarray, np.ndarray]:
    """Column pointers and row indices (below the diagonal, ascending) of chol(S)'s pattern: S's
    pattern (rest columns sharing a row or a first-term level) and the fill of elimination."""
    n, m = cols.shape
    rows = np.repeat(cols, m, axis=1).ravel()
    colx = np.tile(cols, (1, m)).ravel()
    # counts in int64: int8 sums wrap (256 shared levels would read as 0, a missed entry)
    A = sp.coo_matrix((np.ones(rows.size, dtype=np.int64), (rows, colx)), shape=(qr, qr))
    Bp = sp.csr_matrix((np.ones(blk_col.size, dtype=np.int64), (blk_col, blk_lev)), shape=(qr, l1))
    P = ((A.tocsr() + Bp @ Bp.T) != 0).toarray()
    ptr, idx = [0], []
    for c in range(qr):
        nz = c + 1 + np.flatnonzero(P[c + 1:, c])
        if nz.size > 1:
            P[np.ix_(nz, nz)] = True                             # the fill of eliminating c
        idx.append(nz)
        ptr.append(ptr[-1] + nz.size)
    nzi = np.concatenate(idx).astype(np.int64) if idx else np.zeros(0, dtype=np.int64)
    return np.asarray(ptr, dtype=np.int64), nzi
