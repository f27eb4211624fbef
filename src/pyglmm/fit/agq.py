"""Adaptive Gauss-Hermite quadrature (AGQ) for a single grouping factor, scalar or vector effects.

With one grouping factor the likelihood factorises over its levels j:
  L_j = (2 pi)^{-p/2} int exp(l_j(u) - |u|^2 / 2) du,
and with the mode u_j and the Cholesky factor L_j of the curvature M_j (PIRLS gives both) the
substitution u = u_j + L_j^{-T} t centres and scales the integrand, so that
  L_j ~= |L_j|^{-1} sum_t W_t exp(h_j(u_j + L_j^{-T} t) + |t|^2 / 2),  h_j(u) = l_j(u) - |u|^2 / 2,
over a product grid of k^p Gauss-Hermite nodes t with normal-density weights W_t. One node is the
Laplace approximation. lme4 offers this only for a scalar effect; GLMMadaptive, SAS NLMIXED and
Stata's melogit do vector effects with product grids, as here.

The log-likelihood keeps the full log density (all constants), exactly as pyglmm's Laplace value,
so logLik values are comparable across nAGQ. lme4's nAGQ > 1 logLik leaves out the saturated
log-likelihood sum(log f(y | mu = y)) that its Laplace logLik includes.
"""
from __future__ import annotations

import numpy as np

from .pirls import GlmmProblem

MAX_GRID = 20_000   # nodes per level: k^p above this is refused with advice


def gh_rule(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of the k-point Gauss-Hermite rule for N(0, 1)."""
    t, w = np.polynomial.hermite_e.hermegauss(k)
    return t, w / w.sum()


def check_agq(rs, nAGQ: int, group_names: list[str]) -> None:
    """Refuse what AGQ cannot do here, naming the limit."""
    if nAGQ < 1 or int(nAGQ) != nAGQ:
        raise ValueError(f"nAGQ must be a positive integer (got {nAGQ!r}); 1 is the Laplace approximation")
    if len(rs.terms) != 1:
        raise ValueError(
            "adaptive Gauss-Hermite quadrature (nAGQ > 1) needs a single random-effects term with "
            f"one grouping factor; this model has {len(rs.terms)} terms ({', '.join(group_names)}). "
            "The integral over crossed or several factors does not factorise by group: use nAGQ=1 "
            "(Laplace), or combine uncorrelated terms of one factor into one term (x | g)")
    p = rs.terms[0].p
    if nAGQ ** p > MAX_GRID:
        raise ValueError(
            f"nAGQ = {nAGQ} with {p} random effects per group needs {nAGQ}^{p} = {nAGQ ** p} nodes "
            f"per group (limit {MAX_GRID}); use fewer nodes, e.g. nAGQ = "
            f"{int(np.floor(MAX_GRID ** (1.0 / p)))}")


def agq_deviance(problem: GlmmProblem, theta: np.ndarray, beta: np.ndarray, nAGQ: int,
                 phi: float = 1.0, family=None) -> float:
    """-2 log L by adaptive Gauss-Hermite quadrature at (theta, beta) (single grouping factor)."""
    r = problem.pirls(theta, beta, phi, family=family)
    fam = problem.family
    rs = problem.rs
    t0 = rs.terms[0]
    l, p = t0.nlevels, t0.p
    z = rs.scaled_values(theta)[0]                     # n x p rows of Z Lambda
    Linv = r.factor.L11inv                              # (l, p, p) inverses of L_j
    U = r.u.reshape(l, p)
    # a_i = L_j^{-1} z_i: eta_i(t) = eta_i + a_i . t;   u_j(t) = u_j + L_j^{-T} t
    A = np.empty((rs.n, p))
    for a in range(p):
        acc = np.zeros(rs.n)
        for b in range(p):
            acc += rs.expand_first(np.ascontiguousarray(Linv[:, a, b])) * z[:, b]
        A[:, a] = acc
    tk, wk = gh_rule(nAGQ)
    grids = np.meshgrid(*([tk] * p), indexing="ij")
    T = np.stack([g.ravel() for g in grids], axis=1)   # K x p
    W = np.ones(T.shape[0])
    for g in np.meshgrid(*([wk] * p), indexing="ij"):
        W = W * g.ravel()
    keep = W > 1e-300
    T, W = T[keep], W[keep]
    y, wt = problem.y, problem.w_prior
    logs = np.empty((T.shape[0], l))
    for k, t in enumerate(T):
        eta = r.eta + A @ t
        ll = rs.sum_by_first(fam.loglik_eta(y, eta, wt, phi))
        ut = U + np.einsum("jba,b->ja", Linv, t)       # u_j + L_j^{-T} t
        h = ll - 0.5 * (ut * ut).sum(axis=1)
        logs[k] = h + 0.5 * float(t @ t) + np.log(W[k])
    m = logs.max(axis=0)
    log_int = m + np.log(np.exp(logs - m).sum(axis=0))  # log sum_t W_t exp(...) per level
    logdetL = np.log(np.diagonal(r.factor.L11, axis1=1, axis2=2)).sum()
    return float(-2.0 * log_int.sum() + 2.0 * logdetL)


def fit_agq(problem: GlmmProblem, start, nAGQ: int, *, verbose: int = 0, progress=None):
    """Maximise the AGQ likelihood over (theta, beta[, dispersion or shape]) from a Laplace fit.

    ``start`` is the Laplace GlmmFit; beta is preconditioned by its R_X covariance as in the
    Laplace stage 2, and the Hessian for standard errors is taken in those coordinates.
    """
    from .glmm import GlmmFit, beta_scaling, natural_extra
    from .optimize import fd_gradient, fd_hessian, minimize_bounded

    rs = problem.rs
    nth, p = rs.ntheta, problem.p
    kind = start.extra_kind
    base_family = problem.family if kind != "shape" else start.family
    nx = 0 if kind is None else 1
    ex0 = [] if kind is None else [base_family.extra_to_working(start.extra)]

    def fam_phi(ex):
        if kind is None:
            return problem.family, 1.0
        return base_family.with_extra(base_family.extra_to_natural(ex[0]))

    fam0, phi0 = fam_phi(ex0)
    r_joint = problem.pirls(start.theta, start.beta, phi0, family=fam0, joint=True)
    C = beta_scaling(r_joint, p)
    beta0 = start.beta.copy()

    def to_x(z):
        x = z.copy()
        x[nth:nth + p] = beta0 + C @ z[nth:nth + p]
        return x

    def dev_z(z):
        x = to_x(z)
        fam, phi = fam_phi(x[nth + p:])
        try:
            return agq_deviance(problem, x[:nth], x[nth:nth + p], nAGQ, phi, family=fam)
        except (np.linalg.LinAlgError, FloatingPointError, RuntimeError):
            return np.inf

    lb = np.concatenate([rs.lower_bounds(), np.full(p + nx, -np.inf)])
    z0 = np.concatenate([start.theta, np.zeros(p), ex0])
    opt = minimize_bounded(dev_z, z0, lb, verbose=verbose, label=f"AGQ({nAGQ})", method="lbfgsb",
                           progress=progress)
    zopt = opt.x
    x = to_x(zopt)
    opt.x = x
    Tm = np.eye(x.size)
    Tm[nth:nth + p, nth:nth + p] = C
    Tinv = np.linalg.inv(Tm)
    with np.errstate(all="ignore"):
        hess = Tinv.T @ fd_hessian(dev_z, zopt, rel=1e-3) @ Tinv
        grad = Tinv.T @ fd_gradient(dev_z, zopt, lb)
    th, be, ex = x[:nth], x[nth:nth + p], x[nth + p:]
    fam, phi = fam_phi(ex)
    r = problem.pirls(th, be, phi, family=fam)
    dev = agq_deviance(problem, th, be, nAGQ, phi, family=fam)
    return GlmmFit(theta=th, beta=be, extra=natural_extra(ex, kind), extra_kind=kind, pirls=r, deviance=dev,
                   hessian=hess, gradient=grad, opt_stage1=start.opt_stage2, opt_stage2=opt,
                   family=fam)
