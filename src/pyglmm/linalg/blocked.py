"""Blocked Cholesky factor of [[Lambda'Z'WZLambda + I, Lambda'Z'WX], [X'WZLambda, X'WX]].

As in MixedModels.jl, the first random-effects term gives a block-diagonal leading block
(one small p x p block per level), factored in one batched call; the remaining terms and X
form the Schur complement S (`schur.py`: dense for crossed designs, block-diagonal batches for
nested ones). The sparsity pattern of every cross-product is computed once per model
(`BlockPattern`) and each new (theta, weights) only accumulates numbers into it with
`np.bincount`, so a factorisation costs a few vectorised passes over the rows plus the
factorisation of S. Never a dense n x q matrix, nor a dense q1 x q_rest one.
"""
from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp

from .restructure import ReStructure
from . import schur as _schur
from .schur import BlockSchur, DenseSchur, NotPositiveDefinite, SchurPattern


# L21 L21' by pair accumulation when it has at most this many block pairs, else sparse product
PAIRMAP_FACTOR = 4
PAIRMAP_EXTRA = 10_000
# else a dense L21 (q_rest x q_1) and a BLAS product when it has at most this many entries
DENSE_L21_LIMIT = 4_000_000
# levels per batch in the selected inverse of large crossed designs: about this many entries
DEGREE_CHUNK = 4_000_000


def _chol_inv_2x2(B: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors of a batch of 2 x 2 SPD blocks and their inverses in closed form
    (random intercept and slope: 5x faster than the batched LAPACK calls)."""
    return _chol_inv_2x2_entries(B[:, 0, 0], B[:, 1, 0], B[:, 1, 1])


def _chol_inv_2x2_entries(m00: np.ndarray, m10: np.ndarray, m11: np.ndarray):
    """`_chol_inv_2x2` from the blocks' three distinct entries (no 2 x 2 array to build first)."""
    if not np.all(m00 > 0):
        raise NotPositiveDefinite("penalized system not positive definite")
    a = np.sqrt(m00)
    b = m10 / a
    c2 = m11 - b * b
    if not np.all(c2 > 0):
        raise NotPositiveDefinite("penalized system not positive definite")
    c = np.sqrt(c2)
    L = np.zeros((a.size, 2, 2))
    L[:, 0, 0], L[:, 1, 0], L[:, 1, 1] = a, b, c
    Li = np.zeros((a.size, 2, 2))
    ia, ic = 1.0 / a, 1.0 / c
    Li[:, 0, 0], Li[:, 1, 0], Li[:, 1, 1] = ia, -b * ia * ic, ic
    return L, Li


@functools.lru_cache(maxsize=1)
def physical_memory() -> int:
    """Bytes of RAM of this machine (0 when the OS does not say; asked once per process)."""
    import os
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 0


class BlockPattern:
    """Index maps for accumulating Z'WZ blocks of one ReStructure (computed once per model)."""

    def dense_schur_bytes(self) -> int:
        """Memory of the dense Schur complement (S, its factor and the accumulation array), 0 when
        the block-diagonal path applies: a crossed design whose second factor has tens of
        thousands of levels needs gigabytes, and O(q^3) work per evaluation."""
        if self.qr == 0 or getattr(self, "schur", None) is not None:
            return 0
        return 3 * 8 * self.qr * self.qr

    def __init__(self, rs: ReStructure):
        t0 = rs.terms[0]
        self.l1, self.p1 = t0.nlevels, t0.p
        self.codes0 = t0.codes
        self.qr = rs.qr
        n = rs.n
        if self.qr == 0:
            return
        m = rs._rest_m
        self.m_r = m
        cols = rs._rest_indices.reshape(n, m)              # rest column of each (row, slot)
        self.rest_cols = cols
        # dense accumulation of Zr'WZr: flat index c_a * qr + c_b for every row and slot pair
        self.pair22 = (cols[:, :, None] * self.qr + cols[:, None, :]).reshape(n, m * m)
        # blocks (rest column c, first-term level j) of Zr'WZ1, sorted by c then j
        keys = cols * self.l1 + self.codes0[:, None]
        uniq, inv = np.unique(keys.ravel(), return_inverse=True)
        self.blk_inv = inv.reshape(n, m)
        self.nblk = uniq.size
        self.blk_row = uniq // self.l1
        self.blk_level = uniq % self.l1
        # pairs of blocks in the same level j: they meet in (L21 L21')[c, c']
        order = np.argsort(self.blk_level, kind="stable")
        lev_sorted = self.blk_level[order]
        starts = np.searchsorted(lev_sorted, np.arange(self.l1))
        ends = np.searchsorted(lev_sorted, np.arange(self.l1), side="right")
        deg = ends - starts
        self._order, self._starts, self._deg = order, starts, deg
        npairs = int((deg.astype(np.int64) ** 2).sum())
        counts = np.bincount(self.blk_row, minlength=self.qr)
        p1 = self.p1
        self.L21_indptr = np.concatenate([[0], np.cumsum(counts * p1)]).astype(np.int64)
        self.L21_indices = (self.blk_level[:, None] * p1 + np.arange(p1)).ravel().astype(np.int64)
        # L21 L21' by accumulation over block pairs when that is cheap (nested designs), else
        # by a sparse product (crossed designs, where each level meets many columns)
        if npairs <= PAIRMAP_FACTOR * self.nblk + PAIRMAP_EXTRA:
            ka, kb = self._pairs_of(np.arange(self.l1))
            self.pair_a, self.pair_b = ka, kb
            self.pair_flat = self.blk_row[ka] * self.qr + self.blk_row[kb]
        else:
            self.pair_a = None
        # nested designs: S_zz block diagonal -> factor it blockwise (the pattern needs the pairs)
        self.schur = None
        if self.pair_a is not None and self.qr >= _schur.BLOCK_MIN_Q:
            keys = np.concatenate([self.pair22.ravel(), self.pair_flat])
            spat = SchurPattern(self.qr, keys // self.qr, keys % self.qr)
            if spat.usable:
                self.schur = spat
                flat22 = self.pair22.ravel()
                self.pair22 = spat.flat(flat22 // self.qr, flat22 % self.qr).reshape(self.pair22.shape)
                self.pair_flat = spat.flat(self.blk_row[self.pair_a], self.blk_row[self.pair_b])

    def _pairs_of(self, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All pairs (b_s, b_t) of blocks that share a first-term level, for the given levels."""
        d = self._deg[levels]
        dd = d * d
        tot = int(dd.sum())
        first = np.repeat(self._starts[levels], dd)
        within = np.arange(tot) - np.repeat(np.cumsum(dd) - dd, dd)
        dr = np.repeat(d, dd)
        return self._order[first + within // dr], self._order[first + within % dr]

    def degree_groups(self) -> list[tuple[int, np.ndarray]]:
        """First-term levels grouped by their number d of blocks: for each d an (m, d) array of
        the block indices of each such level (computed once; O(nblk) memory)."""
        groups = getattr(self, "_degree_groups", None)
        if groups is None:
            groups = []
            for d in np.unique(self._deg[self._deg > 0]):
                lev = np.flatnonzero(self._deg == d)
                groups.append((int(d), self._order[self._starts[lev][:, None] + np.arange(d)]))
            self._degree_groups = groups
        return groups


class BlockedFactor:
    """Cholesky factor L of the penalized normal equations for one (theta, weights)."""

    def __init__(self, rs: ReStructure, zvals: list[np.ndarray] | None, w: np.ndarray | None,
                 X: np.ndarray | None = None, sums: tuple | None = None):
        """``sums``: (d, Szz, blk), the row sums this factor needs for scalar terms without X,
        already accumulated (w z0^2 per first-term level, Zr'WZr in the pattern's storage, Zr'WZ1
        per block); then neither ``zvals`` nor ``w`` is read (lmer from cross-products). The Zr'WZr
        array is taken over and updated in place."""
        pat = getattr(rs, "_block_pattern", None)
        if pat is None:
            pat = rs._block_pattern = BlockPattern(rs)
        self.rs = rs
        self.p = 0 if X is None else X.shape[1]
        l1, p1 = pat.l1, pat.p1
        if sums is not None and (p1 != 1 or X is not None):
            raise ValueError("precomputed sums serve scalar terms without fixed effects only")
        z0 = zvals[0] if sums is None else None
        # leading block-diagonal part
        if p1 == 1:
            d = (rs.sum_by_first(w * z0[:, 0] ** 2) if sums is None else sums[0]) + 1.0
            if not np.all(d > 0):
                raise NotPositiveDefinite("penalized system not positive definite")
            L11 = np.sqrt(d)
            self.L11 = L11.reshape(l1, 1, 1)
            self.L11inv = (1.0 / L11).reshape(l1, 1, 1)
        elif p1 == 2:
            wz = w * z0[:, 0]
            s00 = rs.sum_by_first(wz * z0[:, 0])
            s10 = rs.sum_by_first(wz * z0[:, 1])
            s11 = rs.sum_by_first(w * z0[:, 1] * z0[:, 1])
            s00 += 1.0
            s11 += 1.0
            self.L11, self.L11inv = _chol_inv_2x2_entries(s00, s10, s11)
        else:
            B = np.empty((l1, p1, p1))
            for a in range(p1):
                wz = w * z0[:, a]
                for b in range(a + 1):
                    v = rs.sum_by_first(wz * z0[:, b])
                    B[:, a, b] = v
                    B[:, b, a] = v
            B[:, np.arange(p1), np.arange(p1)] += 1.0
            try:
                self.L11 = np.linalg.cholesky(B)
            except np.linalg.LinAlgError as e:
                raise NotPositiveDefinite("penalized system not positive definite") from e
            self.L11inv = np.linalg.inv(self.L11)
        Linv = self.L11inv
        self.l1, self.p1 = l1, p1
        self.qr = qr = rs.qr
        self.m = m = qr + self.p
        self.blk = None
        self.L21x = None
        self._L21z_dense = None
        if m == 0:
            self.schur = None
            return
        spat = pat.schur if qr else None          # block-diagonal S_zz (nested designs)
        size_zz = spat.total if spat is not None else qr * qr
        Szz = Szx = Sxx = None
        if qr and sums is not None:
            Szz = sums[1]                         # taken over (updated in place), not copied
            Szz[spat.diag if spat is not None else np.arange(qr) * (qr + 1)] += 1.0
            self.blk = blk = (sums[2] * Linv[pat.blk_level, 0, 0]).reshape(pat.nblk, 1)
            self.pat = pat
        elif qr:
            vals = np.concatenate(zvals[1:], axis=1) if len(zvals) > 2 else zvals[1]  # n x m_r
            wv = vals * w[:, None]
            # Zr'WZr + I (dense, or the flat storage of its diagonal blocks)
            prod = (wv[:, :, None] * vals[:, None, :]).reshape(vals.shape[0], -1)
            Szz = np.bincount(pat.pair22.ravel(), weights=prod.ravel(), minlength=size_zz)
            Szz[spat.diag if spat is not None else np.arange(qr) * (qr + 1)] += 1.0
            # Zr'WZ1 in blocks, then times blockdiag(L11^{-T})
            if p1 == 1:
                blk = np.bincount(pat.blk_inv.ravel(), weights=(wv * z0).ravel(), minlength=pat.nblk)
                data = blk * Linv[pat.blk_level, 0, 0]
            else:
                blk = np.empty((pat.nblk, p1))
                for b in range(p1):
                    blk[:, b] = np.bincount(pat.blk_inv.ravel(), weights=(wv * z0[:, b:b + 1]).ravel(),
                                            minlength=pat.nblk)
                data = np.einsum("kb,kab->ka", blk, Linv[pat.blk_level]).ravel()
            self.blk = blk = data.reshape(pat.nblk, p1)
            self.pat = pat
        if qr:
            if pat.pair_a is not None:
                prodb = np.einsum("ka,ka->k", blk[pat.pair_a], blk[pat.pair_b]) if p1 > 1 \
                    else blk[pat.pair_a, 0] * blk[pat.pair_b, 0]
                Szz -= np.bincount(pat.pair_flat, weights=prodb, minlength=size_zz)
            elif qr * l1 * p1 <= DENSE_L21_LIMIT:
                # crossed designs: L21 is fairly dense; a BLAS product beats a sparse one
                Ld = np.zeros((qr, l1 * p1))
                Ld[np.repeat(pat.blk_row, p1), pat.L21_indices] = blk.ravel()
                Szz -= (Ld @ Ld.T).ravel()
                self._L21z_dense = Ld
            else:
                Lz = self._L21z_sparse()
                Szz -= (Lz @ Lz.T).toarray().ravel()
        if self.p:
            WX = X * w[:, None]
            XtWZ1 = np.empty((self.p, l1, p1))
            for c in range(self.p):
                wxc = w * X[:, c]
                for b in range(p1):
                    XtWZ1[c, :, b] = rs.sum_by_first(wxc * z0[:, b])
            L21x = np.einsum("klb,lab->kla", XtWZ1, Linv).reshape(self.p, l1 * p1)
            self.L21x = L21x
            Sxx = X.T @ WX - L21x @ L21x.T
            if qr:
                cols = pat.rest_cols.ravel()
                ZrtWX = np.empty((qr, self.p))
                for c in range(self.p):
                    ZrtWX[:, c] = np.bincount(cols, weights=(vals * WX[:, c:c + 1]).ravel(), minlength=qr)
                # (L21z L21x')[c, :] = sum over blocks (c, j) of blk . L21x[:, j, :]
                if self._L21z_dense is not None:
                    LzLx = self._L21z_dense @ L21x.T
                else:
                    Lx3 = L21x.reshape(self.p, l1, p1)
                    contrib = np.einsum("ka,cka->kc", self.blk, Lx3[:, pat.blk_level, :])
                    LzLx = np.empty((qr, self.p))
                    for c in range(self.p):
                        LzLx[:, c] = np.bincount(pat.blk_row, weights=contrib[:, c], minlength=qr)
                Szx = ZrtWX - LzLx
        if spat is not None:
            self.schur = BlockSchur(spat, Szz, Szx, Sxx)
            return
        S = np.empty((m, m))
        if qr:
            S[:qr, :qr] = Szz.reshape(qr, qr)
        if self.p:
            S[qr:, qr:] = Sxx
            if qr:
                S[:qr, qr:] = Szx
                S[qr:, :qr] = Szx.T
        self.schur = DenseSchur(S, qr)

    # --- log determinants -------------------------------------------------
    def logdet_Z(self) -> float:
        """log det(Lambda'Z'WZLambda + I): twice the log of L's diagonal over the q random effects."""
        d1 = np.log(np.diagonal(self.L11, axis1=1, axis2=2)).sum()
        d2 = self.schur.logdet_z() if self.qr else 0.0
        return 2.0 * d1 + d2

    def logdet_X(self) -> float:
        """log det(R_X'R_X), the REML term."""
        if self.p == 0:
            return 0.0
        return self.schur.logdet_x()

    def RX(self) -> np.ndarray:
        """Lower Cholesky factor of the Schur complement for the fixed effects (lme4's R_X')."""
        return self.schur.RX()

    # --- products with L21 ------------------------------------------------
    def _L21z_sparse(self) -> sp.csr_matrix:
        """L21 rows of the random-effects terms as a sparse matrix (only for rare large cases)."""
        pat = self.pat
        return sp.csr_matrix((self.blk.ravel(), pat.L21_indices, pat.L21_indptr),
                             shape=(self.qr, self.l1 * self.p1))

    def _L21_mul(self, y1: np.ndarray) -> np.ndarray:
        out = np.empty(self.m)
        if self.qr:
            pat = self.pat
            y = y1.reshape(self.l1, self.p1)[pat.blk_level]
            out[:self.qr] = np.bincount(pat.blk_row, weights=(self.blk * y).sum(axis=1), minlength=self.qr)
        if self.p:
            out[self.qr:] = self.L21x @ y1
        return out

    def _L21T_mul(self, x2: np.ndarray) -> np.ndarray:
        out = np.zeros(self.l1 * self.p1)
        if self.qr:
            pat = self.pat
            v = self.blk * x2[:self.qr][pat.blk_row][:, None]
            acc = np.empty((self.l1, self.p1))
            for a in range(self.p1):
                acc[:, a] = np.bincount(pat.blk_level, weights=v[:, a], minlength=self.l1)
            out += acc.ravel()
        if self.p:
            out += self.L21x.T @ x2[self.qr:]
        return out

    # --- solves -----------------------------------------------------------
    def solve(self, r: np.ndarray) -> np.ndarray:
        """Solve (L L') x = r for a vector over [u; beta]."""
        q1 = self.l1 * self.p1
        r1 = r[:q1].reshape(self.l1, self.p1)
        if self.p1 == 1:
            y1 = (r1 * self.L11inv[:, :, 0]).ravel()
        else:
            y1 = np.einsum("lab,lb->la", self.L11inv, r1).ravel()
        if self.m == 0:
            x1 = y1.reshape(self.l1, self.p1)
        else:
            x2 = self.schur.backward(self.schur.forward(r[q1:] - self._L21_mul(y1)))
            x1 = (y1 - self._L21T_mul(x2)).reshape(self.l1, self.p1)
        if self.p1 == 1:
            z1 = x1 * self.L11inv[:, :, 0]
        else:
            z1 = np.einsum("lba,lb->la", self.L11inv, x1)
        if self.m == 0:
            return z1.ravel()
        return np.concatenate([z1.ravel(), x2])

    def diag_inverse_blocks(self) -> list[np.ndarray]:
        """Diagonal p_k x p_k blocks of (L L')^{-1} for the random effects (conditional variances)."""
        G11, _, Sinv = self.selected_inverse()
        out = [G11]
        off = 0
        for t in self.rs.terms[1:]:
            idx = off + np.arange(t.nlevels)[:, None] * t.p + np.arange(t.p)
            out.append(Sinv.at(idx[:, :, None], idx[:, None, :]))
            off += t.q
        return out

    def _pattern_products(self, Sinv) -> np.ndarray:
        """(L21' S^{-1}) at the blocks of the pattern: (nblk, p1), row k for block (c, j) holding
        sum over the blocks k' of level j of L21[k'] S^{-1}[c', c]. Never a dense q1 x q_rest."""
        pat = self.pat
        if self._L21z_dense is not None:
            P = (self._L21z_dense.T @ Sinv.dense).reshape(self.l1, self.p1, self.qr)
            return P[pat.blk_level, :, pat.blk_row]
        out = np.zeros((pat.nblk, self.p1))
        if pat.pair_a is not None:
            ka, kb = pat.pair_a, pat.pair_b
            sv = Sinv.at_flat(pat.pair_flat)
            for a in range(self.p1):
                out[:, a] = np.bincount(kb, weights=self.blk[ka, a] * sv, minlength=pat.nblk)
            return out
        # large crossed designs: per level j with blocks k_1..k_d in rest columns r_1..r_d,
        # P[k_i] = sum_t S^{-1}[r_i, r_t] L21[k_t]; levels with the same d in batches (a gather
        # and a batched product, no scatter)
        S = Sinv.dense
        for d, blocks in pat.degree_groups():
            step = max(1, DEGREE_CHUNK // (d * d))
            for lo in range(0, blocks.shape[0], step):
                Bk = blocks[lo:lo + step]
                R = pat.blk_row[Bk]
                out[Bk] = np.einsum("mij,mja->mia", S[R[:, :, None], R[:, None, :]], self.blk[Bk])
        return out

    def selected_inverse(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Blocks of M^{-1} on the pattern of Z'Z (factor built without X).

        Returns (G11, Q, Sinv): G11 the diagonal p1 x p1 blocks of the leading term (l1, p1, p1);
        Q (nblk, p1) the entries of M^{-1} between the leading term's level j and rest column c
        for each block (c, j) of the pattern (``pat.blk_row``, ``pat.blk_level``); Sinv =
        (M^{-1})[rest, rest] as an object whose ``at(rows, cols)`` gives entries on the pattern
        (``.dense`` is the matrix itself unless S_zz is factored blockwise). Cost O(q_rest^3 + sum over levels of (blocks per level)^2): what
        the analytic gradient and the conditional variances need, in memory linear in the data.
        """
        if self.p and self.qr:
            raise ValueError("selected_inverse needs the factor of the random effects only")
        if self.qr == 0:
            return np.einsum("lba,lbc->lac", self.L11inv, self.L11inv), None, None
        Sinv = self.schur.inverse_z()
        pat = self.pat
        Pb = self._pattern_products(Sinv)                        # (nblk, p1)
        # diagonal blocks: Linv_j' (I + [L21' S^{-1} L21]_jj) Linv_j
        K = np.zeros((self.l1, self.p1, self.p1))
        for a in range(self.p1):
            for b in range(self.p1):
                K[:, a, b] = np.bincount(pat.blk_level, weights=Pb[:, a] * self.blk[:, b], minlength=self.l1)
        K[:, np.arange(self.p1), np.arange(self.p1)] += 1.0
        G11 = np.einsum("lca,lcd,ldb->lab", self.L11inv, K, self.L11inv)
        Q = -np.einsum("kba,kb->ka", self.L11inv[pat.blk_level], Pb)
        return G11, Q, Sinv
