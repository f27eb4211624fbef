"""Blocked Cholesky factor of [[Lambda'Z'WZLambda + I, Lambda'Z'WX], [X'WZLambda, X'WX]].

As in MixedModels.jl, the first random-effects term gives a block-diagonal leading block
(one small p x p block per level), factored in one batched call; the remaining terms and X
form a dense Schur complement. This never builds a dense n x q matrix and keeps the
dense part at (q_rest + p) squared, small for the common nested and crossed designs.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp

from .restructure import ReStructure


class NotPositiveDefinite(np.linalg.LinAlgError):
    """Raised when the penalized system is not positive definite (e.g. a collinear X)."""


class BlockedFactor:
    """Cholesky factor L of the penalized normal equations for one (theta, weights)."""

    def __init__(self, rs: ReStructure, zvals: list[np.ndarray], w: np.ndarray,
                 X: np.ndarray | None = None):
        self.rs = rs
        self.p = 0 if X is None else X.shape[1]
        t0 = rs.terms[0]
        l1, p1 = t0.nlevels, t0.p
        z0 = zvals[0]
        # leading block-diagonal part
        B = np.empty((l1, p1, p1))
        for a in range(p1):
            for b in range(a + 1):
                v = np.bincount(t0.codes, weights=w * z0[:, a] * z0[:, b], minlength=l1)
                B[:, a, b] = v
                B[:, b, a] = v
        B[:, np.arange(p1), np.arange(p1)] += 1.0
        if p1 == 1:
            if not np.all(B > 0):
                raise NotPositiveDefinite("penalized system not positive definite")
            L11 = np.sqrt(B)
            Linv = 1.0 / L11
        else:
            L11 = np.linalg.cholesky(B)
            eye = np.broadcast_to(np.eye(p1), B.shape)
            Linv = np.linalg.solve(L11, eye)
        self.L11 = L11
        self.L11inv = Linv  # (l1, p1, p1), lower triangular inverses
        self.l1, self.p1 = l1, p1
        # rest: [Z_rest Lambda, X]
        Zr = rs.rest_matrix(zvals)
        self.qr = rs.qr
        m = self.qr + self.p
        self.m = m
        if m == 0:
            self.L21 = None
            self.L22 = np.zeros((0, 0))
            return
        Z1 = rs.first_matrix(zvals)
        WZ1 = sp.csr_matrix((Z1.data * np.repeat(w, p1), Z1.indices, Z1.indptr), shape=Z1.shape)
        # blockdiag(L11^{-T}) as a sparse matrix
        rows = (np.arange(l1)[:, None, None] * p1 + np.arange(p1)[None, :, None]) * np.ones((1, 1, p1))
        cols = (np.arange(l1)[:, None, None] * p1 + np.arange(p1)[None, None, :]) * np.ones((1, p1, 1))
        LinvT = np.transpose(Linv, (0, 2, 1))
        Binv = sp.csr_matrix((LinvT.ravel(), (rows.ravel().astype(np.int64), cols.ravel().astype(np.int64))),
                             shape=(l1 * p1, l1 * p1))
        parts21 = []
        M22 = np.zeros((m, m))
        if Zr is not None:
            ZrT = Zr.T.tocsr()
            parts21.append((ZrT @ WZ1) @ Binv)
            WZr = sp.csr_matrix((Zr.data * np.repeat(w, rs._rest_m), Zr.indices, Zr.indptr), shape=Zr.shape)
            M22[:self.qr, :self.qr] = (ZrT @ WZr).toarray()
            M22[np.arange(self.qr), np.arange(self.qr)] += 1.0
        if X is not None:
            WX = X * w[:, None]
            XtWZ1 = np.asarray((Z1.T @ WX)).T  # p x q1
            # multiply by blockdiag(L11^{-T}) blockwise
            Xb = XtWZ1.reshape(self.p, l1, p1)
            parts21.append(sp.csr_matrix(np.einsum("klb,lab->kla", Xb, Linv).reshape(self.p, l1 * p1)))
            M22[self.qr:, self.qr:] = X.T @ WX
            if Zr is not None:
                ZrtWX = np.asarray(Zr.T @ WX)
                M22[:self.qr, self.qr:] = ZrtWX
                M22[self.qr:, :self.qr] = ZrtWX.T
        L21 = sp.vstack(parts21).tocsr() if len(parts21) > 1 else parts21[0].tocsr()
        self.L21 = L21
        S = M22 - (L21 @ L21.T).toarray()
        try:
            self.L22 = np.linalg.cholesky(S)
        except np.linalg.LinAlgError as e:
            raise NotPositiveDefinite("penalized system not positive definite") from e

    # --- log determinants -------------------------------------------------
    def logdet_Z(self) -> float:
        """log det(Lambda'Z'WZLambda + I): twice the log of L's diagonal over the q random effects."""
        d1 = np.log(np.diagonal(self.L11, axis1=1, axis2=2)).sum() if self.p1 > 1 else np.log(self.L11).sum()
        d2 = np.log(np.diag(self.L22)[:self.qr]).sum() if self.qr else 0.0
        return 2.0 * (d1 + d2)

    def logdet_X(self) -> float:
        """log det(R_X'R_X), the REML term."""
        if self.p == 0:
            return 0.0
        return 2.0 * np.log(np.diag(self.L22)[self.qr:]).sum()

    def RX(self) -> np.ndarray:
        """Lower Cholesky factor of the Schur complement for the fixed effects (lme4's R_X')."""
        return self.L22[self.qr:, self.qr:]

    # --- solves -----------------------------------------------------------
    def solve(self, r: np.ndarray) -> np.ndarray:
        """Solve (L L') x = r for a vector over [u; beta]."""
        q1 = self.l1 * self.p1
        r1 = r[:q1].reshape(self.l1, self.p1)
        if self.p1 == 1:
            y1 = r1 * self.L11inv[:, :, 0] if self.L11inv.ndim == 3 else r1 * self.L11inv
        else:
            y1 = np.einsum("lab,lb->la", self.L11inv, r1)
        y1 = y1.ravel()
        if self.m == 0:
            x1 = y1.reshape(self.l1, self.p1)
        else:
            y2 = sla.solve_triangular(self.L22, r[q1:] - self.L21 @ y1, lower=True, check_finite=False)
            x2 = sla.solve_triangular(self.L22, y2, lower=True, trans="T", check_finite=False)
            x1 = (y1 - self.L21.T @ x2).reshape(self.l1, self.p1)
        if self.p1 == 1:
            z1 = x1 * (self.L11inv[:, :, 0] if self.L11inv.ndim == 3 else self.L11inv)
        else:
            z1 = np.einsum("lba,lb->la", self.L11inv, x1)
        if self.m == 0:
            return z1.ravel()
        return np.concatenate([z1.ravel(), x2])

    def diag_inverse_blocks(self) -> list[np.ndarray]:
        """Diagonal p_k x p_k blocks of (L L')^{-1} for the random effects (conditional variances)."""
        # Build via solves against unit vectors would be O(q^2); use the block structure instead.
        q1 = self.l1 * self.p1
        out = []
        # leading term: inv(L11 L11') + correction from the rest
        if self.m == 0:
            inv11 = np.einsum("lba,lbc->lac", self.L11inv, self.L11inv)
            return [inv11]
        # M^{-1} = [[A^{-1} + A^{-1}B S^{-1} B' A^{-1}, ...], ...] in factored form:
        # with W = L22^{-1} L21 L11^{-1}: inv11 = L11^{-T}(I + W'W)L11^{-1}
        Wm = sla.solve_triangular(self.L22, self.L21.toarray(), lower=True, check_finite=False)  # m x q1
        Wm = Wm.reshape(self.m, self.l1, self.p1)
        G = np.einsum("kla,klb->lab", Wm, Wm)
        G[:, np.arange(self.p1), np.arange(self.p1)] += 1.0
        inv11 = np.einsum("lca,lcd,ldb->lab", self.L11inv, G, self.L11inv)
        out.append(inv11)
        # remaining terms: diagonal blocks of L22^{-T} L22^{-1}
        L22inv = sla.solve_triangular(self.L22, np.eye(self.m), lower=True, check_finite=False)
        full = L22inv.T @ L22inv
        rs = self.rs
        off = 0
        for t in rs.terms[1:]:
            blk = np.empty((t.nlevels, t.p, t.p))
            for j in range(t.nlevels):
                s = off + j * t.p
                blk[j] = full[s:s + t.p, s:s + t.p]
            out.append(blk)
            off += t.q
        del q1
        return out
