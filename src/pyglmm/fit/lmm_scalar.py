"""Linear mixed models whose terms are all scalar ((1 | a) + (1 | b), (1 | a/b), (x || g) ...)
from cross-products accumulated once: evaluations need no pass over the rows.

With scalar terms Lambda = diag(theta_t(c)) and A = Z'WZ is fixed, so every quantity of the
blocked factor is a fixed sum times a product of thetas: the first term's diagonal a0_j, the
blocks Zr'WZ1 (one per rest column c and first-term level j that share rows) and the entries of
Zr'WZr. `BlockedFactor(..., sums=...)` factors M = Lambda A Lambda + I from them. As in
`lmm_blocks` (one term), y is replaced by its residual from the weighted least-squares fit on X,
pwrss comes from the normal equations, and the exact gradient in theta_t is

  d log|M|        = 2 sum_{c in t} sum_d (M^{-1})_cd theta_d A_dc        (selected inverse)
  d pwrss         = -2 sum_{c in t} (Z'W r)_c u_c,  Z'Wr = Z'Wy - Z'WX beta - A Lambda u
  d log|S| (REML) = 2 sum_{c in t} [sum_d A_cd theta_d G_dc - (Z'WX S^{-1} B')_cc],
                    B = M^{-1} Lambda Z'WX, G = B S^{-1} B',

each a sum over the nonzero entries of A (the first term's diagonal, the blocks, the entries of
Zr'WZr), never over rows. Cost per evaluation: O(blocks + entries of Zr'WZr) plus the Schur
complement, against O(rows x terms^2) from the rows.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..linalg.blocked import BlockedFactor, BlockPattern
from ..linalg.restructure import ReStructure
from .lmm_blocks import CrossprodsLmm, solve_fixed_effects


class ScalarTermsCrossprods(CrossprodsLmm):
    """Fixed cross-products of an all-scalar-terms LMM; deviance pieces and gradient from them.

    A = Z'WZ (unscaled) is kept as its nonzero entries: the first term's diagonal ``a0``, one
    entry per block (rest column c, first-term level j) ``blk_raw``, and the entries of Zr'WZr as
    coordinates ``rr_row``, ``rr_col``, ``rr_val`` (``rr_store``: their place in the factor's
    storage of S_zz, dense or blockwise)."""

    def __init__(self, y: np.ndarray, X: np.ndarray, rs: ReStructure, w: np.ndarray):
        pat = getattr(rs, "_block_pattern", None)
        if pat is None:
            pat = rs._block_pattern = BlockPattern(rs)
        self.rs, self.pat, self.p = rs, pat, X.shape[1]
        n, qr, l1 = rs.n, rs.qr, pat.l1
        y, wX = self._centre(y, X, w, unit=False)
        x0 = rs.terms[0].X[:, 0]
        vals = np.column_stack([t.X[:, 0] for t in rs.terms[1:]])          # n x m rest values
        m = vals.shape[1]
        wv = vals * w[:, None]
        cols = pat.rest_cols                                               # n x m rest columns
        # term (1..K-1) of every rest column: the rest columns are ordered by term
        self.col_term = np.repeat(np.arange(1, len(rs.terms)), [t.q for t in rs.terms[1:]])
        self.a0 = rs.sum_by_first(w * x0 * x0)
        self.blk_raw = np.bincount(pat.blk_inv.ravel(), weights=(wv * x0[:, None]).ravel(),
                                   minlength=pat.nblk)
        self.blk_term = self.col_term[pat.blk_row]
        keys = (cols[:, :, None] * qr + cols[:, None, :]).reshape(n, m * m).ravel()
        uk, inv = np.unique(keys, return_inverse=True)
        self.rr_row, self.rr_col = uk // qr, uk % qr
        prod = (wv[:, :, None] * vals[:, None, :]).ravel()
        self.rr_val = np.bincount(inv, weights=prod, minlength=uk.size)
        spat = pat.schur
        self.rr_store = spat.flat(self.rr_row, self.rr_col) if spat is not None else uk
        self.rr_size = spat.total if spat is not None else qr * qr
        self.rr_theta_terms = (self.col_term[self.rr_row], self.col_term[self.rr_col])
        # Z'Wy and Z'WX (unscaled), first-term levels then rest columns
        self.Zy = np.concatenate([rs.sum_by_first(w * x0 * y),
                                  np.bincount(cols.ravel(), weights=(wv * y[:, None]).ravel(),
                                              minlength=qr)])
        ZX = np.empty((l1 + qr, self.p))
        for c in range(self.p):
            ZX[:l1, c] = rs.sum_by_first(wX[:, c] * x0)
            ZX[l1:, c] = np.bincount(cols.ravel(), weights=(vals * wX[:, c:c + 1]).ravel(),
                                     minlength=qr)
        self.ZX = ZX
        self.yWy = float(w @ (y * y))
        self.l1 = l1

    def _theta_cols(self, theta: np.ndarray) -> np.ndarray:
        """theta of every random-effect column (first-term levels, then rest columns)."""
        return np.concatenate([np.full(self.l1, theta[0]), theta[self.col_term]])

    def parts(self, theta: np.ndarray):
        """(factor of M, R_X, beta for the centred y, u, pwrss) at theta."""
        F, tc, B, RX, beta, u, pwrss = self.solve(theta)
        return F, RX, beta, u, pwrss

    def conditional_u_variances(self, theta: np.ndarray) -> list[np.ndarray]:
        """Diagonal blocks of M^{-1} per term."""
        return self.solve(theta)[0].diag_inverse_blocks()

    def _solve(self, th: np.ndarray):
        """(factor F of M, theta per column, B, R_X, beta (centred y), u, pwrss)."""
        ta, tb = self.rr_theta_terms
        Szz = np.zeros(self.rr_size)
        Szz[self.rr_store] = self.rr_val * th[ta] * th[tb]
        F = BlockedFactor(self.rs, None, None, None,
                          sums=(th[0] ** 2 * self.a0, Szz, self.blk_raw * th[0] * th[self.blk_term]))
        tc = self._theta_cols(th)
        ly = tc * self.Zy
        cu = F.solve(ly)
        if self.p:
            K = tc[:, None] * self.ZX
            B = np.column_stack([F.solve(K[:, a]) for a in range(self.p)])
            RX, beta = solve_fixed_effects(self.XtWX, K.T @ B, self.XtWy - K.T @ cu)
            u = cu - B @ beta
        else:
            B, RX, beta, u = None, np.zeros((0, 0)), np.zeros(0), cu
        pwrss = self.yWy - float(u @ ly) - float(beta @ self.XtWy)
        return F, tc, B, RX, beta, u, pwrss

    def _per_term(self, per_col: np.ndarray) -> np.ndarray:
        """Sum of per-column values by term (first term's levels, then each rest term)."""
        out = np.bincount(self.col_term, weights=per_col[self.l1:], minlength=len(self.rs.terms))
        out[0] += per_col[:self.l1].sum()
        return out

    def _row_sums(self, diag, blk_for_level, blk_for_col, rr) -> np.ndarray:
        """Per row c of A: sum over its nonzero entries A_cd times the given per-entry factors
        (first-term diagonal; a block seen from its level's row, from its column's row; Zr'WZr)."""
        pat, l1 = self.pat, self.l1
        q = l1 + self.col_term.size
        out = np.empty(q)
        out[:l1] = self.a0 * diag + np.bincount(pat.blk_level, weights=self.blk_raw * blk_for_level,
                                                minlength=l1)
        out[l1:] = np.bincount(pat.blk_row, weights=self.blk_raw * blk_for_col, minlength=q - l1) + \
            np.bincount(self.rr_row, weights=self.rr_val * rr, minlength=q - l1)
        return out

    def _A_times(self, v: np.ndarray) -> np.ndarray:
        """A v (A = Z'WZ, unscaled)."""
        pat, l1 = self.pat, self.l1
        return self._row_sums(v[:l1], v[l1 + pat.blk_row], v[pat.blk_level], v[l1 + self.rr_col])

    def _A_theta_dot(self, tc: np.ndarray, x_diag, x_blk, x_rr) -> np.ndarray:
        """Per column c: sum_d A_cd theta_d X_dc, for a symmetric X given on A's pattern."""
        pat, l1 = self.pat, self.l1
        return self._row_sums(tc[:l1] * x_diag, tc[l1 + pat.blk_row] * x_blk,
                              tc[pat.blk_level] * x_blk, tc[l1 + self.rr_col] * x_rr)

    def gradient(self, theta: np.ndarray, REML: bool, n_eff: int) -> np.ndarray:
        """Exact gradient of the profiled ML / REML deviance in theta."""
        F, tc, B, RX, beta, u, pwrss = self.solve(theta)
        G11, Q, Sinv = F.selected_inverse()
        g = 2.0 * self._per_term(self._A_theta_dot(tc, G11[:, 0, 0], Q[:, 0],
                                                   Sinv.at(self.rr_row, self.rr_col)))   # log|M|
        zwr = self.Zy - (self.ZX @ beta if self.p else 0.0) - self._A_times(tc * u)
        nn = n_eff - self.p if REML else n_eff
        g -= (2.0 * nn / pwrss) * self._per_term(zwr * u)                      # d pwrss
        if REML and self.p:
            Sinv_x = sla.cho_solve((RX, True), np.eye(self.p), check_finite=False)
            BS = B @ Sinv_x
            pat, l1 = self.pat, self.l1

            def G(r, c):                                                       # B S^-1 B'
                return np.einsum("kp,kp->k", BS[r], B[c])
            g += 2.0 * self._per_term(self._A_theta_dot(
                tc, G(np.arange(l1), np.arange(l1)), G(pat.blk_level, l1 + pat.blk_row),
                G(l1 + self.rr_row, l1 + self.rr_col)))
            g -= 2.0 * self._per_term(np.einsum("cp,cp->c", self.ZX, BS))
        return g
