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
from .lmm_blocks import solve_fixed_effects


class ScalarTermsCrossprods:
    """Fixed cross-products of an all-scalar-terms LMM; deviance pieces and gradient from them."""

    def __init__(self, y: np.ndarray, X: np.ndarray, rs: ReStructure, w: np.ndarray):
        pat = getattr(rs, "_block_pattern", None)
        if pat is None:
            pat = rs._block_pattern = BlockPattern(rs)
        self.rs, self.pat, self.p = rs, pat, X.shape[1]
        n, qr, l1 = rs.n, rs.qr, pat.l1
        wX = X * w[:, None]
        self.XtWX = X.T @ wX
        if self.p:
            self.b0 = np.linalg.lstsq(self.XtWX, wX.T @ y, rcond=None)[0]
            y = y - X @ self.b0
        else:
            self.b0 = np.zeros(0)
        x0 = rs.terms[0].X[:, 0]
        vals = np.column_stack([t.X[:, 0] for t in rs.terms[1:]])          # n x m rest values
        m = vals.shape[1]
        wv = vals * w[:, None]
        cols = pat.rest_cols                                               # n x m rest columns
        # term (1..K-1) of every rest column; theta index per column of [first | rest]
        slot_term = np.arange(1, len(rs.terms))                            # one slot per term
        self.col_term = np.zeros(qr, dtype=np.int64)
        for s in range(m):
            self.col_term[cols[:, s]] = slot_term[s]
        # first term's diagonal and the blocks Zr'WZ1
        self.a0 = rs.sum_by_first(w * x0 * x0)
        self.blk_raw = np.bincount(pat.blk_inv.ravel(), weights=(wv * x0[:, None]).ravel(),
                                   minlength=pat.nblk)
        self.blk_term = self.col_term[pat.blk_row]
        # Zr'WZr in the factor's storage, with the terms of each stored entry's row and column
        size = pat.schur.total if pat.schur is not None else qr * qr
        prod = (wv[:, :, None] * vals[:, None, :]).reshape(n, m * m)
        self.rr_flat = np.bincount(pat.pair22.ravel(), weights=prod.ravel(), minlength=size)
        self.flat_ta = np.zeros(size, dtype=np.int64)
        self.flat_tb = np.zeros(size, dtype=np.int64)
        p22 = pat.pair22.reshape(n, m, m)
        for a in range(m):
            for b in range(m):
                self.flat_ta[p22[:, a, b]] = slot_term[a]
                self.flat_tb[p22[:, a, b]] = slot_term[b]
        # the same entries as coordinates (row, column, value), whatever the storage
        keys = (cols[:, :, None] * qr + cols[:, None, :]).reshape(n, m * m).ravel()
        uk, inv = np.unique(keys, return_inverse=True)
        self.rr_row, self.rr_col = uk // qr, uk % qr
        self.rr_val = np.bincount(inv, weights=prod.ravel(), minlength=uk.size)
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
        self.XtWy = wX.T @ y
        self.yWy = float(w @ (y * y))
        self.l1 = l1
        self._last = None

    def _theta_cols(self, theta: np.ndarray) -> np.ndarray:
        """theta of every random-effect column (first-term levels, then rest columns)."""
        return np.concatenate([np.full(self.l1, theta[0]), theta[self.col_term]])

    def solve(self, theta: np.ndarray):
        """(factor F of M, theta per column, B, R_X, beta (centred y), u, Lambda Z'Wy, pwrss)."""
        key = theta.tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        th = np.asarray(theta, float)
        sums = (th[0] ** 2 * self.a0, self.rr_flat * th[self.flat_ta] * th[self.flat_tb],
                self.blk_raw * th[0] * th[self.blk_term])
        F = BlockedFactor(self.rs, None, None, None, sums=sums)
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
        out = (F, tc, B, RX, beta, u, pwrss)
        self._last = (key, out)
        return out

    def _per_term(self, per_col: np.ndarray) -> np.ndarray:
        """Sum of per-column values by term (first term's levels, then each rest term)."""
        out = np.bincount(self.col_term, weights=per_col[self.l1:], minlength=len(self.rs.terms))
        out[0] += per_col[:self.l1].sum()
        return out

    def _A_times(self, v: np.ndarray) -> np.ndarray:
        """A v over its nonzero entries (A = Z'WZ, unscaled)."""
        pat, l1 = self.pat, self.l1
        out = np.empty(v.size)
        out[:l1] = self.a0 * v[:l1] + np.bincount(pat.blk_level, weights=self.blk_raw * v[l1 + pat.blk_row],
                                                  minlength=l1)
        out[l1:] = np.bincount(pat.blk_row, weights=self.blk_raw * v[pat.blk_level], minlength=v.size - l1) + \
            np.bincount(self.rr_row, weights=self.rr_val * v[l1 + self.rr_col], minlength=v.size - l1)
        return out

    def _A_dot(self, th_cols: np.ndarray, Mc, G=None) -> np.ndarray:
        """Per column c: sum_d A_cd theta_d X_dc, for X = M^{-1} on the pattern (Mc: the selected
        inverse) or X = G given by a function of (rows, cols)."""
        pat, l1 = self.pat, self.l1
        if G is None:
            G11, Q, Sinv = Mc
            g_diag, g_blk, g_rr = G11[:, 0, 0], Q[:, 0], Sinv.at(self.rr_row, self.rr_col)
        else:
            g_diag = G(np.arange(l1), np.arange(l1))
            g_blk = G(pat.blk_level, l1 + pat.blk_row)
            g_rr = G(l1 + self.rr_row, l1 + self.rr_col)
        out = np.empty(th_cols.size)
        out[:l1] = self.a0 * th_cols[:l1] * g_diag + \
            np.bincount(pat.blk_level, weights=self.blk_raw * th_cols[l1 + pat.blk_row] * g_blk,
                        minlength=l1)
        out[l1:] = np.bincount(pat.blk_row, weights=self.blk_raw * th_cols[pat.blk_level] * g_blk,
                               minlength=th_cols.size - l1) + \
            np.bincount(self.rr_row, weights=self.rr_val * th_cols[l1 + self.rr_col] * g_rr,
                        minlength=th_cols.size - l1)
        return out

    def gradient(self, theta: np.ndarray, REML: bool, n_eff: int) -> np.ndarray:
        """Exact gradient of the profiled ML / REML deviance in theta."""
        F, tc, B, RX, beta, u, pwrss = self.solve(np.asarray(theta, float))
        g = 2.0 * self._per_term(self._A_dot(tc, F.selected_inverse()))       # d log|M|
        zwr = self.Zy - (self.ZX @ beta if self.p else 0.0) - self._A_times(tc * u)
        nn = n_eff - self.p if REML else n_eff
        g -= (2.0 * nn / pwrss) * self._per_term(zwr * u)                      # d pwrss
        if REML and self.p:
            Sinv = sla.cho_solve((RX, True), np.eye(self.p), check_finite=False)
            BS = B @ Sinv

            def G(r, c):
                return np.einsum("kp,kp->k", BS[r], B[c])
            g += 2.0 * self._per_term(self._A_dot(tc, None, G))
            g -= 2.0 * self._per_term(np.einsum("cp,cp->c", self.ZX, BS))
        return g
