"""Maximum-likelihood fitting of GLMMs by the Laplace approximation, in lme4's two stages.

Stage 1 (lme4's nAGQ = 0): optimise theta with beta updated inside PIRLS.
Stage 2: optimise (theta, beta) together on the Laplace deviance, starting from stage 1.
With the exact gradient (fit/gradient.py: canonical links; log-link NB and Gamma) stage 2 runs
L-BFGS-B on it from the start values directly (stage 1 is then only needed for nAGQ = 0), and the
Hessian for standard errors is a central difference of that gradient; otherwise stage 1 uses
COBYQA and stage 2 L-BFGS-B with central-difference gradients.
Families with a dispersion (Gamma, inverse Gaussian, Gaussian with a non-identity link) or a
shape (nbinom2) carry it as an extra parameter on the log scale, as glmmTMB does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg as sla

from .gradient import laplace_gradient, supports_analytic
from .optimize import (OptSummary, fd_gradient, fd_hessian, gradient_hessian,
                       minimize_bounded)
from . import compiled
from .pirls import GlmmProblem, PirlsFailure, PirlsResult
from ..linalg.small import cholesky_lower, lower_inverse, spd_inverse_from_factor


@dataclass
class GlmmFit:
    """Raw numerical result of a GLMM fit (no reporting)."""

    theta: np.ndarray
    beta: np.ndarray
    extra: float | None          # dispersion phi or nbinom2 shape, on the natural scale
    extra_kind: str | None       # "dispersion", "shape" or None
    pirls: PirlsResult
    deviance: float
    hessian: np.ndarray | None
    gradient: np.ndarray | None
    opt_stage1: OptSummary | None
    opt_stage2: OptSummary
    family: object


STAGE1_METHOD = "cobyqa"    # theta (+ dispersion) only: few dimensions, derivative-free wins
STAGE2_METHOD = "lbfgsb"    # theta and beta (beta preconditioned): analytic or FD gradients
STAGE1_FTOL = 1e-12
SKIP_STAGE1_WITH_GRADIENT = True
SUBSAMPLE_ROWS = 60_000    # above this, theta starts from a fit to ~20% of the first term's groups
#: The compiled BFGS drives the compiled Laplace objective only where an evaluation is cheap
#: (rows x terms and rest columns below these): there its Python-free loop pays. Costlier
#: evaluations go to L-BFGS-B, whose line search needs fewer of them (measured: VerbAgg,
#: 7,584 rows x 2 terms, 32 -> 23 evaluations, 127 -> 92 ms; grouseticks, 181 rest columns,
#: 18 -> 15, 17.6 -> 14.0 ms; rehab, 1,000 rows, 40 -> 38 but 10.9 -> 11.7 ms, so it stays).
QN_MAX_ROW_TERMS = 10_000
QN_MAX_REST_COLUMNS = 100
STAGE2_FTOL = 1e-13         # relative: stops at the rounding floor of large deviances (f ~ 1e6)
THETA_SCALING = True        # scale theta by its curvature at the start (exact-gradient fits)


def glm_start(problem: GlmmProblem, phi: float = 1.0, maxit: int = 50) -> np.ndarray:
    """Fixed-effects-only IRLS fit (R's glm.fit) for starting values of beta."""
    if problem._kernel_code() is not None and phi == 1.0:
        beta = problem.glm_fit_compiled(maxit)
        if beta is not None:
            return beta
    fam, y, X, w0, off = problem.family, problem.y, problem.X, problem.w_prior, problem.offset
    mu = fam.initialize(y, w0)
    eta = fam.link.link(mu)
    beta = np.zeros(X.shape[1])
    dev_old = np.inf
    for _ in range(maxit):
        d = fam.link.mu_eta(eta)
        var = fam.variance(mu)
        w = w0 * d * d / var
        z = eta - off + (y - mu) / d
        beta_new = _wls(X, w, z)
        eta_new = off + X @ beta_new
        mu_new = fam.link.inverse(eta_new)
        dev = problem._devsum(mu_new, eta_new)   # sum of deviance residuals (cheap forms)
        if not np.isfinite(dev):
            break
        beta, eta, mu = beta_new, eta_new, mu_new
        if abs(dev - dev_old) < 1e-10 * (abs(dev) + 0.1):
            break
        dev_old = dev
    return beta

def _wls(X: np.ndarray, w: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Weighted least squares by the normal equations (Cholesky of X'WX, a p x p matrix), with
    an SVD least-squares fallback when X'WX is ill-conditioned: this only makes starting values."""
    WX = X * w[:, None]
    A = X.T @ WX
    try:
        L = np.linalg.cholesky(A)
        d = np.diag(L)
        if d.size and d.min() > 1e-7 * d.max():
            return sla.cho_solve((L, True), WX.T @ z, check_finite=False)
    except np.linalg.LinAlgError:
        pass
    sw = np.sqrt(w)
    return np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)[0]



def fit_glmm(problem: GlmmProblem, *, nAGQ: int = 1, verbose: int = 0,
             start_theta: np.ndarray | None = None, compute_hessian: bool = True,
             progress=None, maxiter: int = 2000, _subsample: bool = True,
             start_beta: np.ndarray | None = None) -> GlmmFit:
    """Fit by Laplace (nAGQ=1) or by the nAGQ=0 stage alone; returns the raw optimum.
    ``start_beta`` replaces the GLM start of beta (refits start from the earlier estimates)."""
    rs = problem.rs
    base_family = problem.family
    kind = base_family.extra_parameter
    nth, p = rs.ntheta, problem.p
    lb_theta = rs.lower_bounds()
    analytic = supports_analytic(base_family, problem.laplace_weights)   # exact gradients

    # starting values ------------------------------------------------------
    if base_family.start_family is not base_family:
        # the start of beta from another family's GLM fit (nbinom2: the Poisson), then the
        # extra parameter's moment estimate at it
        saved = problem.family
        problem.family = base_family.start_family
        beta0 = glm_start(problem)
        problem.family = saved
        mu0 = base_family.link.inverse(problem.offset + problem.X @ beta0)
        extra0 = [base_family.extra_start(problem.y, mu0, problem.w_prior, problem.n - p)]
    else:
        if start_beta is not None and start_beta.size == p:
            beta0 = start_beta.copy()
        elif kind is None and analytic and nAGQ > 0 and SKIP_STAGE1_WITH_GRADIENT and \
                len(rs.terms) == 1 and problem.kernel_data() is not None:
            # the compiled joint (u, beta) PIRLS at the start theta is Newton's method on a
            # convex objective (canonical links) and starts from beta = 0 as well as the GLM
            # fit does: the GLM fit before it would be a second Newton run (cbpp: 7 + 6
            # iterations -> 7)
            beta0 = problem.offset_free_beta()
        else:
            beta0 = glm_start(problem)
        if kind is not None:
            mu0 = base_family.link.inverse(problem.offset + problem.X @ beta0)
            extra0 = [base_family.extra_start(problem.y, mu0, problem.w_prior, problem.n - p)]
        else:
            extra0 = []
    theta0 = rs.theta_start() if start_theta is None else np.asarray(start_theta, float)
    nx = len(extra0)

    def fam_phi(ex):
        if kind is None:
            return base_family, 1.0
        return base_family.with_extra(base_family.extra_to_natural(ex[0]))

    state = {"beta": beta0.copy()}

    last: dict = {}

    def pirls_at(th, be, ex, joint):
        key = (np.asarray(th).tobytes(), None if joint else np.asarray(be).tobytes(),
               np.asarray(ex).tobytes(), joint)
        if last.get("key") == key:
            return last["res"]
        fam, phi = fam_phi(ex)
        r = problem.pirls(th, be, phi, family=fam, joint=joint)
        last.update(key=key, res=r)
        return r

    def dev_stage1(x):
        th, ex = x[:nth], x[nth:]
        try:
            r = pirls_at(th, state["beta"], ex, True)
        except (PirlsFailure, np.linalg.LinAlgError, FloatingPointError):
            return np.inf
        state["beta"] = r.beta
        return r.deviance

    def grad_stage1(x):
        th, ex = x[:nth], x[nth:]
        try:
            r = pirls_at(th, state["beta"], ex, True)
        except (PirlsFailure, np.linalg.LinAlgError, FloatingPointError):
            return np.zeros_like(x)   # the deviance there is +inf: the line search backtracks
        fam, phi = fam_phi(ex)
        g = laplace_gradient(rs, problem.X, problem.y, problem.w_prior, fam, th, r.u,
                             r.eta, phi=phi, joint=True, factor=r._factor,
                             kdata=problem.kernel_data())
        if nx:
            beta_here = r.beta
            g = np.concatenate([g, _extra_fd(lambda e: pirls_at(th, beta_here, e, True).deviance, ex)])
        return g

    lb1 = np.concatenate([lb_theta, np.full(nx, -np.inf)])
    if analytic and nAGQ > 0 and SKIP_STAGE1_WITH_GRADIENT:
        # with exact gradients stage 2 converges fast from the start itself: one joint PIRLS
        # at theta0 gives beta and the preconditioner, instead of a whole stage-1 optimisation.
        # On large data a start from the same model fitted to a subsample of the groups saves
        # most of the stage-2 iterations.
        theta_s = _subsample_start(problem, theta0, extra0, nx, verbose) \
            if (_subsample and start_theta is None and problem.n >= SUBSAMPLE_ROWS) else None
        if theta_s is not None:
            theta0, extra0 = theta_s[:nth], list(theta_s[nth:])
        x1 = np.concatenate([theta0, extra0])
        opt1 = OptSummary(x0=x1, x=x1, fmin=dev_stage1(x1), feval=1, optimizer="none (start)",
                          success=True, message="stage 1 skipped: analytic gradient available")
    else:
        opt1 = minimize_bounded(dev_stage1, np.concatenate([theta0, extra0]), lb1,
                                verbose=verbose, label="stage 1", progress=progress, maxiter=maxiter,
                                method="lbfgsb" if analytic else STAGE1_METHOD,
                                grad=grad_stage1 if analytic else None,
                                ftol=STAGE1_FTOL if nAGQ > 0 else 1e-13)
    th1, ex1 = opt1.x[:nth], opt1.x[nth:]
    fam1, phi1 = fam_phi(ex1)
    r1 = pirls_at(th1, state["beta"], ex1, True)      # cached when stage 1 ended there
    beta1 = r1.beta

    if nAGQ == 0:
        # lme4's nAGQ=0: report the joint PIRLS result; Laplace deviance at that point.
        r = problem.pirls(th1, beta1, phi1, family=fam1, u0=r1.u)
        return GlmmFit(theta=th1, beta=beta1, extra=natural_extra(ex1, kind), extra_kind=kind, pirls=r,
                       deviance=r.deviance, hessian=None, gradient=None, opt_stage1=opt1,
                       opt_stage2=opt1, family=fam1)

    lb2 = np.concatenate([lb_theta, np.full(p + nx, -np.inf)])
    x2 = np.concatenate([th1, beta1, ex1])
    # Precondition beta by the stage-1 covariance (beta = beta1 + C z): predictors on very
    # different scales otherwise make the problem badly conditioned for the optimiser.
    C = beta_scaling(r1, p)

    # theta is scaled so that its curvature at the start matches that of the preconditioned beta
    # (about 2): estimated below from differences of the exact gradient when it is available
    sc = np.ones(nth)

    def to_x(z):
        x = z.copy()
        x[:nth] = sc * z[:nth]
        x[nth:nth + p] = beta1 + C @ z[nth:nth + p]
        return x

    z2 = x2.copy()
    z2[nth:nth + p] = 0.0
    Tm = np.eye(x2.size)
    Tm[nth:nth + p, nth:nth + p] = C

    def dev_z(z):
        x = to_x(z)
        try:
            return pirls_at(x[:nth], x[nth:nth + p], x[nth + p:], False).deviance
        except (PirlsFailure, np.linalg.LinAlgError, FloatingPointError):
            return np.inf

    last_grad: dict = {}

    def grad_z(z):
        x = to_x(z)
        th, be = x[:nth], x[nth:nth + p]
        try:
            r = pirls_at(th, be, x[nth + p:], False)
        except (PirlsFailure, np.linalg.LinAlgError, FloatingPointError):
            return np.zeros_like(z)
        key = x.tobytes()
        if last_grad.get("key") == key:          # same point (e.g. after the theta rescaling)
            return Tm.T @ last_grad["g"]
        ex = x[nth + p:]
        fam, phi = fam_phi(ex)
        gx = laplace_gradient(rs, problem.X, problem.y, problem.w_prior, fam, th, r.u, r.eta,
                              phi=phi, factor=r._factor, kdata=problem.kernel_data())
        if nx:
            # the shape / dispersion (log scale) by central differences: two warm PIRLS runs
            gx = np.concatenate([gx, _extra_fd(lambda e: pirls_at(th, be, e, False).deviance, ex)])
        last_grad.update(key=key, g=gx)
        return Tm.T @ gx

    fast = _KernelLaplace.make(problem, fam_phi(ex1)[0], nth, p, sc, beta1, C) \
        if analytic and nx == 0 else None
    fg_z = None
    if fast is not None:
        dev_z, grad_z, fg_z = fast.deviance, fast.gradient, fast   # fast: a compiled Objective

    g_start = None                        # the gradient at the start, in z's beta part
    if analytic and THETA_SCALING:
        hdiag, g_start = _theta_curvature(grad_z, z2, nth)
        if hdiag is not None:
            sc[:] = np.sqrt(2.0 / hdiag)
            Tm[np.arange(nth), np.arange(nth)] = sc
            z2[:nth] = x2[:nth] / sc
    if analytic and p:
        # beta from stage 1 (joint PIRLS) can be many standard errors from the Laplace optimum on
        # large data; in z the beta Hessian is about 2I, so one Newton step in beta at fixed theta
        # is -g/2. Keep it if the deviance drops: L-BFGS-B then starts near the optimum instead
        # of spending evaluations on growing line searches.
        # (the theta scaling leaves the beta part of the gradient in z unchanged)
        step = -0.5 * (grad_z(z2) if g_start is None else g_start)[nth:nth + p]
        if np.abs(step).max() > 1.0:          # more than about one standard error away
            zb = z2.copy()
            zb[nth:nth + p] += step
            if dev_z(zb) < dev_z(z2):
                z2 = zb
    cheap = problem.n * len(rs.terms) <= QN_MAX_ROW_TERMS and rs.qr < QN_MAX_REST_COLUMNS
    opt2 = minimize_bounded(dev_z, z2, lb2, verbose=verbose, label="stage 2", progress=progress,
                            maxiter=maxiter,
                            method=STAGE2_METHOD, grad=grad_z if analytic else None,
                            fg=fg_z if cheap else None,
                            **(dict(ftol=STAGE2_FTOL, gtol=1e-6) if analytic else {}))
    z_opt = np.array(opt2.x, dtype=float)
    opt2.x = to_x(opt2.x)
    x = opt2.x
    th, be, ex = x[:nth], x[nth:nth + p], x[nth + p:]
    fam, phi = fam_phi(ex)
    r = pirls_at(th, be, ex, False)                   # cached when the optimiser ended there
    grad = hess = None
    if compute_hessian:
        # derivatives in the preconditioned coordinates z (all directions on a comparable
        # scale, so one finite-difference step suits all), mapped back: x = T z + const
        zopt = z_opt                                  # x = to_x(zopt)
        Tinv = _inverse_transform(sc, C, Tm.shape[0])
        with np.errstate(all="ignore"):
            if analytic:
                # forward differences of the exact gradient: k PIRLS runs instead of ~2k^2
                gz, hz = gradient_hessian(grad_z, zopt, 1e-4, fg=fg_z)
                hess = Tinv.T @ hz @ Tinv
                grad = Tinv.T @ gz
            else:
                hess = Tinv.T @ fd_hessian(dev_z, zopt, rel=1e-3) @ Tinv
                grad = Tinv.T @ fd_gradient(dev_z, zopt, lb2)
    return GlmmFit(theta=th, beta=be, extra=natural_extra(ex, kind), extra_kind=kind, pirls=r,
                   deviance=r.deviance, hessian=hess, gradient=grad, opt_stage1=opt1,
                   opt_stage2=opt2, family=fam)


class _KernelLaplace:
    """The stage-2 objective (Laplace deviance and its exact gradient in the optimiser's
    coordinates z) by one compiled PIRLS and one compiled gradient call per point
    (`_glmm.LaplaceObjective`), without the general path's layers (PirlsResult, family
    dispatch, caches per call): on data sets of a few hundred rows those layers cost several
    times the numerics. Same rules as `GlmmProblem.pirls` (warm start, the restart from u = 0
    after a long step in theta)."""

    @staticmethod
    def make(problem: GlmmProblem, family, nth, p, sc, beta1, C):
        """The compiled objective when the kernels cover the problem (Poisson or binomial, the
        sizes where they win), else None. ``sc`` is rescaled in place by fit_glmm later."""
        problem.family = family
        if family.extra_parameter is not None or problem._kernel_code() is None:
            return None
        kd = problem.kernel_data()
        if kd is None:
            return None
        code, dconst, shape, observed = problem._kernel_family()
        return compiled.glmm_kernels().LaplaceObjective(
            kd, problem, code, dconst, shape, observed, problem._saturated_m2ll(), problem.tol,
            problem.max_iter, sc, np.ascontiguousarray(beta1, dtype=float), C)


def _subsample_start(problem: GlmmProblem, theta0, extra0, nx: int, verbose: int):
    """theta (and shape/dispersion) from the same model fitted to a random fifth of the first
    term's groups: a start close to the full-data optimum, for a fraction of the cost."""
    from ..linalg.restructure import ReStructure, TermStructure
    rs = problem.rs
    t0 = rs.terms[0]
    rng = np.random.default_rng(12345)           # fixed: fits stay deterministic
    keep_lev = rng.random(t0.nlevels) < max(0.2, 20_000 / problem.n)
    rows = np.flatnonzero(keep_lev[t0.codes])
    if rows.size < 1000 or rows.size > 0.8 * problem.n:
        return None
    terms = []
    for t in rs.terms:
        lev, codes = np.unique(t.codes[rows], return_inverse=True)
        if lev.size < 2:
            return None
        terms.append(TermStructure(codes=codes.astype(np.int64), X=np.asfortranarray(t.X[rows]),
                                   nlevels=lev.size))
    sub = GlmmProblem(problem.y[rows], np.asfortranarray(problem.X[rows]), ReStructure(terms),
                      problem.w_prior[rows], problem.offset[rows], problem.family,
                      laplace_weights=problem.laplace_weights)
    try:
        f = fit_glmm(sub, nAGQ=1, compute_hessian=False, start_theta=theta0, verbose=verbose,
                     _subsample=False)
    except (PirlsFailure, np.linalg.LinAlgError, FloatingPointError, ValueError):
        return None
    th = np.maximum(f.theta, rs.lower_bounds())
    ex = [] if nx == 0 else [np.log(f.extra)]
    return np.concatenate([th, ex])


def _theta_curvature(grad, z, nth: int, h: float = 1e-4):
    """Diagonal second derivatives of the deviance in theta (forward differences of the exact
    gradient, away from the bounds: only a scaling is needed, not an accurate value), and the
    gradient at z."""
    out = []
    g0 = np.asarray(grad(z), dtype=float)
    g0l = g0.tolist()
    for i in range(nth):
        e = np.zeros(z.size)
        e[i] = h
        d = (float(grad(z + e)[i]) - g0l[i]) / h
        # where the deviance is not convex in a component at the start (or the estimate
        # failed), leave that component unscaled (curvature 2, like the preconditioned beta)
        out.append(min(max(d, 1e-6), 1e12) if math.isfinite(d) and d > 1e-8 else 2.0)
    return np.array(out), g0


def _extra_fd(dev, ex: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Central difference of the deviance in the log shape/dispersion parameter."""
    try:
        return np.array([(dev(ex + h) - dev(ex - h)) / (2 * h)])
    except (PirlsFailure, np.linalg.LinAlgError, FloatingPointError):
        return np.zeros(1)


def beta_scaling(r1: PirlsResult, p: int) -> np.ndarray:
    """Cholesky factor of the stage-1 (R_X-based) covariance of beta, or a diagonal fallback."""
    if p == 0:
        return np.eye(0)
    try:
        RX = r1.RX()                      # lower: the Schur complement S = RX RX'
        return cholesky_lower(spd_inverse_from_factor(RX))      # of S^{-1}
    except (np.linalg.LinAlgError, ValueError):
        return np.eye(p)


def _inverse_transform(sc: np.ndarray, C: np.ndarray, k: int) -> np.ndarray:
    """The inverse of the map z -> x of the stage-2 coordinates: diag(sc) for theta, the lower
    triangular C for beta, the identity for the rest (each block inverted on its own)."""
    nth, p = sc.size, C.shape[0]
    Tinv = np.eye(k)
    for i, s in enumerate(sc.tolist()):
        Tinv[i, i] = 1.0 / s
    if p:
        Tinv[nth:nth + p, nth:nth + p] = lower_inverse(C)     # LinAlgError if C is singular
    return Tinv


def natural_extra(ex, kind):
    if kind is None:
        return None
    return float(np.exp(ex[0]))
