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
DHARMa 0.5.0 simulates *conditional* on the fitted random effects by default
(``simulateREs = "conditional"``, for lme4 ``simulate(m, re.form = NULL)``); before 0.5.0 it
used the model's own default, for lme4 ``re.form = NA``: new random effects in every
simulation (``"unconditional"``). ``simulate_res`` selects between the two here, default
``"conditional"``: the residuals, the residual plot, the uniformity and the zero-inflation
tests then check the observation-level distribution given the groups. Both modes are
conservative for those tests (the model was fitted to the data being checked), neither
rejects a correct model too often, and the conditional one detects zero inflation and
overdispersion far more often.

The dispersion test
-------------------
DHARMa's default dispersion test (``type = "DHARMa"``, ``refit = FALSE``) compares
var(y - f) with var(y*_s - f) over the simulations y*_s, where f is ``predict(m, re.form = NA,
type = "response")``, the population-level prediction (random effects at zero). Either way the
test is not calibrated for GLMMs: unconditional simulations spread the random effects anew in
every simulated data set, while the observed spread is the one the variances were fitted to,
so p-values pile up in the middle (almost no power: a correct model and a badly overdispersed
one both pass); with conditional simulations the spread of the fitted random effects is common
to both sides, the test is reasonable for random intercepts but conservative with random
slopes. Centring on the *conditional* fitted values instead (this module up to now) is worse:
the conditional modes are fitted to y, so y - fitted(m) is shrunk while the simulations around
fitted(m) are not, and a correct model is flagged as underdispersed (p = 0 on the rehab data
with its generating model).

The default here (``type="refit"``) is the dispersion test DHARMa runs after
``simulateResiduals(refit = TRUE)``: the observed Pearson chi-square against the Pearson
chi-squares of the model refitted to responses simulated with new random effects (a
parametric bootstrap, calibrated by construction). GLMMs are refitted at the estimated
variance parameters, re-estimating only the fixed effects and conditional modes (one PIRLS run
per simulation, see :mod:`pyglmm.diagnostics._refit`); it does not depend on ``simulate_res``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .._warn import user_stacklevel
from ..errors import ArgumentError

_DISPERSION_TYPES = ("refit", "DHARMa", "PearsonChisq")


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
    raise ArgumentError(f"alternative must be 'two.sided', 'greater' or 'less', got {alternative!r}")


def _response_scale(model, y: np.ndarray) -> np.ndarray:
    """Binomial responses as counts of successes (as DHARMa), when the trials are whole numbers."""
    if model.is_lmm or model.family is None:
        return y
    return model.family.response_counts(y, np.asarray(model.frame.weights, float))


@dataclass
class QuantileResiduals:
    """Scaled (quantile) residuals of a fitted model plus DHARMa's tests.

    Attributes: ``residuals`` (uniform under the model), ``observed`` and ``simulated``
    (n x nsim; binomial responses as success counts), ``fitted`` (the model's conditional
    fitted values, the x axis of the residual plot), ``fitted_re0`` (the population-level
    prediction, random effects at zero: DHARMa's ``fittedPredictedResponse``), ``expected``
    (row means of the simulations), ``nsim``, ``simulate_res``, ``integer``, ``model`` (the
    fitted model, needed by the refit and Pearson dispersion tests) and ``seed_dispersion``
    (the seed of the refit dispersion test's own simulations, drawn from ``seed``).
    """

    residuals: np.ndarray
    observed: np.ndarray
    simulated: np.ndarray
    fitted: np.ndarray
    nsim: int
    simulate_res: str
    integer: bool
    fitted_re0: np.ndarray | None = None
    model: object = field(default=None, repr=False)
    seed_dispersion: int | None = field(default=None, repr=False)
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

    def dispersion_test(self, alternative: str = "two.sided", type: str = "refit") -> SimulationTest:
        """Test for over- / underdispersion; the statistic is observed / expected (> 1:
        overdispersion), the p-value two-sided by default (``"greater"``: overdispersion only).

        ``type="refit"`` (default; calibrated): DHARMa's test after ``simulateResiduals(refit =
        TRUE)``. The observed Pearson chi-square sum(w (y - mu)^2 / V(mu)) is compared with the
        Pearson chi-squares of the model refitted to ``nsim`` responses simulated with new
        random effects. GLMMs are refitted at the estimated variance parameters (fixed effects
        and conditional modes by one joint PIRLS run per simulation; the observed statistic by
        the same run on the observed response); linear mixed models, PQL fits and models read
        from a file are refitted completely. Valid whether the residuals were simulated
        conditionally or not (it draws its own responses, from ``seed``).

        ``type="DHARMa"``: DHARMa's default ``testDispersion`` (``refit = FALSE``) on this
        object's simulations: var(y - f) against var(y*_s - f), f the population-level
        prediction (random effects at zero, DHARMa's ``fittedPredictedResponse``; for
        binomial data with several trials, as DHARMa, success counts minus fitted
        proportions). Conservative with random slopes under conditional simulation and nearly
        powerless under unconditional simulation (see the module docstring).

        ``type="PearsonChisq"``: the sum of squared Pearson residuals against a chi-square on
        the residual degrees of freedom (:func:`pyglmm.diagnostics.overdispersion`); biased
        towards underdispersion for mixed models, so only ``alternative="greater"`` is
        meaningful (a warning says so otherwise).
        """
        if type not in _DISPERSION_TYPES:
            raise ArgumentError(f"type must be one of {', '.join(map(repr, _DISPERSION_TYPES))}, got {type!r}")
        if alternative not in ("two.sided", "greater", "less"):
            raise ArgumentError(f"alternative must be 'two.sided', 'greater' or 'less', got {alternative!r}")
        key = ("dispersion", type, alternative)
        if key in self._cache:
            return self._cache[key]
        if type == "DHARMa":
            if self.fitted_re0 is None:
                raise ArgumentError("type='DHARMa' needs fitted_re0 (the population-level prediction)")
            centre = np.asarray(self.fitted_re0, float)
            obs = float(np.var(self.observed - centre, ddof=1))
            sim = np.var(self.simulated - centre[:, None], axis=0, ddof=1)
            out = SimulationTest(
                "dispersion", _ratio(obs, sim), simulation_p_value(sim, obs, alternative), alternative,
                f"DHARMa nonparametric dispersion test via sd of residuals fitted vs. simulated "
                f"(var(y - f), f with random effects at zero; {self.simulate_res} simulations)")
        else:
            model = self._need_model(type)
            if type == "PearsonChisq":
                if alternative != "greater":
                    warnings.warn("the chi-square test on Pearson residuals is biased towards "
                                  "underdispersion for mixed models: only alternative='greater' "
                                  "(overdispersion) is reliable", UserWarning,
                                  stacklevel=user_stacklevel())
                from .overdispersion import overdispersion
                od = overdispersion(model)
                lo, hi = stats.chi2.cdf(od.chisq, od.df), stats.chi2.sf(od.chisq, od.df)
                p = {"greater": hi, "less": lo, "two.sided": min(1.0, 2.0 * min(lo, hi))}[alternative]
                out = SimulationTest("dispersion", od.ratio, float(p), alternative,
                                     f"parametric dispersion test via mean Pearson chi-square "
                                     f"({od.df} df)")
            else:
                obs, sim, route = self._refit_chisq(model)
                how = ("refits at the fitted variance parameters" if route == "pirls"
                       else "complete refits")
                ok = int(np.sum(np.isfinite(sim)))
                if ok < 0.9 * sim.size:
                    warnings.warn(f"the dispersion test refitted only {ok} of {sim.size} simulated "
                                  "responses (the others failed): its p-value may be unreliable",
                                  UserWarning, stacklevel=user_stacklevel())
                out = SimulationTest(
                    "dispersion", _ratio(obs, sim), simulation_p_value(sim, obs, alternative),
                    alternative, f"DHARMa refit dispersion test: Pearson chi-square, observed vs "
                                 f"{ok} {how} to data simulated with new random effects")
        self._cache[key] = out
        return out

    def _need_model(self, type: str):
        if self.model is None:
            raise ArgumentError(f"type={type!r} needs the fitted model; this QuantileResiduals "
                                "object was built without one (use type='DHARMa')")
        return self.model

    def _refit_chisq(self, model):
        if "refit_chisq" not in self._cache:
            from ._refit import pearson_refits
            rng = np.random.default_rng(self.seed_dispersion)
            ysim = np.asarray(model.simulate(nsim=self.nsim, seed=rng, re_form="~0"), float)
            self._cache["refit_chisq"] = pearson_refits(model, ysim)
        return self._cache["refit_chisq"]

    @property
    def dispersion(self) -> SimulationTest:
        return self.dispersion_test()

    def zero_inflation_test(self, alternative: str = "two.sided") -> SimulationTest:
        """Observed number of zeros against its simulated distribution (DHARMa's
        testZeroInflation); statistic = observed / mean simulated count (> 1: excess zeros).
        Meaningful for count and binomial responses only (binomial: zero successes). Uses this
        object's simulations: conservative in both modes for a correct model (the model was
        fitted to these zeros), but with conditional simulations (the default) it detects
        zero inflation far more often than with unconditional ones."""
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


def _ratio(observed: float, simulated: np.ndarray) -> float:
    sim = np.asarray(simulated, float)
    sim = sim[np.isfinite(sim)]
    mean = float(np.mean(sim)) if sim.size else float("nan")
    return observed / mean if mean > 0 else float("nan")


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
    the fitted random effects (``simulate_res="conditional"``, the default, as DHARMa 0.5.0;
    lme4's ``re.form = NULL``) or with new random effects (``"unconditional"``, lme4's
    ``re.form = NA``, DHARMa's default before 0.5.0). ``seed`` (int, None or a numpy
    Generator) drives the simulations, the randomization of discrete residuals and the
    dispersion test's own simulations.

    The returned object holds the residuals and the tests ``uniformity`` (KS),
    ``dispersion`` and ``zero_inflation``; ``pyglmm.plots.residuals`` draws them. The
    default dispersion test (``dispersion_test(type="refit")``) compares the Pearson
    chi-square with refits to data simulated from the model, and is calibrated in either
    mode; DHARMa's quicker ``type="DHARMa"`` statistic is available but not calibrated for
    GLMMs (see the module docstring).
    """
    if simulate_res not in ("conditional", "unconditional"):
        raise ArgumentError(f"simulate_res must be 'conditional' or 'unconditional', got {simulate_res!r}")
    nsim = int(nsim)
    if nsim < 2:
        raise ArgumentError(f"nsim must be at least 2, got {nsim}")
    rng = np.random.default_rng(seed)
    seed_dispersion = int(rng.integers(2**63))
    re_form = None if simulate_res == "conditional" else "~0"
    sims = np.asarray(model.simulate(nsim=nsim, seed=rng, re_form=re_form), float)
    y = np.asarray(model.frame.y, float)
    obs = _response_scale(model, y)
    sims = _response_scale(model, sims)
    fam = None if model.is_lmm else model.family
    integer = fam is not None and fam.discrete
    res = pit_residuals(obs, sims, rng)
    fr = model.frame
    eta0 = np.asarray(fr.offset, float) + np.asarray(fr.X, float) @ np.asarray(model.fixef.values, float)
    f0 = eta0 if fam is None else np.asarray(fam.link.inverse(eta0), float)
    return QuantileResiduals(residuals=res, observed=obs, simulated=sims,
                             fitted=np.asarray(model.fitted, float), nsim=nsim,
                             simulate_res=simulate_res, integer=integer, fitted_re0=f0,
                             model=model, seed_dispersion=seed_dispersion)
