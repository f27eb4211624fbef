"""The classic Pearson chi-square check for overdispersion of count and binomial GLMMs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class OverdispersionResult:
    chisq: float       # sum of squared Pearson residuals
    ratio: float       # chisq / df (about 1 without overdispersion)
    df: int            # residual degrees of freedom: nobs - number of parameters
    p_value: float     # P(chi2_df > chisq), one-sided (overdispersion)

    def __repr__(self) -> str:
        return (f"Pearson chi-square = {self.chisq:.4g} on {self.df} df, ratio = {self.ratio:.4g}, "
                f"p-value = {self.p_value:.4g}")


def overdispersion(model) -> OverdispersionResult:
    """Pearson chi-square / residual df with a chi-square p-value (Poisson, binomial, nbinom2).

    The statistic is ``sum(residuals(m, "pearson")^2)`` with df = nobs - (fixed effects +
    variance parameters), as ``overdisp_fun`` in the GLMM FAQ (Bolker) and DHARMa's
    ``testDispersion(type = "PearsonChisq")``. The chi-square reference distribution is only
    approximate for GLMMs: the Pearson residuals are conditional on the predicted random
    effects, whose effective degrees of freedom lie somewhere between the number of variance
    parameters and the number of groups, so the test tends to understate dispersion
    (conservative for overdispersion) when there are many groups. For binary (0/1) data it is
    uninformative. Prefer ``quantile_residuals(m).dispersion`` when in doubt.
    """
    fam = None if model.is_lmm else model.family
    if fam is None or fam.extra_parameter == "dispersion":
        raise ValueError(f"overdispersion() is for Poisson, binomial and negative binomial models "
                         f"(fixed dispersion); this model's family is "
                         f"{getattr(fam, 'name', 'gaussian')!r}")
    r = np.asarray(model.residuals("pearson"), float)
    wt = np.asarray(model.frame.weights, float)
    chisq = float(np.sum(r[wt > 0] ** 2))
    df = int(np.sum(wt > 0)) - int(model.n_params)
    if df <= 0:
        raise ValueError(f"no residual degrees of freedom ({np.sum(wt > 0)} observations, "
                         f"{model.n_params} parameters)")
    return OverdispersionResult(chisq=chisq, ratio=chisq / df, df=df, p_value=float(stats.chi2.sf(chisq, df)))
