"""Simulation-based (randomized) quantile residuals and the tests of R's DHARMa package.

For each observation the residual is the position of the observed response within the
responses simulated from the fitted model: the fraction of simulations below it. For discrete
responses (Poisson, binomial, negative binomial) the probability integral transform is
randomized: the residual is drawn uniformly between the simulated ECDF just below the
observation (the fraction of simulations < y, i.e. F(y - 1) for counts) and at it (the
fraction <= y), DHARMa's ``method = "PIT"``. Under a correctly specified model the residuals
are uniform on (0, 1), whatever the family, so one set of checks serves every model.

Which random effects are simulated
----------------------------------
DHARMa >= 0.5.0 simulates *conditional* on the fitted random effects by default
(``simulateREs = "conditional"``, i.e. lme4's ``simulate(m, re.form = NULL)``): the residuals
then check the observation-level distribution given the groups, which is what makes the
dispersion test powerful for GLMMs. Older DHARMa versions used the model's own default, for
lme4 ``re.form = NA``: new random effects in every simulation. ``simulate_res="conditional"``
(the default here) and ``"unconditional"`` select between the two.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

_DISCRETE = ("poisson", "binomial", "nbinom2")


@dataclass(frozen=True)
class SimulationTest:
    """Result of one diagnostic test."""

    name: str
    statistic: float
    p_value: float
    alternative: str
    method: str

    def __repr__(self) -> str:
        return (f"{self.name}: statistic = {self.statistic:.4g}, p-value = {self.p_value:.4g} "
                f"({self.alternative}; {self.method})")


def simulation_p_value(simulated: np.ndarray, observed: float, alternative: str = "two.sided") -> float:
    """p-value of an observed summary against its simulated distribution (DHARMa's getP)."""
    sim = np.asarray(simulated, float)
    sim = sim[np.isfinite(sim)]
    if sim.size == 0 or not np.isfinite(observed):
        return float("nan")
    ge = float(np.mean(sim >= observed))
    le = float(np.mean(sim <= observed))
    if alternative == "greater":
        return ge
    if alternative == "less":
        return le
    if alternative == "two.sided":
        return min(2.0 * min(ge, le), 1.0)
    raise ValueError(f"alternative must be 'two.sided', 'greater' or 'less', got {alternative!r}")


def _response_scale(model, y: np.ndarray) -> np.ndarray:
    """Binomial responses as counts of successes (as DHARMa), when the trials are whole numbers."""
    if model.is_lmm or model.family is None or model.family.name != "binomial":
        return y
    wt = np.asarray(model.frame.weights, float)
    k = y * wt[:, None] if y.ndim == 2 else y * wt
    kr = np.round(k)
    if np.all(np.abs(k - kr) < 1e-6) and np.all(np.abs(wt - np.round(wt)) < 1e-6):
        return kr
    return y


@dataclass
class QuantileResiduals:
    """Scaled (quantile) residuals of a fitted model plus DHARMa's tests.

    Attributes: ``residuals`` (uniform under the model), ``observed`` and ``simulated``
    (n x nsim; binomial responses as success counts), ``fitted`` (the model's conditional
    fitted values, the x axis of the residual plot), ``expected`` (row means of the
    simulations), ``nsim``, ``simulate_res``, ``integer``.
    """

    residuals: np.ndarray
    observed: np.ndarray
    simulated: np.ndarray
    fitted: np.ndarray
    nsim: int
    simulate_res: str
    integer: bool
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def expected(self) -> np.ndarray:
        return self.simulated.mean(axis=1)

    @property
    def uniformity(self) -> SimulationTest:
        """Kolmogorov-Smirnov test of the residuals against U(0, 1) (DHARMa's testUniformity)."""
        if "uniformity" not in self._cache:
            ks = stats.kstest(self.residuals, "uniform")
            self._cache["uniformity"] = SimulationTest(
                "uniformity", float(ks.statistic), float(ks.pvalue), "two.sided",
                "one-sample Kolmogorov-Smirnov test against U(0, 1)")
        return self._cache["uniformity"]

    def dispersion_test(self, alternative: str = "two.sided") -> SimulationTest:
        """DHARMa's simulation-based dispersion test.

        The statistic of a data set x is var(x - E[y_sim]): the spread of the responses
        around the mean of the simulations. It is computed for the observed data and for
        each simulated data set; the reported statistic is observed / mean(simulated) (> 1:
        overdispersion) and the p-value is the position of the observed value in the simulated
        distribution (two-sided by default). DHARMa centres on ``fitted(m)``; centring on the
        simulation mean is the same in expectation for conditional simulations and keeps
        observed and simulated spreads comparable for unconditional ones.

        With conditional simulations and few observations per group the fitted random
        effects absorb part of the residual variation, so the test leans towards
        underdispersion (statistic < 1) for a correct model; ``alternative="greater"`` tests
        for overdispersion only.
        """
        key = ("dispersion", alternative)
        if key not in self._cache:
            centre = self.expected[:, None]
            obs = float(np.var(self.observed - centre[:, 0], ddof=1))
            sim = np.var(self.simulated - centre, axis=0, ddof=1)
            ratio = obs / float(np.mean(sim)) if np.mean(sim) > 0 else float("nan")
            self._cache[key] = SimulationTest(
                "dispersion", ratio, simulation_p_value(sim, obs, alternative), alternative,
                "DHARMa nonparametric dispersion test: var(y - E[y_sim]), observed vs simulated")
        return self._cache[key]

    @property
    def dispersion(self) -> SimulationTest:
        return self.dispersion_test()

    def zero_inflation_test(self, alternative: str = "two.sided") -> SimulationTest:
        """Observed number of zeros against its simulated distribution (DHARMa's
        testZeroInflation); statistic = observed / mean simulated count (> 1: excess zeros).
        Meaningful for count and binomial responses only (binomial: zero successes)."""
        key = ("zero_inflation", alternative)
        if key not in self._cache:
            obs = float(np.sum(self.observed == 0))
            sim = np.sum(self.simulated == 0, axis=0).astype(float)
            ratio = obs / float(np.mean(sim)) if np.mean(sim) > 0 else (1.0 if obs == 0 else float("inf"))
            self._cache[key] = SimulationTest(
                "zero_inflation", ratio, simulation_p_value(sim, obs, alternative), alternative,
                "number of zeros, observed vs simulated")
        return self._cache[key]

    @property
    def zero_inflation(self) -> SimulationTest:
        return self.zero_inflation_test()

    def tests(self) -> pd.DataFrame:
        """The three tests side by side (statistic, p-value)."""
        ts = [self.uniformity, self.dispersion, self.zero_inflation]
        return pd.DataFrame({"statistic": [t.statistic for t in ts], "p_value": [t.p_value for t in ts],
                             "method": [t.method for t in ts]}, index=[t.name for t in ts])

    def __repr__(self) -> str:
        lines = [f"Simulation-based quantile residuals ({self.nsim} simulations, "
                 f"{self.simulate_res} on the random effects, n = {len(self.residuals)})"]
        lines += [f"  {t!r}" for t in (self.uniformity, self.dispersion, self.zero_inflation)]
        return "\n".join(lines)


def pit_residuals(observed: np.ndarray, simulated: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Randomized PIT: U(F(y-), F(y)) with F the ECDF of each row of ``simulated``.

    For counts F(y-) = F(y - 1). Continuous responses tie with the simulations with
    probability 0, so there the residual is simply the fraction of simulations below y.
    """
    y = np.asarray(observed, float)[:, None]
    lo = np.mean(simulated < y, axis=1)
    hi = np.mean(simulated <= y, axis=1)
    u = rng.uniform(size=lo.shape)
    return np.where(hi > lo, lo + u * (hi - lo), lo)


def quantile_residuals(model, nsim: int = 250, seed=None,
                       simulate_res: str = "conditional") -> QuantileResiduals:
    """Simulation-based quantile residuals as R's ``DHARMa::simulateResiduals``.

    ``nsim`` responses are simulated from the fitted model (``model.simulate``), conditional on
    the fitted random effects (``simulate_res="conditional"``, DHARMa >= 0.5's default, lme4's
    ``re.form = NULL``) or with new random effects (``"unconditional"``, lme4's ``re.form =
    NA``, older DHARMa's default). ``seed`` (int, None or a numpy Generator) drives both the
    simulations and the randomization of discrete residuals.

    The returned object holds the residuals and the tests ``uniformity`` (KS), ``dispersion``
    and ``zero_inflation``; ``pyglmm.plots.residuals`` draws them.
    """
    if simulate_res not in ("conditional", "unconditional"):
        raise ValueError(f"simulate_res must be 'conditional' or 'unconditional', got {simulate_res!r}")
    nsim = int(nsim)
    if nsim < 2:
        raise ValueError(f"nsim must be at least 2, got {nsim}")
    rng = np.random.default_rng(seed)
    re_form = None if simulate_res == "conditional" else "~0"
    sims = np.asarray(model.simulate(nsim=nsim, seed=rng, re_form=re_form), float)
    y = np.asarray(model.frame.y, float)
    obs = _response_scale(model, y)
    sims = _response_scale(model, sims)
    fam = None if model.is_lmm else model.family
    integer = fam is not None and fam.name in _DISCRETE
    res = pit_residuals(obs, sims, rng)
    return QuantileResiduals(residuals=res, observed=obs, simulated=sims,
                             fitted=np.asarray(model.fitted, float), nsim=nsim,
                             simulate_res=simulate_res, integer=integer)
