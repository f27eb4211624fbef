"""Pearson chi-square of a fitted model and of refits to simulated responses.

The reference distribution of the default dispersion test of
:func:`pyglmm.diagnostics.quantile_residuals` (DHARMa's ``testDispersion`` after
``simulateResiduals(refit = TRUE)``): responses simulated from the fitted model with new
random effects are refitted, and the Pearson chi-square of every refit is compared with the
observed one. GLMMs are refitted at the estimated variance parameters (theta, and the
dispersion / shape of families that have one): the fixed effects and conditional modes are
re-estimated by joint PIRLS, which is one penalized IRLS run instead of a full fit, about ten
times cheaper; the observed statistic is computed by the very same PIRLS run on the observed
response, so both sides are computed alike. Models without that route (linear mixed models,
PQL fits, models loaded from a file) are refitted completely with ``model.refit``.
"""
from __future__ import annotations

import numpy as np

from ..errors import FitError


def _pearson(y, mu, wt, variance) -> float:
    v = variance(mu)
    ok = wt > 0
    return float(np.sum(wt[ok] * (y[ok] - mu[ok]) ** 2 / v[ok]))


def _pirls_route(model):
    """(statistic of a response vector) by PIRLS at the fitted theta, or None if unavailable."""
    spec = getattr(model, "_refit_spec", {}) or {}
    sv = getattr(model, "_sorted", None)
    rs = getattr(model, "_rs", None)
    if model.is_lmm or spec.get("kind") != "glmm" or sv is None or rs is None:
        return None
    from ..fit.pirls import GlmmProblem
    fam = model.family
    r = model._r
    phi = float(r.dispersion) if getattr(fam, "has_dispersion", False) and r.dispersion else 1.0
    theta = np.asarray(r.theta, float)
    beta = np.asarray(r.beta, float)
    u0 = np.zeros_like(np.asarray(r.u, float))
    perm = np.asarray(sv.perm)
    wt = np.asarray(sv.weights, float)

    def stat(y_frame: np.ndarray) -> float:
        ys = np.asarray(y_frame, float)[perm]
        problem = GlmmProblem(ys, sv.X, rs, sv.weights, sv.offset, fam, laplace_weights="expected")
        with np.errstate(all="ignore"):
            fit = problem.pirls(theta, beta, phi, joint=True, u0=u0)
        return _pearson(ys, np.asarray(fit.mu, float), wt, fam.variance)
    return stat


def _full_refit_route(model):
    def stat(y_frame: np.ndarray) -> float:
        m = model.refit(y_frame)
        return float(np.sum(np.asarray(m.residuals("pearson"), float) ** 2))
    return stat


def pearson_refits(model, ysim: np.ndarray) -> tuple[float, np.ndarray, str]:
    """(observed Pearson chi-square, one per column of ``ysim`` after refitting, route).

    ``ysim`` holds responses on the model frame's scale (proportions for binomial), n x nsim.
    A refit that fails gives NaN (dropped from the p-value). ``route`` is ``"pirls"`` (fixed
    variance parameters) or ``"refit"`` (complete refits).
    """
    stat = _pirls_route(model)
    route = "pirls"
    if stat is None:
        stat, route = _full_refit_route(model), "refit"
    y = np.asarray(model.frame.y, float)
    if route == "pirls":
        try:
            observed = stat(y)
        except (ArithmeticError, np.linalg.LinAlgError, RuntimeError, ValueError) as e:
            raise FitError(f"the dispersion test could not rerun PIRLS on the observed response: {e}") from e
    else:
        observed = float(np.sum(np.asarray(model.residuals("pearson"), float) ** 2))
    sims = np.full(ysim.shape[1], np.nan)
    for k in range(ysim.shape[1]):
        try:
            sims[k] = stat(ysim[:, k])
        except (ArithmeticError, np.linalg.LinAlgError, RuntimeError, ValueError):
            pass        # e.g. an all-zero simulated response: no refit, no draw
    return observed, sims, route
