"""model_frame: from a parsed formula and data to response, fixed X, offsets, weights and random-term designs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import warnings

import numpy as np
import pandas as pd

from .._warn import user_stacklevel
from ..fit import compiled
from ..formula import ParsedFormula, parse_formula
from .data import to_pandas
from .errors import DataError
from .grouping import as_factor, interaction_codes
from .matrix import build_model_matrix, rank_deficient_columns
from .variables import Evaluator, Variable, numeric_argument


@dataclass
class ReTermDesign:
    """One random-effect term: grouping codes/levels and its small dense (n, p) model matrix."""

    group_name: str
    codes: np.ndarray
    levels: list[str]
    X: np.ndarray
    colnames: list[str]
    correlated: bool


@dataclass
class ModelFrame:
    """Everything the fitter needs from formula + data (rows with NA already removed)."""

    y: np.ndarray
    response_name: str
    X: np.ndarray
    fixef_names: list[str]
    dropped_fixef: list[str]
    offset: np.ndarray
    weights: np.ndarray
    reterms: list[ReTermDesign]
    n_dropped_na: int
    rows: np.ndarray
    binomial_response_kind: str | None
    xlevels: dict[str, list[str]] = field(default_factory=dict)
    # reference level index of each factor in ``xlevels`` and the training centre/scale of each scale()
    # call (R's makepredictcall), so predictions on new data use the fit's coding
    xref: dict[str, int] = field(default_factory=dict)
    scale_params: dict[str, tuple[float, float]] = field(default_factory=dict)


def _vector_arg(value: Any, what: str, ev: Evaluator, index: pd.Index | None,
                data_kind: str) -> Variable | None:
    """Resolve a weights=/offset= argument given as None, a column name or a vector (a pandas
    Series aligned on the data's index)."""
    vals = numeric_argument(value, what, ev.df, index, data_kind)
    if vals is None:
        return None
    return Variable(value if isinstance(value, str) else what, values=vals)


def model_frame(formula: ParsedFormula | str, data: Any, *, weights: Any = None, offset: Any = None,
                binomial: bool = False) -> ModelFrame:
    """Evaluate ``formula`` on ``data`` as lme4 does (na.omit, treatment contrasts, rank-deficiency drop)."""
    pf = parse_formula(formula) if isinstance(formula, str) else formula
    df = to_pandas(data)
    index = data.index if isinstance(data, pd.DataFrame) else None
    data_kind = "data" if index is not None else f"data ({type(data).__name__}, which has no index)"
    ev = Evaluator(df)
    n_all = len(df)
    if pf.response is None:
        raise DataError(f"the formula {pf.text!r} has no response (write 'y ~ ...')")

    # evaluate every variable on the full data (as R's model.frame), then na.omit
    used: dict[str, Variable] = {}
    used[pf.response] = ev.variable(pf.response)
    fixed_vars = {t: ev.variable(t) for t in pf.fixed.variables}
    offset_vars = [ev.variable(t) for t in pf.fixed.offsets]
    re_vars: dict[str, Variable] = {}
    group_vars: dict[str, Variable] = {}
    for rt in pf.random:
        for t in rt.lhs.variables:
            re_vars[t] = ev.variable(t)
        for g in rt.group:
            group_vars[g] = as_factor(ev.variable(g))
    wvar = _vector_arg(weights, "weights", ev, index, data_kind)
    ovar = _vector_arg(offset, "offset", ev, index, data_kind)
    for v in [*fixed_vars.values(), *offset_vars, *re_vars.values(), *group_vars.values()]:
        used.setdefault(v.name, v)
    for v, label in ((wvar, "weights"), (ovar, "offset")):
        if v is not None:
            used.setdefault(f"{label} {v.name}", v)
    for key in [*pf.fixed.offsets]:
        v = ev.variable(key)
        if v.is_factor:
            raise DataError(f"offset {key!r} must be numeric, not categorical")

    na = None
    na_counts: dict[str, int] = {}
    finite: set[str] = set()            # numeric columns with no NaN and no infinite value
    dense: set[str] = set()             # factors with every level used and no NA
    kern = compiled.frame_kernels()
    for name, v in used.items():
        if v.codes is None and v.values.size and _all_finite(v.values, kern):
            finite.add(name)            # the usual case: one pass decides both checks
            continue
        if kern is not None and v.codes is not None and v.codes.dtype == np.int64 and v.codes.ndim == 1:
            count, nused = kern.factor_counts(np.ascontiguousarray(v.codes), len(v.levels))
            if not count:
                if nused == len(v.levels):
                    dense.add(name)
                continue
            m = v.codes < 0
        else:
            m = v.na_mask()
            count = int(np.count_nonzero(m))
        if n_all and count == n_all:
            raise DataError(f"column {name!r} is entirely missing (NA)")
        if count:
            na_counts[name] = count
            na = m.copy() if na is None else na | m
    rows = np.arange(n_all) if na is None else np.flatnonzero(~na)
    if n_all == 0 or len(rows) == 0:
        detail = ", ".join(f"{k!r} ({c} NA)" for k, c in na_counts.items())
        raise DataError("no rows left after removing missing values" + (f"; NAs in: {detail}" if detail else
                                                                        " (the data has no rows)"))
    n = len(rows)
    keep = None if n == n_all else rows             # no gathers when no row is dropped
    sub = {k: v if keep is None and k in dense else v.subset(keep) for k, v in used.items()}

    for name, v in sub.items():
        if not v.is_factor and name not in finite:
            bad = int(np.isinf(v.values).sum())
            if bad:
                if name in df.columns or name.split(" ", 1)[0] in ("weights", "offset"):
                    raise DataError(f"column {name!r} has {bad} infinite value(s); remove or fix them")
                raise DataError(f"{name!r} gives {bad} infinite value(s) in the rows used (e.g. log(0) or a "
                                "division by zero); lme4 stops here too (NA/NaN/Inf in foreign function "
                                "call); drop those rows or change the transformation (e.g. log(x + 1))")

    # response ---------------------------------------------------------------
    prior = np.ones(n) if wvar is None else sub[f"weights {wvar.name}"].values.copy()
    if wvar is not None and (prior < 0).any():
        raise DataError(f"weights contain {int((prior < 0).sum())} negative value(s)")
    y, prior, kind = _response(sub[pf.response], prior, binomial)

    off = np.zeros(n)
    for t in pf.fixed.offsets:
        vals = sub[t].values
        off += vals if vals.ndim == 1 else vals.sum(axis=1)
    if ovar is not None:
        off += sub[f"offset {ovar.name}"].values

    # fixed effects -------------------------------------------------------------
    fsub = {t: sub[t] for t in pf.fixed.variables}
    _warn_many_levels(fsub, n)
    X, names = build_model_matrix(pf.fixed, fsub, n)
    drop = rank_deficient_columns(X) if X.shape[1] else []
    dropped = [names[j] for j in drop]
    if drop:
        keep = [j for j in range(X.shape[1]) if j not in set(drop)]
        X = np.ascontiguousarray(X[:, keep])
        names = [names[j] for j in keep]

    # random effects ----------------------------------------------------------
    reterms: list[ReTermDesign] = []
    for rt in pf.random:
        factors = [as_factor(sub[g]) for g in rt.group]
        codes, levels = interaction_codes(factors)
        if len(levels) < 2:
            raise DataError(f"grouping factor {rt.group_name!r} has only {len(levels)} level; a random effect "
                            f"needs at least 2 (lme4 requires more) in term ({rt.text})")
        rsub = {t: sub[t] for t in rt.lhs.variables}
        Z, znames = build_model_matrix(rt.lhs, rsub, n)
        reterms.append(ReTermDesign(rt.group_name, codes, levels, Z, znames, rt.correlated))

    xlevels = {k: list(v.levels) for k, v in sub.items()
               if v.is_factor and (k in fsub or any(k in rt.lhs.variables for rt in pf.random))}
    xref = {k: int(sub[k].ref) for k in xlevels}
    return ModelFrame(y=y, response_name=pf.response, X=X, fixef_names=names, dropped_fixef=dropped,
                      offset=off, weights=prior, reterms=reterms, n_dropped_na=int(n_all - n), rows=rows,
                      binomial_response_kind=kind, xlevels=xlevels, xref=xref,
                      scale_params=dict(ev.scale_params))


def _looks_numeric(label: str) -> bool:
    try:
        float(label)
    except ValueError:
        return False
    return True


def _warn_many_levels(fsub: dict[str, Variable], n: int) -> None:
    """Warn about a fixed-effect factor that looks like a numeric covariate read as text: one
    with more levels than half the rows, or with 10+ levels that all read as numbers. R makes
    such a factor silently (a character column is a factor), with a coefficient per level.
    Also warn about an ordered factor, which R codes with polynomial contrasts (contr.poly)."""
    for name, v in fsub.items():
        if v.is_factor and v.ordered and len(v.levels) >= 2:
            warnings.warn(f"factor {name!r} is an ordered Categorical: R would code it with polynomial "
                          f"contrasts (contr.poly: {name}.L, {name}.Q, ...), pyglmm codes it with treatment "
                          f"contrasts against level {v.levels[v.ref]!r} (the same fit, other coefficients); "
                          "make it unordered (.cat.as_unordered()) to silence this", UserWarning,
                          stacklevel=user_stacklevel())
        k = len(v.levels)
        if not v.is_factor or k < 10:
            continue
        numeric = all(_looks_numeric(lv) for lv in v.levels)
        if k > n / 2 or numeric:
            why = (f"all its levels read as numbers (e.g. {v.levels[0]!r}, {v.levels[1]!r})" if numeric
                   else f"that is nearly one level per row ({n} rows)")
            hint = f"pd.to_numeric(df[{name!r}])" if numeric else "a grouping factor (1 | ...)"
            warnings.warn(f"fixed-effect factor {name!r} has {k} levels, and {why}: it enters the model as "
                          f"{k - 1} or more indicator columns, as R treats a text column; if it is meant as a "
                          f"number, convert it with {hint}", UserWarning, stacklevel=user_stacklevel())


def _all_finite(values: np.ndarray, kern) -> bool:
    """Whether a numeric variable has no NaN and no infinite value (one compiled pass if built)."""
    if kern is not None and values.dtype == np.float64:
        return kern.all_finite(values if values.ndim == 1 else values.reshape(-1))
    return bool(np.isfinite(values).all())


def _response(v: Variable, prior: np.ndarray, binomial: bool) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Response vector, updated prior weights and binomial response kind."""
    if v.is_factor:
        if v.levels == ["FALSE", "TRUE"] and not binomial:
            return v.codes.astype(np.float64), prior, None
        if not binomial:
            raise DataError(f"response {v.name!r} is not numeric (categorical with levels "
                            f"{', '.join(v.levels)}); use a numeric response or a binomial family")
        if len(v.levels) > 2:
            raise DataError(f"binomial response {v.name!r} must have 2 levels but has {len(v.levels)}: "
                            f"{', '.join(v.levels)}")
        if len(v.levels) < 2:
            # one level present: first level = failure
            return (v.codes != 0).astype(np.float64), prior, "factor"
        return (v.codes == 1).astype(np.float64), prior, "factor"
    vals = v.values
    if vals.ndim == 2:
        if not binomial:
            raise DataError(f"response {v.name!r} has {vals.shape[1]} columns; cbind() responses need a "
                            "binomial family")
        if vals.shape[1] != 2:
            raise DataError(f"binomial response {v.name!r} must have exactly 2 columns (successes, failures)")
        s, f = vals[:, 0], vals[:, 1]
        if vals.min() < 0:
            raise DataError(f"binomial response {v.name!r} has negative counts")
        total = s + f
        if total.min() > 0:              # the usual case: every row has a trial
            y = s / total
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                y = np.where(total > 0, s / np.where(total > 0, total, 1.0), 0.0)
        return y, prior * total, "cbind"
    return vals.astype(np.float64), prior, ("numeric" if binomial else None)


def lme4_term_order(reterms: list[ReTermDesign]) -> list[int]:
    """Permutation lme4's mkReTrms applies: ``rev(order(nlevels))`` if any term has more levels than its predecessor."""
    nl = [len(rt.levels) for rt in reterms]
    if not any(b > a for a, b in zip(nl, nl[1:])):
        return list(range(len(nl)))
    order = sorted(range(len(nl)), key=lambda i: nl[i])  # stable, like R's order()
    return order[::-1]
