"""Entry points `glmer` and `lmer`: formula + data -> design -> fit -> result (lme4's pipeline)."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace as _dc_replace

import numpy as np

from .design import model_frame
from .families import make_family
from .fit.agq import check_agq, fit_agq
from .fit.glmm import fit_glmm
from .linalg.threads import with_fit_blas_threads
from .fit.lmm import LmmProblem
from .fit.optimize import gradient_hessian, minimize_bounded, recheck_boundary
from .fit.pirls import GlmmProblem
from .fit.progress import Progress
from .linalg.blocked import BlockedFactor
from .linalg.small import spd_inverse
from .arguments import arg_bool, arg_choice, arg_control, arg_int, arg_start, arg_vector
from .checks import (SINGULAR_TOL, check_identifiable, check_response_varies,
                     conv_messages, note_frame, separation_messages, is_singular,
                     check_nobs_vs_nre, check_start_lengths)
from .errors import ArgumentError
from .guard import public_entry
from .method import Method, frame_with_response, register
from .prepare import (rescaling, arg_verbose, check_magnitudes, data_name, family_arg, formula_text,
                      numerics_view, prepare_formula, response_scale)
from .results.model import FitRecord, Lazy, MixedModel
from ._warn import user_stacklevel


def glmer(formula: str, data, family="binomial", *, weights=None, offset=None, nAGQ: int = 1,
          verbose: int = 0, start: dict | None = None, laplace: str | None = None,
          progress: bool | None = None, method: str = "ML", control: dict | None = None) -> MixedModel:
    """Fit a generalized linear mixed model by maximum likelihood (Laplace approximation, as lme4's glmer).

    ``method``: "ML" (maximum likelihood: Laplace for nAGQ=1, adaptive Gauss-Hermite quadrature
    for nAGQ > 1), "PQL" (penalized quasi-likelihood, as MASS::glmmPQL; see `glmmPQL`) or "MCMC"
    (Bayesian, NUTS; `pyglmm.bayes.bglmer` with default settings; needs pyglmm[bayes]).
    ``verbose`` > 0 prints every deviance evaluation (as lme4's ``verbose``); ``progress`` shows a
    status line on stderr for fits longer than a few seconds (default: when stderr is a terminal).
    ``laplace`` chooses the curvature in the Laplace log-determinant: "expected" (Fisher
    weights, lme4's choice) or "observed" (the exact Hessian, glmmTMB's choice). They coincide
    for canonical links; the default is lme4's for the families lme4 fits (binomial, Poisson)
    and glmmTMB's for the others (nbinom2, Gamma, inverse Gaussian, Gaussian with a link).
    """
    fn = "glmer"
    pf = prepare_formula(formula, fn)
    arg_choice("method", method, ("ML", "Laplace", "AGQ", "PQL", "MCMC"), fn, case=False)
    key = method.upper()
    nAGQ = arg_int("nAGQ", nAGQ, fn, lo=0, what=" (0: PIRLS for beta, 1: Laplace, > 1: adaptive "
                   "Gauss-Hermite quadrature nodes)")
    verbose = arg_verbose(verbose, fn)
    start = arg_start(start, fn)
    arg_choice("laplace", laplace, ("expected", "observed"), fn, allow_none=True)
    arg_bool("progress", progress, fn, allow_none=True)
    control = arg_control(control, fn)
    arg_vector("weights", weights, fn)
    arg_vector("offset", offset, fn)
    if key in ("MCMC", "PQL"):
        given = [name for name, v, default in (("nAGQ", nAGQ, 1), ("start", start, {}),
                                                ("laplace", laplace, None), ("control", control, {}))
                 if v != default]
        if given:
            raise ArgumentError(f"glmer(): {', '.join(given)} {'is' if len(given) == 1 else 'are'} "
                                f"not used by method={method!r}; remove "
                                f"{'it' if len(given) == 1 else 'them'} or use method='ML'")
    if key == "MCMC":
        from .bayes import bglmer
        return bglmer(pf, data, family, weights=weights, offset=offset)
    if key == "PQL":
        from .pql import glmmPQL
        return glmmPQL(pf, data, family, weights=weights, offset=offset, verbose=bool(verbose))
    fam = family_arg(family, fn)
    if fam.is_linear_model:
        warnings.warn("glmer with family gaussian (identity link) is a linear mixed model; "
                      "fitting it by lmer(REML=False)", UserWarning, stacklevel=user_stacklevel())
        return lmer(pf, data, REML=False, weights=weights, offset=offset, verbose=verbose,
                    start=start or None)
    frame = model_frame(pf, data, weights=weights, offset=offset, binomial=fam.response_kind == "proportion")
    return _glmer_frame(frame, fam, formula=formula_text(formula), data_name=data_name(data),
                        nAGQ=nAGQ, verbose=verbose, start=start, laplace=laplace, progress=progress,
                        control=control)


@with_fit_blas_threads
def _glmer_frame(frame, fam, *, formula: str, data_name: str, nAGQ: int = 1, verbose: int = 0,
                 start: dict | None = None, laplace: str | None = None,
                 progress: bool | None = None, quiet: bool = False,
                 control: dict | None = None, structure=None, hessian: bool = True) -> MixedModel:
    """glmer from a ready model frame (used by refits: bootstrap, profiles, simulation studies).
    ``structure``: the (rs, infos, sorted view) of an earlier fit of the same design (refits);
    ``hessian=False`` skips the Hessian (standard errors then from R_X; the bootstrap)."""
    fam.validate(frame.y, frame.weights, frame.response_name)
    check_response_varies(frame, fam)
    if structure is None:
        check_magnitudes(frame, fam)
    if not quiet:
        note_frame(frame)
    if fam.has_dispersion:
        check_identifiable(frame)
    check_nobs_vs_nre(frame, allow_n=True)
    rs, infos, sv = numerics_view(frame) if structure is None else structure
    if start:
        check_start_lengths(start, rs.ntheta, rs.lower_bounds(), frame.fixef_names, "glmer")
    if laplace is None:
        laplace = fam.default_laplace
    problem = GlmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, fam,
                          laplace_weights=laplace)
    start_theta = None if not start or "theta" not in start else np.asarray(start["theta"], float)
    control = arg_control(control, "glmer")
    maxiter = control.get("maxiter", 2000)
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        prog = Progress(progress)
        try:
            if nAGQ > 1:
                check_agq(rs, nAGQ, [t.group for t in infos])
                lap = fit_glmm(problem, nAGQ=1, verbose=verbose, start_theta=start_theta,
                               progress=prog, compute_hessian=False, maxiter=maxiter)
                fit = fit_agq(problem, lap, nAGQ, verbose=verbose, progress=prog)
            else:
                fit = fit_glmm(problem, nAGQ=nAGQ, verbose=verbose, start_theta=start_theta,
                               start_beta=None if not start or "beta" not in start
                               else np.asarray(start["beta"], float),
                               progress=prog, maxiter=maxiter, compute_hessian=hessian)
        finally:
            prog.close()
    th, be = fit.theta, fit.beta
    nth, p = rs.ntheta, frame.X.shape[1]
    singular = is_singular(rs, th)
    lb = rs.lower_bounds()
    free = np.ones(nth + p + (fit.extra is not None), bool)
    free[:nth] = ~(np.isfinite(lb) & (th < SINGULAR_TOL))
    converged, msgs = conv_messages(fit.gradient, fit.hessian, free, singular)
    if not fit.opt_stage2.success and nAGQ > 0:
        converged_opt = (not free.any() or np.max(np.abs(fit.gradient[free])) < 1e-3) \
            if fit.gradient is not None else False     # no free parameter: every theta at 0, no beta
        if not converged_opt:
            converged = False
            msgs.append(f"optimizer did not report convergence: {fit.opt_stage2.message}")
    phi = fit.extra if fit.extra_kind == "dispersion" else 1.0
    # fixed-effects covariance: from the Hessian (lme4's default), else from R_X
    vcov = np.zeros((0, 0)) if p == 0 else None        # no fixed effects (y ~ 0 + (...))
    if fit.hessian is not None and vcov is None:
        Hf = fit.hessian if free.all() else fit.hessian[np.ix_(free, free)]
        try:
            Vall = spd_inverse(Hf / 2.0)
            # beta's rows among the free parameters (every beta is free: theta's bounds only)
            start = int(np.count_nonzero(free[:nth]))
            vcov = Vall[start:start + p, start:start + p].copy()
        except np.linalg.LinAlgError:
            msgs.append("the Hessian is not positive definite: standard errors use the "
                        "PIRLS approximation (lme4's use.hessian = FALSE)")
    r = fit.pirls
    fam_hat = fit.family
    th_fit = th.copy()

    def pirls_weights():
        d = fam_hat.link.mu_eta(r.eta)
        return sv.weights * d * d / fam_hat.variance(r.mu) / phi
    if vcov is None:
        FX = BlockedFactor(rs, rs.scaled_values(th), pirls_weights(), sv.X)
        RXinv = np.linalg.inv(FX.RX())
        vcov = RXinv.T @ RXinv

    def condvar():
        """T M^-1 T' per term, M from the PIRLS weights at the optimum."""
        F0 = BlockedFactor(rs, rs.scaled_values(th_fit), pirls_weights(), None)
        return _conditional_b_variances(rs, th_fit, F0.diag_inverse_blocks())
    if singular:
        msgs.insert(0, "boundary (singular) fit: a variance is estimated as zero (or a correlation "
                       "as +/-1); consider simplifying the random-effects structure")
    msgs.extend(separation_messages(fam_hat, r.mu, be, frame.fixef_names))
    record = FitRecord(
        kind="glmm", method="Laplace" if nAGQ == 1 else f"nAGQ={nAGQ}", theta=th, beta=be, u=r.u,
        b=Lazy(lambda: rs.b_from_u(th_fit, r.u)), T=Lazy(lambda: rs.T_blocks(th_fit)), vcov=vcov,
        loglik=-0.5 * fit.deviance,
        sigma=float(np.sqrt(phi)) if fit.extra_kind == "dispersion" else None,
        dispersion=fit.extra if fit.extra_kind == "dispersion" else None,
        shape=fit.extra if fit.extra_kind == "shape" else None,
        n_params=nth + p + (fit.extra is not None), eta=r.eta[sv.back], mu=r.mu[sv.back],
        condvar=Lazy(condvar),
        converged=converged, singular=singular, messages=msgs,
        optinfo={"stage1": fit.opt_stage1, "stage2": fit.opt_stage2, "gradient": fit.gradient,
                 "hessian": fit.hessian, "pirls_iterations": r.iterations},
    )
    m = MixedModel(formula=formula, data_name=data_name, frame=frame, family=fam_hat, terms=infos,
                   record=record, quiet=quiet)
    m.fit_method = Laplace(fam, nAGQ, laplace)
    m._refit_spec = m.fit_method.spec()
    m._problem, m._rs, m._sorted = problem, rs, sv   # the numerics, for profiles and refits
    return m


def lmer(formula: str, data, *, REML: bool = True, weights=None, offset=None,
         verbose: int = 0, progress: bool | None = None, start=None) -> MixedModel:
    """Fit a linear mixed model by REML (default) or ML, minimising lme4's profiled deviance.

    ``verbose`` > 0 prints every deviance evaluation; ``progress`` shows a status line on stderr
    for fits longer than a few seconds (default: when stderr is a terminal), as in `glmer`.
    ``start``: starting values of theta (a vector, or ``{"theta": [...]}``), as lme4's ``start``.
    A response of extreme magnitude (beyond 1e+-50) is divided by a power of two internally and
    the estimates reported on the user's scale."""
    fn = "lmer"
    pf = prepare_formula(formula, fn)
    REML = arg_bool("REML", REML, fn)
    verbose = arg_verbose(verbose, fn)
    arg_bool("progress", progress, fn, allow_none=True)
    start = arg_start(start, fn, keys=("theta",))
    arg_vector("weights", weights, fn)
    arg_vector("offset", offset, fn)
    frame = model_frame(pf, data, weights=weights, offset=offset, binomial=False)
    return _lmer_frame(frame, formula=formula_text(formula), data_name=data_name(data), REML=REML,
                       verbose=verbose, progress=progress, start=start)


@with_fit_blas_threads
def _lmer_frame(frame, *, formula: str, data_name: str, REML: bool = True, verbose: int = 0,
                quiet: bool = False, structure=None, start_theta=None,
                progress: bool | None = None, hessian: bool = True,
                start: dict | None = None) -> MixedModel:
    """lmer from a ready model frame (``structure`` and ``start_theta``: from an earlier fit of the
    same design, for refits)."""
    fam = make_family("gaussian")
    fam.validate(frame.y, frame.weights, frame.response_name)
    if structure is None:
        check_magnitudes(frame, fam)
    if not quiet:
        note_frame(frame)
    check_identifiable(frame)
    check_nobs_vs_nre(frame, allow_n=False)
    scale = response_scale(frame)
    if scale != 1.0:
        return _lmer_rescaled(frame, scale, formula=formula, data_name=data_name, REML=REML,
                              verbose=verbose, quiet=quiet, structure=structure,
                              start_theta=start_theta, start=start, progress=progress,
                              hessian=hessian)
    rs, infos, sv = structure if structure is not None else _lmm_view(frame)
    if start:
        check_start_lengths(start, rs.ntheta, rs.lower_bounds(), frame.fixef_names, "lmer")
        start_theta = start["theta"]
    prob = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=REML)
    lb = rs.lower_bounds()
    th0 = rs.theta_start() if start_theta is None else np.maximum(np.asarray(start_theta, float), lb)
    prog = Progress(progress)
    dev_fn, grad_fn, fg_fn = prob.objective(fused=True)
    try:
        opt = minimize_bounded(dev_fn, th0, lb, verbose=verbose, label="theta",
                               grad=grad_fn, progress=prog, fg=fg_fn)   # exact profiled gradient
        if any(t.p > 1 for t in rs.terms):       # only vector terms' diagonals are re-checked
            vector_diag = np.concatenate([(r == c) & (t.p > 1)
                                          for t, (r, c) in zip(rs.terms, rs._tril)])
            opt = recheck_boundary(dev_fn, grad_fn, rs.theta_start(), lb, opt,
                                   candidates=vector_diag, verbose=verbose, progress=prog)
    finally:
        prog.close()
    th = opt.x
    singular = is_singular(rs, th)
    free = ~(np.isfinite(lb) & (th < SINGULAR_TOL))
    # the Hessian (differences of the exact gradient) is for the convergence check only: vcov
    # comes from R_X
    grad, hess = gradient_hessian(grad_fn, th, 1e-4, fg=fg_fn, hessian=hessian)
    st = prob.evaluate(th)
    converged, msgs = conv_messages(grad, hess, free, singular)
    if singular:
        msgs.insert(0, "boundary (singular) fit: a variance is estimated as zero (or a correlation "
                       "as +/-1); consider simplifying the random-effects structure")
    ml_dev = None
    if REML:
        # deviance() of a REML fit: the profiled ML criterion at the REML estimate of theta
        n = prob.n_eff
        ml_dev = float(st.factor.logdet_Z() + n * (1.0 + np.log(2 * np.pi * st.pwrss / n)) - prob.sum_log_w)
    th_fit = th.copy()
    fitted = Lazy(lambda: _lmm_fitted(rs, sv, st, th_fit))      # eta and mu: one array
    record = FitRecord(
        kind="lmm", method="REML" if REML else "ML", theta=th, beta=st.beta, u=st.u,
        b=Lazy(lambda: rs.b_from_u(th_fit, st.u)), T=Lazy(lambda: rs.T_blocks(th_fit)),
        vcov=Lazy(lambda: prob.vcov_beta(st)), loglik=-0.5 * st.deviance,
        sigma=st.sigma, dispersion=None, shape=None, n_params=rs.ntheta + frame.X.shape[1] + 1,
        eta=fitted, mu=fitted, condvar=Lazy(lambda: _conditional_b_variances(
            rs, th_fit, prob.conditional_u_variances(th_fit), st.sigma**2)),
        converged=converged, singular=singular, messages=msgs,
        reml_criterion=st.deviance if REML else None, ml_deviance=ml_dev,
        optinfo={"opt": opt, "gradient": grad, "hessian": hess},
    )
    m = MixedModel(formula=formula, data_name=data_name, frame=frame, family=fam, terms=infos,
                   record=record, quiet=quiet)
    m.fit_method = LMM(REML)
    m._refit_spec = m.fit_method.spec()
    m._problem, m._rs, m._sorted = prob, rs, sv
    return m


def _lmm_view(frame):
    """The numerics' view of an LMM, sorted by the first term's levels only where the LMM's
    numerics gain from it (`LmmProblem.sorts_rows`)."""
    return numerics_view(frame, sort=LmmProblem.sorts_rows(
        len(frame.reterms), frame.y.shape[0],
        sum(len(rt.levels) * rt.X.shape[1] for rt in frame.reterms)))


def _lmm_fitted(rs, sv, st, theta) -> np.ndarray:
    """The fitted values X beta + Z b (+ offset) of an LMM, in the data's row order."""
    return (sv.offset + sv.X @ st.beta + rs.Zu(rs.scaled_values(theta), st.u))[sv.back]


def _conditional_b_variances(rs, theta, cv_u, scale: float = 1.0) -> list[np.ndarray]:
    """Conditional variances of the random effects b = Lambda u per term, (levels, p, p):
    scale T_k V_k T_k' from the blocks V_k of M^-1 (scale: sigma^2 for an LMM)."""
    return [scale * np.einsum("ab,lbc,dc->lad", Tk, cu, Tk)
            for Tk, cu in zip(rs.T_blocks(theta), cv_u)]


def refit(model: MixedModel, newresp=None, *, quiet: bool = True, hessian: bool = True) -> MixedModel:
    """Refit the same model to a new response vector (same rows, same design), as lme4's refit().
    ``hessian=False``: no Hessian (no Hessian-based SEs or convergence check; the bootstrap)."""
    fm = getattr(model, "fit_method", None)
    if fm is None:
        raise NotImplementedError(f"refit is not available for {model.method} fits")
    return fm.refit(model, newresp, quiet=quiet, hessian=hessian)


def _reused_structure(model, frame):
    """The design is unchanged: the fit's sorted structure (and block pattern) with the new
    response in the same row order (None for a model loaded from a file)."""
    sv = getattr(model, "_sorted", None)
    return None if sv is None else (model._rs, model.terms, _dc_replace(sv, y=frame.y[sv.perm]))


@register
class Laplace(Method):
    """glmer: the Laplace approximation (nAGQ = 1) or adaptive quadrature (nAGQ > 1) of the
    marginal likelihood, with lme4's (expected) or glmmTMB's (observed) curvature."""

    kind = "glmm"

    def __init__(self, family, nAGQ: int = 1, laplace: str | None = None):
        self.family, self.nAGQ, self.laplace = family, nAGQ, laplace

    def spec(self) -> dict:
        return dict(kind=self.kind, family=self.family, nAGQ=self.nAGQ, laplace=self.laplace)

    @classmethod
    def from_spec(cls, spec: dict) -> "Laplace":
        return cls(spec["family"], spec.get("nAGQ", 1), spec.get("laplace"))

    def refit(self, model, newresp=None, *, quiet: bool = True, hessian: bool = True):
        # start from the fitted parameters, as lme4's refit does, unless the fit was on the
        # boundary (a zero variance is a stationary point to start from)
        frame = frame_with_response(model, newresp)
        r = model._r
        start = None if r.singular else {"theta": r.theta, "beta": r.beta}
        return _glmer_frame(frame, self.family, formula=model.formula, data_name=model.data_name,
                            nAGQ=self.nAGQ, laplace=self.laplace, quiet=quiet,
                            structure=_reused_structure(model, frame), start=start, hessian=hessian)

    def attach_numerics(self, model) -> None:
        rs, _, sv = numerics_view(model.frame)
        laplace = self.laplace or model.family.default_laplace
        model._problem = GlmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, model.family,
                                     laplace_weights=laplace)
        model._rs, model._sorted = rs, sv


@register
class LMM(Method):
    """lmer: lme4's profiled REML or ML deviance."""

    kind = "lmm"

    def __init__(self, REML: bool = True):
        self.REML = bool(REML)

    def spec(self) -> dict:
        return dict(kind=self.kind, REML=self.REML)

    @classmethod
    def from_spec(cls, spec: dict) -> "LMM":
        return cls(spec.get("REML", True))

    def refit(self, model, newresp=None, *, quiet: bool = True, hessian: bool = True):
        frame = frame_with_response(model, newresp)
        r = model._r
        return _lmer_frame(frame, formula=model.formula, data_name=model.data_name,
                           REML=self.REML, quiet=quiet, structure=_reused_structure(model, frame),
                           start_theta=None if r.singular else r.theta, hessian=hessian)

    def ml_refit(self, model):
        if not self.REML:
            return model
        return _lmer_frame(model.frame, formula=model.formula, data_name=model.data_name,
                           REML=False, quiet=True)

    def attach_numerics(self, model) -> None:
        rs, _, sv = _lmm_view(model.frame)
        model._problem = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=self.REML)
        model._rs, model._sorted = rs, sv


def _lmer_rescaled(frame, s: float, *, formula, data_name, REML, verbose, quiet, structure,
                   start_theta, start, progress, hessian) -> MixedModel:
    """lmer of y / s (s a power of two, so the division is exact) reported on the user's scale:
    beta, sigma, u, b and the fitted values times s, vcov and conditional variances times s^2,
    theta unchanged, log-likelihood shifted by -n log s (REML: -(n - p) log s)."""
    fr_s = _dc_replace(frame, y=frame.y / s, offset=frame.offset / s)
    st_s = None
    if structure is not None:
        rs_, infos_, sv_ = structure
        st_s = (rs_, infos_, _dc_replace(sv_, y=sv_.y / s, offset=sv_.offset / s))
    inner = _lmer_frame(fr_s, formula=formula, data_name=data_name, REML=REML, verbose=verbose,
                        quiet=True, structure=st_s, start_theta=start_theta, progress=progress,
                        hessian=hessian, start=start)
    r = inner._r
    n, p = inner._problem.n_eff, frame.X.shape[1]
    logs = math.log(s)
    shift = (n - p if REML else n) * logs
    fitted = Lazy(lambda: r.eta * s)
    messages = list(r.messages)
    vmax = float(np.max(np.abs(np.diag(r.vcov)))) if frame.X.shape[1] else 1.0
    if vmax > 0 and not 1e-290 < vmax * s * s < 1e290:
        messages.append(
            f"the response's scale (~{s:.0e}) puts the variances of the fixed effects near "
            f"{vmax * s * s:.0e}, beyond double precision: vcov and the standard errors are not "
            "representable (the estimates, sigma, random effects and logLik are); divide the "
            f"response by {rescaling('', s).split()[-1]} to get them")
    record = FitRecord(
        kind=r.kind, method=r.method, theta=r.theta, beta=r.beta * s, u=r.u * s,
        b=Lazy(lambda: [bk * s for bk in r.b]), T=Lazy(lambda: r.T), vcov=Lazy(lambda: r.vcov * (s * s)),
        loglik=r.loglik - shift, sigma=r.sigma * s, dispersion=None, shape=None,
        n_params=r.n_params, eta=fitted, mu=fitted,
        condvar=Lazy(lambda: [c * (s * s) for c in r.condvar]),
        converged=r.converged, singular=r.singular, messages=messages,
        reml_criterion=None if r.reml_criterion is None else r.reml_criterion + 2 * shift,
        ml_deviance=None if r.ml_deviance is None else r.ml_deviance + 2 * n * logs,
        optinfo=dict(r.optinfo, response_scale=s),
    )
    m = MixedModel(formula=formula, data_name=data_name, frame=frame, family=inner.family,
                   terms=inner.terms, record=record, quiet=quiet)
    m.fit_method, m._refit_spec = inner.fit_method, inner._refit_spec
    m._problem, m._rs = inner._problem, inner._rs
    m._sorted = _dc_replace(inner._sorted, y=inner._sorted.y * s, offset=inner._sorted.offset * s)
    m._response_scale = s          # the numerics (_problem) are on the response / s scale
    return m


glmer = public_entry(glmer)
lmer = public_entry(lmer)
refit = public_entry(refit, "refitting")
