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


# components of different sizes share one batch, padded with identity rows and columns to the
# largest size, while the padded work (sum of s^3) is at most twice the real work plus this
PAD_SLACK = 50_000


class _Group:
    """Components padded to one size s: nc blocks of s x s, stored from ``off`` in the flat array.
    Column cols[i] sits at row li[i] of block ci[i]; ``full`` when no block needs padding."""

    def __init__(self, s: int, cols: np.ndarray, ci: np.ndarray, li: np.ndarray, off: int):
        self.s, self.cols, self.ci, self.li, self.off = s, cols, ci, li, off
        self.nc = int(ci[-1]) + 1 if ci.size else 0
        self.full = cols.size == self.nc * s
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
        self.size = np.empty(qr, dtype=np.int64)                # padded size of the column's block
        off = 0
        sz_sorted = size[order]
        sizes, counts = np.unique(size_of, return_counts=True)   # component sizes, how many
        classes: list[list[int]] = []
        for s, c in zip(sizes.tolist(), counts.tolist()):
            if classes:
                cur = classes[-1] + [(s, c)]
                real = sum(t ** 3 * k for t, k in cur)
                if sum(k for _, k in cur) * s ** 3 <= 2 * real + PAD_SLACK:
                    classes[-1] = cur
                    continue
            classes.append([(s, c)])
        diags = []
        for cls in classes:
            S = cls[-1][0]
            in_cls = np.isin(sz_sorted, [t for t, _ in cls])
            cols = order[in_cls]                                 # by size, component, column
            lab = label[cols]
            first = np.r_[True, lab[1:] != lab[:-1]]
            ci = np.cumsum(first) - 1                            # block of each column
            li = np.arange(cols.size) - np.flatnonzero(first)[ci]   # row inside its block
            g = _Group(int(S), cols, ci, li, off)
            self.start[cols] = off + ci * S * S
            self.local[cols] = li
            self.size[cols] = S
            diags.append((off + np.arange(g.nc)[:, None] * S * S + np.arange(S) * (S + 1)).ravel())
            self.groups.append(g)
            off = g.end
        self.total = off
        self.diag = np.concatenate(diags)          # every block's diagonal, padding included

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


def _tri(Li: np.ndarray, B: np.ndarray, trans: bool = False) -> np.ndarray:
    """Batched triangular solves L_g x = B_g (or L_g' x = B_g) with the blocks' inverses Li;
    B (nc, s, k). A product with the stored inverse: np.linalg.solve would redo an LU each time."""
    if Li.shape[1] == 1:
        return B * Li
    return np.matmul(np.swapaxes(Li, 1, 2) if trans else Li, B)


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
        # inverses of the (small) triangular blocks, once per factorisation: every solve after
        # that is a batched product
        self.Li = [1.0 / Lg if Lg.shape[1] == 1 else np.linalg.inv(Lg) for Lg in self.Lg]
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
        for g, Li in zip(self.spat.groups, self.Li):
            if g.full:
                Bg = B2[g.cols].reshape(g.nc, g.s, -1)
                o2[g.cols] = _tri(Li, Bg, trans).reshape(g.cols.size, -1)
            else:
                Bg = np.zeros((g.nc, g.s, B2.shape[1]))
                Bg[g.ci, g.li] = B2[g.cols]
                o2[g.cols] = _tri(Li, Bg, trans)[g.ci, g.li]
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
        for g, Li in zip(self.spat.groups, self.Li):
            flat[g.off:g.end] = np.einsum("kca,kcb->kab", Li, Li).ravel()
        return BlockInverse(self.spat, flat)
