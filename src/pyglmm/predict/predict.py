"""Predictions from fitted mixed models, as lme4's ``predict.merMod``, plus fixed-effect standard errors,
confidence intervals and marginal (population-averaged) means.

Conditional, population-level and marginal predictions
------------------------------------------------------
``predict(m, newdata)`` (``re_form=None``) conditions on the estimated random effects (conditional
modes) of every term; ``re_form="~0"`` sets them to zero (lme4's ``re.form = NA``), and
``re_form="~(1|g)"`` keeps only the listed terms. For a GLMM the population-level prediction
``g^-1(x'beta)`` is the mean response of a *typical* group (random effect 0), which is not the mean
response averaged over groups. ``marginal=True`` returns that average, ``E[g^-1(x'beta + z'b)]`` with
``b ~ N(0, Sigma)`` for the terms selected by ``re_form``.

Example (the ``rehab`` data, ``incidents ~ treatment + gender + hours + (1 + treatment | rehab)``,
Poisson log link): with a random intercept of variance sigma^2 the marginal mean is
``E[exp(eta + b)] = exp(eta) * E[exp(b)] = exp(eta + sigma^2 / 2)``, because exp is convex
(Jensen's inequality): centres with a high rate add more incidents than centres with an equally low
rate remove. So ``m.predict(nd, type="response", marginal=True)`` is larger than
``m.predict(nd, type="response", re_form="~0")`` by the factor ``exp(z' Sigma z / 2)``; for the
identity link (LMMs) both coincide, for logit links the marginal probability is pulled towards 0.5.

Because the linear predictor is linear in ``b``, ``z'b`` is a single normal variable with variance
``s^2 = sum_k z_k' Sigma_k z_k``, whatever the number of random-effect dimensions, so the integral is
one-dimensional and Gauss-Hermite quadrature (``method="quadrature"``, default, 64 nodes) is exact to
rounding for smooth inverse links; ``method="mc"`` draws ``n_draws`` random-effect vectors (fixed
``seed``) instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..design.errors import DataError
from ..design.newdata import NewDataEvaluator, prototype_colnames
from ..formula import FormulaError, parse_formula
from ..design import lme4_term_order


@dataclass
class _Sel:
    """A formula random term ``j`` (fit order index ``k``) with the columns ``cols`` that are used."""

    j: int
    k: int
    cols: list[int]


def _is_population(re_form: Any) -> bool:
    if re_form is None:
        return False
    if isinstance(re_form, float) and math.isnan(re_form):
        return True
    if re_form is pd.NA:
        return True
    if isinstance(re_form, str):
        s = re_form.replace(" ", "")
        return s in ("~0", "NA", "~-1", "0", "~1", "-1", "")
    return False


def select_terms(model, re_form: Any) -> list[_Sel]:
    """Random terms (and columns) included by ``re_form``, matched by grouping factor and column names."""
    frame = model.frame
    order = lme4_term_order(frame.reterms)
    fit_index = {j: k for k, j in enumerate(order)}
    if re_form is None:
        return [_Sel(j, fit_index[j], list(range(len(rt.colnames)))) for j, rt in enumerate(frame.reterms)]
    if _is_population(re_form):
        return []
    if not isinstance(re_form, str):
        raise TypeError(f"re_form must be None, '~0' (or NA) or a formula string like '~(1|g)'; got {re_form!r}")
    text = re_form.strip()
    if not text.startswith("~"):
        text = "~" + text
    try:
        rf = parse_formula(text)
    except FormulaError as exc:
        raise ValueError(f"cannot parse re_form {re_form!r}: {exc}") from exc
    if not rf.random:
        if rf.fixed.terms:
            raise ValueError(f"re_form {re_form!r} has no random-effect terms such as (1|g); use '~0' for "
                             "population-level predictions")
        return []
    chosen: dict[int, set[int]] = {}
    groups = sorted({rt.group_name for rt in frame.reterms})
    for rt in rf.random:
        cands = [j for j, mt in enumerate(frame.reterms) if mt.group_name == rt.group_name]
        if not cands:
            raise ValueError(f"grouping factor {rt.group_name!r} in re_form ({rt.text}) is not in the model "
                             f"(grouping factors: {', '.join(groups)})")
        for col in prototype_colnames(rt.lhs, frame):
            j = next((j for j in cands if col in frame.reterms[j].colnames), None)
            if j is None:
                avail = [c for j2 in cands for c in frame.reterms[j2].colnames]
                raise ValueError(f"random effect {col!r} of grouping factor {rt.group_name!r} in re_form "
                                 f"({rt.text}) is not in the model (it has: {', '.join(avail)})")
            chosen.setdefault(j, set()).add(frame.reterms[j].colnames.index(col))
    return [_Sel(j, fit_index[j], sorted(cols)) for j, cols in sorted(chosen.items())]


@dataclass
class _Design:
    X: np.ndarray
    offset: np.ndarray
    na: np.ndarray
    re: list[tuple[_Sel, np.ndarray, np.ndarray]]   # (selection, codes (-1 new level, -2 NA), Z[:, cols])


def _design(model, newdata, sel: list[_Sel], allow_new_levels: bool, offset) -> _Design:
    frame = model.frame
    if newdata is None:
        if offset is not None:
            raise ValueError("offset= is only used with newdata; the fitted rows use the fit's offsets")
        re = [(s, np.asarray(frame.reterms[s.j].codes, np.int64), np.asarray(frame.reterms[s.j].X, float)[:, s.cols])
              for s in sel]
        return _Design(np.asarray(frame.X, float), np.asarray(frame.offset, float),
                       np.zeros(frame.X.shape[0], dtype=bool), re)
    pf = parse_formula(model.formula)
    nd = NewDataEvaluator(frame, newdata)
    fixed = nd.fixed(pf, offset)
    na = fixed.na.copy()
    re = []
    for s in sel:
        mt = frame.reterms[s.j]
        t = nd.reterm(pf.random[s.j], [str(v) for v in mt.levels], list(mt.colnames))
        if t.new_levels and not allow_new_levels:
            shown = ", ".join(t.new_levels[:10]) + (", ..." if len(t.new_levels) > 10 else "")
            raise DataError(f"new level(s) of grouping factor {mt.group_name!r} in newdata that were not in the "
                            f"fitted model: {shown}; pass allow_new_levels=True to predict them with random "
                            "effects at zero (the population level)")
        na |= t.na
        re.append((s, t.codes, t.X[:, s.cols]))
    return _Design(fixed.X, fixed.offset, na, re)


def _random_part(model, d: _Design) -> np.ndarray:
    out = np.zeros(d.X.shape[0])
    for s, codes, Z in d.re:
        b = np.asarray(model._r.b[s.k], float)[:, s.cols]
        ok = codes >= 0
        bb = np.zeros_like(Z)
        bb[ok] = b[codes[ok]]
        out += np.einsum("ij,ij->i", Z, bb)
    return out


def _marginal_mean(model, d: _Design, eta0: np.ndarray, method: str, n_nodes: int, n_draws: int,
                   seed) -> np.ndarray:
    """E[g^-1(eta0 + z'b)], b ~ N(0, Sigma) independently per selected term."""
    inv = model.family.link.inverse
    covs = model.covariances
    if method == "quadrature":
        s2 = np.zeros_like(eta0)
        for s, _codes, Z in d.re:
            S = np.asarray(covs[s.k], float)[np.ix_(s.cols, s.cols)]
            s2 += np.einsum("ij,jk,ik->i", Z, S, Z)
        x, w = np.polynomial.hermite.hermgauss(n_nodes)
        sd = np.sqrt(np.maximum(s2, 0.0))
        vals = inv(eta0[:, None] + math.sqrt(2.0) * sd[:, None] * x[None, :])
        return vals @ (w / math.sqrt(math.pi))
    if method == "mc":
        rng = np.random.default_rng(seed)
        r = np.zeros((eta0.shape[0], n_draws))
        for s, _codes, Z in d.re:
            S = np.asarray(covs[s.k], float)[np.ix_(s.cols, s.cols)]
            vals, vecs = np.linalg.eigh(S)
            L = vecs * np.sqrt(np.maximum(vals, 0.0))
            b = rng.standard_normal((n_draws, len(s.cols))) @ L.T
            r += Z @ b.T
        return inv(eta0[:, None] + r).mean(axis=1)
    raise ValueError(f"method must be 'quadrature' or 'mc'; got {method!r}")


def predict(model, newdata=None, re_form=None, type: str = "link", allow_new_levels: bool = False,
            se_fit: bool = False, interval: str | None = None, level: float = 0.95, *,
            marginal: bool = False, offset=None, method: str = "quadrature", n_nodes: int = 64,
            n_draws: int = 2000, seed=None):
    """Predictions as lme4's ``predict.merMod`` (see :meth:`pyglmm.MixedModel.predict`)."""
    if type not in ("link", "response"):
        raise ValueError(f"type must be 'link' or 'response'; got {type!r}")
    if interval not in (None, "none", "confidence"):
        raise ValueError(f"interval must be None or 'confidence' (prediction intervals are not available); "
                         f"got {interval!r}")
    want_ci = interval == "confidence"
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1; got {level!r}")
    if marginal and type != "response":
        raise ValueError("marginal=True averages the response over the random effects; use type='response' "
                         "(on the link scale the marginal mean is the population-level prediction, re_form='~0')")
    if marginal and (se_fit or want_ci):
        raise ValueError("se_fit / interval are not available for marginal predictions")

    sel = select_terms(model, re_form)
    if newdata is None and re_form is None and offset is None and not marginal and not (se_fit or want_ci):
        eta = np.asarray(model.linear_predictor, float).copy()
        return eta if type == "link" else np.asarray(model.family.link.inverse(eta), float)

    d = _design(model, newdata, sel, allow_new_levels, offset)
    beta = np.asarray(model.fixef.values, float)
    with np.errstate(invalid="ignore"):
        eta_fixed = np.where(d.na, np.nan, np.nan_to_num(d.X) @ beta + d.offset)
    inv = model.family.link.inverse
    if marginal:
        mu = _marginal_mean(model, d, np.nan_to_num(eta_fixed), method, n_nodes, n_draws, seed)
        return np.where(d.na, np.nan, mu)
    eta = eta_fixed + _random_part(model, d)
    fit = eta if type == "link" else np.asarray(inv(eta), float)
    fit = np.where(d.na, np.nan, fit)
    if not (se_fit or want_ci):
        return fit
    V = np.asarray(model._r.vcov, float)
    Xf = np.nan_to_num(d.X)
    se = np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", Xf, V, Xf), 0.0))
    se = np.where(d.na, np.nan, se)
    out = {"fit": fit}
    if se_fit:
        out["se_link"] = se
    if want_ci:
        z = stats.norm.ppf(0.5 + level / 2.0)
        lo, hi = eta - z * se, eta + z * se
        if type == "response":
            lo, hi = np.asarray(inv(lo), float), np.asarray(inv(hi), float)
            lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        out["lower"] = np.where(d.na, np.nan, lo)
        out["upper"] = np.where(d.na, np.nan, hi)
    return pd.DataFrame(out)
