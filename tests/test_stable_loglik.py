"""Log-densities, scores and curvatures computed from eta without R's clamps on mu.

R's links clamp mu away from 0 and 1; a likelihood computed from the clamped mu caps what a
badly fitted row can cost (-log(eps) = 36 instead of exp(eta) for a cloglog failure) and the
optimiser exploits the cap: before this was fixed a cloglog GLMM "converged" to a logLik 145
units above glmmTMB's optimum, with a slope 37 standard errors away (reference: glmmTMB 1.1.5,
tests/reference/make_saturated_fixtures.R).
"""
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

import pyglmm
from pyglmm.families import make_family
from pyglmm.families.links import LINKS, log1mexp

FIX = Path(__file__).parent / "reference" / "fixtures"

BINOMIAL_LINKS = ["logit", "probit", "cauchit", "cloglog", "log"]


def _etas(link):
    if link == "log":
        return np.array([-800.0, -40.0, -10.0, -1.0, -0.3, -1e-3])
    return np.array([-800.0, -40.0, -10.0, -1.0, 0.0, 0.5, 3.0, 6.0, 10.0, 40.0])


# log mu and log(1 - mu) at extreme eta, from closed forms that need no rounding-sensitive
# subtraction (values to double precision; cauchit and probit by mpmath at 50 digits)
EXACT = [
    ("logit", 40.0, -4.248354255291589e-18, -40.0),
    ("logit", -800.0, -800.0, 0.0),
    ("cloglog", 10.0, -math.exp(-math.exp(10.0)), -math.exp(10.0)),
    ("cloglog", 3.0, -1.892178696628463e-09, -math.exp(3.0)),
    ("cloglog", -800.0, -800.0, -math.exp(-800.0)),
    ("probit", 10.0, -7.61985302416047e-24, -53.23128515051247),
    ("probit", -40.0, -804.6084420137538, 0.0),
    ("cauchit", 1e6, -3.1830993684428714e-07, -14.960240443814008),
    ("log", -40.0, -40.0, -4.248354255291589e-18),
]


@pytest.mark.parametrize("link,eta,lp,lq", EXACT)
def test_bernoulli_logs_are_exact_in_the_tails(link, eta, lp, lq):
    got_p, got_q = LINKS[link].bernoulli_logs(np.array([eta]), order=0)
    assert got_p[0] == pytest.approx(lp, rel=1e-12, abs=1e-300)
    assert got_q[0] == pytest.approx(lq, rel=1e-12, abs=1e-300)


def test_log1mexp_both_branches():
    a = np.array([1e-20, 1e-3, math.log(2.0), 5.0, 50.0])
    want = [math.log(1e-20), math.log(-math.expm1(-1e-3)), math.log(0.5),
            math.log1p(-math.exp(-5.0)), -math.exp(-50.0)]
    np.testing.assert_allclose(log1mexp(a), want, rtol=1e-14)


@pytest.mark.parametrize("link", BINOMIAL_LINKS)
def test_bernoulli_derivatives_match_finite_differences(link):
    lk = LINKS[link]
    eta = _etas(link)[1:-1] if link != "log" else _etas(link)[1:]
    eta = eta[(np.abs(eta) < 20) & (np.abs(eta) > 0.05)]   # the log link's pole at 0: FD error
    lp, lq, dp, dq, d2p, d2q = lk.bernoulli_logs(eta, order=2)
    h = 1e-5
    up, uq, udp, udq = lk.bernoulli_logs(eta + h)[:4]
    dn, dnq, ddp, ddq = lk.bernoulli_logs(eta - h)[:4]
    np.testing.assert_allclose(dp, (up - dn) / (2 * h), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(dq, (uq - dnq) / (2 * h), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(d2p, (udp - ddp) / (2 * h), rtol=1e-5, atol=1e-10)
    np.testing.assert_allclose(d2q, (udq - ddq) / (2 * h), rtol=1e-4, atol=1e-10)


@pytest.mark.parametrize("link", BINOMIAL_LINKS)
def test_binomial_eta_forms_agree_with_the_mu_forms_inside_the_clamps(link):
    """Where no clamp is active the eta-based density, deviance and Fisher weight are R's."""
    fam = make_family("binomial", link)
    eta = np.linspace(-3.0, -0.2, 9) if link == "log" else np.linspace(-2.5, 2.5, 11)
    y = np.linspace(0, 1, eta.size)
    wt = np.full(eta.size, 7.0)
    y = np.round(y * 7) / 7
    mu = fam.linkinv(eta)
    np.testing.assert_allclose(fam.loglik_eta(y, eta, wt), fam.loglik(y, mu, wt), rtol=1e-10)
    np.testing.assert_allclose(fam.dev_resids_eta(y, eta, wt), fam.dev_resids(y, mu, wt),
                               rtol=1e-10, atol=1e-12)
    mu2, score, w = fam.eta_moments(y, eta, wt)
    d, v = fam.mu_eta(eta), fam.variance(mu)
    np.testing.assert_allclose(w, wt * d * d / v, rtol=1e-10)
    np.testing.assert_allclose(score, wt * d * (y - mu) / v, rtol=1e-10, atol=1e-12)


FAMILY_CASES = [("binomial", lk) for lk in BINOMIAL_LINKS] + [
    ("poisson", "log"), ("poisson", "sqrt"), ("poisson", "identity"), ("Gamma", "log"),
    ("Gamma", "inverse"), ("nbinom2", "log"), ("gaussian", "log"), ("inverse.gaussian", "log")]


def _family(name, link):
    fam = make_family(name, link)
    return fam.with_shape(2.5) if name == "nbinom2" else fam


@pytest.mark.parametrize("name,link", FAMILY_CASES)
def test_score_and_curvature_are_derivatives_of_the_loglik(name, link):
    """score = d log f/d eta and observed curvature = -d2 log f/d eta2, for every family."""
    fam = _family(name, link)
    rng = np.random.default_rng(1)
    if name == "binomial":
        eta = rng.uniform(-4, -0.1, 12) if link == "log" else rng.uniform(-4, 4, 12)
        y, wt = rng.integers(0, 6, 12) / 5.0, np.full(12, 5.0)
    elif link in ("sqrt", "identity", "inverse"):
        eta = rng.uniform(0.5, 3, 12)
        y, wt = rng.poisson(2.0, 12).astype(float) + (name != "poisson"), np.ones(12)
    else:
        eta = rng.uniform(-2, 2, 12)
        y = rng.poisson(2.0, 12).astype(float) + (0.5 if name != "poisson" and name != "nbinom2" else 0)
        wt = np.ones(12)
    phi = 1.0 if name in ("binomial", "poisson", "nbinom2") else 0.7
    h = 1e-5
    ll = lambda e: fam.loglik_eta(y, e, wt, phi)
    _, score, w = fam.eta_moments(y, eta, wt, phi)
    np.testing.assert_allclose(score, (ll(eta + h) - ll(eta - h)) / (2 * h), rtol=1e-6, atol=1e-8)
    curv = fam.observed_curvature(y, eta, wt, phi)
    fd2 = -(ll(eta + h) - 2 * ll(eta) + ll(eta - h)) / h ** 2
    np.testing.assert_allclose(curv, fd2, rtol=1e-3, atol=1e-4)
    assert np.all(w > 0)


@pytest.mark.parametrize("name,link,eta,y,want", [
    # a failure at eta = 10 under cloglog costs exp(10), not -log(eps) = 36
    ("binomial", "cloglog", 10.0, 0.0, -math.exp(10.0)),
    ("binomial", "logit", 50.0, 0.0, -50.0),
    ("binomial", "probit", 12.0, 0.0, float(special.log_ndtr(-12.0))),
    ("binomial", "log", -50.0, 1.0, -50.0),
    # a count of 2 where eta = -50 costs 2 * 50 (+ lgamma(3)), not 2 * 36
    ("poisson", "log", -50.0, 2.0, -100.0 - math.exp(-50.0) - math.lgamma(3.0)),
    ("nbinom2", "log", -50.0, 2.0, None),
    ("Gamma", "log", -50.0, 1.0, None),
])
def test_loglik_is_not_capped_where_mu_is_clamped(name, link, eta, y, want):
    fam = _family(name, link)
    e, yy, wt = np.array([eta]), np.array([y]), np.array([1.0])
    got = float(fam.loglik_eta(yy, e, wt)[0])
    capped = float(fam.loglik(yy, fam.linkinv(e), wt)[0])
    if want is None:     # the exact form: NB2 and Gamma with mu = exp(eta) written out
        if name == "nbinom2":
            k, mu = 2.5, math.exp(eta)
            want = (math.lgamma(y + k) - math.lgamma(k) - math.lgamma(y + 1) + k * math.log(k / (k + mu))
                    + y * (eta - math.log(k + mu)))
        else:
            want = -y * math.exp(-eta) - eta
    assert got == pytest.approx(want, rel=1e-10)
    assert got < capped - 1.0          # the clamped form is too kind to the row


def _load_saturated():
    d = pd.read_csv(FIX / "cloglog_saturated.csv")
    ref = json.loads((FIX / "cloglog_saturated.json").read_text())
    return d, ref


CLOGLOG = 'binomial(link = "cloglog")'


def test_cloglog_fit_with_saturated_rows_matches_glmmtmb():
    """glmmTMB's optimum (the exact Laplace, laplace="observed"); was logLik -934.04 with the
    slope at 2.4528, where glmmTMB's own objective gives -1637.65."""
    d, ref = _load_saturated()
    m = pyglmm.glmer("cbind(k, f) ~ x + (1 | g)", d, family=CLOGLOG, laplace="observed")
    assert m.converged
    assert m.loglik == pytest.approx(ref["logLik"], abs=2e-4)
    np.testing.assert_allclose(m.fixef.values, list(ref["fixef"].values()), rtol=2e-5)
    np.testing.assert_allclose(m.se.values, list(ref["se"].values()), rtol=2e-3)
    assert float(m.theta.iloc[0]) == pytest.approx(ref["sd"], rel=1e-4)
    assert ref["logLik_at_clamped_estimates"] < ref["logLik"] - 500


def _marginal_loglik(d, beta, sd):
    """The exact marginal log-likelihood of the cloglog (1 | g) model by adaptive quadrature per
    group, with the density written out here (independent of pyglmm's families)."""
    total = 0.0
    for _, gd in d.groupby("g"):
        k, f, x = gd["k"].to_numpy(float), gd["f"].to_numpy(float), gd["x"].to_numpy(float)
        lch = special.gammaln(k + f + 1) - special.gammaln(k + 1) - special.gammaln(f + 1)

        def logf(b):
            e = np.exp(beta[0] + beta[1] * x + b)
            return float(np.sum(lch + k * np.log(-np.expm1(-e)) - f * e)) - 0.5 * (b / sd) ** 2

        bs = np.linspace(-6 * sd, 6 * sd, 241)
        vals = np.array([logf(b) for b in bs])
        c = vals.max()
        val, _ = integrate.quad(lambda b: math.exp(logf(b) - c), -8 * sd, 8 * sd,
                                points=[bs[vals.argmax()]], limit=200, epsabs=0, epsrel=1e-10)
        total += c + math.log(val) - 0.5 * math.log(2 * math.pi * sd * sd)
    return total


def test_reported_loglik_agrees_with_exact_quadrature():
    """The Laplace logLik pyglmm reports is within the Laplace error of the exact marginal
    likelihood at its estimates (the clamped code reported -934, 700 units above the truth)."""
    d, _ = _load_saturated()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pyglmm.glmer("cbind(k, f) ~ x + (1 | g)", d, family=CLOGLOG)
    exact = _marginal_loglik(d, m.fixef.values, float(m.theta.iloc[0]))
    assert m.loglik == pytest.approx(exact, abs=1.0)
    q = pyglmm.glmer("cbind(k, f) ~ x + (1 | g)", d, family=CLOGLOG, nAGQ=25)
    assert q.loglik == pytest.approx(_marginal_loglik(d, q.fixef.values, float(q.theta.iloc[0])),
                                     abs=1e-3)


def _extreme_problem(fam):
    from pyglmm.design import model_frame
    from pyglmm.fit.pirls import GlmmProblem
    from pyglmm.prepare import numerics_view as _structure
    rng = np.random.default_rng(5)
    n, G = 200, 20
    g = np.repeat(np.arange(G), n // G)
    x = rng.uniform(-1, 1, n)
    y = (x > 0).astype(float) if fam == "binomial" else rng.poisson(1.0, n).astype(float)
    y[:3] = 1.0 - y[:3] if fam == "binomial" else 2.0          # rows the steep beta gets wrong
    d = pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})
    fr = model_frame("y ~ x + (1 | g)", d, binomial=fam == "binomial")
    rs, _, _ = _structure(fr)
    return fr, GlmmProblem(fr.y, fr.X, rs, fr.weights, fr.offset, make_family(fam))


@pytest.mark.parametrize("fam,beta", [("binomial", [0.0, 80.0]), ("poisson", [-60.0, 5.0])])
def test_compiled_and_numpy_laplace_deviance_uncapped(fam, beta, monkeypatch):
    """At a beta that puts misfitted rows beyond R's clamps (|eta| > 30, mu < eps) both the
    compiled kernel and the numpy path give the exact conditional log-likelihood."""
    from pyglmm.fit import compiled
    fr, pr = _extreme_problem(fam)
    beta = np.array(beta)
    theta = np.array([0.5])
    out = {}
    for on in ([True, False] if compiled.AVAILABLE else [False]):
        monkeypatch.setattr(compiled, "ENABLED", on)
        pr._u_warm[:] = 0.0
        pr._theta_warm = None
        r = pr.pirls(theta, beta)
        exact = float(make_family(fam).loglik_eta(fr.y, r.eta, fr.weights).sum())
        assert r.loglik_cond == pytest.approx(exact, rel=1e-10)
        capped = float(make_family(fam).loglik(fr.y, make_family(fam).linkinv(r.eta), fr.weights).sum())
        assert r.loglik_cond < capped - 10.0
        out[on] = r.deviance
    if len(out) == 2:
        assert out[True] == pytest.approx(out[False], rel=1e-8)


@pytest.mark.parametrize("shift", [40.0, 300.0, 800.0, -800.0])
@pytest.mark.parametrize("fam", ["poisson", "binomial"])
def test_a_large_constant_offset_is_absorbed_by_the_intercept(fam, shift):
    """y ~ x + offset(o) with o = c is the model without it, intercept - c (lme4 1.1-31 stops
    with "Downdated VtV is not positive definite" / "PIRLS loop resulted in NaN value" for
    c = 40, 300, 800; pyglmm raised PirlsFailure for c = 40)."""
    rng = np.random.default_rng(1)
    n = 200
    d = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 10, n).astype(str)})
    d["y"] = rng.poisson(2, n) if fam == "poisson" else rng.integers(0, 2, n)
    if fam == "binomial" and abs(shift) > 100:
        shift = math.copysign(30.0, shift)     # logit: eta of +-800 is certainty either way
    ref = pyglmm.glmer("y ~ x + (1 | g)", d, family=fam)
    m = pyglmm.glmer("y ~ x + offset(o) + (1 | g)", d.assign(o=shift), family=fam)
    assert m.loglik == pytest.approx(ref.loglik, abs=1e-6)
    np.testing.assert_allclose(m.fixef.values + [shift, 0.0], ref.fixef.values, atol=1e-5)
    np.testing.assert_allclose(m.theta.values, ref.theta.values, atol=1e-5)


@pytest.mark.parametrize("link", BINOMIAL_LINKS)
def test_moments_are_finite_for_any_eta(link):
    """Scores and Fisher weights stay finite (weights floored at eps, as R's clamps floor them)
    wherever the density is finite, so PIRLS never meets a NaN at an accepted iterate."""
    fam = make_family("binomial", link)
    eta = np.array([-800.0, -40.0, -1e-12]) if link == "log" else np.array([-800.0, -40.0, 0.0, 40.0, 800.0])
    for y in (0.0, 0.5, 1.0):
        yy = np.full(eta.size, y)
        ll = fam.loglik_eta(yy, eta, np.full(eta.size, 2.0))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            mu, score, w = fam.eta_moments(yy, eta, np.full(eta.size, 2.0))
        ok = np.isfinite(ll)
        assert np.isfinite(score[ok]).all() and np.isfinite(w).all()
        assert (w >= 2.0 * np.finfo(float).eps * 0.999).all()
