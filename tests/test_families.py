"""Tests for pyglmm.families.

Reference values come from scipy.stats densities, closed forms, numerical
derivatives, or are hard-coded numbers printed by R 4.x
(``sprintf("%.17g", ...)``) -- never from the code under test.
"""

import math
import pathlib
import sys
import warnings

import numpy as np
import pytest
from scipy import stats

try:  # the package may not be installed in the venv yet (src layout)
    import pyglmm  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

from pyglmm.families import (
    ALLOWED_LINKS,
    DBL_EPSILON,
    Family,
    Link,
    make_family,
    make_link,
)

EPS = np.finfo(float).eps
RNG = np.random.default_rng(20240601)

ETA_GRID = np.array([-8.0, -3.0, -1.0, -0.2, 0.0, 0.37, 1.0, 2.5, 6.0])
MU01 = np.array([1e-6, 0.01, 0.2, 0.5, 0.77, 0.99, 1 - 1e-6])
MUPOS = np.array([1e-6, 0.3, 1.0, 2.5, 100.0, 1e6])


# ---------------------------------------------------------------------------
# links: closed forms
CLOSED_INV = {
    "logit": lambda e: 1.0 / (1.0 + np.exp(-e)),
    "probit": stats.norm.cdf,
    "cauchit": stats.cauchy.cdf,
    "cloglog": lambda e: -np.expm1(-np.exp(e)),
    "log": np.exp,
    "identity": lambda e: e,
}
CLOSED_INV_POS = {  # links needing eta > 0
    "sqrt": lambda e: e**2,
    "inverse": lambda e: 1.0 / e,
    "1/mu^2": lambda e: e**-0.5,
}


@pytest.mark.parametrize("name", list(CLOSED_INV))
def test_link_inverse_closed_form(name):
    lk = make_link(name)
    np.testing.assert_allclose(lk.inverse(ETA_GRID), CLOSED_INV[name](ETA_GRID), rtol=1e-13, atol=1e-300)


@pytest.mark.parametrize("name", list(CLOSED_INV_POS))
def test_link_inverse_closed_form_positive(name):
    lk = make_link(name)
    e = np.array([0.01, 0.3, 1.0, 2.5, 40.0])
    np.testing.assert_allclose(lk.inverse(e), CLOSED_INV_POS[name](e), rtol=1e-14)


@pytest.mark.parametrize("name", ["logit", "probit", "cauchit", "cloglog"])
def test_link_roundtrip_unit_interval(name):
    lk = make_link(name)
    np.testing.assert_allclose(lk.inverse(lk.link(MU01)), MU01, rtol=1e-9)


@pytest.mark.parametrize("name", ["log", "identity", "sqrt", "inverse", "1/mu^2"])
def test_link_roundtrip_positive(name):
    lk = make_link(name)
    np.testing.assert_allclose(lk.inverse(lk.link(MUPOS)), MUPOS, rtol=1e-12)


@pytest.mark.parametrize("name", list(CLOSED_INV) + list(CLOSED_INV_POS))
def test_mu_eta_numerical_derivative(name):
    lk = make_link(name)
    f = CLOSED_INV.get(name) or CLOSED_INV_POS[name]
    e = np.array([0.05, 0.3, 1.0, 2.5]) if name in CLOSED_INV_POS else ETA_GRID[1:-1]
    h = 1e-6 * np.maximum(1.0, np.abs(e))
    num = (f(e + h) - f(e - h)) / (2 * h)
    np.testing.assert_allclose(lk.mu_eta(e), num, rtol=1e-6, atol=1e-11)


def test_link_names_and_types():
    names = {make_link(n).name for n in
             ["logit", "probit", "cloglog", "cauchit", "log", "identity", "sqrt", "inverse", "inverse_squared"]}
    assert names == {"logit", "probit", "cloglog", "cauchit", "log", "identity", "sqrt", "inverse", "1/mu^2"}
    assert make_link("inverse_squared") is make_link("1/mu^2")
    assert isinstance(make_link("logit"), Link)
    with pytest.raises(ValueError, match="valid links"):
        make_link("logt")


# R reference values (R 4.x, binomial(<link>)$linkinv / $mu.eta)
ETA_EXT = np.array([-40.0, -30.0, -29.5, 0.0, 29.5, 30.0, 40.0])


def test_logit_clamps_match_R():
    lk = make_link("logit")
    r_inv = [2.2204460492503126e-16, 9.3576229688393001e-14, 1.5428112031916497e-13, 0.5,
             0.99999999999984568, 0.99999999999990641, 0.99999999999999978]
    np.testing.assert_allclose(lk.inverse(ETA_EXT), r_inv, rtol=1e-15)
    r_mueta = [2.2204460492503131e-16, 1.5428112031914116e-13, 0.25, 1.5428112031914119e-13,
               2.2204460492503131e-16]
    np.testing.assert_allclose(lk.mu_eta(np.array([-40, -29.5, 0, 29.5, 40.0])), r_mueta, rtol=1e-15)
    # never exactly 0 or 1, even far out
    mu = lk.inverse(np.array([-1e5, 1e5]))
    assert 0 < mu[0] < 1e-15 and 1 - 1e-15 < mu[1] < 1


def test_probit_cauchit_cloglog_clamps_match_R():
    pr, ca, cl = make_link("probit"), make_link("cauchit"), make_link("cloglog")
    # thresholds: -qnorm(eps) = 8.125890664701906; -qcauchy(eps) = 1433540284805664.8
    np.testing.assert_allclose(pr.inverse([-50.0, 50.0]), [stats.norm.cdf(-8.125890664701906),
                                                           stats.norm.cdf(8.125890664701906)], rtol=1e-14)
    assert pr.inverse(-50.0) > 0 and pr.inverse(50.0) < 1
    assert pr.mu_eta(60.0) == DBL_EPSILON
    np.testing.assert_allclose(ca.inverse([-1e20, -50, -0.5, 0, 3, 1e16]),
                               [2.2204460492503131e-16, 6.3653491009727971e-03, 3.5241638234956674e-01,
                                0.5, 8.9758361765043326e-01, 9.9999999999999978e-01], rtol=1e-14)
    np.testing.assert_allclose(ca.link([1e-10, 0.3, 0.5, 0.8, 1 - 1e-10]),
                               [-3.1830988618379064e+09, -7.2654252800536101e-01, 0.0,
                                1.3763819204711740e+00, 3.1830985984671478e+09], rtol=1e-13)
    np.testing.assert_allclose(cl.inverse([-40, -1, 0, 1, 4, 800]),
                               [2.2204460492503131e-16, 3.0779937244465366e-01, 6.3212055882855767e-01,
                                9.3401196415468746e-01, 9.9999999999999978e-01, 9.9999999999999978e-01],
                               rtol=1e-15)
    np.testing.assert_allclose(cl.mu_eta([-800, -1, 0, 1, 4, 800]),
                               [2.2204460492503131e-16, 2.5464638004358253e-01, 3.6787944117144233e-01,
                                1.7937407873401720e-01, 2.2204460492503131e-16, 2.2204460492503131e-16],
                               rtol=1e-15)


def test_log_link_clamp_and_valid_eta():
    lk = make_link("log")
    assert lk.inverse(-800.0) == DBL_EPSILON and lk.mu_eta(-800.0) == DBL_EPSILON
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf(lk.inverse(800.0))
    assert make_link("sqrt").valid_eta([0.1, 2]) and not make_link("sqrt").valid_eta([0.0, 1])
    assert not make_link("inverse").valid_eta([0.0, 1]) and make_link("inverse").valid_eta([-1.0, 1])
    assert not make_link("1/mu^2").valid_eta([-0.1]) and not make_link("1/mu^2").valid_eta([np.inf])
    assert make_link("logit").valid_eta([-1e9, 1e9])


def test_links_vectorised_shapes():
    e = RNG.normal(size=(4, 5))
    for name in ["logit", "probit", "cauchit", "cloglog", "log", "identity"]:
        lk = make_link(name)
        assert lk.inverse(e).shape == (4, 5)
        assert lk.mu_eta(e).shape == (4, 5)


# ---------------------------------------------------------------------------
# log-likelihoods vs scipy.stats
def _counts(n=40):
    mu = RNG.uniform(0.05, 30, n)
    y = RNG.poisson(mu).astype(float)
    wt = RNG.uniform(0.2, 3.0, n)
    return y, mu, wt


def test_poisson_loglik():
    y, mu, wt = _counts()
    fam = make_family("poisson")
    np.testing.assert_allclose(fam.loglik(y, mu, wt), wt * stats.poisson.logpmf(y, mu), rtol=1e-12)
    np.testing.assert_allclose(fam.loglik(y, mu), stats.poisson.logpmf(y, mu), rtol=1e-12)


def test_nbinom2_loglik():
    y, mu, wt = _counts()
    y = np.concatenate([y, [0.0, 500.0, 3.0]])
    mu = np.concatenate([mu, [1e-3, 450.0, 2.0]])
    wt = np.concatenate([wt, [1.0, 1.0, 1.0]])
    for theta in [0.3, 2.7, 150.0]:
        fam = make_family("nbinom2").with_shape(theta)
        ref = stats.nbinom.logpmf(y, theta, theta / (theta + mu))
        np.testing.assert_allclose(fam.loglik(y, mu, wt), wt * ref, rtol=1e-9, atol=1e-12)
    # large theta: scipy's lgamma differences lose digits; exact reference for integer y:
    # log C(y+theta-1, y) = sum_{j<y} log1p(j/theta) + y*log(theta) - lgamma(y+1)
    yy, mm = [0, 1, 7, 30, 500, 5000], [1e-3, 0.5, 4.0, 25.0, 450.0, 4000.0]
    for theta in [1e4, 1e7, 1e10]:
        ref = [math.fsum(math.log1p(j / theta) for j in range(yi)) - math.lgamma(yi + 1)
               + (yi * math.log(mi / (1 + mi / theta)) if yi else 0.0) - theta * math.log1p(mi / theta)
               for yi, mi in zip(yy, mm)]
        np.testing.assert_allclose(make_family("nbinom2", shape=theta).loglik(yy, mm), ref, rtol=1e-13)
    # R: dnbinom(c(0,3,100), size=2.5, mu=4, log=TRUE)
    fam = make_family("nbinom2", shape=2.5)
    np.testing.assert_allclose(fam.loglik([0, 3, 100], [4, 4, 4]),
                               [-2.3887786125685908, -1.9639304319959514, -44.2978616230164803], rtol=1e-13)
    # huge theta: Poisson limit, and theta=inf is exactly Poisson
    # (R's own dnbinom loses ~1e-8 here, so compare with the Poisson limit instead)
    np.testing.assert_allclose(make_family("nbinom2", shape=1e10).loglik([7.0], [4.0]),
                               stats.poisson.logpmf([7.0], 4.0), rtol=1e-8)
    np.testing.assert_allclose(make_family("nbinom2", shape=np.inf).loglik(y, mu), stats.poisson.logpmf(y, mu),
                               rtol=1e-12)


def test_binomial_loglik_integer():
    n = 30
    trials = RNG.integers(1, 20, n).astype(float)
    mu = RNG.uniform(0.01, 0.99, n)
    k = RNG.binomial(trials.astype(int), mu).astype(float)
    y = k / trials
    fam = make_family("binomial")
    np.testing.assert_allclose(fam.loglik(y, mu, trials), stats.binom.logpmf(k, trials, mu), rtol=1e-11)
    np.testing.assert_allclose(fam.loglik(y, mu, trials, noninteger="round"),
                               stats.binom.logpmf(k, trials, mu), rtol=1e-11)
    # Bernoulli with default weights
    yb = (RNG.uniform(size=n) < mu).astype(float)
    np.testing.assert_allclose(fam.loglik(yb, mu), stats.bernoulli.logpmf(yb, mu), rtol=1e-12)
    # zero-weight rows contribute 0 (R: ifelse(m > 0, ..., 0))
    assert fam.loglik([0.5], [0.3], [0.0])[0] == 0.0


def test_binomial_loglik_noninteger():
    from scipy.special import gammaln
    y, mu, wt = np.array([0.3, 0.55]), np.array([0.4, 0.5]), np.array([2.5, 3.0])
    k, n = wt * y, wt
    cont = gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1) + k * np.log(mu) + (n - k) * np.log1p(-mu)
    fam = make_family("binomial")
    np.testing.assert_allclose(fam.loglik(y, mu, wt), cont, rtol=1e-12)
    # R's family$aic convention rounds (round half to even as R's round())
    np.testing.assert_allclose(fam.loglik(y, mu, wt, noninteger="round"),
                               stats.binom.logpmf(np.round(k), np.round(n), mu), rtol=1e-12)
    with pytest.raises(ValueError):
        fam.loglik(y, mu, wt, noninteger="nope")


def test_gaussian_loglik():
    n = 25
    mu = RNG.normal(size=n)
    y = mu + RNG.normal(size=n)
    wt = RNG.uniform(0.5, 2, n)
    phi = 1.7
    fam = make_family("gaussian")
    ref = stats.norm.logpdf(y, mu, np.sqrt(phi / wt))
    np.testing.assert_allclose(fam.loglik(y, mu, wt, dispersion=phi), ref, rtol=1e-12)
    assert fam.loglik([1.0], [0.0], [0.0], 2.0)[0] == 0.0


def test_gamma_loglik():
    n = 25
    mu = RNG.uniform(0.2, 10, n)
    phi = 0.37
    y = RNG.gamma(1 / phi, mu * phi)
    wt = RNG.uniform(0.5, 2, n)
    fam = make_family("Gamma", "log")
    ref = stats.gamma.logpdf(y, a=1 / phi, scale=mu * phi)
    np.testing.assert_allclose(fam.loglik(y, mu, wt, dispersion=phi), wt * ref, rtol=1e-12)


def test_inverse_gaussian_loglik():
    n = 25
    mu = RNG.uniform(0.2, 5, n)
    phi = 0.6
    lam = 1 / phi  # shape; variance mu^3 * phi
    y = stats.invgauss.rvs(mu / lam, scale=lam, random_state=RNG)
    wt = RNG.uniform(0.5, 2, n)
    fam = make_family("inverse.gaussian")
    ref = stats.invgauss.logpdf(y, mu / lam, scale=lam)
    np.testing.assert_allclose(fam.loglik(y, mu, wt, dispersion=phi), wt * ref, rtol=1e-11)
    # the dispersion convention: variance is mu^3 * phi
    m, v = stats.invgauss.stats(2.0 / lam, scale=lam, moments="mv")
    np.testing.assert_allclose([m, v], [2.0, fam.variance(2.0) * phi])


# ---------------------------------------------------------------------------
# deviance residuals = 2 * wt * (loglik_saturated - loglik)
def test_dev_resids_vs_saturated_loglik():
    y, mu, wt = _counts()
    # poisson (scipy handles y = 0 saturated: logpmf(0, 0) = 0)
    fam = make_family("poisson")
    ref = 2 * wt * (stats.poisson.logpmf(y, y) - stats.poisson.logpmf(y, mu))
    np.testing.assert_allclose(fam.dev_resids(y, mu, wt), ref, rtol=1e-10, atol=1e-12)

    theta = 2.7
    fam = make_family("nbinom2", shape=theta)
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = np.where(y > 0, stats.nbinom.logpmf(y, theta, theta / (theta + y)), 0.0)
    ref = 2 * wt * (sat - stats.nbinom.logpmf(y, theta, theta / (theta + mu)))
    np.testing.assert_allclose(fam.dev_resids(y, mu, wt), ref, rtol=1e-9, atol=1e-12)

    trials = RNG.integers(1, 15, 30).astype(float)
    p = RNG.uniform(0.05, 0.95, 30)
    k = RNG.binomial(trials.astype(int), p).astype(float)
    yb = k / trials
    fam = make_family("binomial")
    ref = 2 * (stats.binom.logpmf(k, trials, yb) - stats.binom.logpmf(k, trials, p))
    np.testing.assert_allclose(fam.dev_resids(yb, p, trials), ref, rtol=1e-10, atol=1e-12)

    yc = RNG.uniform(0.1, 5, 30)
    muc = RNG.uniform(0.1, 5, 30)
    wc = RNG.uniform(0.5, 2, 30)
    fam = make_family("gaussian")
    ref = 2 * (stats.norm.logpdf(yc, yc, 1 / np.sqrt(wc)) - stats.norm.logpdf(yc, muc, 1 / np.sqrt(wc)))
    np.testing.assert_allclose(fam.dev_resids(yc, muc, wc), ref, rtol=1e-10)

    fam = make_family("Gamma")  # phi = 1 (exponential)
    ref = 2 * wc * (stats.gamma.logpdf(yc, 1, scale=yc) - stats.gamma.logpdf(yc, 1, scale=muc))
    np.testing.assert_allclose(fam.dev_resids(yc, muc, wc), ref, rtol=1e-10)

    fam = make_family("inverse.gaussian")  # phi = 1: lambda = 1
    ref = 2 * wc * (stats.invgauss.logpdf(yc, yc) - stats.invgauss.logpdf(yc, muc))
    np.testing.assert_allclose(fam.dev_resids(yc, muc, wc), ref, rtol=1e-10)


def test_dev_resids_R_values_and_edge_cases():
    # R 4.x: poisson()$dev.resids, binomial()$dev.resids, MASS::negative.binomial(2.7)$dev.resids
    y = np.array([0, 1, 2, 5, 17, 0, 3.0])
    mu = np.array([0.5, 1.2, 2, 4.4, 20, 1e-3, 3])
    w = np.array([1, 2, 0.5, 1, 3, 1, 0])
    fam = make_family("poisson")
    expect = 2 * w * np.where(y > 0, y * np.log(np.where(y > 0, y, 1) / mu) - (y - mu), mu)
    np.testing.assert_allclose(fam.dev_resids(y, mu, w), expect, rtol=1e-14)
    yb = np.array([0, 1, 0.5])
    mb = np.array([0.2, 0.7, 0.5])
    np.testing.assert_allclose(make_family("binomial").dev_resids(yb, mb, [1, 1, 4]),
                               [-2 * np.log(0.8), -2 * np.log(0.7), 0.0], atol=1e-15)
    assert np.all(np.isfinite(make_family("nbinom2", shape=2.7).dev_resids(y, mu, w)))
    # Gamma with y == 0 uses log(1) (R's ifelse(y == 0, 1, y/mu))
    assert np.isfinite(make_family("Gamma").dev_resids([0.0], [2.0], [1.0])[0])


def test_variance():
    mu = np.array([0.1, 0.5, 0.9])
    np.testing.assert_allclose(make_family("binomial").variance(mu), mu * (1 - mu))
    np.testing.assert_allclose(make_family("poisson").variance(mu), mu)
    np.testing.assert_allclose(make_family("gaussian").variance(mu), 1.0)
    np.testing.assert_allclose(make_family("Gamma").variance(mu), mu**2)
    np.testing.assert_allclose(make_family("inverse.gaussian").variance(mu), mu**3)
    np.testing.assert_allclose(make_family("nbinom2", shape=2.0).variance(mu), mu + mu**2 / 2)
    # matches scipy's nbinom variance
    th, m = 3.3, 7.0
    assert np.isclose(make_family("nbinom2", shape=th).variance(m), stats.nbinom.var(th, th / (th + m)))


def test_nbinom2_requires_shape():
    fam = make_family("nbinom2")
    assert fam.shape is None and fam.has_dispersion is False
    with pytest.raises(ValueError, match="with_shape"):
        fam.variance([1.0])
    with pytest.raises(ValueError, match="> 0"):
        fam.with_shape(-1.0)


# ---------------------------------------------------------------------------
# initialize / valid_mu / valid_eta
def test_initialize_matches_R():
    y = np.array([0, 1, 0.5, 0.25, 1, 0, 0.3])
    wt = np.array([1, 1, 4, 8, 3, 0, 10.0])
    np.testing.assert_allclose(make_family("binomial").initialize(y, wt), (wt * np.where(wt == 0, 0, y) + 0.5) / (wt + 1))
    np.testing.assert_allclose(make_family("poisson").initialize([0, 3.0], None), [0.1, 3.1])
    np.testing.assert_allclose(make_family("nbinom2").initialize([0, 3.0], None), [0.1, 3.1])
    np.testing.assert_allclose(make_family("Gamma").initialize([0.5, 3.0], None), [0.5, 3.0])
    np.testing.assert_allclose(make_family("inverse.gaussian").initialize([0.5, 3.0], None), [0.5, 3.0])
    np.testing.assert_allclose(make_family("gaussian").initialize([-1, 3.0], None), [-1, 3.0])
    with pytest.raises(ValueError):
        make_family("poisson").initialize([-1.0], None)
    with pytest.raises(ValueError):
        make_family("Gamma").initialize([0.0], None)


def test_valid_mu_eta():
    b = make_family("binomial")
    assert b.valid_mu([0.2, 0.9]) and not b.valid_mu([0.0, 0.5]) and not b.valid_mu([1.0])
    p = make_family("poisson")
    assert p.valid_mu([0.1]) and not p.valid_mu([0.0]) and not p.valid_mu([np.inf])
    assert make_family("gaussian").valid_mu([-5.0])
    assert make_family("Gamma").valid_eta([0.5]) and not make_family("Gamma").valid_eta([0.0])
    assert not make_family("inverse.gaussian").valid_eta([-0.1])
    assert make_family("poisson", "sqrt").valid_eta([1.0]) and not make_family("poisson", "sqrt").valid_eta([-1.0])


# ---------------------------------------------------------------------------
# validate()
def test_validate_counts():
    fam = make_family("poisson")
    fam.validate(np.array([0, 1, 5.0]), None, "count")
    with pytest.raises(ValueError) as ei:
        fam.validate(np.array([1, -2, 3, -1.0]), None, "count")
    msg = str(ei.value)
    assert "'count'" in msg and "2 row" in msg and "row index 1" in msg and "-2" in msg
    with pytest.warns(UserWarning, match="count.*non-integer"):
        fam.validate(np.array([1, 2.5]), None, "count")
    with pytest.raises(ValueError, match="'n_ev'.*non-finite"):
        make_family("nbinom2").validate(np.array([1, np.nan]), None, "n_ev")
    with pytest.raises(ValueError, match="'n_ev'"):
        make_family("nbinom2").validate(np.array([1, -1.0]), None, "n_ev")


def test_validate_binomial():
    fam = make_family("binomial")
    fam.validate(np.array([0, 1, 1, 0.0]), None, "resp")
    fam.validate(np.array([0.25, 0.5]), np.array([4.0, 2.0]), "resp")
    with pytest.raises(ValueError, match="'resp'.*outside \\[0, 1\\]"):
        fam.validate(np.array([0, 2.0]), None, "resp")
    with pytest.warns(UserWarning, match="'resp'.*non-integer #successes"):
        fam.validate(np.array([0.3, 0.5]), np.array([1.0, 1.0]), "resp")
    with pytest.raises(ValueError, match="'resp'.*negative weights"):
        fam.validate(np.array([0.5]), np.array([-1.0]), "resp")
    with pytest.raises(ValueError, match="length"):
        fam.validate(np.array([0.5, 1]), np.array([1.0]), "resp")


def test_validate_positive_families():
    for fname in ["Gamma", "inverse.gaussian"]:
        fam = make_family(fname)
        fam.validate(np.array([0.1, 3.0]), None, "time")
        with pytest.raises(ValueError, match="'time'.*non-positive.*row index 1"):
            fam.validate(np.array([0.1, 0.0, 2.0]), None, "time")
    make_family("gaussian").validate(np.array([-3.0, 0.0, 2.0]), None, "z")
    with pytest.raises(ValueError, match="'z'.*non-finite"):
        make_family("gaussian").validate(np.array([np.inf, 0.0]), None, "z")


# ---------------------------------------------------------------------------
# make_family
@pytest.mark.parametrize(
    "spec,name,link",
    [
        ("poisson", "poisson", "log"),
        ("binomial", "binomial", "logit"),
        ("gaussian", "gaussian", "identity"),
        ("Gamma", "Gamma", "inverse"),
        ("gamma", "Gamma", "inverse"),
        ("inverse.gaussian", "inverse.gaussian", "1/mu^2"),
        ("inverse_gaussian", "inverse.gaussian", "1/mu^2"),
        ("nbinom2", "nbinom2", "log"),
        ("negative.binomial", "nbinom2", "log"),
        ("negbin", "nbinom2", "log"),
        ("binomial(link='probit')", "binomial", "probit"),
        ('poisson(link = "sqrt")', "poisson", "sqrt"),
        ("binomial(cloglog)", "binomial", "cloglog"),
        ('Gamma(link="log")', "Gamma", "log"),
        ("binomial()", "binomial", "logit"),
    ],
)
def test_make_family_parsing(spec, name, link):
    fam = make_family(spec)
    assert isinstance(fam, Family)
    assert fam.name == name and fam.link.name == link


def test_make_family_links_and_errors():
    assert make_family("binomial", "cauchit").link.name == "cauchit"
    assert make_family("inverse.gaussian", "inverse_squared").link.name == "1/mu^2"
    with pytest.raises(ValueError, match="valid families.*poisson"):
        make_family("quasipoisson")
    with pytest.raises(ValueError, match="valid links"):
        make_family("poisson", "foo")
    with pytest.raises(ValueError, match="not available for the poisson family.*'log', 'identity', 'sqrt'"):
        make_family("poisson", "logit")
    with pytest.raises(ValueError, match="allowed links"):
        make_family("binomial(link='identity')")
    with pytest.raises(ValueError):
        make_family("gaussian", "1/mu^2")
    for fname, allowed in ALLOWED_LINKS.items():
        for lk in allowed:
            assert make_family(fname, lk).link.name == lk
    fam = make_family("poisson")
    assert make_family(fam) is fam
    assert make_family(fam, "sqrt").link.name == "sqrt"
    nb = make_family("negative.binomial(theta = 3.5)")
    assert nb.shape == 3.5 and nb.link.name == "log"
    assert make_family("negative.binomial(2, link='sqrt')").shape == 2.0
    with pytest.raises(ValueError):
        make_family("poisson(theta=2)")


def test_has_dispersion():
    assert make_family("gaussian").has_dispersion
    assert make_family("Gamma").has_dispersion
    assert make_family("inverse.gaussian").has_dispersion
    assert not make_family("poisson").has_dispersion
    assert not make_family("binomial").has_dispersion
    assert not make_family("nbinom2").has_dispersion


def test_repr_describe_immutability():
    assert repr(make_family("poisson")) == "Family(poisson, link=log)"
    assert make_family("poisson").describe() == ("poisson", "log")
    assert make_family("Gamma", "log").describe() == ("Gamma", "log")
    assert make_family("inverse.gaussian").describe() == ("inverse.gaussian", "1/mu^2")
    # MASS::negative.binomial(theta)$family, R 4.x
    for theta, s in [(3.21, "3.21"), (3.213145, "3.2131"), (123456.789, "123456.8"), (1.234e-5, "0"),
                     (1e8 + 0.5, "1e+08"), (1234567.1, "1234567"), (0.123456, "0.1235"), (2.5e-3, "0.0025")]:
        assert make_family("nbinom2").with_shape(theta).describe() == (f"Negative Binomial({s})", "log")
    fam = make_family("nbinom2")
    fam2 = fam.with_shape(2.0)
    assert fam.shape is None and fam2.shape == 2.0 and fam2 is not fam
    with pytest.raises(AttributeError):
        fam.shape = 3.0
    with pytest.raises(AttributeError):
        make_family("poisson").link = make_link("sqrt")
    assert make_family("poisson") == make_family("poisson")
    assert make_family("poisson") != make_family("poisson", "sqrt")
    assert hash(fam2) == hash(make_family("nbinom2", shape=2.0))


def test_large_vectors_fast():
    n = 200_000
    mu = RNG.uniform(0.1, 10, n)
    y = RNG.poisson(mu).astype(float)
    for spec in ["poisson", "nbinom2"]:
        fam = make_family(spec, shape=2.0) if spec == "nbinom2" else make_family(spec)
        assert fam.loglik(y, mu).shape == (n,)
        assert fam.dev_resids(y, mu, np.ones(n)).shape == (n,)


# --- family-specific knowledge carried by the family objects ------------------------------

ALL_FAMILY_LINKS = [(f, lk) for f, links in ALLOWED_LINKS.items() for lk in links]


def _fam(name, link):
    fam = make_family(name, link)
    return fam.with_shape(2.5) if name == "nbinom2" else fam


def test_canonical_links():
    canon = {(f, lk) for f, lk in ALL_FAMILY_LINKS if make_family(f, lk).canonical}
    assert canon == {("poisson", "log"), ("binomial", "logit"), ("gaussian", "identity"),
                     ("Gamma", "inverse"), ("inverse.gaussian", "1/mu^2")}
    # nbinom2's canonical link log(mu / (mu + theta)) is not among its links
    assert not make_family("nbinom2").canonical


def test_extra_parameter_kind_transform_and_with_extra():
    kinds = {f: make_family(f).extra_parameter for f in ALLOWED_LINKS}
    assert kinds == {"poisson": None, "binomial": None, "gaussian": "dispersion",
                     "Gamma": "dispersion", "inverse.gaussian": "dispersion", "nbinom2": "shape"}
    for f in ALLOWED_LINKS:
        fam = make_family(f)
        assert fam.extra_to_natural(fam.extra_to_working(3.7)) == pytest.approx(3.7, rel=1e-15)
        got, phi = fam.with_extra(2.0)
        if kinds[f] == "shape":
            assert got.shape == 2.0 and phi == 1.0 and got.link == fam.link
        elif kinds[f] == "dispersion":
            assert got is fam and phi == 2.0
        else:
            assert got is fam and phi == 1.0
    nb = make_family("nbinom2", "sqrt")
    assert nb.start_family == make_family("poisson", "sqrt")
    assert make_family("Gamma").start_family is make_family("Gamma")


def test_extra_start_values():
    rng = np.random.default_rng(3)
    mu = rng.uniform(1.0, 6.0, 4000)
    k = 2.0
    y = rng.negative_binomial(k, k / (k + mu)).astype(float)
    wt = np.ones_like(mu)
    x0 = make_family("nbinom2").extra_start(y, mu, wt, 4000 - 2)
    m, v = np.mean(mu), np.mean((y - mu) ** 2)
    assert x0 == pytest.approx(np.log(m * m / (v - m)))
    assert make_family("nbinom2").extra_start(mu, mu, wt, 10) == pytest.approx(np.log(10.0))
    phi = 0.3
    yg = rng.gamma(1 / phi, mu * phi)
    x0 = make_family("Gamma", "log").extra_start(yg, mu, wt, 4000 - 2)
    want = np.sum((yg - mu) ** 2 / mu ** 2) / (4000 - 2)
    assert x0 == pytest.approx(np.log(want)) and abs(np.exp(x0) - phi) < 0.05
    assert make_family("poisson").extra_start(y, mu, wt, 10) is None


@pytest.mark.parametrize("name,link", ALL_FAMILY_LINKS)
def test_closed_curvature_matches_derivatives_of_the_log_density(name, link):
    fam = _fam(name, link)
    if not fam.closed_curvature:
        with pytest.raises(ValueError):
            fam.curvature(np.ones(2), np.ones(2), np.ones(2))
        return
    rng = np.random.default_rng(7)
    n = 30
    eta = {"binomial": rng.normal(0, 1.5, n)}.get(name, rng.normal(0.5, 0.6, n))
    mu = fam.link.inverse(eta)
    wt = rng.uniform(0.5, 3.0, n)
    if name == "binomial":
        y = rng.integers(0, 2, n).astype(float)
    elif name == "gaussian":
        y = mu + rng.normal(size=n)
    elif name == "Gamma":
        y = rng.gamma(2.0, mu / 2.0)
    else:
        y = rng.poisson(mu).astype(float)
    phi = 1.0 if fam.extra_parameter != "dispersion" else 0.7
    w, wp, s = fam.curvature(mu, y, wt, phi)

    def ll(e):
        return fam.loglik_eta(y, e, wt, phi)

    h = 1e-4
    score = (ll(eta + h) - ll(eta - h)) / (2 * h)
    curv = -(ll(eta + h) - 2 * ll(eta) + ll(eta - h)) / (h * h)
    np.testing.assert_allclose(s, score, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(w, curv, rtol=1e-4, atol=1e-6)
    w_up = fam.curvature(fam.link.inverse(eta + h), y, wt, phi)[0]
    w_dn = fam.curvature(fam.link.inverse(eta - h), y, wt, phi)[0]
    np.testing.assert_allclose(wp, (w_up - w_dn) / (2 * h), rtol=1e-5, atol=1e-8)


def test_closed_curvature_and_kernel_codes():
    closed = {(f, lk) for f, lk in ALL_FAMILY_LINKS if make_family(f, lk).closed_curvature}
    assert closed == {("poisson", "log"), ("binomial", "logit"), ("gaussian", "identity"),
                      ("nbinom2", "log"), ("Gamma", "log")}
    codes = {(f, lk): make_family(f, lk).kernel_code for f, lk in ALL_FAMILY_LINKS
             if make_family(f, lk).kernel_code is not None}
    assert codes == {("poisson", "log"): 0, ("binomial", "logit"): 1, ("nbinom2", "log"): 2,
                     ("Gamma", "log"): 3}
    # resolved once: with_shape keeps them
    nb = make_family("nbinom2").with_shape(3.0)
    assert nb.kernel_code == 2 and nb.closed_curvature and not nb.canonical


@pytest.mark.parametrize("name,link", ALL_FAMILY_LINKS)
def test_deviance_sum_and_constant(name, link):
    fam = _fam(name, link)
    rng = np.random.default_rng(11)
    n = 50
    eta = {"binomial": rng.normal(0, 2, n)}.get(name, rng.uniform(0.3, 1.5, n))
    if link in ("inverse", "1/mu^2"):
        eta = rng.uniform(0.3, 1.0, n)
    mu = fam.link.inverse(eta)
    wt = {"binomial": rng.integers(1, 8, n).astype(float)}.get(name, rng.uniform(0.5, 2, n))
    if name == "binomial":
        y = rng.binomial(wt.astype(int), np.clip(mu, 0, 1)) / wt
    elif name == "gaussian":
        y = mu + rng.normal(size=n)
    elif name in ("Gamma", "inverse.gaussian"):
        y = rng.gamma(2.0, np.abs(mu) / 2.0) + 0.01
    else:
        y = rng.poisson(np.maximum(mu, 0)).astype(float)
    cache = {}
    got = fam.deviance_sum(y, eta, wt, mu, cache)
    assert got == pytest.approx(float(fam.dev_resids(y, mu, wt).sum()), rel=1e-9)
    assert fam.deviance_sum(y, eta, wt, mu, cache) == got          # cached pieces: same value
    const = fam.deviance_constant(y, wt, cache)
    if fam.extra_parameter is None:
        # -2 log f = dev - 2 log f_saturated exactly, and the constant is dev at log mu = 0 terms
        m2ll = -2.0 * float(fam.loglik(y, mu, wt).sum())
        assert m2ll == pytest.approx(got + fam.saturated_m2ll(y, wt), rel=1e-9)
        assert const is not None and np.isfinite(const)
    else:
        assert const is None
    assert fam.saturated_m2ll(y, wt) == pytest.approx(-2.0 * float(fam.loglik(y, y, wt).sum()))


@pytest.mark.parametrize("name,link", [("poisson", "log"), ("binomial", "logit"),
                                       ("nbinom2", "log"), ("Gamma", "log"),
                                       ("inverse.gaussian", "log"), ("gaussian", "identity")])
def test_simulate_moments_and_cdf(name, link):
    fam = _fam(name, link)
    rng = np.random.default_rng(5)
    n = 200_000
    mu = np.full(n, 0.3 if name == "binomial" else 2.0)
    wt = np.full(n, 4.0 if name == "binomial" else 1.0)
    phi = 0.5 if fam.extra_parameter == "dispersion" else 1.0
    y = fam.simulate(mu, wt, phi, rng)
    assert y.shape == mu.shape
    var = fam.variance(mu) * phi / wt
    assert abs(y.mean() - mu[0]) < 5 * math.sqrt(var[0] / n)
    assert y.var() == pytest.approx(var[0], rel=0.03)
    # the cdf at the simulated quantiles: uniform for continuous families; P(Y <= q) for
    # discrete ones equals the empirical frequency
    q = np.quantile(y, [0.25, 0.5, 0.75])
    F = fam.cdf(q, mu[:3], wt[:3], phi)
    emp = np.array([np.mean(y <= v) for v in q])
    np.testing.assert_allclose(F, emp, atol=0.01)
    assert fam.discrete == (name in ("poisson", "binomial", "nbinom2"))


def test_simulate_broadcasts_posterior_draws_and_given_shapes():
    rng = np.random.default_rng(1)
    mu = np.full((3, 5), 2.0)
    wt = np.ones((1, 5))
    nb = make_family("nbinom2")               # no shape on the family: passed per draw
    y = nb.simulate(mu, wt, 1.0, rng, shape=np.array([[1.0], [2.0], [50.0]]))
    assert y.shape == (3, 5)
    yb = make_family("binomial").simulate(np.full((2, 4), 0.5), np.array([0.0, 1, 2, 3]), 1.0, rng)
    assert yb.shape == (2, 4) and np.all(yb[:, 0] == 0)
    assert np.all(np.isin(yb[:, 3] * 3, [0, 1, 2, 3]))


def test_response_counts():
    fam = make_family("binomial")
    y = np.array([0.5, 0.25, 1.0])
    wt = np.array([2.0, 4.0, 3.0])
    np.testing.assert_array_equal(fam.response_counts(y, wt), [1.0, 1.0, 3.0])
    np.testing.assert_array_equal(fam.response_counts(np.c_[y, y], wt), [[1, 1], [1, 1], [3, 3]])
    yy = np.array([0.3, 0.5, 1.0])                 # not whole successes: unchanged
    assert fam.response_counts(yy, wt) is yy
    assert make_family("poisson").response_counts(y, wt) is y


def test_ratio_labels():
    labels = {(f, lk): make_family(f, lk).ratio_label for f, lk in ALL_FAMILY_LINKS}
    assert labels[("poisson", "log")] == "rate ratio"
    assert labels[("nbinom2", "log")] == "rate ratio"
    assert labels[("binomial", "logit")] == "odds ratio"
    assert labels[("binomial", "cloglog")] == "hazard ratio"
    assert labels[("binomial", "log")] == "ratio"
    assert labels[("Gamma", "log")] == "ratio"
    assert labels[("gaussian", "identity")] is None and labels[("binomial", "probit")] is None


def test_latent_variance():
    assert make_family("binomial").latent_variance()[0] == pytest.approx(math.pi ** 2 / 3)
    assert make_family("binomial", "probit").latent_variance()[0] == 1.0
    assert make_family("binomial", "cloglog").latent_variance()[0] == pytest.approx(math.pi ** 2 / 6)
    with pytest.raises(ValueError):
        make_family("binomial", "cauchit").latent_variance()
    assert make_family("gaussian").latent_variance(None, 2.5)[0] == 2.5
    pois = make_family("poisson")
    assert pois.needs_latent_mean and not make_family("poisson", "sqrt").needs_latent_mean
    assert pois.latent_variance(4.0)[0] == pytest.approx(math.log1p(0.25))
    assert pois.latent_variance(4.0, approximation="delta")[0] == pytest.approx(0.25)
    from scipy import special
    assert pois.latent_variance(4.0, approximation="trigamma")[0] == pytest.approx(
        float(special.polygamma(1, 4.0)))
    nb = make_family("nbinom2").with_shape(2.0)
    assert nb.latent_variance(4.0)[0] == pytest.approx(math.log1p(0.25 + 0.5))
    assert make_family("Gamma", "log").latent_variance(None, 0.3)[0] == pytest.approx(math.log1p(0.3))
    with pytest.raises(ValueError):
        make_family("Gamma").latent_variance(None, 0.3)


def test_bayes_pieces():
    g = make_family("gaussian")
    assert g.aux_name == "sigma" and g.aux_to_parameter(3.0) == 9.0
    assert g.default_aux_prior(2.0) == ("exponential", 0.5)
    y = np.array([1.0, 2.0, 4.0])
    assert g.prior_scale(y) == pytest.approx((np.mean(y), np.std(y, ddof=1)))
    assert make_family("gaussian", "log").prior_scale(y) == (0.0, 1.0)
    assert make_family("Gamma").aux_to_parameter(4.0) == 0.25
    assert make_family("inverse.gaussian").aux_to_parameter(0.5) == 0.25
    nb = make_family("nbinom2")
    assert nb.aux_name == "shape" and nb.aux_to_parameter(2.0) == 2.0
    assert nb.default_aux_prior() == ("gamma", 0.01, 0.01)
    for f in ("poisson", "binomial"):
        fam = make_family(f)
        assert fam.aux_name is None and fam.default_aux_prior() is None
    assert {make_family(f).jax_name for f in ALLOWED_LINKS} == set(ALLOWED_LINKS)


@pytest.mark.parametrize("spec,kind,linear,laplace", [
    ("poisson", "count", False, "expected"), ("nbinom2", "count", False, "observed"),
    ("binomial", "proportion", False, "expected"), ("binomial(link='probit')", "proportion", False, "expected"),
    ("gaussian", "continuous", True, "observed"), ("gaussian(link='log')", "continuous", False, "observed"),
    ("Gamma(link='log')", "continuous", False, "observed"), ("inverse.gaussian", "continuous", False, "observed"),
])
def test_response_kind_linear_model_and_default_laplace(spec, kind, linear, laplace):
    """What the entry points ask a family instead of switching on its name: the kind of
    response, whether glmer is an LMM, and the default Laplace curvature (lme4's expected
    weights without an extra parameter, glmmTMB's observed curvature with one)."""
    fam = make_family(spec)
    assert fam.response_kind == kind
    assert fam.is_linear_model is linear
    assert fam.default_laplace == laplace


def test_misspelt_family_gets_a_suggestion():
    with pytest.raises(ValueError, match=r"did you mean 'poisson'\?"):
        make_family("poison")
    with pytest.raises(ValueError, match="valid families are") as e:
        make_family("xyzzy")
    assert "did you mean" not in str(e.value)
