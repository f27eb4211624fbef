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
    phi = model.dispersion
    return fam.simulate(mu, np.asarray(wt, float), 1.0 if phi is None else phi, rng,
                        shape=model.shape)


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
