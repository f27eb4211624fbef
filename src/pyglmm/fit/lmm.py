"""Linear mixed models: lme4's profiled ML / REML deviance as a function of theta, and its gradient.

With P = Z Lambda, M = P'WP + I (blocked factor, no X), K = P'WX and B = M^{-1}K, the fixed
effects come from the Schur complement S = X'WX - K'B = R_X R_X' (lme4's R_X'R_X):
beta = S^{-1}(X'Wy - B'P'Wy), u = M^{-1}P'W(y - X beta). The deviance is

  ML:   log|M| + n (1 + log(2 pi pwrss / n))
  REML: log|M| + log|S| + (n - p)(1 + log(2 pi pwrss / (n - p))),

and its exact gradient (envelope theorem for u and beta) needs, per row, the entries of
P M^{-1} on the columns the row touches (the selected inverse, as for the Laplace gradient):

  d/dP_ic:  2 w_i (P M^{-1})_ic - (2 n'/pwrss) w_i r_i u_c  [+ 2 w_i (E S^{-1} B')_ic for REML]

with r the residual, n' = n or n - p, E = P B - X. One evaluation with gradient costs one
factorisation and p + 2 solves instead of the 1 + k evaluations of finite differences.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from ..linalg.blocked import BlockedFactor
from ..linalg.restructure import ReStructure
from .gradient import pattern_rows
from .lmm_blocks import (BlockDiagonalFactor, CrossprodsLmm, SingleTermCrossprods,
                         solve_fixed_effects)
from .lmm_dense import DenseCrossprods, dense_applies, dense_size_ok
from .lmm_scalar import ScalarTermsCrossprods


@dataclass
class LmmState:
    """Everything the profiled criterion computes at one theta."""

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    sigma: float
    pwrss: float
    deviance: float
    factor: BlockedFactor | BlockDiagonalFactor   # of M (random effects only): logdet_Z()
    RX: np.ndarray                 # lower Cholesky factor of S (lme4's R_X')
    B: np.ndarray | None           # M^{-1} K (q x p); the row path's gradient needs B, resid, zvals
    resid: np.ndarray | None       # (None from the cross-products path, which never forms rows)
    zvals: list | None


class LmmProblem:
    """Profiled deviance of a linear mixed model (Bates et al. 2015, section 3).

    One-term models (`lmm_blocks`), small models (`lmm_dense`, with the compiled kernels) and
    models whose terms are all scalar (`lmm_scalar`) are evaluated from cross-products
    accumulated once, with no pass over the rows; the others from the rows through the blocked
    factor.
    """

    use_crossprods = True        # False: the row-based path for every model (tests compare them)

    @classmethod
    def sorts_rows(cls, n_terms: int, n: int = 0, q: int | None = None) -> bool:
        """Whether the rows should be sorted by the first term's levels: the row path's segment
        sums need it; the cross-products (one term, or the dense path of a small model with q
        random-effects columns over n rows) reduce the rows once and gain nothing."""
        if not cls.use_crossprods:
            return True
        if n_terms == 1:
            return False
        return q is None or not dense_size_ok(n, q)

    def __init__(self, y: np.ndarray, X: np.ndarray, rs: ReStructure, weights: np.ndarray,
                 offset: np.ndarray, REML: bool):
        self.y = y - offset
        self.X = X
        self.rs = rs
        self.w = weights
        self.REML = REML
        self.n, self.p = X.shape
        unit = bool((weights == 1.0).all())
        if unit:
            self.sum_log_w, self.n_eff = 0.0, int(weights.shape[0])
        else:
            pos = weights > 0
            self.sum_log_w = float(np.log(weights[pos]).sum())
            self.n_eff = int(pos.sum())
        self._last: LmmState | None = None
        self._xp: CrossprodsLmm | None = None
        if self.use_crossprods and len(rs.terms) == 1:
            self._xp = SingleTermCrossprods(self.y, X, rs, weights, unit)
        elif self.use_crossprods and dense_applies(rs):
            self._xp = DenseCrossprods(self.y, X, rs, weights, unit)
        elif self.use_crossprods and all(t.p == 1 for t in rs.terms):
            self._xp = ScalarTermsCrossprods(self.y, X, rs, weights)
        else:                                         # the row path's weighted data
            self._wX = X * weights[:, None]
            self._XtWX = X.T @ self._wX
            self._wy = weights * self.y
            self._XtWy = X.T @ self._wy

    def evaluate(self, theta: np.ndarray) -> LmmState:
        """Solve the penalized least-squares problem at theta and return the profiled deviance."""
        theta = np.asarray(theta, float)
        last = self._last
        if last is not None and np.array_equal(last.theta, theta):
            return last
        if self._xp is not None:
            return self._evaluate_crossprods(theta)
        rs, X, p = self.rs, self.X, self.p
        zvals = rs.scaled_values(theta)
        F = BlockedFactor(rs, zvals, self.w, None)
        cu = F.solve(rs.Ztr(zvals, self._wy))                        # M^{-1} P'Wy
        if p:
            K = np.column_stack([rs.Ztr(zvals, self._wX[:, a]) for a in range(p)])
            B = np.column_stack([F.solve(K[:, a]) for a in range(p)])
            RX, beta = solve_fixed_effects(self._XtWX, K.T @ B, self._XtWy - K.T @ cu)
            u = cu - B @ beta
            resid = self.y - X @ beta - rs.Zu(zvals, u)
        else:
            B, RX, beta, u = np.zeros((rs.q, 0)), np.zeros((0, 0)), np.zeros(0), cu
            resid = self.y - rs.Zu(zvals, u)
        pwrss = float(self.w @ resid**2 + u @ u)
        st = self._state(theta, beta, u, pwrss, F, RX, B, resid, zvals)
        self._last = st
        return st

    def _evaluate_crossprods(self, theta: np.ndarray) -> LmmState:
        F, RX, beta, u, pwrss = self._xp.parts(theta)
        if not pwrss > 0:
            raise np.linalg.LinAlgError("penalized residual sum of squares not positive")
        st = self._state(theta, beta + self._xp.b0, u, pwrss, F, RX, None, None, None)
        self._last = st
        return st

    def _state(self, theta, beta, u, pwrss, F, RX, B, resid, zvals) -> LmmState:
        """The profiled deviance and sigma from the solved system."""
        p = self.p
        n = self.n_eff
        ld = F.logdet_Z()
        if self.REML:
            nmp = n - p
            ldx = 2.0 * np.log(np.diag(RX)).sum() if p else 0.0
            dev = ld + ldx + nmp * (1.0 + np.log(2.0 * np.pi * pwrss / nmp))
            sigma = np.sqrt(pwrss / nmp)
        else:
            dev = ld + n * (1.0 + np.log(2.0 * np.pi * pwrss / n))
            sigma = np.sqrt(pwrss / n)
        dev -= self.sum_log_w
        return LmmState(theta=theta.copy(), beta=beta, u=u, sigma=float(sigma), pwrss=pwrss,
                        deviance=float(dev), factor=F, RX=RX, B=B, resid=resid, zvals=zvals)

    def deviance(self, theta: np.ndarray) -> float:
        """The objective minimised over theta; +inf where the system is not positive definite."""
        try:
            return self.evaluate(theta).deviance
        except np.linalg.LinAlgError:
            return np.inf

    def gradient(self, theta: np.ndarray) -> np.ndarray:
        """Exact gradient of `deviance` in theta (see the module docstring)."""
        try:
            st = self.evaluate(theta)
        except np.linalg.LinAlgError:
            return np.zeros(np.size(theta))
        if self._xp is not None:
            return self._xp.gradient(np.asarray(theta, float), self.REML, self.n_eff)
        rs, w, p = self.rs, self.w, self.p
        R1, Rr = pattern_rows(rs, st.zvals, st.factor)
        nn = self.n_eff - p if self.REML else self.n_eff
        wr = (2.0 * nn / st.pwrss) * w * st.resid
        ES = None
        if self.REML and p:
            E = np.column_stack([rs.Zu(st.zvals, st.B[:, a]) for a in range(p)]) - self.X
            ES = sla.cho_solve((st.RX, True), E.T, check_finite=False).T * (2.0 * w)[:, None]
        g = np.empty(rs.ntheta)
        slot = 0
        for k, t in enumerate(rs.terms):
            sl = slice(rs.q_offsets[k], rs.q_offsets[k + 1])
            Uk = st.u[sl].reshape(t.nlevels, t.p)
            if k == 0:
                Rk = R1
            else:
                Rk = Rr[:, slot:slot + t.p]
                slot += t.p
            coef = 2.0 * w[:, None] * Rk - wr[:, None] * Uk[t.codes]
            if ES is not None:
                Bk = st.B[sl].reshape(t.nlevels, t.p, p)
                coef += np.einsum("nb,nab->na", ES, Bk[t.codes])
            G = t.X.T @ coef                                  # [r, comp]
            rows, cols = rs._tril[k]
            g[rs.theta_slices[k]] = G[rows, cols]
        return g

    def objective(self, fused: bool = False) -> tuple:
        """(deviance, gradient) functions for the optimiser. Where a cross-products kernel runs,
        both come from one kernel call per theta (`CrossprodsLmm.kernel_objective`), without
        the state object and caches of `evaluate`: on small data those layers cost more than
        the numerics. Elsewhere `deviance` and `gradient`. ``fused=True`` adds a third: the
        kernel itself as a compiled `Objective` (called from Python it gives (deviance,
        gradient); the compiled optimiser calls it in C), None without a kernel."""
        kobj = None if self._xp is None else self._xp.kernel_objective()
        if kobj is None:
            return (self.deviance, self.gradient, None) if fused else (self.deviance, self.gradient)
        last: list = [None, None]
        REML, n_eff, slw = self.REML, float(self.n_eff), self.sum_log_w

        def point(theta):
            theta = np.ascontiguousarray(theta, dtype=float)
            key = theta.tobytes()
            if last[0] != key:
                try:
                    last[1] = kobj.deviance_gradient(theta, REML, n_eff, slw)
                except np.linalg.LinAlgError:
                    last[1] = (np.inf, np.zeros(theta.size))
                last[0] = key
            return last[1]

        dev, grad = (lambda theta: point(theta)[0]), (lambda theta: point(theta)[1].copy())
        if not fused:
            return dev, grad
        return dev, grad, kobj.set_criterion(REML, n_eff, slw)

    def conditional_u_variances(self, theta: np.ndarray) -> list[np.ndarray]:
        """Diagonal blocks of M^{-1} per term, (levels, p_k, p_k): the conditional variances of the
        spherical random effects up to sigma^2."""
        theta = np.asarray(theta, float)
        if self._xp is not None:
            return self._xp.conditional_u_variances(theta)
        F = BlockedFactor(self.rs, self.rs.scaled_values(theta), self.w, None)
        return F.diag_inverse_blocks()

    def vcov_beta(self, state: LmmState) -> np.ndarray:
        """sigma^2 (R_X'R_X)^{-1}."""
        Rinv = np.linalg.inv(state.RX)
        return state.sigma**2 * (Rinv.T @ Rinv)

