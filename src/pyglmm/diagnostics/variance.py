"""Variance-partitioning summaries: latent-scale ICC, median odds / rate ratios."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..results.varcorr import term_labels


def _intercept_variances(model, what: str) -> pd.Series:
    """Random-intercept variance per term; error if any term has random slopes."""
    labels = term_labels(model.terms)
    out = {}
    for lab, t, S in zip(labels, model.terms, model.covariances):
        if list(t.colnames) != ["(Intercept)"]:
            raise ValueError(
                f"{what} is defined for random-intercept models; the term for {t.group!r} has "
                f"random effects {', '.join(t.colnames)} (with random slopes the variance, and "
                f"so the {what}, depends on the covariates)")
        out[lab] = float(S[0, 0])
    if not out:
        raise ValueError(f"{what} needs at least one random-effects term")
    return pd.Series(out, dtype=float)


def _family(model):
    """The model's family (an LMM's is the gaussian, identity link)."""
    return model.family


@dataclass(frozen=True)
class ICCResult:
    """Intraclass correlation on the latent (link) scale.

    ``icc``: total random-intercept variance over total variance (Nakagawa et al. 2017's
    adjusted ICC); ``by_group``: each term's share; ``variances``: the random-intercept
    variances; ``distribution_variance``: the observation-level variance on the latent scale;
    ``method``: how it was obtained.
    """

    icc: float
    by_group: pd.Series
    variances: pd.Series
    distribution_variance: float
    method: str

    def __float__(self) -> float:
        return float(self.icc)

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {v:.4g}" for k, v in self.by_group.items())
        return (f"ICC = {self.icc:.4g} (by group: {parts}); observation-level variance "
                f"{self.distribution_variance:.4g} [{self.method}]")


def icc(model, mean: float | None = None, approximation: str = "lognormal") -> ICCResult:
    """Intraclass correlation on the latent scale of a random-intercept model.

    ICC = sum(sigma_u^2) / (sum(sigma_u^2) + sigma_d^2), per term sigma_k^2 / (same denominator),
    with the observation-level ("distribution-specific") variance sigma_d^2 of Nakagawa &
    Schielzeth (2010) and Nakagawa, Johnson & Schielzeth (2017, J. R. Soc. Interface):

    * LMM / gaussian identity: the residual variance sigma^2;
    * binomial: logit pi^2/3, probit 1, cloglog pi^2/6;
    * Poisson, log link: ``approximation="lognormal"`` (default, recommended by Nakagawa et al.
      2017) ln(1 + 1/lambda); ``"delta"`` 1/lambda; ``"trigamma"`` trigamma(lambda);
    * negative binomial (nbinom2, shape theta), log link: ln(1 + 1/lambda + 1/theta), the
      delta 1/lambda + 1/theta or trigamma((1/lambda + 1/theta)^-1);
    * Gamma, log link: ln(1 + phi) (lognormal), phi (delta) or trigamma(1/phi).

    lambda is the expected mean count. Nakagawa et al. use exp(beta_0 + sigma_u^2/2) from an
    intercept-only model; here it is the marginal mean averaged over the observed rows,
    mean(exp(offset + X beta + sum(sigma_u^2)/2)), which is that value for an intercept-only
    model. Pass ``mean=`` to use another value (e.g. the mean of the observed response).
    """
    var = _intercept_variances(model, "ICC")
    family = _family(model)
    fam, link = family.name, family.link.name
    total_u = float(var.sum())
    method = f"{fam}, {link} link"
    if approximation not in ("lognormal", "delta", "trigamma"):
        raise ValueError(f"approximation must be 'lognormal', 'delta' or 'trigamma', got {approximation!r}")
    lam = None
    if family.needs_latent_mean:
        if mean is None:
            fr = model.frame
            eta = np.asarray(fr.offset, float) + fr.X @ model.fixef.values
            lam = float(np.mean(np.exp(eta + 0.5 * total_u)))
            lam_what = f", lambda = {lam:.4g} (marginal mean)"
        else:
            lam = float(mean)
            if not lam > 0:
                raise ValueError(f"mean must be positive, got {mean!r}")
            lam_what = f", lambda = {lam:.4g} (given)"
    disp = model.sigma ** 2 if model.is_lmm or model.dispersion is None else float(model.dispersion)
    try:
        sd2, how = family.latent_variance(lam, disp, approximation)
    except ValueError:
        raise ValueError(f"icc() has no latent-scale observation variance for family {fam!r} "
                         f"with link {link!r}") from None
    sd2 = float(sd2)
    method += (lam_what if lam is not None else "") + (
        f", {how}" if how.endswith("approximation") else f": {how}")
    denom = total_u + sd2
    return ICCResult(icc=total_u / denom, by_group=(var / denom).rename("icc"), variances=var,
                     distribution_variance=float(sd2), method=method)


def median_ratio(model, group: str | None = None):
    """Median odds ratio (logit link) or median rate ratio (log link) per random-intercept term.

    MOR = exp(sqrt(2 sigma_u^2) * qnorm(0.75)) (Larsen & Merlo 2005, Am. J. Epidemiol.): the
    median of the odds ratios between two randomly chosen groups, the higher against the lower
    risk one, with the same covariates. The median rate ratio (MRR) is the same formula for log
    links (Poisson, negative binomial). Returns a Series indexed by term label (name "MOR" or
    "MRR"), or a float for ``group=``.
    """
    family = _family(model)
    name = {"odds ratio": "MOR", "rate ratio": "MRR", "ratio": "MRR"}.get(family.ratio_label)
    if name is None:
        raise ValueError(f"median odds/rate ratios need a logit or log link; this model "
                         f"({family.name}) has link {family.link.name!r}")
    var = _intercept_variances(model, name)
    out = np.exp(np.sqrt(2.0 * var) * stats.norm.ppf(0.75)).rename(name)
    if group is None:
        return out
    if group not in out.index:
        raise KeyError(f"no random-intercept term {group!r}; terms: {', '.join(out.index)}")
    return float(out[group])
