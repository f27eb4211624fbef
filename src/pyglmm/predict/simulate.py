"""Simulate responses from a fitted model, as lme4's simulate.merMod."""
from __future__ import annotations

import numpy as np

from ..design import lme4_term_order


def _reterms_in_fit_order(model):
    return [model.frame.reterms[k] for k in lme4_term_order(model.frame.reterms)]


def random_part(model, b: list[np.ndarray]) -> np.ndarray:
    """Z b in the rows of the model frame, for per-term random effects b (nlevels x p each)."""
    out = np.zeros(model.nobs)
    for rt, bk in zip(_reterms_in_fit_order(model), b):
        out += np.einsum("ij,ij->i", np.asarray(rt.X, float), bk[np.asarray(rt.codes)])
    return out


def draw_response(model, eta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One response vector on the model frame's scale (proportions for binomial) given eta."""
    fr = model.frame
    wt = fr.weights
    if model.is_lmm:
        sd = model.sigma / np.sqrt(np.where(wt > 0, wt, np.inf))
        return eta + rng.normal(size=eta.shape) * sd
    fam = model.family
    mu = fam.link.inverse(eta)
    name = fam.name
    if name == "poisson":
        return rng.poisson(mu).astype(float)
    if name == "binomial":
        n = np.round(wt).astype(np.int64)
        s = rng.binomial(np.maximum(n, 0), np.clip(mu, 0.0, 1.0))
        return np.where(n > 0, s / np.maximum(n, 1), 0.0)
    if name == "nbinom2":
        k = model.shape
        return rng.negative_binomial(k, k / (k + mu)).astype(float)
    if name == "Gamma":
        phi = model.dispersion
        return rng.gamma(1.0 / phi, mu * phi)
    if name == "inverse.gaussian":
        return rng.wald(mu, 1.0 / model.dispersion)
    if name == "gaussian":
        return mu + rng.normal(size=mu.shape) * model.sigma
    raise ValueError(f"simulation is not available for family {name!r}")


def simulate(model, nsim: int = 1, seed=None, re_form="~0") -> np.ndarray:
    """Simulated responses, one column per simulation (n x nsim).

    ``re_form="~0"`` (lme4's default re.form = NA) draws new random effects for each simulation;
    ``re_form=None`` conditions on the estimated conditional modes.
    """
    rng = np.random.default_rng(seed)
    fr = model.frame
    fixed = fr.offset + fr.X @ model.fixef.values
    out = np.empty((model.nobs, nsim))
    cond = re_form is None
    if not cond and str(re_form).replace(" ", "") not in ("~0", "NA", "~-1"):
        raise ValueError(f"re_form must be None (condition on all random effects) or '~0' "
                         f"(draw new ones); got {re_form!r}")
    scale = model.sigma if model.is_lmm else 1.0
    b_hat = [model._r.b[k] for k in range(len(model.terms))]
    for s in range(nsim):
        if cond:
            b = b_hat
        else:
            b = []
            for T, bk in zip(model._r.T, b_hat):
                u = rng.normal(size=bk.shape)
                b.append(scale * u @ T.T)
        eta = fixed + random_part(model, b)
        out[:, s] = draw_response(model, eta, rng)
    return out
