"""pyglmm.diagnostics: DHARMa-style quantile residuals and tests, overdispersion, ICC, MOR."""
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pyglmm
from pyglmm import diagnostics as D
from pyglmm.diagnostics.quantile import pit_residuals, simulation_p_value


def _counts(seed, kind, ng=12, per=20):
    """Poisson (1|g) data; "nb": negative binomial draws with shape 1; "zi": 25% extra zeros."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(ng), per)
    x = rng.normal(size=ng * per)
    u = rng.normal(scale=0.5, size=ng)
    mu = np.exp(0.8 + 0.3 * x + u[g])
    if kind == "nb":
        y = rng.negative_binomial(1, 1.0 / (1.0 + mu))
    else:
        y = rng.poisson(mu)
        if kind == "zi":
            y = np.where(rng.uniform(size=y.size) < 0.25, 0, y)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical([f"g{i:02d}" for i in g])})


def _pois(kind, seed=3):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pyglmm.glmer("y ~ x + (1 | g)", _counts(seed, kind), family="poisson")


@pytest.fixture(scope="module")
def cbpp_model():
    cb = pyglmm.datasets.load_cbpp()
    return pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb, family="binomial")


@pytest.fixture(scope="module")
def sleep_model():
    return pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy())


# --- quantile residuals -------------------------------------------------------------------
def test_pit_randomizes_between_ecdf_below_and_at_observation():
    sims = np.array([[0, 1, 2, 2, 3], [5, 6, 7, 8, 9], [0, 0, 0, 0, 0]], float)
    obs = np.array([2.0, 4.0, 0.0])
    r = pit_residuals(obs, sims, np.random.default_rng(0))
    assert 0.4 <= r[0] <= 0.8 and r[1] == 0.0 and 0.0 <= r[2] <= 1.0
    draws = [pit_residuals(obs[:1], sims[:1], np.random.default_rng(s))[0] for s in range(200)]
    assert min(draws) >= 0.4 and max(draws) <= 0.8 and np.std(draws) > 0.05


def test_pit_residuals_uniform_for_discrete_data():
    # exact Poisson simulations: randomized PIT is uniform, the plain ECDF is not
    rng = np.random.default_rng(1)
    mu = rng.uniform(0.5, 3.0, size=400)
    obs = rng.poisson(mu).astype(float)
    sims = rng.poisson(mu[:, None], size=(400, 300)).astype(float)
    r = pit_residuals(obs, sims, rng)
    assert stats.kstest(r, "uniform").pvalue > 0.05
    assert stats.kstest(np.mean(sims <= obs[:, None], axis=1), "uniform").pvalue < 1e-6


def test_simulation_p_value_as_dharma_getP():
    sim = np.arange(100.0)
    assert simulation_p_value(sim, 95.0, "greater") == pytest.approx(0.05)
    assert simulation_p_value(sim, 95.0, "less") == pytest.approx(0.96)
    assert simulation_p_value(sim, 95.0) == pytest.approx(0.10)
    assert simulation_p_value(sim, 500.0) == 0.0
    assert simulation_p_value(sim, 50.0) == 1.0


def test_correct_poisson_model_passes():
    r = D.quantile_residuals(_pois("pois"), nsim=100, seed=3)
    assert r.residuals.shape == (240,) and r.simulated.shape == (240, 100)
    assert np.all((r.residuals >= 0) & (r.residuals <= 1))
    assert r.dispersion.p_value > 0.05 and 0.8 < r.dispersion.statistic < 1.25
    assert r.uniformity.p_value > 0.05
    assert r.zero_inflation.p_value > 0.05
    assert list(r.tests().index) == ["uniformity", "dispersion", "zero_inflation"]
    assert "dispersion" in repr(r)
    u = D.quantile_residuals(_pois("pois"), nsim=100, seed=3, simulate_res="unconditional")
    assert u.dispersion.p_value > 0.05 and u.uniformity.p_value > 0.05


def test_overdispersed_poisson_is_flagged():
    m = _pois("nb")
    r = D.quantile_residuals(m, nsim=100, seed=3)
    assert r.dispersion.p_value < 0.01 and r.dispersion.statistic > 2.0
    assert r.dispersion_test("greater").p_value < 0.01
    assert r.uniformity.p_value < 0.01
    od = D.overdispersion(m)
    assert od.ratio > 2.0 and od.p_value < 0.01


def test_zero_inflation_is_flagged():
    r = D.quantile_residuals(_pois("zi"), nsim=100, seed=3)
    assert r.zero_inflation.p_value < 0.01 and r.zero_inflation.statistic > 1.5
    assert r.zero_inflation_test("less").p_value > 0.5


def test_quantile_residuals_reproducible_and_binomial_counts(cbpp_model):
    a = D.quantile_residuals(cbpp_model, nsim=50, seed=7)
    b = D.quantile_residuals(cbpp_model, nsim=50, seed=7)
    np.testing.assert_array_equal(a.residuals, b.residuals)
    cb = pyglmm.datasets.load_cbpp()
    np.testing.assert_array_equal(a.observed, cb["incidence"].to_numpy(float))  # successes, as DHARMa
    assert np.all(a.simulated == np.round(a.simulated)) and np.all(a.simulated <= cb["size"].to_numpy()[:, None])


def test_quantile_residuals_lmm(sleep_model):
    r = D.quantile_residuals(sleep_model, nsim=60, seed=2)
    assert not r.integer and r.residuals.shape == (180,)
    assert np.isfinite(r.dispersion.p_value)


def test_quantile_residuals_bad_arguments(cbpp_model):
    with pytest.raises(ValueError, match="simulate_res"):
        D.quantile_residuals(cbpp_model, simulate_res="marginal")
    with pytest.raises(ValueError, match="nsim"):
        D.quantile_residuals(cbpp_model, nsim=1)
    r = D.quantile_residuals(cbpp_model, nsim=20, seed=1)
    with pytest.raises(pyglmm.errors.ArgumentError, match="type"):
        r.dispersion_test(type="deviance")
    with pytest.raises(pyglmm.errors.ArgumentError, match="alternative"):
        r.dispersion_test(alternative="both")


def test_dispersion_test_types(cbpp_model, sleep_model):
    from pyglmm.diagnostics._refit import pearson_refits
    r = D.quantile_residuals(cbpp_model, nsim=60, seed=4)
    assert "refits at the fitted variance parameters" in r.dispersion.method
    # DHARMa's refit = FALSE statistic centres on the population-level prediction (as DHARMa:
    # success counts minus fitted proportions for k/n data)
    eta0 = cbpp_model.frame.X @ cbpp_model.fixef.values
    np.testing.assert_allclose(r.fitted_re0, 1.0 / (1.0 + np.exp(-eta0)))
    t = r.dispersion_test(type="DHARMa")
    obs = np.var(r.observed - r.fitted_re0, ddof=1)
    sim = np.var(r.simulated - r.fitted_re0[:, None], axis=0, ddof=1)
    assert t.statistic == pytest.approx(obs / sim.mean())
    assert t.p_value == simulation_p_value(sim, obs)
    od = D.overdispersion(cbpp_model)
    pc = r.dispersion_test("greater", type="PearsonChisq")
    assert pc.statistic == pytest.approx(od.ratio) and pc.p_value == pytest.approx(od.p_value)
    with pytest.warns(UserWarning, match="underdispersion"):
        r.dispersion_test(type="PearsonChisq")
    # the observed statistic: joint PIRLS at the fitted theta, close to the fit's Pearson chi-square
    o, sims, route = pearson_refits(cbpp_model, cbpp_model.simulate(5, seed=1))
    assert route == "pirls" and o == pytest.approx(od.chisq, rel=3e-2) and np.all(np.isfinite(sims))
    # linear mixed models: complete refits
    s = D.quantile_residuals(sleep_model, nsim=20, seed=2)
    assert "complete refits" in s.dispersion.method and 0.0 <= s.dispersion.p_value <= 1.0
    # an object built without the model: only DHARMa's statistic
    bare = D.QuantileResiduals(r.residuals, r.observed, r.simulated, r.fitted, r.nsim, r.simulate_res,
                               r.integer, fitted_re0=r.fitted_re0)
    assert bare.dispersion_test(type="DHARMa").statistic == t.statistic
    with pytest.raises(pyglmm.errors.ArgumentError, match="fitted model"):
        bare.dispersion_test()


# --- Pearson overdispersion ---------------------------------------------------------------
def test_overdispersion_matches_direct_computation(cbpp_model):
    m = cbpp_model
    cb = pyglmm.datasets.load_cbpp()
    n, k = cb["size"].to_numpy(float), cb["incidence"].to_numpy(float)
    p = m.fitted
    chisq = np.sum((k - n * p) ** 2 / (n * p * (1 - p)))
    df = len(cb) - (4 + 1)
    od = D.overdispersion(m)
    assert od.chisq == pytest.approx(chisq, rel=1e-10)
    assert od.df == df and od.ratio == pytest.approx(chisq / df)
    assert od.p_value == pytest.approx(stats.chi2.sf(chisq, df))
    assert od.chisq == pytest.approx(63.06743, rel=1e-3)  # lme4: sum(residuals(g, "pearson")^2)


def test_overdispersion_rejects_lmm(sleep_model):
    with pytest.raises(ValueError, match="gaussian"):
        D.overdispersion(sleep_model)


# --- ICC and median ratios ---------------------------------------------------------------
def test_icc_logit_and_mor(cbpp_model):
    v = cbpp_model.covariances[0][0, 0]
    res = D.icc(cbpp_model)
    assert float(res) == pytest.approx(v / (v + math.pi ** 2 / 3))
    assert res.by_group["herd"] == pytest.approx(float(res))
    assert res.distribution_variance == pytest.approx(math.pi ** 2 / 3)
    assert float(res) == pytest.approx(0.1113561, rel=2e-3)  # lme4 fit of the same model
    mor = D.median_ratio(cbpp_model)
    assert mor.name == "MOR"
    assert mor["herd"] == pytest.approx(math.exp(math.sqrt(2 * v) * stats.norm.ppf(0.75)))
    assert D.median_ratio(cbpp_model, group="herd") == pytest.approx(1.844951, rel=2e-3)
    with pytest.raises(KeyError):
        D.median_ratio(cbpp_model, group="nope")


def test_icc_probit():
    cb = pyglmm.datasets.load_cbpp()
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb,
                     family="binomial(link='probit')")
    v = m.covariances[0][0, 0]
    assert float(D.icc(m)) == pytest.approx(v / (v + 1.0))
    with pytest.raises(ValueError, match="probit"):
        D.median_ratio(m)


def test_icc_poisson_lognormal_and_mrr():
    m = _pois("pois")
    v = m.covariances[0][0, 0]
    fr = m.frame
    lam = np.mean(np.exp(fr.X @ m.fixef.values + v / 2))
    assert float(D.icc(m)) == pytest.approx(v / (v + math.log(1 + 1 / lam)))
    assert float(D.icc(m, mean=3.0)) == pytest.approx(v / (v + math.log(1 + 1 / 3.0)))
    assert float(D.icc(m, mean=3.0, approximation="delta")) == pytest.approx(v / (v + 1 / 3.0))
    assert D.median_ratio(m).name == "MRR"
    assert D.median_ratio(m, "g") == pytest.approx(math.exp(math.sqrt(2 * v) * 0.6744897501960817))


def test_icc_lmm():
    ds = pyglmm.datasets.load_dyestuff()
    m = pyglmm.lmer("Yield ~ 1 + (1 | Batch)", ds)
    v = m.covariances[0][0, 0]
    assert float(D.icc(m)) == pytest.approx(v / (v + m.sigma ** 2))
    assert v == pytest.approx(1764.05, rel=1e-3)  # lme4 REML: Batch variance 1764, residual 2451
    assert float(D.icc(m)) == pytest.approx(1764.05 / (1764.05 + 2451.25), rel=1e-3)
    with pytest.raises(ValueError, match="identity"):
        D.median_ratio(m)


def test_icc_rejects_random_slopes(sleep_model):
    with pytest.raises(ValueError, match="random-intercept"):
        D.icc(sleep_model)


# --- ranef table ------------------------------------------------------------------------
def test_ranef_table(sleep_model):
    t = sleep_model.ranef_table(level=0.9)
    assert list(t.columns) == ["group", "level", "term", "estimate", "condsd", "lower", "upper"]
    assert len(t) == 36 and set(t["term"]) == {"(Intercept)", "Days"}
    fr = sleep_model.ranef_frames(condvar=True)["Subject"]
    row = t[(t["level"] == "308") & (t["term"] == "Days")].iloc[0]
    assert row["estimate"] == pytest.approx(fr.loc["308", "Days"])
    assert row["condsd"] == pytest.approx(fr.loc["308", "Days condsd"])
    z = stats.norm.ppf(0.95)
    assert row["upper"] == pytest.approx(row["estimate"] + z * row["condsd"])
    # lme4: as.data.frame(ranef(m, condVar = TRUE)) for Subject 308
    r0 = t[(t["level"] == "308") & (t["term"] == "(Intercept)")].iloc[0]
    assert r0["estimate"] == pytest.approx(2.258551, abs=1e-3)
    assert r0["condsd"] == pytest.approx(12.07086, rel=1e-4)
    with pytest.raises(ValueError):
        sleep_model.ranef_table(level=1.5)
