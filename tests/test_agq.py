"""Adaptive Gauss-Hermite quadrature: against lme4 (nAGQ = 25) and brute-force integration."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

import pyglmm
from pyglmm.design import model_frame
from pyglmm.families import make_family
from pyglmm.fit.agq import agq_deviance
from pyglmm.fit.pirls import GlmmProblem
from pyglmm.prepare import numerics_view as _structure

FIX = Path(__file__).parent / "reference" / "fixtures"
CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


def _problem(formula, data, fam):
    fr = model_frame(formula, data, binomial=fam == "binomial")
    rs, _, sv = _structure(fr)
    f = make_family(fam)
    return GlmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, f), sv, f


def test_cbpp_nagq25_matches_lme4():
    ref = json.loads((FIX / "cbpp_agq25.json").read_text())
    m = pyglmm.glmer(CBPP, pyglmm.datasets.load_cbpp(), family="binomial", nAGQ=25)
    np.testing.assert_allclose(m.fixef.values, list(ref["fixef"].values()), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(m.se.values, list(ref["se"].values()), rtol=1e-3)
    np.testing.assert_allclose(m.theta.values, list(ref["theta"].values()), rtol=1e-4)
    # lme4's nAGQ > 1 logLik omits the saturated log-likelihood; pyglmm keeps all constants
    pr, sv, fam = _problem(CBPP, pyglmm.datasets.load_cbpp(), "binomial")
    sat = float(fam.loglik(sv.y, sv.y, sv.weights).sum())
    assert m.loglik - sat >= ref["logLik"] - 1e-6
    assert m.loglik - sat - ref["logLik"] < 1e-4
    assert "Adaptive Gauss-Hermite Quadrature, nAGQ = 25" in m.summary().title()


def test_one_node_is_laplace():
    pr, sv, fam = _problem(CBPP, pyglmm.datasets.load_cbpp(), "binomial")
    th, be = np.array([0.64]), np.array([-1.4, -1.0, -1.1, -1.6])
    assert agq_deviance(pr, th, be, 1) == pytest.approx(pr.pirls(th, be).deviance, rel=1e-12)


def test_scalar_agq_against_quad():
    pr, sv, fam = _problem(CBPP, pyglmm.datasets.load_cbpp(), "binomial")
    th, be = np.array([0.9]), np.array([-1.4, -1.0, -1.1, -1.6])
    eta0 = sv.X @ be
    codes = pr.rs.terms[0].codes
    total = 0.0
    for j in range(pr.rs.terms[0].nlevels):
        rows = codes == j
        f = lambda b: np.exp(fam.loglik(sv.y[rows], fam.link.inverse(eta0[rows] + th[0] * b),
                                        sv.weights[rows]).sum()) * np.exp(-b * b / 2) / np.sqrt(2 * np.pi)
        total += np.log(integrate.quad(f, -12, 12, epsabs=0, epsrel=1e-12, limit=200)[0])
    assert agq_deviance(pr, th, be, 25) == pytest.approx(-2 * total, abs=1e-7)


def test_vector_agq_against_dblquad_and_convergence():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(6), 8)
    x = rng.normal(size=g.size)
    u = rng.multivariate_normal([0, 0], [[0.5, 0.1], [0.1, 0.2]], size=6)
    y = rng.poisson(np.exp(0.3 + 0.2 * x + u[g, 0] + u[g, 1] * x))
    d = pd.DataFrame({"y": y, "x": x, "g": g})
    pr, sv, fam = _problem("y ~ x + (1 + x | g)", d, "poisson")
    th, be = np.array([0.7, 0.2, 0.4]), np.array([0.3, 0.2])
    T = np.array([[th[0], 0], [th[1], th[2]]])
    xs = sv.X[:, 1]
    codes = pr.rs.terms[0].codes
    total = 0.0
    for j in range(6):
        r = codes == j
        def f(u1, u0):
            b = T @ np.array([u0, u1])
            eta = sv.X[r] @ be + b[0] + b[1] * xs[r]
            return np.exp(fam.loglik(sv.y[r], np.exp(eta)).sum() - (u0 * u0 + u1 * u1) / 2) / (2 * np.pi)
        total += np.log(integrate.dblquad(f, -9, 9, -9, 9, epsabs=0, epsrel=1e-10)[0])
    devs = [agq_deviance(pr, th, be, k) for k in (3, 7, 15)]
    assert devs[2] == pytest.approx(-2 * total, abs=1e-6)
    assert abs(devs[1] - devs[2]) < abs(devs[0] - devs[2])
    m = pyglmm.glmer("y ~ x + (1 + x | g)", d, family="poisson", nAGQ=7)
    assert "nAGQ = 7" in str(m.summary())


def test_agq_refuses_crossed_factors():
    v = pyglmm.datasets.load_grouseticks()
    with pytest.raises(ValueError, match="single random-effects term"):
        pyglmm.glmer("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", v, family="poisson", nAGQ=5)


def test_three_methods_selectable_on_one_model():
    d = pyglmm.datasets.load_cbpp()
    lap = pyglmm.glmer(CBPP, d, family="binomial")
    agq = pyglmm.glmer(CBPP, d, family="binomial", nAGQ=9)
    pql = pyglmm.glmer(CBPP, d, family="binomial", method="PQL")
    assert lap.method == "Laplace" and agq.method == "nAGQ=9" and pql.method == "PQL"
    assert agq.loglik > lap.loglik - 0.1 and np.isnan(pql.loglik)
    with pytest.raises(ValueError, match="method must be"):
        pyglmm.glmer(CBPP, d, family="binomial", method="EM")
