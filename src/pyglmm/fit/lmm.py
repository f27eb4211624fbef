"""Linear mixed models: lme4's profiled ML / REML deviance as a function of theta."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..linalg.blocked import BlockedFactor
from ..linalg.restructure import ReStructure


@dataclass
class LmmState:
    """Everything the profiled criterion computes at one theta."""

    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    sigma: float
    pwrss: float
    deviance: float
    factor: BlockedFactor


class LmmProblem:
    """Profiled deviance of a linear mixed model (Bates et al. 2015, section 3)."""

    def __init__(self, y: np.ndarray, X: np.ndarray, rs: ReStructure, weights: np.ndarray,
                 offset: np.ndarray, REML: bool):
        self.y = y - offset
        self.X = X
        self.rs = rs
        self.w = weights
        self.REML = REML
        self.n, self.p = X.shape
        pos = weights > 0
        self.sum_log_w = float(np.log(weights[pos]).sum())
        self.n_eff = int(pos.sum())

    def evaluate(self, theta: np.ndarray) -> LmmState:
        """Solve the penalized least-squares problem at theta and return the profiled deviance."""
        rs = self.rs
        zvals = rs.scaled_values(theta)
        F = BlockedFactor(rs, zvals, self.w, self.X)
        wy = self.w * self.y
        rhs = np.concatenate([rs.Ztr(zvals, wy), self.X.T @ wy])
        sol = F.solve(rhs)
        u, beta = sol[:rs.q], sol[rs.q:]
        resid = self.y - self.X @ beta - rs.Zu(zvals, u)
        pwrss = float(self.w @ resid**2 + u @ u)
        n = self.n_eff
        ld = F.logdet_Z()
        if self.REML:
            nmp = n - self.p
            dev = ld + F.logdet_X() + nmp * (1.0 + np.log(2.0 * np.pi * pwrss / nmp))
            sigma = np.sqrt(pwrss / nmp)
        else:
            dev = ld + n * (1.0 + np.log(2.0 * np.pi * pwrss / n))
            sigma = np.sqrt(pwrss / n)
        dev -= self.sum_log_w
        return LmmState(theta=np.asarray(theta, float).copy(), beta=beta, u=u, sigma=float(sigma),
                        pwrss=pwrss, deviance=float(dev), factor=F)

    def deviance(self, theta: np.ndarray) -> float:
        """The objective minimised over theta; +inf where the system is not positive definite."""
        try:
            return self.evaluate(theta).deviance
        except np.linalg.LinAlgError:
            return np.inf

    def vcov_beta(self, state: LmmState) -> np.ndarray:
        """sigma^2 (R_X'R_X)^{-1}."""
        RX = state.factor.RX()
        Rinv = np.linalg.inv(RX)
        return state.sigma**2 * (Rinv.T @ Rinv)

    def ml_loglik(self, state: LmmState) -> float:
        """Log-likelihood (ML) or REML criterion value as lme4's logLik reports it."""
        return -0.5 * state.deviance
