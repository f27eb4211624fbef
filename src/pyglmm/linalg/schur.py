"""The Schur complement S of the blocked factor (terms after the first, then X), dense or blockwise.

After the first term is eliminated, S = [[S_zz, S_zx], [S_xz, S_xx]] over the remaining random
effects (q_rest columns) and the fixed effects. For crossed designs S_zz is dense. For nested
designs it is block diagonal: with (1 | a/b) the first term is a:b and each level of a meets only
its own children, so S_zz is diagonal (MixedModels.jl keeps such an L[2,2] as a Diagonal or
BlockDiagonal matrix). `SchurPattern` finds the connected components of S_zz's sparsity pattern
once per model; when they are small, `BlockSchur` factors S_zz as a batch of small dense blocks
and the fixed effects as a second Schur complement, in O(sum of block sizes^3) instead of
O(q_rest^3). `DenseSchur` is the general case.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# block mode when S_zz has at least this many columns and no component larger than BLOCK_MAX
BLOCK_MIN_Q = 64
BLOCK_MAX = 128


class NotPositiveDefinite(np.linalg.LinAlgError):
    """Raised when the penalized system is not positive definite (e.g. a collinear X)."""


class _Group:
    """Components of one size s: nc blocks of s x s, stored from ``off`` in the flat array."""

    def __init__(self, s: int, cols: np.ndarray, off: int):
        self.s, self.cols, self.off = s, cols, off
        self.nc = cols.size // s
        self.end = off + self.nc * s * s


class SchurPattern:
    """Components of the pattern of S_zz and the flat storage of its diagonal blocks."""

    def __init__(self, qr: int, rows: np.ndarray, cols: np.ndarray):
        ncomp, label = connected_components(
            coo_matrix((np.ones(rows.size, dtype=np.int8), (rows, cols)), shape=(qr, qr)),
            directed=False)
        size_of = np.bincount(label, minlength=ncomp)
        self.qr = qr
        self.max_size = int(size_of.max()) if qr else 0
        self.usable = qr >= BLOCK_MIN_Q and ncomp > 1 and self.max_size <= BLOCK_MAX
        if not self.usable:
            return
        size = size_of[label]
        order = np.lexsort((np.arange(qr), label, size))      # by size, then component, then column
        self.groups: list[_Group] = []
        self.start = np.empty(qr, dtype=np.int64)               # flat offset of the column's block
        self.local = np.empty(qr, dtype=np.int64)               # position inside its block
        self.size = size.astype(np.int64)
        off = 0
        sz_sorted = size[order]
        for s in np.unique(sz_sorted):
            cols_s = order[sz_sorted == s]
            g = _Group(int(s), cols_s, off)
            ci = np.arange(cols_s.size) // g.s
            self.start[cols_s] = off + ci * g.s * g.s
            self.local[cols_s] = np.arange(cols_s.size) % g.s
            self.groups.append(g)
            off = g.end
        self.total = off
        self.diag = self.flat(np.arange(qr), np.arange(qr))

    def flat(self, ca: np.ndarray, cb: np.ndarray) -> np.ndarray:
        """Flat storage index of S_zz[ca, cb] (the two columns must lie in the same component)."""
        return self.start[ca] + self.local[ca] * self.size[ca] + self.local[cb]


class DenseInverse:
    """(S_zz)^{-1} as a dense matrix."""

    def __init__(self, M: np.ndarray):
        self.dense = M

    def at(self, ca, cb) -> np.ndarray:
        return self.dense[ca, cb]

    def at_flat(self, flat: np.ndarray) -> np.ndarray:
        """Entries by flat (row-major) index ca * q_rest + cb."""
        return self.dense.ravel()[flat]


class BlockInverse:
    """(S_zz)^{-1} for a block-diagonal S_zz: entries on the pattern only."""

    dense = None

    def __init__(self, spat: SchurPattern, flat: np.ndarray):
        self.spat, self.flat_values = spat, flat

    def at(self, ca, cb) -> np.ndarray:
        return self.flat_values[self.spat.flat(ca, cb)]

    def at_flat(self, flat: np.ndarray) -> np.ndarray:
        """Entries by index into the block storage (`SchurPattern.flat`)."""
        return self.flat_values[flat]


class DenseSchur:
    """Dense Cholesky factor of S (q_rest + p square)."""

    def __init__(self, S: np.ndarray, qr: int):
        try:
            self.L = sla.cholesky(S, lower=True, check_finite=False)
        except (np.linalg.LinAlgError, ValueError) as e:
            raise NotPositiveDefinite("penalized system not positive definite") from e
        if not np.all(np.isfinite(np.diag(self.L))):
            raise NotPositiveDefinite("penalized system not positive definite")
        self.qr = qr

    def logdet_z(self) -> float:
        return 2.0 * float(np.log(np.diag(self.L)[:self.qr]).sum())

    def logdet_x(self) -> float:
        return 2.0 * float(np.log(np.diag(self.L)[self.qr:]).sum())

    def RX(self) -> np.ndarray:
        return self.L[self.qr:, self.qr:]

    def forward(self, r: np.ndarray) -> np.ndarray:
        return sla.solve_triangular(self.L, r, lower=True, check_finite=False)

    def backward(self, y: np.ndarray) -> np.ndarray:
        return sla.solve_triangular(self.L, y, lower=True, trans="T", check_finite=False)

    def inverse_z(self) -> DenseInverse:
        """(S_zz)^{-1} (only used for factors without X, where S = S_zz)."""
        return DenseInverse(sla.cho_solve((self.L, True), np.eye(self.qr), check_finite=False))


def _tri(Lg: np.ndarray, B: np.ndarray, trans: bool = False) -> np.ndarray:
    """Batched triangular solves L_g x = B_g (or L_g' x = B_g); B (nc, s, k)."""
    if Lg.shape[1] == 1:
        return B / Lg
    return np.linalg.solve(np.swapaxes(Lg, 1, 2) if trans else Lg, B)


class BlockSchur:
    """S with a block-diagonal S_zz: batched Cholesky of its blocks, then the fixed effects."""

    def __init__(self, spat: SchurPattern, flat: np.ndarray, Szx: np.ndarray | None,
                 Sxx: np.ndarray | None):
        self.spat, self.qr = spat, spat.qr
        self.Lg = []
        for g in spat.groups:
            Sg = flat[g.off:g.end].reshape(g.nc, g.s, g.s)
            try:
                Lg = np.linalg.cholesky(Sg)
            except np.linalg.LinAlgError as e:
                raise NotPositiveDefinite("penalized system not positive definite") from e
            if not np.all(np.isfinite(Lg)):
                raise NotPositiveDefinite("penalized system not positive definite")
            self.Lg.append(Lg)
        self.p = 0 if Sxx is None else Sxx.shape[0]
        if self.p:
            self.W = self._fz(Szx)                              # L_zz^{-1} S_zx  (qr x p)
            try:
                self.Lxx = sla.cholesky(Sxx - self.W.T @ self.W, lower=True, check_finite=False)
            except (np.linalg.LinAlgError, ValueError) as e:
                raise NotPositiveDefinite("penalized system not positive definite") from e
            if not np.all(np.isfinite(np.diag(self.Lxx))):
                raise NotPositiveDefinite("penalized system not positive definite")

    def _apply(self, B: np.ndarray, trans: bool) -> np.ndarray:
        out = np.empty_like(B, dtype=float)
        B2 = B.reshape(self.qr, -1)
        o2 = out.reshape(self.qr, -1)
        for g, Lg in zip(self.spat.groups, self.Lg):
            Bg = B2[g.cols].reshape(g.nc, g.s, -1)
            o2[g.cols] = _tri(Lg, Bg, trans).reshape(g.cols.size, -1)
        return out

    def _fz(self, B):
        return self._apply(B, False)

    def _bz(self, B):
        return self._apply(B, True)

    def logdet_z(self) -> float:
        return 2.0 * float(sum(np.log(np.diagonal(Lg, axis1=1, axis2=2)).sum() for Lg in self.Lg))

    def logdet_x(self) -> float:
        return 2.0 * float(np.log(np.diag(self.Lxx)).sum()) if self.p else 0.0

    def RX(self) -> np.ndarray:
        return self.Lxx if self.p else np.zeros((0, 0))

    def forward(self, r: np.ndarray) -> np.ndarray:
        yz = self._fz(r[:self.qr])
        if not self.p:
            return yz
        yx = sla.solve_triangular(self.Lxx, r[self.qr:] - self.W.T @ yz, lower=True, check_finite=False)
        return np.concatenate([yz, yx])

    def backward(self, y: np.ndarray) -> np.ndarray:
        if not self.p:
            return self._bz(y)
        xx = sla.solve_triangular(self.Lxx, y[self.qr:], lower=True, trans="T", check_finite=False)
        xz = self._bz(y[:self.qr] - self.W @ xx)
        return np.concatenate([xz, xx])

    def inverse_z(self) -> BlockInverse:
        flat = np.empty(self.spat.total)
        for g, Lg in zip(self.spat.groups, self.Lg):
            Li = np.linalg.inv(Lg) if g.s > 1 else 1.0 / Lg
            flat[g.off:g.end] = np.einsum("kca,kcb->kab", Li, Li).ravel()
        return BlockInverse(self.spat, flat)
