"""Penalized iteratively reweighted least squares (PIRLS) and the Laplace deviance.

For fixed (theta, beta) PIRLS finds the conditional mode u of the spherical random effects by
minimising sum(devresid)/phi + ||u||^2; the Laplace approximation to -2 log L is then
-2 sum(log f(y | u)) + ||u||^2 + log det(Lambda'Z'WZLambda + I), as in lme4 and MixedModels.jl.
With ``joint=True`` beta is updated with u (lme4's nAGQ = 0 stage). Where the compiled kernels
cover a model (fit/compiled.py: family, size) the same algorithm runs in fit/_glmm.pyx; this
numpy version is the fallback and the reference the tests compare it with.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import FitError

from ..linalg.blocked import BlockedFactor, NotPositiveDefinite
from ..linalg.kernel_pattern import kernel_pattern
from ..linalg.restructure import ReStructure
from . import compiled
from .optimize import max_abs_diff


class PirlsFailure(FitError):
    """PIRLS could not find the conditional modes (e.g. the linear predictor diverged)."""


@dataclass
class PirlsResult:
    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    loglik_cond: float      # sum of log f(y_i | u)
    sqr_u: float            # ||u||^2
    deviance: float         # Laplace approximation to -2 log L
    iterations: int
    _factor: BlockedFactor | None = None      # the factor when PIRLS made one (numpy path)
    _factor_fn: Callable[[], BlockedFactor] | None = None   # builds it when first asked for
    _RX: np.ndarray | None = None             # R_X of a joint compiled PIRLS

    def RX(self) -> np.ndarray:
        """Lower Cholesky factor of the fixed-effects Schur complement (joint PIRLS only)."""
        return self._RX if self._RX is not None else self.factor.RX()

    @property
    def factor(self) -> BlockedFactor:
        """The blocked factor of Lambda'Z'WZLambda + I at the mode (built on demand after a
        compiled PIRLS, which keeps only its own blocks)."""
        if self._factor is None:
            self._factor = self._factor_fn()
        return self._factor


class GlmmProblem:
    """The data and family of a GLMM, with PIRLS and the Laplace objective."""

    def __init__(self, y, X, rs: ReStructure, weights, offset, family, tol: float = 1e-12,
                 max_iter: int = 200, laplace_weights: str = "expected"):
        self.y, self.X, self.rs = y, X, rs
        self.w_prior = weights
        self.offset = offset
        self.family = family
        self.tol = tol
        self.max_iter = max_iter
        self.n, self.p = X.shape
        self._u_warm = np.zeros(rs.q)
        self._theta_warm = None       # theta of the last mode (the warm start)
        if laplace_weights not in ("expected", "observed"):
            raise ValueError("laplace_weights must be 'expected' (lme4) or 'observed' (glmmTMB)")
        self.laplace_weights = laplace_weights

    # pieces ----------------------------------------------------------------
    def _moments(self, eta, phi, mu=None):
        """mu, the score d log f/d eta and the Fisher weights of every row, from eta without
        the links' clamps (the family's `eta_moments`); canonical links need no extra passes."""
        fam = self.family
        if fam.canonical and fam.extra_parameter is None:     # Poisson-log, binomial-logit
            if mu is None:
                mu = fam.link.inverse(eta)
            v = fam.variance(mu)           # canonical: the Fisher weight is V(mu)
            w = self.w_prior * v if phi == 1.0 else self.w_prior * v / phi
            score = self.w_prior * (self.y - mu) if phi == 1.0 else self.w_prior * (self.y - mu) / phi
            return mu, score, w
        return fam.eta_moments(self.y, eta, self.w_prior, phi, self._data_cache())

    def _observed_weights(self, eta, mu, phi):
        """-d2 log f / d eta2: the exact Laplace curvature (glmmTMB), not the Fisher weight; in
        closed form where the family has it for a non-canonical link (log-link nbinom2 and Gamma,
        the curvature the exact gradient assumes), else the family's `observed_curvature`."""
        fam = self.family
        if fam.closed_curvature and not fam.canonical:
            return fam.curvature(mu, self.y, self.w_prior, phi)[0]
        return fam.observed_curvature(self.y, eta, self.w_prior, phi)

    def _saturated_m2ll(self) -> float:
        """-2 log-likelihood of the saturated model (mu = y), cached: it depends on y only."""
        if getattr(self, "_sat", None) is None:
            self._sat = self.family.saturated_m2ll(self.y, self.w_prior)
        return self._sat

    def _data_cache(self) -> dict:
        """Pieces of the deviance that depend on y and the weights only, and the log-probabilities
        at the last linear predictor the deviance saw (the family fills it)."""
        c = self.__dict__.get("_ycache")
        if c is None:
            c = self.__dict__["_ycache"] = {}
        return c

    def _dev_constant(self) -> float:
        """The y-only part of sum(dev_resids) for Poisson and binomial (cached)."""
        return self.family.deviance_constant(self.y, self.w_prior, self._data_cache())

    def _devsum(self, mu, eta) -> float:
        """sum(dev_resids) at eta, without the links' clamps on mu (they would cap what a row
        can cost); for Poisson and binomial as a cached y-only constant plus log terms."""
        return self.family.deviance_sum(self.y, eta, self.w_prior, mu, self._data_cache())

    def _pdev(self, mu, u, phi, eta):
        return self._devsum(mu, eta) / phi + float(u @ u)

    def _kernel_code(self) -> int | None:
        """The compiled kernels' family code when they cover this problem (Poisson-log,
        binomial-logit, nbinom2-log, Gamma-log; up to the sizes where they win), else None."""
        if compiled.glmm_kernels() is None or not compiled.glmm_rows_ok(self.n, len(self.rs.terms)):
            return None
        fam = self.family
        if fam.extra_parameter == "shape" and not (0.0 < float(fam.shape or 0.0) < np.inf):
            return None                           # nbinom2 without a finite shape
        return fam.kernel_code

    def _kernel_family(self) -> tuple[int, float, float, bool]:
        """(family code, y-only deviance constant, nbinom2 shape, observed curvature) for the
        kernels; the constant is split off for Poisson and binomial only."""
        fam = self.family
        dconst = self._dev_constant() if fam.extra_parameter is None else 0.0
        shape = float(fam.shape) if fam.extra_parameter == "shape" else 0.0
        return fam.kernel_code, dconst, shape, self.laplace_weights == "observed"

    def __getstate__(self):
        """Pickled without the arrays bound for the kernels (rebuilt on first use)."""
        state = self.__dict__.copy()
        state.pop("_kdata", None)
        return state

    def kernel_data(self, first_only: bool = False):
        """The model's arrays bound for the compiled kernels (made once), or None when they do
        not apply (family, size, too many rest columns). ``first_only``: the first term alone
        (the GLM start)."""
        if self._kernel_code() is None:
            return None
        cache = self.__dict__.setdefault("_kdata", {})
        first_only = first_only and len(self.rs.terms) > 1      # one term: the same arrays
        if first_only not in cache:
            pat = kernel_pattern(self.rs, first_only)
            cache[first_only] = None if pat is None else compiled.glmm_kernels().GlmmData(
                pat, np.ascontiguousarray(self.X, dtype=np.float64), self.offset, self.y,
                self.w_prior)
        return cache[first_only]

    def _kernel_call(self, kd, theta, beta, u, phi, try_zero, joint, maxit):
        """One call of the compiled PIRLS (`fit/_glmm.pyx`) on the bound arrays ``kd``."""
        code, dconst, shape, observed = self._kernel_family()
        return kd.pirls(code, np.ascontiguousarray(theta, float), beta, u, float(phi), dconst,
                        bool(try_zero), bool(joint), self.tol, maxit, shape, observed)

    def _pirls_compiled(self, kd, theta, beta, u, phi, try_zero, joint) -> PirlsResult:
        """PIRLS by the compiled kernel: the same algorithm as `pirls` below."""
        status, u, beta, eta, mu, w, pdev, logdet, RX, it = self._kernel_call(
            kd, theta, beta, u, phi, try_zero, joint, self.max_iter)
        return self._compiled_result(status, theta, beta, u, eta, mu, w, pdev, logdet, RX, it,
                                     joint, phi)

    def _compiled_result(self, status, theta, beta, u, eta, mu, w, pdev, logdet, RX, it,
                         joint, phi) -> PirlsResult:
        """A compiled PIRLS's outputs as a PirlsResult (its blocked factor built on demand)."""
        rs = self.rs
        if status == 1:
            raise PirlsFailure("penalized system not positive definite")
        if status == 2:
            raise PirlsFailure("PIRLS did not converge: the linear predictor diverged")
        if status == 3:
            raise PirlsFailure("the fixed-effects block of the joint PIRLS system is not positive "
                               "definite")
        ll, sqr_u = self._at_mode(theta, u, eta, pdev, phi)
        X = self.X if joint else None
        return PirlsResult(u=u, beta=beta, eta=eta, mu=mu, loglik_cond=ll, sqr_u=sqr_u,
                           deviance=-2.0 * ll + sqr_u + logdet, iterations=it, _RX=RX,
                           _factor_fn=lambda: BlockedFactor(rs, rs.scaled_values(theta), w, X))

    def _at_mode(self, theta, u, eta, pdev, phi) -> tuple[float, float]:
        """Keep the mode as the next warm start; return (log f(y | u), |u|^2). For Poisson and
        binomial -2 log f(y|u) = sum(dev_resids) - 2 log f_saturated(y): the penalized deviance
        already computed is reused instead of evaluating lgamma terms again."""
        self._u_warm = u.copy()
        self._theta_warm = theta.copy()
        sqr_u = float(u @ u)
        if self.family.extra_parameter is None:          # Poisson, binomial
            return -0.5 * ((pdev - sqr_u) + self._saturated_m2ll()), sqr_u
        return float(self.family.loglik_eta(self.y, eta, self.w_prior, phi).sum()), sqr_u

    def offset_free_beta(self) -> np.ndarray:
        """The start beta = 0, except that an intercept column takes minus the offset's mean:
        with large offsets (e.g. log exposures of 40) beta = 0 puts eta far from the data,
        where Newton's method on the GLM deviance crawls and the weights overflow the joint
        system. Without an offset this is beta = 0."""
        beta = np.zeros(self.p)
        off = self.offset
        if self.p and off is not None and off.size and (off[0] != 0.0 or off.any()):
            if np.all(self.X[:, 0] == 1.0):
                beta[0] = -float(np.mean(off))
        return beta

    def glm_fit_compiled(self, maxit: int) -> np.ndarray | None:
        """The GLM without random effects (the start of beta) by the compiled joint PIRLS at
        Lambda = 0, where it is Newton's method on the GLM deviance with step halving (= IRLS
        for canonical links) from beta = 0 (`offset_free_beta`); None when it fails (then R's
        glm.fit path)."""
        kd = self.kernel_data(first_only=True)
        status, u, beta, *_ = self._kernel_call(kd, np.zeros(self.rs.ntheta), self.offset_free_beta(),
                                                np.zeros(self.rs.terms[0].q), 1.0, False, True,
                                                maxit)
        return beta if status == 0 and np.isfinite(beta).all() else None

    def pirls(self, theta, beta, phi: float = 1.0, family=None, joint: bool = False,
              u0: np.ndarray | None = None) -> PirlsResult:
        """Conditional modes at (theta, beta[, phi]); beta also updated when joint=True."""
        if family is not None:
            self.family = family
        rs, X = self.rs, self.X
        u = (self._u_warm if u0 is None else u0).copy()
        beta = np.asarray(beta, float).copy()
        theta = np.asarray(theta, float)
        tw = self._theta_warm
        # a short step in theta (finite differences, late optimiser steps): the warm mode is good
        near = tw is not None and tw.shape == theta.shape and max_abs_diff(theta, tw) < 0.05 * max(
            1.0, max_abs_diff(tw))
        kd = self.kernel_data() if len(rs.terms) == 1 or not joint else None
        if kd is not None:
            try_zero = u0 is None and not near and u.any()
            return self._pirls_compiled(kd, theta, beta, u, phi, try_zero, joint)
        base = self.offset + X @ beta          # fixed during PIRLS unless joint
        zvals = rs.scaled_values(theta)
        eta = base + rs.Zu(zvals, u)
        mu, score, w = self._moments(eta, phi)
        pdev = self._pdev(mu, u, phi, eta)
        if u0 is None and not near and u.any():
            # the previous mode is a poor start after a long step in theta: start from u = 0
            # when that is better (it is the mode of the penalty alone)
            eta0 = base
            mu0 = self.family.link.inverse(eta0)
            p0 = self._pdev(mu0, np.zeros_like(u), phi, eta0)
            if not np.isfinite(pdev) or p0 < pdev:
                u[:] = 0.0
                eta = eta0
                mu, score, w = self._moments(eta, phi, mu0)
                pdev = p0
        elif not np.isfinite(pdev):
            u[:] = 0.0
            eta = self.offset + X @ beta
            mu, score, w = self._moments(eta, phi)
            pdev = self._pdev(mu, u, phi, eta)
        it = 0
        converged = False
        F = None
        for it in range(1, self.max_iter + 1):
            try:
                F = BlockedFactor(rs, zvals, w, X if joint else None)
            except NotPositiveDefinite as e:
                raise PirlsFailure(str(e)) from e
            g_u = rs.Ztr(zvals, score) - u
            rhs = np.concatenate([g_u, X.T @ score]) if joint else g_u
            delta = F.solve(rhs)
            dec = float(rhs @ delta)  # Newton decrement squared
            # stop on the step size, not only the decrement: the log-determinant depends on u to
            # first order, so u itself must be converged (Fisher scoring is only linear for
            # non-canonical links). F is then the factor at the converged u.
            if dec < self.tol * (1.0 + abs(pdev)) and np.max(np.abs(delta), initial=0.0) < 1e-10:
                converged = True
                break
            du = delta[:rs.q]
            db = delta[rs.q:] if joint else None
            step = 1.0
            for _ in range(30):
                un = u + step * du
                bn = beta + step * db if joint else beta
                etan = (self.offset + X @ bn if joint else base) + rs.Zu(zvals, un)
                mun = self.family.link.inverse(etan)
                pn = self._pdev(mun, un, phi, etan)
                if np.isfinite(pn) and pn <= pdev + 1e-10 * abs(pdev):
                    break
                step *= 0.5
            else:
                F = None
                break
            u, beta, eta = un, bn, etan
            change = pdev - pn
            pdev = pn
            mu, score, w = self._moments(eta, phi, mun)
            F = None
            if change <= 1e-15 * (1 + abs(pdev)) and step < 1:
                converged = True
                break
        if not converged and not np.isfinite(pdev):
            raise PirlsFailure("PIRLS did not converge: the linear predictor diverged")
        if self.laplace_weights == "observed":
            w = self._observed_weights(eta, mu, phi)
            F = None
        if F is None:
            try:
                F = BlockedFactor(rs, zvals, w, X if joint else None)
            except (NotPositiveDefinite, np.linalg.LinAlgError, FloatingPointError) as e:
                raise PirlsFailure(str(e)) from e
        ll, sqr_u = self._at_mode(theta, u, eta, pdev, phi)
        dev = -2.0 * ll + sqr_u + F.logdet_Z()
        return PirlsResult(u=u, beta=beta, eta=eta, mu=mu, _factor=F, loglik_cond=ll, sqr_u=sqr_u,
                           deviance=dev, iterations=it)
