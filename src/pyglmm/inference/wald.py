"""Wald tests of fixed-effect terms (``car::Anova`` for merMod) and exponentiated coefficients."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, stats

from .rformat import print_anova
from .terms import term_columns


@dataclass
class WaldTable:
    """Result of :func:`wald_tests`: ``table`` (Chisq, Df, Pr(>Chisq) per term), ``heading``,
    ``columns`` (term label -> fixed-effect names tested). ``str()`` prints car's layout."""

    table: pd.DataFrame
    heading: list[str]
    type: str
    columns: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return print_anova(self.table, heading=self.heading)

    __repr__ = __str__


def _chisq(b: np.ndarray, V: np.ndarray, L: np.ndarray) -> tuple[float, int]:
    """Wald statistic (Lb)' (L V L')^-1 (Lb) and its degrees of freedom (rank of L)."""
    Lb = L @ b
    LVL = L @ V @ L.T
    stat = float(Lb @ np.linalg.solve(LVL, Lb))
    return stat, L.shape[0]


def _conj_comp(X: np.ndarray, Z: np.ndarray, ip: np.ndarray) -> np.ndarray:
    """car's ConjComp: basis of the part of span(Z) ip-orthogonal to span(X)."""
    A = Z.T @ ip @ X
    Q, R, _ = linalg.qr(A, pivoting=True)
    d = np.abs(np.diag(R)) if R.size else np.zeros(0)
    rank = int(np.sum(d > 1e-7 * (d[0] if d.size else 1.0))) if d.size else 0
    if rank == 0:
        return Z
    return Z @ Q[:, rank:]


def wald_tests(model, type: str = "III") -> WaldTable:
    """Wald chi-square test of each fixed-effect term, as ``car::Anova(m, type = ...)``.

    For a term with columns T (all dummy columns of a factor together), type "III" tests
    beta_T = 0 with ``Chisq = b_T' V_TT^-1 b_T`` on ``len(T)`` Df, with the other coefficients
    in the model; it includes the intercept row, and — as car warns — depends on the
    contrasts for terms marginal to interactions (with treatment contrasts, a main effect is
    tested at the reference level of the factors it interacts with).

    Type "II" (car's ``Anova.II.mer``) tests each term after all terms not containing it,
    ignoring its higher-order relatives: the hypothesis for term T is the part of span(T and
    its relatives) orthogonal, in the metric of V, to its relatives' columns (car's ConjComp).
    No intercept row. For a term without relatives it equals the type III test.

    V is ``model.vcov`` (lme4's vcov: from the Hessian for GLMMs), so statistics agree with
    car's to the accuracy with which the two fits agree.
    """
    typ = str(type).upper()
    if typ in ("3",):
        typ = "III"
    if typ in ("2",):
        typ = "II"
    if typ not in ("II", "III"):
        raise ValueError(f"type must be 'II' or 'III' (got {type!r}); type I (sequential) Wald tests "
                         "are not offered")
    b = model.fixef.to_numpy(float)
    V = model.vcov.to_numpy(float)
    names = list(model.frame.fixef_names)
    p = len(b)
    terms = term_columns(model)
    rows, stat, dfs, cols = [], [], [], {}
    I = np.eye(p)
    if typ == "III":
        for t in terms:
            rows.append(t.label)
            cols[t.label] = [names[j] for j in t.columns]
            if not t.columns:
                stat.append(np.nan)
                dfs.append(0)
                continue
            s, d = _chisq(b, V, I[list(t.columns)])
            stat.append(s)
            dfs.append(d)
    else:
        model_terms = [t for t in terms if t.factors]
        for t in model_terms:
            rows.append(t.label)
            cols[t.label] = [names[j] for j in t.columns]
            rel = [r for r in model_terms if r is not t and set(t.factors) <= set(r.factors)]
            rel_cols = [j for r in rel for j in r.columns]
            H1 = I[rel_cols]
            H2 = I[rel_cols + list(t.columns)]
            H = H2 if H1.shape[0] == 0 else _conj_comp(H1.T, H2.T, V).T
            H = H[~np.all(H == 0, axis=1)] if H.size else H
            if H.shape[0] == 0 or not t.columns:
                stat.append(np.nan)
                dfs.append(0)
                continue
            s, d = _chisq(b, V, H)
            stat.append(s)
            dfs.append(d)
    stat_a = np.array(stat, float)
    df_a = np.array(dfs, float)
    with np.errstate(invalid="ignore"):
        pv = np.where(df_a > 0, stats.chi2.sf(stat_a, np.maximum(df_a, 1)), np.nan)
    table = pd.DataFrame({"Chisq": stat_a, "Df": df_a, "Pr(>Chisq)": pv}, index=pd.Index(rows))
    heading = [f"Analysis of Deviance Table (Type {typ} Wald chisquare tests)", "",
               f"Response: {model.frame.response_name}"]
    return WaldTable(table=table, heading=heading, type=typ, columns=cols)


_IDENTITY_MSG = ("exponentiated coefficients have no meaning for the {link} link: its coefficients "
                 "are {what}, and exp() of them is not a ratio of anything; report the "
                 "coefficients and their confidence intervals on the original scale (confint())")


def ratio_label(model) -> str:
    """What exp(coefficient) is for the model's family and link (or ValueError)."""
    from ..families import make_family
    link = "identity" if model.is_lmm else model.family.link.name
    # the family rebuilt from its (name, link): the label does not depend on a shape
    label = None if model.is_lmm else make_family(model.family.name, link).ratio_label
    if label is not None:
        return label
    if link == "identity":
        raise ValueError(_IDENTITY_MSG.format(link="identity",
                                              what="additive differences in the mean"))
    raise ValueError(_IDENTITY_MSG.format(link=link, what=f"differences on the {link} scale"))


def exp_fixef(model, level: float = 0.95) -> pd.DataFrame:
    """Exponentiated fixed effects with Wald confidence intervals.

    Columns ``estimate`` (exp(beta)), ``lower`` and ``upper`` (exp(beta -/+ z * se), z the
    normal quantile for ``level``) and ``label``: what exp(beta) is — "rate ratio" (Poisson,
    negative binomial, log link), "odds ratio" (logit link), "hazard ratio" (cloglog link),
    "ratio" (other families with a log link, e.g. Gamma: ratio of means). The intercept row is
    not a ratio but the baseline value (rate, odds, ...) at all covariates 0 / reference levels;
    its label says so. ``df.attrs`` holds ``label`` and ``level``.

    Identity links (lmer, Gaussian) raise ``ValueError``: there the coefficients are additive
    differences, and exp() of them is not a ratio of anything. Other non-log links (probit,
    inverse, sqrt) raise too.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (got {level!r})")
    label = ratio_label(model)
    b = model.fixef
    se = model.se
    z = stats.norm.ppf(0.5 + level / 2)
    base = {"rate ratio": "baseline rate", "odds ratio": "baseline odds",
            "hazard ratio": "baseline exp(cloglog)", "ratio": "baseline mean"}[label]
    labels = [base if n == "(Intercept)" else label for n in b.index]
    out = pd.DataFrame({"estimate": np.exp(b.to_numpy()), "lower": np.exp(b.to_numpy() - z * se.to_numpy()),
                        "upper": np.exp(b.to_numpy() + z * se.to_numpy()), "label": labels},
                       index=b.index)
    out.attrs["label"] = label
    out.attrs["level"] = level
    return out
