"""The six steps of bottom-up model building (Hox 2010, *Multilevel Analysis*, 2nd ed.).

1. null model ``y ~ 1 + (1 | g)``;
2. all lower-level predictors as fixed effects, each assessed by its Wald z and by a
   likelihood-ratio test dropping it;
3. the higher-level predictors added; the change of the random-intercept variance from step 2
   (proportion of between-group variance explained) and each added predictor assessed;
4. each lower-level predictor's slope tested for variation across groups, one at a time:
   the step-3 model against the same model with ``(1 + x | g)``, by the boundary-corrected
   likelihood-ratio test (:func:`pyglmm.lrt_boundary`) and by AIC;
5. the step-3 model with all chosen random slopes together;
6. cross-level interactions between each higher-level predictor and each lower-level predictor
   whose slope varied, each tested against the step-5 model; the significant ones are kept.

All models are fitted by maximum likelihood (Laplace for GLMMs, ML rather than REML for
Gaussian models) to the same rows — those complete for every variable used — so that every
pair of models can be compared by a likelihood-ratio test.
"""
from __future__ import annotations

import warnings
from typing import Iterable

import numpy as np
import pandas as pd

from .report import BottomUpReport, StepRecord

CRITERIA = ("lrt", "aic")
FORCE_KEYS = ("slopes", "interactions", "exclude_slopes", "exclude_interactions")


# --- small helpers ------------------------------------------------------------------------------
def _names(x, what: str) -> list[str]:
    if x is None:
        return []
    if isinstance(x, str):
        return [s.strip() for s in x.split(",") if s.strip()]
    out = [str(s).strip() for s in x]
    if any(not s for s in out):
        raise ValueError(f"{what}: empty variable name in {list(x)!r}")
    return out


def _formula(response: str, fixed: list[str], group: str, slopes: Iterable[str] = ()) -> str:
    rhs = " + ".join(fixed) if fixed else "1"
    re = " + ".join(["1", *slopes])
    return f"{response} ~ {rhs} + ({re} | {group})"


def _re_variance(model, group: str, column: str = "(Intercept)") -> float:
    """Variance of one random-effect column of ``group`` (NaN when the model has none)."""
    for t, cov in zip(model.terms, model.covariances):
        if t.group == group and column in t.colnames:
            i = t.colnames.index(column)
            return float(cov[i, i])
    return float("nan")


def _slope_columns(model, group: str) -> list[str]:
    return [c for t in model.terms if t.group == group for c in t.colnames if c != "(Intercept)"]


def _to_pandas(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if hasattr(data, "to_pandas"):
        return data.to_pandas()
    return pd.DataFrame(data)


class _Fitter:
    """Fits formulas on one data frame, caches the fits and records their warnings."""

    def __init__(self, data: pd.DataFrame, family, fit_kwargs: dict):
        from ..families import make_family
        self.data = data
        self.family = family
        fam = make_family(family) if not (isinstance(family, str) and family.lower() in ("gaussian", "lmer")) else None
        self.gaussian = fam is None or (fam.name == "gaussian" and fam.link.name == "identity")
        self.family_label = "gaussian(identity), ML" if self.gaussian else f"{fam.name}({fam.link.name})"
        self.kwargs = dict(fit_kwargs or {})
        self.cache: dict[str, object] = {}
        self.warnings: dict[str, list[str]] = {}
        self.n_fits = 0

    def fit(self, formula: str):
        if formula in self.cache:
            return self.cache[formula]
        from ..models import glmer, lmer
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if self.gaussian:
                m = lmer(formula, self.data, REML=False, **self.kwargs)
            else:
                m = glmer(formula, self.data, family=self.family, **self.kwargs)
        self.n_fits += 1
        msgs = []
        for w in caught:
            s = str(w.message)
            if s not in msgs:
                msgs.append(s)
        self.cache[formula] = m
        self.warnings[formula] = msgs
        return m

    def try_fit(self, formula: str):
        """(model, None) or (None, error message) — for optional candidate models."""
        try:
            return self.fit(formula), None
        except Exception as e:  # a failed candidate is reported, not fatal
            return None, f"{type(e).__name__}: {e}"

    def notes_for(self, formula: str, label: str) -> list[str]:
        out = [f"{label}: {msg}" for msg in self.warnings.get(formula, [])]
        m = self.cache.get(formula)
        if m is not None and m.singular and not any("singular" in s.lower() for s in out):
            out.append(f"{label}: singular fit (a variance estimated at zero or a correlation at +-1)")
        return out


def _quiet(fn, *args, **kwargs):
    """Call ``fn`` and return (result, list of warning messages)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = fn(*args, **kwargs)
    msgs = []
    for w in caught:
        if str(w.message) not in msgs:
            msgs.append(str(w.message))
    return res, msgs


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "NA"
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.2e}"


def _lrt(small, large, names):
    """(Chisq, Df, p) of the likelihood-ratio test of two nested fits, and warnings."""
    from ..inference import anova
    a, msgs = _quiet(anova, small, large, names=names, quiet=True)
    row = a.table.iloc[1]
    return float(row["Chisq"]), int(row["Df"]), float(row["Pr(>Chisq)"]), msgs


def _assess_terms(fitter: _Fitter, model, formula_parts: dict, assessed: list[str],
                  alpha: float, criterion: str) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Wald z (summary) and drop-one LRT for each term in ``assessed``; (table, reasons, notes)."""
    from ..inference import term_columns, wald_tests
    response, fixed, group = formula_parts["response"], formula_parts["fixed"], formula_parts["group"]
    ct = model.coef_table()
    zcol = "z value" if "z value" in ct.columns else "t value"
    tcols = {t.label: t for t in term_columns(model)}
    wald = wald_tests(model, type="III").table
    names = list(model.frame.fixef_names)
    rows, reasons, notes = [], [], []
    for x in assessed:
        cols = [names[j] for j in tcols[x].columns] if x in tcols else []
        single = len(cols) == 1
        reduced = _formula(response, [f for f in fixed if f != x], group)
        m_drop = fitter.fit(reduced)
        notes += fitter.notes_for(reduced, f"model without {x}")
        chisq, df, p, msgs = _lrt(m_drop, model, [f"without {x}", "with"])
        notes += msgs
        d_aic = m_drop.aic - model.aic
        wrow = wald.loc[x] if x in wald.index else None
        rows.append({
            "term": x,
            "coefficient": cols[0] if single else ", ".join(cols) or "(dropped)",
            "Estimate": float(ct.loc[cols[0], "Estimate"]) if single else np.nan,
            "Std. Error": float(ct.loc[cols[0], "Std. Error"]) if single else np.nan,
            "z": float(ct.loc[cols[0], zcol]) if single else np.nan,
            "Wald p": float(wrow["Pr(>Chisq)"]) if wrow is not None else np.nan,
            "LRT Chisq": chisq, "LRT Df": df, "LRT p": p,
            "AIC without - AIC with": d_aic,
        })
        contributes = p < alpha if criterion == "lrt" else d_aic > 0
        est = (f"estimate {ct.loc[cols[0], 'Estimate']:.3f}, {zcol[0]} = {ct.loc[cols[0], zcol]:.2f}, "
               if single else f"{len(cols)} coefficients, ")
        how = f"LRT dropping it: Chisq = {chisq:.2f} on {df} df, p = {_fmt_p(p)}; AIC {d_aic:+.2f} without it"
        if criterion == "lrt":
            rule = f"p {'<' if contributes else '>='} {alpha:g}"
        else:
            rule = f"AIC {'higher' if contributes else 'not higher'} without it"
        reasons.append(f"{x}: {est}{how} -> {'contributes' if contributes else 'does not contribute'} ({rule})")
    table = pd.DataFrame(rows).set_index("term") if rows else pd.DataFrame()
    return table, reasons, notes


def _estimates(model) -> pd.DataFrame:
    return model.coef_table()


def _varcorr(model) -> pd.DataFrame:
    vc = model.varcorr.copy()
    vc = vc.rename(columns={"vcov": "variance/cov", "sdcor": "sd/corr"})
    return vc


def _norm_interaction(item, lower: list[str], higher: list[str]) -> tuple[str, str]:
    if isinstance(item, str):
        parts = [s.strip() for s in item.split(":")]
    else:
        parts = [str(s).strip() for s in item]
    if len(parts) != 2:
        raise ValueError(f"force: an interaction is a pair (lower, higher) or 'lower:higher'; got {item!r}")
    a, b = parts
    if a in lower and b in higher:
        return a, b
    if b in lower and a in higher:
        return b, a
    raise ValueError(f"force: interaction {item!r} must pair a lower-level predictor "
                     f"({', '.join(lower)}) with a higher-level one ({', '.join(higher) or 'none given'})")


def _check_force(force, lower, higher) -> dict:
    force = dict(force or {})
    bad = set(force) - set(FORCE_KEYS)
    if bad:
        raise ValueError(f"force: unknown key(s) {sorted(bad)}; use {', '.join(FORCE_KEYS)}")
    out: dict = {}
    for key in ("slopes", "exclude_slopes"):
        if key in force:
            vals = _names(force[key], f"force[{key!r}]")
            for v in vals:
                if v not in lower:
                    raise ValueError(f"force[{key!r}]: {v!r} is not a lower-level predictor "
                                     f"({', '.join(lower) or 'none given'})")
            out[key] = vals
    for key in ("interactions", "exclude_interactions"):
        if key in force:
            items = force[key]
            if isinstance(items, (str, tuple)):
                items = [items]
            out[key] = [_norm_interaction(i, lower, higher) for i in items]
    return out


# --- the builder ----------------------------------------------------------------------------------
def build_bottom_up(data, response: str, group: str, lower=(), higher=(), family="gaussian", *,
                    alpha: float = 0.05, stop_after: int | None = None, force: dict | None = None,
                    criterion: str = "lrt", fit_kwargs: dict | None = None) -> BottomUpReport:
    """Bottom-up model building in six steps (Hox 2010); returns a :class:`BottomUpReport`.

    Parameters
    ----------
    data : table with the response, the grouping factor and the predictors (pandas, or anything
        with ``to_pandas()``). Rows with a missing value in any of these columns are dropped once,
        so that all models are fitted to the same rows (a requirement of likelihood-ratio tests).
    response, group : column names of the response and of the grouping factor.
    lower : lower-level (e.g. patient) predictors: a list or a comma-separated string.
        Categorical predictors are fine: the random slope is written ``(1 + treatment | g)`` and
        the interaction ``treatment:hours``.
    higher : higher-level (group) predictors.
    family : as :func:`pyglmm.glmer` ("poisson", "binomial", ...); "gaussian" fits
        :func:`pyglmm.lmer` by maximum likelihood (REML criteria of models with different fixed
        effects are not comparable).
    alpha : significance level of the likelihood-ratio tests (criterion "lrt").
    stop_after : stop after this step (1-6); None runs all six.
    force : override the data-driven choices. ``{"slopes": [...]}`` and
        ``{"interactions": [("treatment", "hours"), ...]}`` (or ``"treatment:hours"``) replace
        the choice by exactly these; ``{"exclude_slopes": [...]}`` and
        ``{"exclude_interactions": [...]}`` remove items from the data-driven choice. The tests
        are still run and reported.
    criterion : "lrt" (choose a random slope when the boundary-corrected LRT p < alpha, an
        interaction when its LRT p < alpha) or "aic" (when the larger model has the lower AIC).
    fit_kwargs : extra keyword arguments for every fit (e.g. ``{"nAGQ": 1}``).

    Returns
    -------
    BottomUpReport with ``.steps`` (one :class:`StepRecord` per step run), ``.final`` (the
    chosen model), ``.chosen_slopes``, ``.chosen_interactions``, ``.variance_table`` and
    ``.to_text()`` / ``.to_html(path=None)``; ``str(report)`` is the text report.
    """
    crit = str(criterion).lower()
    if crit not in CRITERIA:
        raise ValueError(f"criterion must be 'lrt' or 'aic' (got {criterion!r})")
    if not (0 < float(alpha) < 1):
        raise ValueError(f"alpha must be between 0 and 1 (got {alpha!r})")
    if stop_after is not None and (isinstance(stop_after, bool) or int(stop_after) != stop_after
                                   or not 1 <= int(stop_after) <= 6):
        raise ValueError(f"stop_after must be a step number 1-6 or None (got {stop_after!r})")
    last = 6 if stop_after is None else int(stop_after)
    lower, higher = _names(lower, "lower"), _names(higher, "higher")
    df = _to_pandas(data)
    used = [response, group, *lower, *higher]
    missing = [c for c in used if c not in df.columns]
    if missing:
        raise ValueError(f"column(s) {missing} not found in the data (columns: {', '.join(map(str, df.columns))})")
    dup = sorted({c for c in used if used.count(c) > 1})
    if dup:
        raise ValueError(f"each variable may appear once among response, group, lower and higher; "
                         f"repeated: {dup}")
    forced = _check_force(force, lower, higher)
    name = (getattr(df, "attrs", {}) or {}).get("name") or "data"
    n_all = len(df)
    df = df[used].dropna().reset_index(drop=True)
    df.attrs["name"] = name
    fitter = _Fitter(df, family, fit_kwargs)

    notes0 = []
    if len(df) < n_all:
        notes0.append(f"{n_all - len(df)} of {n_all} rows have a missing value in a variable used and "
                      "were dropped, so that all models are fitted to the same rows")
    nunique = df.groupby(group, observed=True)[lower + higher].nunique()
    for h in higher:
        if (nunique[h] > 1).any():
            notes0.append(f"higher-level predictor {h!r} varies within some groups of {group!r} "
                          f"({int((nunique[h] > 1).sum())} groups): is it really a group-level variable?")
    constant_lower = [x for x in lower if (nunique[x] <= 1).all()]
    for x in constant_lower:
        notes0.append(f"lower-level predictor {x!r} is constant within every group of {group!r}: "
                      "its slope cannot vary across groups, so step 4 does not test it")

    settings = {"data": name, "nobs": len(df), "ngroups": int(df[group].nunique()), "response": response,
                "group": group, "lower": lower, "higher": higher, "family": fitter.family_label,
                "alpha": float(alpha), "criterion": crit, "stop_after": stop_after,
                "force": {k: v for k, v in forced.items()}}
    steps: list[StepRecord] = []
    parts = {"response": response, "group": group}

    def report(final, final_step, slopes=None, inter=None):
        return BottomUpReport(steps=steps, final=final, final_step=final_step, settings=settings,
                              notes=notes0, chosen_slopes=slopes, chosen_interactions=inter,
                              n_fits=fitter.n_fits)

    # step 1 -------------------------------------------------------------------------------------
    f1 = _formula(response, [], group)
    m1 = fitter.fit(f1)
    v1 = _re_variance(m1, group)
    steps.append(StepRecord(
        number=1, title="Null model with random intercepts", formulas=[f1], models={"step 1": m1},
        tables={"fixed effects": _estimates(m1), "variance components": _varcorr(m1)},
        decision=f"baseline: random-intercept variance of {group} = {v1:.4g} (sd {np.sqrt(v1):.4g})",
        reasons=[f"the null model partitions the variation: {group} intercepts vary with variance {v1:.4g}; "
                 f"logLik = {m1.loglik:.2f}, AIC = {m1.aic:.2f}"],
        notes=fitter.notes_for(f1, "step 1"), model=m1, intercept_variance=v1))
    if last == 1:
        return report(m1, 1)

    # step 2 -------------------------------------------------------------------------------------
    fixed2 = list(lower)
    f2 = _formula(response, fixed2, group)
    m2 = fitter.fit(f2)
    v2 = _re_variance(m2, group)
    parts["fixed"] = fixed2
    tab2, reasons2, notes2 = _assess_terms(fitter, m2, parts, lower, alpha, crit)
    sig2 = [r.split(":")[0] for r in reasons2 if "-> contributes" in r]
    chisq, dfree, p, msgs = _lrt(m1, m2, ["step 1", "step 2"]) if lower else (np.nan, 0, np.nan, [])
    steps.append(StepRecord(
        number=2, title="Lower-level predictors as fixed effects", formulas=[f2],
        models={"step 2": m2, **{f"step 2 without {x}": fitter.cache[_formula(response, [f for f in fixed2 if f != x], group)] for x in lower}},
        tables={"fixed effects": _estimates(m2), "variance components": _varcorr(m2),
                "assessment of each lower-level predictor": tab2},
        decision=(f"all lower-level predictors are kept as fixed effects; contributing: "
                  f"{', '.join(sig2) or 'none'}" if lower else "no lower-level predictors given"),
        reasons=reasons2 + ([f"step 2 against step 1 (all lower-level predictors together): LRT Chisq = "
                             f"{chisq:.2f} on {dfree} df, p = {_fmt_p(p)}",
                             f"random-intercept variance {v1:.4g} -> {v2:.4g}"] if lower else [])
        + ["bottom-up building keeps the lower-level predictors as the base for the slope tests; a "
           "non-contributing one can be left out by refitting without it"],
        notes=fitter.notes_for(f2, "step 2") + notes2 + msgs, model=m2, intercept_variance=v2))
    if last == 2:
        return report(m2, 2)

    # step 3 -------------------------------------------------------------------------------------
    fixed3 = fixed2 + list(higher)
    f3 = _formula(response, fixed3, group)
    m3 = fitter.fit(f3)
    v3 = _re_variance(m3, group)
    parts["fixed"] = fixed3
    tab3, reasons3, notes3 = _assess_terms(fitter, m3, parts, higher, alpha, crit)
    sig3 = [r.split(":")[0] for r in reasons3 if "-> contributes" in r]
    prop = (v2 - v3) / v2 if v2 > 0 else float("nan")
    vtab = pd.DataFrame({"Var(Intercept)": [v2, v3]}, index=["step 2", "step 3"])
    vtab["change"] = [np.nan, v3 - v2]
    vtab["proportion explained"] = [np.nan, prop]
    reasons_v = [f"random-intercept variance of {group}: {v2:.4g} (step 2) -> {v3:.4g} (step 3), a change "
                 f"of {v3 - v2:+.4g}: the higher-level predictors explain {100 * prop:.1f}% of the "
                 "between-group variance left after step 2"]
    if not fitter.gaussian:
        reasons_v.append("in a GLMM the level-1 variance is fixed by the family, so adding predictors "
                         "can rescale the variances; read the proportion as approximate")
    lrt23 = _lrt(m2, m3, ["step 2", "step 3"]) if higher else (np.nan, 0, np.nan, [])
    steps.append(StepRecord(
        number=3, title="Higher-level predictors added", formulas=[f3],
        models={"step 3": m3, **{f"step 3 without {x}": fitter.cache[_formula(response, [f for f in fixed3 if f != x], group)] for x in higher}},
        tables={"fixed effects": _estimates(m3), "variance components": _varcorr(m3),
                "random-intercept variance, step 2 -> step 3": vtab,
                "assessment of each higher-level predictor": tab3},
        decision=(f"higher-level predictors kept; contributing: {', '.join(sig3) or 'none'}; "
                  f"between-group variance explained: {100 * prop:.1f}%" if higher
                  else "no higher-level predictors given; step 3 is the step-2 model"),
        reasons=reasons_v + reasons3 + ([f"step 3 against step 2: LRT Chisq = {lrt23[0]:.2f} on {lrt23[1]} df, "
                                         f"p = {_fmt_p(lrt23[2])}"] if higher else []),
        notes=fitter.notes_for(f3, "step 3") + notes3 + list(lrt23[3]), model=m3, intercept_variance=v3,
        extra={"variance_reduction": prop, "variance_step2": v2, "variance_step3": v3}))
    if last == 3:
        return report(m3, 3)

    # step 4 -------------------------------------------------------------------------------------
    from ..inference import lrt_boundary
    rows, reasons4, notes4, models4 = [], [], [], {}
    data_choice, slope_cols = [], {}
    for x in lower:
        if x in constant_lower:
            continue
        f4 = _formula(response, fixed3, group, [x])
        m4, err = fitter.try_fit(f4)
        if m4 is None:
            reasons4.append(f"{x}: the random-slope model could not be fitted ({err}) -> not chosen")
            continue
        models4[f"step 4 slope {x}"] = m4
        notes4 += fitter.notes_for(f4, f"slope {x}")
        slope_cols[x] = _slope_columns(m4, group)
        res, msgs = _quiet(lrt_boundary, m3, m4, names=["step 3", f"slope {x}"], quiet=True)
        notes4 += [f"slope {x}: {s}" for s in msgs]
        d_aic = m3.aic - m4.aic
        sds = [np.sqrt(_re_variance(m4, group, c)) for c in slope_cols[x]]
        chosen = res.p_mixture < alpha if crit == "lrt" else m4.aic < m3.aic
        if chosen:
            data_choice.append(x)
        rows.append({"slope": x, "random term": f"(1 + {x} | {group})",
                     "sd(slope)": sds[0] if len(sds) == 1 else np.nan,
                     "Chisq": res.chisq, "Df": res.df, "p naive": res.p_naive, "p mixture": res.p_mixture,
                     "AIC step 3": m3.aic, "AIC with slope": m4.aic, "AIC gain": d_aic,
                     "singular": m4.singular, "chosen": chosen})
        why = (f"boundary-corrected LRT Chisq = {res.chisq:.2f} on {res.df} df, p(mixture) = "
               f"{_fmt_p(res.p_mixture)} (naive {_fmt_p(res.p_naive)}), AIC {m3.aic:.2f} -> {m4.aic:.2f}")
        rule = (f"p {'<' if chosen else '>='} {alpha:g}" if crit == "lrt"
                else f"AIC {'lower' if chosen else 'not lower'} with the slope")
        sd_txt = ", ".join(f"{c}: sd {s:.3g}" for c, s in zip(slope_cols[x], sds))
        reasons4.append(f"{x} ({sd_txt}): {why} -> {'slope varies' if chosen else 'no evidence of slope variation'} ({rule})")
    slopes = list(data_choice)
    decision4 = f"random slopes chosen by the data ({crit.upper()}): {', '.join(data_choice) or 'none'}"
    if "slopes" in forced:
        slopes = list(forced["slopes"])
        decision4 += f"; overridden by force: {', '.join(slopes) or 'none'}"
    if "exclude_slopes" in forced:
        slopes = [s for s in slopes if s not in forced["exclude_slopes"]]
        decision4 += f"; excluded by force: {', '.join(forced['exclude_slopes'])}"
    tab4 = pd.DataFrame(rows).set_index("slope") if rows else pd.DataFrame()
    if len(tab4):
        tab4["used"] = [s in slopes for s in tab4.index]
    steps.append(StepRecord(
        number=4, title="Random slopes, one lower-level predictor at a time",
        formulas=[_formula(response, fixed3, group, [x]) for x in lower if x not in constant_lower],
        models=models4, tables={"random-slope tests against the step-3 model": tab4},
        decision=decision4 + (f" -> slopes used from here on: {', '.join(slopes) or 'none'}"),
        reasons=reasons4 + ["the LRT p-value uses the 50:50 chi-square mixture: a variance tested at zero "
                            "lies on the boundary, where the naive chi-square test is conservative"],
        notes=notes4, model=None, chosen=list(slopes)))
    if last == 4:
        return report(m3, 3, slopes)

    # step 5 -------------------------------------------------------------------------------------
    f5 = _formula(response, fixed3, group, slopes)
    m5 = fitter.fit(f5)
    v5 = _re_variance(m5, group)
    reasons5, notes5 = [], fitter.notes_for(f5, "step 5")
    tab5 = {"fixed effects": _estimates(m5), "variance components": _varcorr(m5)}
    if slopes:
        res, msgs = _quiet(lrt_boundary, m3, m5, names=["step 3", "step 5"], quiet=True)
        notes5 += msgs
        tab5["step 5 against step 3"] = res.anova.table
        reasons5.append(f"all {len(slopes)} chosen slope(s) together against step 3: Chisq = {res.chisq:.2f} "
                        f"on {res.df} df, p(mixture) = {_fmt_p(res.p_mixture)}, AIC {m3.aic:.2f} -> {m5.aic:.2f}")
        if m5.singular:
            reasons5.append("the joint model is singular: the data may not support all these slopes "
                            "together; consider force={'exclude_slopes': [...]}")
        decision5 = f"step-3 model with random slopes for {', '.join(slopes)}: {f5}"
    else:
        decision5 = "no random slope chosen: step 5 keeps the step-3 model"
    steps.append(StepRecord(number=5, title="All chosen random slopes together", formulas=[f5],
                            models={"step 5": m5}, tables=tab5, decision=decision5, reasons=reasons5,
                            notes=notes5, model=m5, intercept_variance=v5, chosen=list(slopes)))
    if last == 5:
        return report(m5, 5, slopes)

    # step 6 -------------------------------------------------------------------------------------
    cands = [(x, h) for x in slopes for h in higher]
    for pair in forced.get("interactions", []):
        if pair not in cands:
            cands.append(pair)
    rows, reasons6, notes6, models6, data_inter = [], [], [], {}, []
    for x, h in cands:
        lab = f"{x}:{h}"
        f6 = _formula(response, fixed3 + [lab], group, slopes)
        m6, err = fitter.try_fit(f6)
        if m6 is None:
            reasons6.append(f"{lab}: the model could not be fitted ({err}) -> not kept")
            continue
        models6[f"step 6 + {lab}"] = m6
        notes6 += fitter.notes_for(f6, f"+ {lab}")
        chisq, dfree, p, msgs = _lrt(m5, m6, ["step 5", f"+ {lab}"])
        notes6 += msgs
        keep = p < alpha if crit == "lrt" else m6.aic < m5.aic
        if keep and x in slopes:
            data_inter.append((x, h))
        est = m6.coef_table()
        icols = [c for c in est.index if c not in m5.fixef.index]
        rows.append({"interaction": lab,
                     "Estimate": float(est.loc[icols[0], "Estimate"]) if len(icols) == 1 else np.nan,
                     "Std. Error": float(est.loc[icols[0], "Std. Error"]) if len(icols) == 1 else np.nan,
                     "Chisq": chisq, "Df": dfree, "p": p, "AIC step 5": m5.aic, "AIC with": m6.aic,
                     "AIC gain": m5.aic - m6.aic, "kept": keep and x in slopes})
        eff = (f"estimate {est.loc[icols[0], 'Estimate']:.3f} (SE {est.loc[icols[0], 'Std. Error']:.3f}), "
               if len(icols) == 1 else "")
        rule = (f"p {'<' if keep else '>='} {alpha:g}" if crit == "lrt"
                else f"AIC {'lower' if keep else 'not lower'} with it")
        if x not in slopes:
            rule += f"; tested because forced ({x}'s slope is not random)"
        reasons6.append(f"{lab}: {eff}LRT Chisq = {chisq:.2f} on {dfree} df, p = {_fmt_p(p)}, "
                        f"AIC {m5.aic:.2f} -> {m6.aic:.2f} -> {'kept' if keep else 'not kept'} ({rule})")
    inter = list(data_inter)
    decision6 = f"cross-level interactions kept by the data ({crit.upper()}): {', '.join(f'{a}:{b}' for a, b in data_inter) or 'none'}"
    if "interactions" in forced:
        inter = list(forced["interactions"])
        decision6 += f"; overridden by force: {', '.join(f'{a}:{b}' for a, b in inter) or 'none'}"
    if "exclude_interactions" in forced:
        inter = [i for i in inter if i not in forced["exclude_interactions"]]
        decision6 += f"; excluded by force: {', '.join(f'{a}:{b}' for a, b in forced['exclude_interactions'])}"
    if not cands:
        reasons6.append("no candidates: a cross-level interaction needs a lower-level predictor with a "
                        "random slope and a higher-level predictor")
    f_final = _formula(response, fixed3 + [f"{a}:{b}" for a, b in inter], group, slopes)
    m_final = fitter.fit(f_final)
    notes6 += fitter.notes_for(f_final, "final")
    tab6 = pd.DataFrame(rows).set_index("interaction") if rows else pd.DataFrame()
    if len(tab6):
        tab6["kept"] = [tuple(i.split(":")) in inter for i in tab6.index]
    tables6 = {"cross-level interactions, each against the step-5 model": tab6}
    extra6 = {}
    if inter:
        tables6["fixed effects"] = _estimates(m_final)
        tables6["variance components"] = _varcorr(m_final)
        if len(inter) > 1:
            chisq, dfree, p, msgs = _lrt(m5, m_final, ["step 5", "step 6"])
            reasons6.append(f"all kept interactions together against step 5: Chisq = {chisq:.2f} on "
                            f"{dfree} df, p = {_fmt_p(p)}")
        # slope variance explained by the cross-level interactions (Hox's level-2 R^2 for slopes)
        srows = []
        for x in sorted({a for a, _ in inter if a in slopes}):
            for c in _slope_columns(fitter.cache[_formula(response, fixed3, group, [x])], group):
                s5, s6 = _re_variance(m5, group, c), _re_variance(m_final, group, c)
                srows.append({"slope": c, "variance step 5": s5, "variance step 6": s6,
                              "proportion explained": (s5 - s6) / s5 if s5 > 0 else np.nan})
                reasons6.append(f"variance of the {c} slope: {s5:.4g} (step 5) -> {s6:.4g} (step 6): the "
                                f"interaction(s) explain {100 * (s5 - s6) / s5:.1f}% of it" if s5 > 0 else
                                f"variance of the {c} slope is zero at step 5")
        if srows:
            tables6["slope variance, step 5 -> step 6"] = pd.DataFrame(srows).set_index("slope")
            extra6["slope_variance"] = tables6["slope variance, step 5 -> step 6"]
    steps.append(StepRecord(
        number=6, title="Cross-level interactions",
        formulas=[_formula(response, fixed3 + [f"{a}:{b}"], group, slopes) for a, b in cands]
        + ([f_final] if len(inter) > 1 else []),
        models={**models6, "final": m_final}, tables=tables6,
        decision=decision6 + f" -> final model: {f_final}", reasons=reasons6, notes=notes6,
        model=m_final, intercept_variance=_re_variance(m_final, group), chosen=list(inter), extra=extra6))
    return report(m_final, 6, slopes, inter)
