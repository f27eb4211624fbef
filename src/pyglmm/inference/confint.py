"""Confidence intervals for the parameters of a mixed model, as lme4's ``confint.merMod``.

``confint(model, method=...)`` dispatches on ``method`` through :data:`METHODS`; "wald" is
implemented here. Profile and bootstrap intervals are to be added by registering a function
``f(model, parm, level, **kwargs) -> DataFrame`` under "profile" / "boot" with
:func:`register_method` (same row naming: :func:`parameter_names`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

METHODS: dict[str, Callable] = {}


def register_method(name: str, func: Callable) -> None:
    """Make ``confint(model, method=name)`` call ``func(model, parm, level, **kwargs)``."""
    METHODS[name.lower()] = func


def percent_labels(level: float) -> list[str]:
    """R's format.perc: "2.5 %", "97.5 %" (3 significant digits)."""
    a = (1 - level) / 2
    out = []
    for q in (a, 1 - a):
        s = f"{100 * q:.3g}"
        out.append(f"{s} %")
    return out


def variance_parameter_names(model) -> list[str]:
    """lme4's names for the sd/cor parameters: ".sig01", ".sig02", ... then ".sigma" when the
    model has a residual scale (LMMs; GLMMs with a dispersion parameter)."""
    nth = len(model.theta)
    names = [f".sig{i + 1:02d}" for i in range(nth)]
    if model.is_lmm or model._r.sigma is not None:
        names.append(".sigma")
    return names


def parameter_names(model) -> list[str]:
    """All rows of lme4's confint: variance parameters, then the fixed effects."""
    return variance_parameter_names(model) + list(model.frame.fixef_names)


def select_parameters(model, parm) -> list[str]:
    allp = parameter_names(model)
    if parm is None:
        return allp
    if isinstance(parm, str):
        if parm == "beta_":
            return list(model.frame.fixef_names)
        if parm == "theta_":
            return variance_parameter_names(model)
        parm = [parm]
    out = []
    for p in parm:
        if isinstance(p, (int, np.integer)):
            if not 1 <= p <= len(allp):
                raise ValueError(f"parameter index {p} out of range 1..{len(allp)} (R's 1-based parm)")
            out.append(allp[p - 1])
        elif p in allp:
            out.append(p)
        else:
            raise ValueError(f"unknown parameter {p!r}; parameters are: {', '.join(allp)}")
    return out


def confint_wald(model, parm=None, level: float = 0.95) -> pd.DataFrame:
    """Wald intervals estimate -/+ z * se for the fixed effects; NaN rows for the sd/cor
    parameters (as lme4's ``confint(m, method = "Wald")`` gives NA: Wald intervals on the sd
    scale are poor and lme4 does not compute them)."""
    rows = select_parameters(model, parm)
    lo_lab, hi_lab = percent_labels(level)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    b, se = model.fixef, model.se
    lo, hi = [], []
    for r in rows:
        if r in b.index:
            lo.append(b[r] - z * se[r])
            hi.append(b[r] + z * se[r])
        else:
            lo.append(np.nan)
            hi.append(np.nan)
    return pd.DataFrame({lo_lab: lo, hi_lab: hi}, index=pd.Index(rows))


register_method("wald", confint_wald)


def confint(model, parm=None, level: float = 0.95, method: str = "wald", **kwargs) -> pd.DataFrame:
    """Confidence intervals, rows named as lme4 (".sig01", ..., ".sigma", fixed effects),
    columns as R ("2.5 %", "97.5 %").

    ``method``: "wald" (available), "profile" and "boot" (not implemented yet:
    NotImplementedError). ``parm``: None (all), "beta_" (fixed effects), "theta_" (variance
    parameters), or a list of names / 1-based indices as in R.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1 (got {level!r})")
    key = str(method).lower()
    if key in METHODS:
        return METHODS[key](model, parm, level, **kwargs)
    if key in ("profile", "boot"):
        raise NotImplementedError(f"confint method {method!r} is not implemented yet; "
                                  "use method='wald'")
    raise ValueError(f"unknown confint method {method!r}; use 'wald', 'profile' or 'boot'")
