"""Likelihood-ratio tests between nested mixed models: lme4's ``anova(m0, m1, ...)``.

Also the boundary-corrected test for variance components (Self & Liang 1987; Stram & Lee 1994).
"""
from __future__ import annotations

import inspect
import sys
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .rformat import print_anova
from .._warn import user_stacklevel

LOGLIK_TOL = 1e-3      # a larger model may fall short of a smaller one by this much (optimizer noise)
MIX_COL = "Pr(>Chisq) mix"
REFIT_MESSAGE = "refitting model(s) with ML (instead of REML)"


class NotNestedWarning(UserWarning):
    """Models compared by a likelihood-ratio test that do not look nested."""


@dataclass
class AnovaTable:
    """Result of :func:`anova`: ``table`` (a DataFrame, one row per model, ordered by npar),
    ``heading`` (the "Data:"/"Models:" lines), the (ML-refitted) ``models`` in table order and
    ``messages``. ``str()`` gives lme4's printed layout."""

    table: pd.DataFrame
    heading: list[str]
    models: list = field(default_factory=list)
    formulas: dict = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    boundary: bool = False

    def __str__(self) -> str:
        pcols = ("Pr(>Chisq)", MIX_COL)
        star_values = None
        if self.boundary:   # stars follow the p-value one should use: the mixture where it applies
            mix = self.table[MIX_COL].to_numpy(float)
            star_values = np.where(np.isfinite(mix), mix, self.table["Pr(>Chisq)"].to_numpy(float))
        return print_anova(self.table, heading=self.heading, pval_cols=pcols,
                           star_col=MIX_COL if self.boundary else "Pr(>Chisq)",
                           star_values=star_values)

    __repr__ = __str__


def _caller_names(models, depth: int = 2) -> list[str] | None:
    """The variable names the caller bound the models to (as R deparses anova's arguments)."""
    frame = inspect.currentframe()
    try:
        for _ in range(depth):
            frame = frame.f_back if frame is not None else None
        if frame is None:
            return None
        names = []
        for m in models:
            hits = [k for k, v in frame.f_locals.items() if v is m and not k.startswith("_")]
            if len(hits) != 1:
                return None
            names.append(hits[0])
        return names if len(set(names)) == len(names) else None
    finally:
        del frame


def _refit_ml(m):
    return m.fit_method.ml_refit(m)


def _vc_set(m) -> set[tuple[str, str]]:
    """Variance components of a model as (grouping factor, random-effect column) pairs."""
    return {(t.group, c) for t in m.terms for c in t.colnames}


def _check_same_data(models, names) -> None:
    nobs = [m.nobs for m in models]
    if len(set(nobs)) > 1:
        detail = ", ".join(f"{n}: {k}" for n, k in zip(names, nobs))
        raise ValueError("models were not all fitted to the same size of dataset "
                         f"(number of observations {detail}); a likelihood-ratio test needs the very "
                         "same rows — fit all models to the rows complete for every variable "
                         "(e.g. data.dropna(subset=[...all variables...]))")
    ref = models[0]
    for nm, m in zip(names[1:], models[1:]):
        if not np.array_equal(np.asarray(m.frame.rows), np.asarray(ref.frame.rows)):
            diff = np.setxor1d(np.asarray(m.frame.rows), np.asarray(ref.frame.rows))
            raise ValueError(f"models {names[0]} and {nm} were fitted to different rows of the data "
                             f"(same count, but e.g. data rows {diff[:5].tolist()} are used by only one: "
                             "missing values are dropped per model); refit both on the same rows")
        if m.frame.response_name != ref.frame.response_name or not (
                np.allclose(m.frame.y, ref.frame.y, rtol=1e-12, atol=0)
                and np.allclose(m.frame.weights, ref.frame.weights, rtol=1e-12, atol=0)):
            raise ValueError(f"models {names[0]} and {nm} have different responses "
                             f"({ref.frame.response_name!r} vs {m.frame.response_name!r}) or prior "
                             "weights; likelihoods of different responses cannot be compared")


def _family_key(m) -> tuple[str, str]:
    if m.is_lmm:
        return ("gaussian", "identity")
    return (m.family.name, m.family.link.name)


def anova(*models, names=None, refit: bool = True, boundary: bool = False,
          quiet: bool = False) -> AnovaTable:
    """Likelihood-ratio tests between nested mixed models, as lme4's ``anova(m0, m1, ...)``.

    Rows are ordered by the number of parameters (npar); columns npar, AIC, BIC, logLik,
    deviance (= -2 logLik), Chisq (= 2 * max(0, increase in logLik) from the previous row), Df
    (increase in npar) and Pr(>Chisq) (upper chi-square tail; NaN when Df is 0).

    Parameters
    ----------
    *models : fitted :class:`~pyglmm.MixedModel` objects (at least two).
    names : row labels; by default the caller's variable names (as R deparses the arguments),
        else ``MODEL1``, ``MODEL2``, ... as lme4 falls back to.
    refit : refit REML fits by maximum likelihood first (lme4's default; REML criteria of models
        with different fixed effects are not comparable). Prints lme4's message
        "refitting model(s) with ML (instead of REML)" on stderr unless ``quiet``.
    boundary : add the column ``"Pr(>Chisq) mix"``: for each row whose model adds random-effect
        variance parameters (and nothing else) to the previous row's model, the p-value from
        the 50:50 mixture of chi-square(Df - 1) and chi-square(Df) (see :func:`lrt_boundary`);
        NaN for rows where the correction does not apply (e.g. added fixed effects).

    Raises ``ValueError`` when the models were fitted to different numbers of observations or
    different rows, have different responses, different families/links, or no likelihood
    (PQL). Warns (:class:`NotNestedWarning`) when a model has more parameters but a lower
    log-likelihood than the previous one (not nested, or a fit did not converge), when two models
    have the same number of parameters but different log-likelihoods (no test is possible;
    AIC/BIC still compare them), and when the fixed effects / variance components of a smaller
    model are not contained in the next larger one. lme4 prints the chi-square test in all these
    cases, and so does this function — the warning says when not to read it.
    """
    if len(models) == 1 and isinstance(models[0], (list, tuple)):
        models = tuple(models[0])
    if len(models) < 2:
        raise ValueError("anova() compares two or more fitted models, e.g. anova(m0, m1); "
                         "for Wald tests of the fixed-effect terms of one model use wald_tests(m)")
    for m in models:
        if not (hasattr(m, "fit_method") and hasattr(m, "loglik") and hasattr(m, "frame")):
            raise TypeError(f"anova() takes fitted pyglmm models, got {type(m).__name__}")
    if names is None:
        names = _caller_names(models) or [f"MODEL{i + 1}" for i in range(len(models))]
    names = [str(n) for n in names]
    if len(names) != len(models):
        raise ValueError(f"names has {len(names)} entries for {len(models)} models")
    if len(set(names)) != len(names):
        raise ValueError(f"model names must be distinct: {names}")
    for nm, m in zip(names, models):
        if m.is_pql or not np.isfinite(m.loglik):
            raise ValueError(f"model {nm} has no likelihood (fitted by {m.method}); "
                             "likelihood-ratio tests need maximum-likelihood (Laplace/AGQ/ML) fits")
    fams = [_family_key(m) for m in models]
    if len(set(fams)) > 1:
        detail = ", ".join(f"{n}: {f}({l})" for n, (f, l) in zip(names, fams))
        raise ValueError(f"models have different families or links ({detail}); their likelihoods "
                         "are not comparable by a likelihood-ratio test")
    _check_same_data(models, names)

    messages: list[str] = []
    models = list(models)
    reml = [m.is_lmm and m.REML for m in models]
    if refit and any(reml):
        messages.append(REFIT_MESSAGE)
        if not quiet:
            print(REFIT_MESSAGE, file=sys.stderr)
        models = [_refit_ml(m) if r else m for m, r in zip(models, reml)]
    elif any(reml) and not all(reml):
        warnings.warn("some models fit with REML = TRUE, some not", UserWarning, stacklevel=user_stacklevel())
    methods = {m.method for m in models if not m.is_lmm}
    if len(methods) > 1:
        warnings.warn(f"models use different likelihood approximations ({', '.join(sorted(methods))}); "
                      "their log-likelihoods differ by the approximation error too",
                      UserWarning, stacklevel=user_stacklevel())

    npar = np.array([m.n_params for m in models], float)
    order = np.argsort(npar, kind="stable")
    models = [models[i] for i in order]
    names = [names[i] for i in order]
    npar = npar[order]
    ll = np.array([m.loglik for m in models])
    nobs = models[0].nobs
    chisq = np.r_[np.nan, 2.0 * np.maximum(0.0, np.diff(ll))]
    dfs = np.r_[np.nan, np.diff(npar)]
    with np.errstate(invalid="ignore"):
        p = np.where(dfs > 0, stats.chi2.sf(chisq, np.where(dfs > 0, dfs, 1)), np.nan)
    p[0] = np.nan
    table = pd.DataFrame({"npar": npar, "AIC": -2 * ll + 2 * npar, "BIC": -2 * ll + np.log(nobs) * npar,
                          "logLik": ll, "deviance": -2 * ll, "Chisq": chisq, "Df": dfs,
                          "Pr(>Chisq)": p}, index=pd.Index(names))

    for i in range(1, len(models)):
        small, large = models[i - 1], models[i]
        a, b = names[i - 1], names[i]
        if dfs[i] == 0:
            if abs(ll[i] - ll[i - 1]) > LOGLIK_TOL:
                warnings.warn(f"models {a} and {b} have the same number of parameters but different "
                              "log-likelihoods: they are not nested and no likelihood-ratio test is "
                              "possible (compare AIC/BIC instead)", NotNestedWarning, stacklevel=user_stacklevel())
            continue
        if ll[i] < ll[i - 1] - LOGLIK_TOL:
            warnings.warn(f"model {b} has more parameters than {a} but a lower log-likelihood "
                          f"({ll[i]:.4f} < {ll[i - 1]:.4f}): the models may not be nested or the fit "
                          "did not converge; the test (Chisq set to 0) is not meaningful",
                          NotNestedWarning, stacklevel=user_stacklevel())
        elif not (set(small.frame.fixef_names) <= set(large.frame.fixef_names)
                  and _vc_set(small) <= _vc_set(large)):
            warnings.warn(f"model {a} does not look nested in {b} (its fixed effects or random-effect "
                          "terms are not all in the larger model); the likelihood-ratio test "
                          "assumes nested models", NotNestedWarning, stacklevel=user_stacklevel())

    if boundary:
        mix = np.full(len(models), np.nan)
        for i in range(1, len(models)):
            k = _added_variances(models[i - 1], models[i])
            if k >= 1 and dfs[i] >= 1:
                mix[i] = mixture_pvalue(chisq[i], int(dfs[i]))
                if k > 1:
                    warnings.warn(f"{names[i]} adds {k} random-effect variances to {names[i - 1]}: the "
                                  "50:50 chi-square(Df-1):chi-square(Df) mixture is exact for one added "
                                  "variance; with more it is an approximation", UserWarning, stacklevel=user_stacklevel())
        if not np.isfinite(mix).any():
            warnings.warn("boundary=True: no model adds only random-effect variance parameters to the "
                          "previous one, so no boundary-corrected p-value applies", UserWarning,
                          stacklevel=user_stacklevel())
        table[MIX_COL] = mix

    heading = [f"Data: {models[0].data_name}", "Models:"] + [f"{n}: {m.formula}" for n, m in zip(names, models)]
    return AnovaTable(table=table, heading=heading, models=models,
                      formulas={n: m.formula for n, m in zip(names, models)},
                      messages=messages, boundary=boundary)


def _added_variances(small, large) -> int:
    """Number of random-effect variances ``large`` adds to ``small`` when it adds nothing else
    (same fixed effects, same family extras); 0 when the boundary correction does not apply."""
    if list(small.frame.fixef_names) != list(large.frame.fixef_names):
        return 0
    vs, vl = _vc_set(small), _vc_set(large)
    if not vs <= vl:
        return 0
    extra_s = small.n_params - len(small.theta) - len(small.frame.fixef_names)
    extra_l = large.n_params - len(large.theta) - len(large.frame.fixef_names)
    if extra_s != extra_l:          # e.g. a dispersion parameter added
        return 0
    return len(vl - vs)


def mixture_pvalue(chisq: float, df: int) -> float:
    """P-value of ``chisq`` under the 50:50 mixture of chi-square(df - 1) and chi-square(df).

    chi-square(0) is a point mass at zero, whose upper tail is 0 for a positive statistic.
    """
    if not np.isfinite(chisq) or df < 1:
        return float("nan")
    lower = (0.0 if chisq > 0 else 1.0) if df == 1 else float(stats.chi2.sf(chisq, df - 1))
    return 0.5 * lower + 0.5 * float(stats.chi2.sf(chisq, df))


@dataclass
class BoundaryLRT:
    """Result of :func:`lrt_boundary`."""

    chisq: float
    df: int
    p_naive: float
    p_mixture: float
    added_variances: int
    anova: AnovaTable

    def __str__(self) -> str:
        return str(self.anova)

    __repr__ = __str__


def lrt_boundary(m0, m1, *, names=None, quiet: bool = False) -> BoundaryLRT:
    """Likelihood-ratio test of added random-effect variances with the boundary correction.

    Testing whether a variance is zero puts the null value on the boundary of the parameter
    space (a variance cannot be negative). The usual chi-square(Df) reference distribution of
    the likelihood-ratio statistic assumes the null value is interior; on the boundary, half of
    the time the estimate sits at zero and the statistic is exactly 0. Self & Liang (1987) and
    Stram & Lee (1994) showed that when the larger model adds one random effect (its variance and
    its covariances with the q random effects already present, Df = q + 1 parameters), the
    statistic follows a 50:50 mixture of chi-square(Df - 1) and chi-square(Df). Its upper tail is
    smaller than chi-square(Df)'s, so the naive p-value is too large: the naive test is
    conservative (it rejects less often than its nominal level and loses power). The mixture
    p-value is ``0.5 * chi2.sf(x, Df - 1) + 0.5 * chi2.sf(x, Df)`` (chi-square(0) being a point
    mass at 0); for a single variance (Df = 1) it is half the naive p-value.

    ``m1`` must have the same fixed effects as ``m0`` and add random-effect variance parameters
    (with their covariances); otherwise ``ValueError``. With more than one added variance the
    50:50 mixture is only an approximation (a warning says so).
    """
    if names is None:
        names = _caller_names((m0, m1)) or ["MODEL1", "MODEL2"]
    small, large = (m0, m1) if m0.n_params <= m1.n_params else (m1, m0)
    k = _added_variances(small, large)
    if k == 0 or large.n_params == small.n_params:
        raise ValueError("lrt_boundary() tests added random-effect variances: the larger model must "
                         "have the same fixed effects (and family parameters) as the smaller one and "
                         "add random-effect terms/columns; use anova() for other comparisons")
    a = anova(m0, m1, names=names, boundary=True, quiet=quiet)
    row = a.table.iloc[1]
    return BoundaryLRT(chisq=float(row["Chisq"]), df=int(row["Df"]), p_naive=float(row["Pr(>Chisq)"]),
                       p_mixture=float(row[MIX_COL]), added_variances=k, anova=a)
