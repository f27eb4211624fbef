"""Small linear mixed models of any term structure as one dense block (compiled kernels only).

With q random-effects columns in all (q <= DENSE_MAX_Q: e.g. 24 plates + 6 samples), Z'WZ,
Z'WX and Z'Wy are made once as dense q x q, q x p and q arrays, and an evaluation is the
one-term kernel of `lmm_blocks` with a single "level" whose T is all of Lambda (block diagonal
and lower triangular; the kernel skips its zeros). That kernel returns the derivatives of the
deviance in every entry of T; theta's gradient sums them over the entries each theta fills.
One evaluation is a few dense q x q products and a Cholesky factorisation in compiled code,
instead of the blocked factor's dozens of numpy calls, which dominate at this size. The
optimiser's objective (`PatternLmmObjective`) follows the block's sparsity: with the first
term's levels a diagonal block, a nested (1 | a/b) or crossed (1 | a) + (1 | b) design factors
in O(q1 q2^2) instead of O(q^3).
"""
from __future__ import annotations

import numpy as np

from ..linalg.restructure import ReStructure
from . import compiled
from .lmm_blocks import BlockDiagonalFactor, CrossprodsLmm

# measured on crossed (1 | a) + (1 | b) lmer fits: dense against the blocked path 3.6 / 8.6 ms
# at q = 40, 8.3 / 9.9 ms at q = 80, 23 / 15 ms at q = 120
DENSE_MAX_Q = 80
DENSE_MAX_CELLS = 4_000_000  # n x q of the dense Z built once


def dense_size_ok(n: int, q: int) -> bool:
    """Whether n rows and q random-effects columns take the dense path (and the kernels are built)."""
    return compiled.lmm_kernels() is not None and q <= DENSE_MAX_Q and n * q <= DENSE_MAX_CELLS


def dense_applies(rs: ReStructure) -> bool:
    """Whether a model is small enough for the dense path (and the kernels are built)."""
    return dense_size_ok(rs.n, rs.q)


class DenseCrossprods(CrossprodsLmm):
    """Dense cross-products of a small LMM and its profiled deviance and gradient from them."""

    def __init__(self, y: np.ndarray, X: np.ndarray, rs: ReStructure, w: np.ndarray,
                 unit: bool | None = None):
        self.rs, self.p = rs, X.shape[1]
        unit = bool((w == 1.0).all()) if unit is None else unit     # unit: all weights 1
        q, n = rs.q, rs.n
        fast = self._compiled_crossprods(y, X, w, unit, rs, blocks=False)
        if fast is None:
            y, wX = self._centre(y, X, w, unit)
            Z = np.zeros((n, q))
            rows = np.arange(n)
            for k, t in enumerate(rs.terms):
                off = int(rs.q_offsets[k])
                for a in range(t.p):
                    Z[rows, off + t.codes * t.p + a] = t.X[:, a]
            Zw = Z if unit else Z * w[:, None]
            fast = (Zw.T @ Z, Zw.T @ X, Zw.T @ y)
            self.yWy = float(y @ y) if unit else float(w @ (y * y))
        self.A, self.C, self.d = (np.ascontiguousarray(a[None]) for a in fast)
        # the entries of Lambda (row-major in q x q) that each theta fills, level by level: a
        # few hundred integers, made in Python (numpy's per-call overhead dominates at this size)
        flat, which = [], []
        for k, t in enumerate(rs.terms):
            off, start = int(rs.q_offsets[k]), rs.theta_slices[k].start
            rc = list(zip(*(a.tolist() for a in rs._tril[k])))
            for b in range(off, off + t.nlevels * t.p, t.p):        # first column of each level
                for j, (r, c) in enumerate(rc):
                    flat.append((b + r) * q + b + c)
                    which.append(start + j)
        self._flat, self._which = np.array(flat, dtype=np.int64), np.array(which, dtype=np.int64)
        need = np.zeros(q * q, dtype=np.uint8)
        need[self._flat] = 1
        self._need = need.reshape(q, q)                # the entries of Lambda that carry a theta
        self._pattern, self._psol = None, None

    def _lambda(self, theta: np.ndarray) -> np.ndarray:
        q = self.rs.q
        T = np.zeros(q * q)
        T[self._flat] = theta[self._which]
        return T.reshape(q, q)

    def _solve(self, theta: np.ndarray):
        return compiled.lmm_kernels().single_term_lmm(
            self._lambda(theta), self.A, self.C, self.d, self.XtWX, self.XtWy, self.yWy, self._need)

    def kernel_objective(self):
        self._pattern = compiled.lmm_kernels().PatternLmmObjective(
            self.A[0], self.C[0], self.d[0], np.ascontiguousarray(self.XtWX),
            np.ascontiguousarray(self.XtWy), self.yWy, self._need,
            self._flat, self._which, self.rs.ntheta)
        return self._pattern

    def __getstate__(self):
        """Pickled without the compiled kernel (made again by `kernel_objective`)."""
        state = dict(self.__dict__)
        state["_pattern"] = state["_psol"] = None
        return state

    def _pattern_solution(self, theta: np.ndarray):
        """The sparse kernel's solved system at theta (the last one cached), or None before
        `kernel_objective` made the kernel."""
        if getattr(self, "_pattern", None) is None:
            return None
        key = theta.tobytes()
        if self._psol is None or self._psol[0] != key:
            self._psol = (key, self._pattern.solution(np.ascontiguousarray(theta, dtype=float)))
        return self._psol[1]

    def _theta_gradient(self, G: np.ndarray) -> np.ndarray:
        return np.bincount(self._which, weights=G.ravel()[self._flat], minlength=self.rs.ntheta)

    def parts(self, theta: np.ndarray):
        """(factor of M, R_X, beta for the centred y, u, pwrss) at theta (from the sparse
        kernel once the optimiser has made it, else the dense one)."""
        sol = self._pattern_solution(np.asarray(theta, float))
        if sol is not None:
            logdet, RX, beta, u, pwrss, _ = sol
            return BlockDiagonalFactor(logdet), RX, beta, u, pwrss
        logdet, Minv, B, RX, beta, u, pwrss, *_ = self.solve(theta)
        return BlockDiagonalFactor(logdet), RX, beta, u[0], pwrss

    def conditional_u_variances(self, theta: np.ndarray) -> list[np.ndarray]:
        """The diagonal blocks of M^{-1} per term, (levels, p_k, p_k)."""
        sol = self._pattern_solution(np.asarray(theta, float))
        Minv = sol[5] if sol is not None else self.solve(theta)[1][0]
        out = []
        for k, t in enumerate(self.rs.terms):
            o0, o1 = self.rs.q_offsets[k], self.rs.q_offsets[k + 1]
            sub = Minv[o0:o1, o0:o1].reshape(t.nlevels, t.p, t.nlevels, t.p)
            lev = np.arange(t.nlevels)
            out.append(sub[lev, :, lev, :])
        return out

    def gradient(self, theta: np.ndarray, REML: bool, n_eff: int) -> np.ndarray:
        """Exact gradient of the profiled ML / REML deviance in theta."""
        logdet, Minv, B, RX, beta, u, pwrss, G1, G2, G3 = self.solve(theta)
        nn = n_eff - self.p if REML else n_eff
        G = G1 - (2.0 * nn / pwrss) * G2
        if REML and self.p:
            G += G3
        return self._theta_gradient(G)
