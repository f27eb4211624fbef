"""Penalized quasi-likelihood (PQL): a port of R's ``MASS::glmmPQL`` (Breslow & Clayton 1993).

PQL linearises the GLMM around the current linear predictor and fits a *weighted linear* mixed
model to the working response, repeating until the linear predictor settles:

1. start from the GLM fit (no random effects), as glmmPQL does: its linear predictor, working
   residuals and (R's ``glm.fit``) working weights;
2. fit the LMM  ``z ~ X beta + Z b + e``,  ``Var(e_i) = sigma^2 / w_i``  by maximum likelihood
   (glmmPQL calls ``nlme::lme(method = "ML", weights = varFixed(~invwt))``, ``invwt = 1/w``);
3. ``eta = X beta + Z b + offset``; stop if ``sum((eta - eta_old)^2) < 1e-6 * sum(eta^2)``;
   else ``z = eta + (y - mu) / mu_eta(eta) - offset``, ``w = prior_w * mu_eta(eta)^2 / V(mu)``
   and go to 2 -- at most ``niter`` (10) LMM fits.

The result is the last LMM: its fixed effects, their covariance ``sigma^2 (R_X'R_X)^{-1}``,
the random-effect covariances (scaled by the residual variance, as lme reports them), the
residual scale ``sigma`` (an estimated dispersion: about 1 for binomial/Poisson data without
overdispersion) and the BLUPs.  There is no likelihood, so ``loglik``, AIC, BIC and the deviance
are NaN -- exactly as glmmPQL sets ``logLik`` to NA.

PQL estimates of the random-effect variances are biased towards zero for binary responses and
small counts (Breslow & Lin 1995; Rodriguez & Goldman 1995); use :func:`pyglmm.glmer` (Laplace)
when that matters.
"""
from __future__ import annotations


import numpy as np

from .design import model_frame
from .fit.lmm import LmmProblem
from .fit.optimize import minimize_bounded
from .linalg.blocked import BlockedFactor
from .arguments import arg_bool, arg_int, arg_vector
from .checks import SINGULAR_TOL, check_identifiable, note_frame, is_singular, check_nobs_vs_nre
from .guard import public_entry
from .method import Method, frame_with_response, register
from .prepare import (check_magnitudes, data_name, family_arg, formula_text, numerics_view,
                      prepare_formula)
from .results.model import FitRecord, MixedModel

PQL_TOL = 1e-6          # glmmPQL: sum((eta - etaold)^2) < 1e-6 * sum(eta^2)
GLM_EPS = 1e-8          # glm.control(): epsilon
GLM_MAXIT = 25          # glm.control(): maxit


def _glm_fit(y, X, w0, off, fam):
    """R's ``glm.fit`` (IRLS) without step halving.

    Returns the linear predictor, the working residuals ``(y - mu)/mu_eta`` at the final fit and
    the working weights of the *last iteration* (R's ``fit$weights``, which glmmPQL uses for the
    first LMM: they are one IRLS step behind the final fit).
    """
    mu = fam.initialize(y, w0)
    eta = fam.link.link(mu) + 0.0
    mu = fam.link.inverse(eta)
    dev_old = float(fam.dev_resids(y, mu, w0).sum())
    wz = np.zeros_like(y)
    for _ in range(GLM_MAXIT):
        d = fam.link.mu_eta(eta)
        good = (w0 > 0) & (d != 0)
        z = (eta - off)[good] + (y - mu)[good] / d[good]
        ww = w0[good] * d[good] ** 2 / fam.variance(mu[good])
        sw = np.sqrt(ww)
        beta, *_ = np.linalg.lstsq(X[good] * sw[:, None], z * sw, rcond=None)
        wz = np.zeros_like(y)
        wz[good] = ww
        eta = X @ beta + off
        mu = fam.link.inverse(eta)
        dev = float(fam.dev_resids(y, mu, w0).sum())
        if not np.isfinite(dev):
            raise ValueError("the GLM fit that starts PQL diverged (non-finite deviance); "
                             "check the response and the family/link")
        if abs(dev - dev_old) / (abs(dev) + 0.1) < GLM_EPS:
            break
        dev_old = dev
    resid = (y - mu) / fam.link.mu_eta(eta)
    return eta, resid, wz


def _fit_working_lmm(prob: LmmProblem, theta0: np.ndarray, lb: np.ndarray, start: np.ndarray):
    """Minimise the profiled ML deviance of one working LMM over theta (L-BFGS-B).

    A diagonal theta of 0 is a stationary point of the profiled deviance (it is even in that
    component), so a gradient method whose first step overshoots to the bound stays there even
    when the minimum is interior.  When the result has a variance at zero, restart from a few
    interior points and keep the lowest deviance.
    """
    opt = minimize_bounded(prob.deviance, theta0, lb, label="theta", grad=prob.gradient)
    at_bound = np.isfinite(lb) & (opt.x < SINGULAR_TOL)
    if at_bound.any():
        for scale in (0.5, 0.2, 0.05, 2.0):
            x0 = np.where(at_bound, scale * np.maximum(start, 1.0), opt.x)
            alt = minimize_bounded(prob.deviance, x0, lb, label="theta", grad=prob.gradient)
            if alt.fmin < opt.fmin - 1e-10 * max(1.0, abs(opt.fmin)):
                opt = alt
    return opt


def glmmPQL(formula: str, data, family="binomial", *, weights=None, offset=None, niter: int = 10,
            verbose: bool = False) -> MixedModel:
    """Fit a GLMM by penalized quasi-likelihood, as R's ``MASS::glmmPQL``.

    ``formula`` uses lme4 syntax (``y ~ x + (1 | g)``); the response, ``weights`` and ``offset``
    are as in :func:`pyglmm.glmer`.  At most ``niter`` weighted linear mixed models (ML) are fitted;
    ``verbose`` prints "iteration i" for each, as glmmPQL does.

    The returned :class:`MixedModel` has ``method == "PQL"``; ``loglik``, ``aic``, ``bic`` and
    ``deviance`` are NaN (there is no likelihood), ``sigma`` is the residual scale of the working
    LMM (glmmPQL's "Residual" standard deviation), ``varcorr`` lists the random-effect variances and
    that residual, and ``optinfo["iterations"]`` (also ``m.iterations``) the number of LMM fits.
    Fixed effects are tested with z statistics (nlme/glmmPQL prints t tests with
    denominator degrees of freedom; the estimates and standard errors are the same).

    PQL's variance components are biased towards zero for binary data and small counts
    (Breslow & Lin 1995; Rodriguez & Goldman 1995): prefer :func:`pyglmm.glmer` there.
    """
    fn = "glmmPQL"
    pf = prepare_formula(formula, fn)
    niter = arg_int("niter", niter, fn, lo=1)
    verbose = arg_bool("verbose", verbose, fn) if isinstance(verbose, (bool, np.bool_)) else \
        bool(arg_int("verbose", verbose, fn, lo=0, what=" or a bool"))
    arg_vector("weights", weights, fn)
    arg_vector("offset", offset, fn)
    fam = family_arg(family, fn)
    if fam.name == "nbinom2" and fam.shape is None:
        raise ValueError("glmmPQL needs a fully specified family: give the negative binomial "
                         "shape, e.g. make_family('nbinom2').with_shape(theta) (as "
                         "MASS::negative.binomial(theta))")
    frame = model_frame(pf, data, weights=weights, offset=offset, binomial=fam.response_kind == "proportion")
    return _pql_frame(frame, fam, formula=formula_text(formula), data_name=data_name(data),
                      niter=niter, verbose=verbose)


def _pql_frame(frame, fam, *, formula: str, data_name: str, niter: int = 10, verbose: bool = False,
               quiet: bool = False) -> MixedModel:
    """glmmPQL from a ready model frame (refits: the bootstrap)."""
    fam.validate(frame.y, frame.weights, frame.response_name)
    check_magnitudes(frame, fam, counts=False)
    if not quiet:
        note_frame(frame)
    check_identifiable(frame)          # the residual scale is always estimated
    check_nobs_vs_nre(frame, allow_n=False)
    rs, infos, sv = numerics_view(frame)
    y, X, w0, off = sv.y, sv.X, sv.weights, sv.offset

    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        eta, wres, wz = _glm_fit(y, X, w0, off, fam)
    z = eta + wres - off
    lb = rs.lower_bounds()
    theta = rs.theta_start()
    opts = []
    converged = False
    it = 0
    for it in range(1, niter + 1):
        if verbose:
            print(f"iteration {it}", flush=True)
        prob = LmmProblem(z, X, rs, wz, np.zeros_like(z), REML=False)
        opt = _fit_working_lmm(prob, theta, lb, rs.theta_start())
        opts.append(opt)
        theta = opt.x
        st = prob.evaluate(theta)
        zvals = rs.scaled_values(theta)
        eta_old = eta
        eta = X @ st.beta + rs.Zu(zvals, st.u) + off
        if np.sum((eta - eta_old) ** 2) < PQL_TOL * np.sum(eta ** 2):
            converged = True
            break
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            mu = fam.link.inverse(eta)
            d = fam.link.mu_eta(eta)
            z = eta + (y - mu) / d - off
            wz = w0 * d * d / fam.variance(mu)
        if not np.all(np.isfinite(z[w0 > 0])) or not np.all(np.isfinite(wz)):
            raise ValueError(f"PQL iteration {it} produced non-finite working responses or "
                             "weights (fitted values at the boundary of the family's range)")

    msgs = []
    if not converged:
        msgs.append(f"PQL did not converge in niter = {niter} iterations (the relative change of "
                    "the linear predictor is still above 1e-3); the estimates are from the last "
                    "working model (MASS::glmmPQL returns them without a warning)")
    singular = is_singular(rs, theta)
    if singular:
        msgs.insert(0, "boundary (singular) fit: a variance is estimated as zero (or a correlation "
                       "as +/-1); consider simplifying the random-effects structure")
    sigma = st.sigma
    F0 = BlockedFactor(rs, zvals, wz, None)
    cv_u = F0.diag_inverse_blocks()
    T = rs.T_blocks(theta)
    condvar = [sigma**2 * np.einsum("ab,lbc,dc->lad", Tk, cu, Tk) for Tk, cu in zip(T, cv_u)]
    mu = fam.link.inverse(eta)
    record = FitRecord(
        kind="glmm", method="PQL", theta=theta, beta=st.beta, u=st.u,
        b=rs.b_from_u(theta, st.u), T=T, vcov=prob.vcov_beta(st),
        loglik=float("nan"), sigma=float(sigma), dispersion=float(sigma**2), shape=None,
        n_params=rs.ntheta + X.shape[1] + 1, eta=eta[sv.back], mu=mu[sv.back], condvar=condvar,
        converged=converged, singular=singular, messages=msgs,
        optinfo={"iterations": it, "niter": niter, "lmm_opts": opts,
                 "working_response": z[sv.back], "working_weights": wz[sv.back],
                 "singular_tol": SINGULAR_TOL},
    )
    m = MixedModel(formula=formula, data_name=data_name, frame=frame, family=fam, terms=infos,
                   record=record, quiet=quiet)
    m.fit_method = PQL(fam, niter)
    m._refit_spec = m.fit_method.spec()
    return m


@register
class PQL(Method):
    """glmmPQL: penalized quasi-likelihood (MASS::glmmPQL), which has no likelihood."""

    kind = "pql"
    has_likelihood = False

    def __init__(self, family, niter: int = 10):
        self.family, self.niter = family, int(niter)

    def spec(self) -> dict:
        return dict(kind=self.kind, family=self.family, niter=self.niter)

    @classmethod
    def from_spec(cls, spec: dict) -> "PQL":
        return cls(spec["family"], spec.get("niter", 10))

    def refit(self, model, newresp=None, *, quiet: bool = True, hessian: bool = True):
        return _pql_frame(frame_with_response(model, newresp), self.family, formula=model.formula,
                          data_name=model.data_name, niter=self.niter, quiet=quiet)


glmmPQL = public_entry(glmmPQL)
