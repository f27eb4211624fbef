"""pyglmm.glmmPQL against real MASS::glmmPQL fits (fixtures from tests/reference/make_pql_fixtures.R;
R is not needed to run these tests), plus the bias of PQL relative to the Laplace approximation."""
from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pyglmm
from pyglmm import datasets

FIX = Path(__file__).parent / "reference" / "fixtures"

LOADERS = {"cbpp": datasets.load_cbpp, "epil": datasets.load_epil, "rehab": datasets.load_rehab}
CASES = ["pql_cbpp", "pql_cbpp_offset", "pql_epil", "pql_rehab", "pql_rehab_slope"]

_CACHE: dict[str, tuple[dict, pyglmm.MixedModel]] = {}


def _fit(fid):
    if fid not in _CACHE:
        p = FIX / f"{fid}.json"
        if not p.exists():
            pytest.skip(f"fixture {fid} not generated")
        fx = json.loads(p.read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("error", pyglmm.ConvergenceWarning)
            m = pyglmm.glmmPQL(fx["formula"], LOADERS[fx["dataset"]](), fx["family"])
        _CACHE[fid] = (fx, m)
    return _CACHE[fid]


def _vec(d):
    return np.array(list(d.values()), float)


@pytest.mark.parametrize("fid", CASES)
def test_fixef_and_se(fid):
    fx, m = _fit(fid)
    assert list(m.fixef.index) == list(fx["fixef"])
    se = _vec(fx["se"])
    np.testing.assert_array_less(np.abs(m.fixef.values - _vec(fx["fixef"])) / se, 1e-4)
    np.testing.assert_allclose(m.se.values, se, rtol=1e-3)
    np.testing.assert_allclose(m.vcov.values, np.array(fx["vcov"]["matrix"]), rtol=2e-3,
                               atol=1e-3 * se.min() ** 2)


@pytest.mark.parametrize("fid", CASES)
def test_variance_components(fid):
    fx, m = _fit(fid)
    vc = m.varcorr
    sds = vc[vc["var2"].isna() & (vc["grp"] != "Residual")]
    assert list(sds["var1"]) == list(fx["re_sd"])
    np.testing.assert_allclose(sds["sdcor"].values, _vec(fx["re_sd"]), rtol=1e-3)
    resid = vc[vc["grp"] == "Residual"]
    assert len(resid) == 1
    np.testing.assert_allclose(resid["sdcor"].values[0], fx["residual_sd"], rtol=1e-3)
    np.testing.assert_allclose(m.sigma, fx["residual_sd"], rtol=1e-3)
    if fx.get("re_corr") is not None:
        cors = vc[vc["var2"].notna()]["sdcor"].values
        np.testing.assert_allclose(cors, np.atleast_1d(fx["re_corr"]), atol=1e-3)
    np.testing.assert_allclose(m.covariances[0], np.array(fx["re_cov"]["matrix"]), rtol=2e-3,
                               atol=1e-6)


@pytest.mark.parametrize("fid", CASES)
def test_iterations_ranef_fitted(fid):
    fx, m = _fit(fid)
    assert m.iterations == fx["iterations"]
    assert m.converged
    grp = next(iter(m.ranef))
    re = m.ranef[grp]
    assert len(re) == fx["ranef"]["nlevels"]
    for col, vals in fx["ranef"]["values"].items():
        got = re.loc[fx["ranef"]["levels"], col].values
        np.testing.assert_allclose(got, vals, rtol=1e-3, atol=1e-4)
    k = len(fx["fitted_head"])
    np.testing.assert_allclose(m.fitted[:k], fx["fitted_head"], rtol=1e-4)
    np.testing.assert_allclose(m.linear_predictor[:k], fx["fitted_link_head"], rtol=1e-4, atol=1e-5)
    r = m.residuals("response")
    np.testing.assert_allclose(r, m.frame.y - m.fitted)


def test_no_likelihood_and_summary():
    _, m = _fit("pql_cbpp")
    assert m.method == "PQL" and m.is_pql
    for v in (m.loglik, m.aic, m.bic, m.deviance):
        assert math.isnan(v)
    txt = str(m.summary())
    assert txt.splitlines()[0] == "Generalized linear mixed model fit by penalized quasi-likelihood (PQL)"
    assert "no logLik, AIC, BIC" in txt
    assert "Breslow & Lin 1995" in txt
    for line in txt.splitlines():
        assert not line.lstrip().startswith("AIC"), line
        assert "logLik" not in line.split() or "no logLik" in line
    assert " Residual " in txt
    assert "z value" in txt
    # the short repr too
    assert "AIC" not in repr(m).replace("AIC, BIC", "")


def test_laplace_fits_still_report_likelihood():
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     datasets.load_cbpp(), family="binomial")
    assert not m.is_pql and m.iterations is None
    assert np.isfinite(m.loglik) and np.isfinite(m.aic)
    assert "AIC" in str(m.summary())


def _binary_sim(seed=20240604, groups=50, per=10, sd=2.0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=groups * per)
    b = rng.normal(0.0, sd, groups)
    eta = -0.5 + 0.5 * x + b[g]
    y = (rng.uniform(size=eta.size) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


def test_pql_variance_biased_low_for_binary_data():
    """Breslow & Lin (1995): PQL shrinks a large random-intercept variance with binary data."""
    d = _binary_sim()
    pql = pyglmm.glmmPQL("y ~ x + (1 | g)", d, "binomial")
    lap = pyglmm.glmer("y ~ x + (1 | g)", d, "binomial")
    sd_pql = math.sqrt(pql.covariances[0][0, 0])
    sd_lap = math.sqrt(lap.covariances[0][0, 0])
    assert sd_pql < 0.95 * sd_lap, (sd_pql, sd_lap)
    # the fixed effects are attenuated too (towards zero)
    assert abs(pql.fixef["x"]) < abs(lap.fixef["x"])
    # binary data: the working residual scale is below 1
    assert pql.sigma < 1.0


def test_niter_and_verbose(capsys):
    d = datasets.load_cbpp()
    with pytest.warns(pyglmm.ConvergenceWarning, match="did not converge"):
        m = pyglmm.glmmPQL("cbind(incidence, size - incidence) ~ period + (1 | herd)", d,
                           "binomial", niter=2, verbose=True)
    assert m.iterations == 2 and not m.converged
    assert capsys.readouterr().out.splitlines() == ["iteration 1", "iteration 2"]
    with pytest.raises(ValueError, match="niter"):
        pyglmm.glmmPQL("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, "binomial",
                       niter=0)


def test_prop_with_weights_matches_cbind():
    d = datasets.load_cbpp()
    a = pyglmm.glmmPQL("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, "binomial")
    b = pyglmm.glmmPQL("incidence/size ~ period + (1 | herd)", d, "binomial", weights="size")
    np.testing.assert_allclose(b.fixef.values, a.fixef.values, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(b.sigma, a.sigma, rtol=1e-6)


def test_pql_refit_and_bootstrap(tmp_path):
    """A PQL fit refits (the bootstrap's engine) by PQL: same estimates for the same response,
    also after a save/load; the bootstrap's replicates no longer all fail (they raised KeyError
    and were recorded as missing)."""
    d = pyglmm.datasets.load_cbpp()
    m = pyglmm.glmmPQL("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, "binomial")
    r = m.refit(m.frame.y)
    assert r.method == "PQL"
    np.testing.assert_allclose(r.fixef.values, m.fixef.values, rtol=1e-10)
    m2 = pyglmm.load(m.save(tmp_path / "pql.npz"))
    np.testing.assert_allclose(m2.refit(m.frame.y).fixef.values, m.fixef.values, rtol=1e-10)
    from pyglmm.inference.bootstrap import boot
    b = boot(m, nsim=10, seed=3, progress=False)
    assert b.n_failed == 0
