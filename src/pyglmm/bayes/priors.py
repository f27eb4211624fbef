"""Prior specifications for :func:`pyglmm.bayes.bglmer`: defaults, the user's dict, validation.

A prior is a tuple ``(name, *parameters)``:

===================  ==========================================  =========================
name                 parameters                                  for
===================  ==========================================  =========================
``normal``           loc, scale                                  fixed effects
``student_t``        df, loc, scale                              fixed effects
``cauchy``           loc, scale                                  fixed effects
``laplace``          loc, scale                                  fixed effects
``halfnormal``       scale                                       sd, sigma, shape
``halfcauchy``       scale                                       sd, sigma, shape
``half_student_t``   df, scale                                   sd, sigma, shape
``exponential``      rate                                        sd, sigma, shape
``gamma``            concentration, rate                         sd, sigma, shape
``lognormal``        loc, scale (of the log)                     sd, sigma, shape
===================  ==========================================  =========================

The ``priors`` argument is a dict with any of the keys

* ``"fixef"``: ``{coefficient name: prior}``, names as in the ML fit's ``fixef`` index
  (``"(Intercept)"``, ``"treatmentnew"``, ...). A prior on ``"(Intercept)"`` is a prior on the
  intercept *with the other predictors centred at their sample means* (rstanarm's and brms'
  convention); the reported ``(Intercept)`` is converted back to the uncentred scale.
* ``"sd"``: ``{group label: prior}`` for the standard deviations of that term's random effects
  (one prior for all of a term's sds; labels as in VarCorr: ``"rehab"``, ``"Subject.1"``).
* ``"lkj"``: the LKJ shape eta for the correlation matrices, one number for all terms or
  ``{group label: eta}``.
* ``"sigma"``: residual sd (gaussian, inverse.gaussian: sqrt of the dispersion).
* ``"shape"``: Gamma shape (1 / dispersion) or nbinom2 shape theta.

Defaults (``Defaults`` below; shown by ``result.prior_summary()``):

* Fixed effects, rstanarm's autoscaled ``normal(0, 2.5)``: predictors other than the intercept
  are centred; coefficient j ~ Normal(0, 2.5 * s_y / sd(x_j)) and the centred intercept
  ~ Normal(m_y, 2.5 * s_y), where s_y = sd(y), m_y = mean(y) for the gaussian family with the
  identity link and s_y = 1, m_y = 0 otherwise (the link scale of a GLM is already unit-free).
  sd(x_j) is the sample sd (n - 1) of column j of the model matrix (dummy columns included);
  a constant column keeps scale 2.5 * s_y.
* Random-effect standard deviations: Exponential(rate = 1 / s_y) (rstanarm's default for
  scale parameters; mean s_y), independently for each sd.
* Correlations: LKJ(2) on each term's correlation matrix (mildly favours small correlations;
  LKJ(1) is uniform).
* sigma (gaussian, inverse.gaussian): Exponential(rate = 1 / s_y) (rstanarm).
* Gamma shape: Exponential(1) (rstanarm's prior_aux for Gamma).
* nbinom2 shape: Gamma(0.01, 0.01) (brms' default for the negative binomial shape).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import numpy as np

from ..errors import ArgumentError

LOCATION_SCALE = {"normal": 2, "student_t": 3, "cauchy": 2, "laplace": 2}
POSITIVE = {"halfnormal": 1, "halfcauchy": 1, "half_student_t": 2, "exponential": 1, "gamma": 2,
            "lognormal": 2}
TOP_KEYS = ("fixef", "sd", "lkj", "sigma", "shape")


class PriorError(ArgumentError):
    """An invalid ``priors`` specification (unknown coefficient, group, or distribution)."""


def _hint(name, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=2)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _check_spec(spec, where: str, allowed: dict) -> tuple:
    if isinstance(spec, str):
        spec = (spec,)
    if not isinstance(spec, (tuple, list)) or not spec or not isinstance(spec[0], str):
        raise PriorError(f"{where}: a prior is a tuple (name, *parameters), e.g. ('normal', 0, 2.5); "
                         f"got {spec!r}")
    name = spec[0].lower().replace("-", "_")
    name = {"half_normal": "halfnormal", "half_cauchy": "halfcauchy", "studentt": "student_t",
            "t": "student_t", "exp": "exponential"}.get(name, name)
    if name not in allowed:
        raise PriorError(f"{where}: unknown prior distribution {spec[0]!r}; use one of "
                         f"{', '.join(sorted(allowed))}{_hint(spec[0], allowed)}")
    params = spec[1:]
    if len(params) != allowed[name]:
        raise PriorError(f"{where}: prior {name!r} takes {allowed[name]} parameter(s), got "
                         f"{len(params)} ({spec!r})")
    try:
        params = tuple(float(p) for p in params)
    except (TypeError, ValueError):
        raise PriorError(f"{where}: prior parameters must be numbers, got {spec!r}") from None
    if not all(np.isfinite(params)):
        raise PriorError(f"{where}: prior parameters must be finite, got {spec!r}")
    positive_idx = {"normal": [1], "student_t": [0, 2], "cauchy": [1], "laplace": [1],
                    "halfnormal": [0], "halfcauchy": [0], "half_student_t": [0, 1],
                    "exponential": [0], "gamma": [0, 1], "lognormal": [1]}[name]
    if any(params[i] <= 0 for i in positive_idx):
        raise PriorError(f"{where}: scale/rate/df parameters of {name!r} must be > 0, got {spec!r}")
    return (name,) + params


def format_prior(spec: tuple) -> str:
    return f"{spec[0]}({', '.join(f'{p:.4g}' for p in spec[1:])})"


@dataclass
class PriorSet:
    """Resolved priors, one entry per parameter block."""

    fixef: dict[str, tuple]                 # coefficient -> prior (intercept: centred scale)
    sd: dict[str, tuple]                    # group label -> prior of each sd in the term
    lkj: dict[str, float]                   # group label -> LKJ eta (terms with correlations)
    aux: tuple | None                       # sigma / shape prior
    aux_name: str | None                    # "sigma" or "shape"
    s_y: float = 1.0
    m_y: float = 0.0
    user_set: set = field(default_factory=set)

    def table(self):
        import pandas as pd
        rows = []
        for k, v in self.fixef.items():
            what = "b (centred intercept)" if k == "(Intercept)" else "b"
            rows.append((what, k, format_prior(v), "user" if ("fixef", k) in self.user_set else "default"))
        for k, v in self.sd.items():
            rows.append(("sd", k, format_prior(v), "user" if ("sd", k) in self.user_set else "default"))
        for k, v in self.lkj.items():
            rows.append(("cor", k, f"lkj({v:.4g})", "user" if ("lkj", k) in self.user_set else "default"))
        if self.aux is not None:
            rows.append((self.aux_name, "", format_prior(self.aux),
                         "user" if (self.aux_name,) in self.user_set else "default"))
        return pd.DataFrame(rows, columns=["class", "coef/group", "prior", "source"])


def resolve_priors(priors: dict | None, *, fixef_names: list[str], X: np.ndarray, y: np.ndarray,
                   family: str, link: str, group_labels: list[str], correlated: list[bool],
                   ) -> PriorSet:
    """Defaults (see module docstring) overridden by the user's dict, with validation."""
    priors = {} if priors is None else priors
    if not isinstance(priors, dict):
        raise PriorError(f"priors must be a dict with keys among {TOP_KEYS}; got {type(priors).__name__}")
    for key in priors:
        if key not in TOP_KEYS:
            raise PriorError(f"unknown key {key!r} in priors; use {', '.join(map(repr, TOP_KEYS))}"
                             f"{_hint(key, TOP_KEYS)}")
    from ..families import make_family
    fam = make_family(family, link)
    m_y, s_y = fam.prior_scale(y)         # the response's scale when eta is on it
    user: set = set()

    fixef = {}
    for j, nm in enumerate(fixef_names):
        if nm == "(Intercept)":
            fixef[nm] = ("normal", m_y, 2.5 * s_y)
        else:
            sx = float(np.std(X[:, j], ddof=1)) if X.shape[0] > 1 else 0.0
            fixef[nm] = ("normal", 0.0, 2.5 * s_y / sx if sx > 0 else 2.5 * s_y)
    user_fixef = priors.get("fixef", {}) or {}
    if not isinstance(user_fixef, dict):
        raise PriorError("priors['fixef'] must be a dict {coefficient name: prior}")
    for nm, spec in user_fixef.items():
        if nm not in fixef:
            raise PriorError(f"unknown coefficient {nm!r} in priors['fixef']; the model's fixed "
                             f"effects are {', '.join(map(repr, fixef_names))}{_hint(nm, fixef_names)}")
        fixef[nm] = _check_spec(spec, f"priors['fixef'][{nm!r}]", LOCATION_SCALE)
        user.add(("fixef", nm))

    sd = {g: ("exponential", 1.0 / s_y) for g in group_labels}
    user_sd = priors.get("sd", {}) or {}
    if not isinstance(user_sd, dict):
        raise PriorError("priors['sd'] must be a dict {group label: prior}")
    for g, spec in user_sd.items():
        if g not in sd:
            raise PriorError(f"unknown group {g!r} in priors['sd']; the model's random-effects "
                             f"terms are {', '.join(map(repr, group_labels))}{_hint(g, group_labels)}")
        sd[g] = _check_spec(spec, f"priors['sd'][{g!r}]", POSITIVE)
        user.add(("sd", g))

    lkj_groups = [g for g, c in zip(group_labels, correlated) if c]
    lkj = {g: 2.0 for g in lkj_groups}
    user_lkj = priors.get("lkj", None)
    if user_lkj is not None:
        items = user_lkj.items() if isinstance(user_lkj, dict) else [(g, user_lkj) for g in lkj_groups]
        for g, eta in items:
            if g not in group_labels:
                raise PriorError(f"unknown group {g!r} in priors['lkj']; the model's random-effects "
                                 f"terms are {', '.join(map(repr, group_labels))}{_hint(g, group_labels)}")
            if g not in lkj:
                raise PriorError(f"priors['lkj'][{g!r}]: the term has no correlation parameters")
            try:
                eta = float(eta)
            except (TypeError, ValueError):
                raise PriorError(f"priors['lkj'] must be a number > 0 (or a dict of them); got {eta!r}") from None
            if not eta > 0:
                raise PriorError(f"priors['lkj'] must be > 0; got {eta!r}")
            lkj[g] = eta
            user.add(("lkj", g))

    aux_name = fam.aux_name
    aux = fam.default_aux_prior(s_y)
    for key in ("sigma", "shape"):
        if key in priors:
            if key != aux_name:
                raise PriorError(f"priors[{key!r}]: the {fam.name} family has no {key} parameter"
                                 + (f" (it has {aux_name!r})" if aux_name else ""))
            aux = _check_spec(priors[key], f"priors[{key!r}]", POSITIVE)
            user.add((key,))
    return PriorSet(fixef=fixef, sd=sd, lkj=lkj, aux=aux, aux_name=aux_name, s_y=s_y, m_y=m_y,
                    user_set=user)
