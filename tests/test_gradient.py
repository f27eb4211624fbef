"""The analytic Laplace gradient against central finite differences of the deviance."""
import numpy as np
import pytest

import pyglmm
from pyglmm.design import model_frame
from pyglmm.families import make_family
from pyglmm.fit.gradient import laplace_gradient
from pyglmm.fit.optimize import fd_gradient
from pyglmm.fit.pirls import GlmmProblem
from pyglmm.prepare import numerics_view as _structure

CASES = [
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson"),
    ("rehab", "incidents ~ treatment + gender + hours + (1 + treatment | rehab)", "poisson"),
    ("rehab", "incidents ~ gender + hours + (1 + treatment | rehab) + (1 + gender | hours)", "poisson"),
]


def _problem(ds, f, fam):
    fr = model_frame(f, pyglmm.datasets.load_dataset(ds), binomial=fam == "binomial")
    rs, _, _ = _structure(fr)
    return fr, rs, GlmmProblem(fr.y, fr.X, rs, fr.weights, fr.offset, make_family(fam))


@pytest.mark.parametrize("ds,f,fam", CASES)
def test_gradient_theta_beta(ds, f, fam):
    fr, rs, pr = _problem(ds, f, fam)
    rng = np.random.default_rng(0)
    th = np.abs(rs.theta_start() * 0.7 + 0.05 * rng.normal(size=rs.ntheta))
    be = np.linalg.lstsq(fr.X, np.log(fr.y + 0.5) if fam == "poisson" else fr.y - 0.5, rcond=None)[0] * 0.5
    x, nth = np.concatenate([th, be]), rs.ntheta
    r = pr.pirls(th, be)
    ga = laplace_gradient(rs, fr.X, fr.y, fr.weights, pr.family, th, r.u, r.eta)
    gf = fd_gradient(lambda x: pr.pirls(x[:nth], x[nth:]).deviance, x, np.full(x.size, -np.inf))
    np.testing.assert_allclose(ga, gf, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("ds,f,fam", CASES[:3])
def test_gradient_joint_stage(ds, f, fam):
    fr, rs, pr = _problem(ds, f, fam)
    th, be = rs.theta_start() * 0.7, np.zeros(fr.X.shape[1])
    r = pr.pirls(th, be, joint=True)
    ga = laplace_gradient(rs, fr.X, fr.y, fr.weights, pr.family, th, r.u, r.eta, joint=True)
    gf = fd_gradient(lambda t: pr.pirls(t, be, joint=True).deviance, th, np.full(th.size, -np.inf))
    np.testing.assert_allclose(ga, gf, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("fam,ds,f,extra", [
    ("nbinom2", "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION) + (1 | BROOD)", 2.0),
    ("Gamma(link='log')", "gamma_sim", "y ~ x + (1 | g)", 0.35),
])
def test_gradient_observed_curvature_families(fam, ds, f, extra):
    """nbinom2 and Gamma (log link) with the exact (observed) Laplace curvature, as glmmTMB."""
    fr = model_frame(f, pyglmm.datasets.load_dataset(ds))
    rs, _, sv = _structure(fr)
    family = make_family(fam)
    phi = 1.0
    if family.name == "nbinom2":
        family = family.with_shape(extra)
    else:
        phi = extra
    pr = GlmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, family, laplace_weights="observed")
    th = rs.theta_start() * 0.6
    be = np.linalg.lstsq(sv.X, np.log(sv.y + 0.5), rcond=None)[0]
    x, nth = np.concatenate([th, be]), rs.ntheta
    r = pr.pirls(th, be, phi)
    ga = laplace_gradient(rs, sv.X, sv.y, sv.weights, family, th, r.u, r.eta, phi=phi, factor=r.factor)
    gf = fd_gradient(lambda x: pr.pirls(x[:nth], x[nth:], phi).deviance, x, np.full(x.size, -np.inf))
    np.testing.assert_allclose(ga, gf, rtol=1e-5, atol=1e-3)


def test_subsample_start_reaches_the_same_optimum(monkeypatch):
    """Large single-term fits start theta from a fit to a fifth of the groups: same estimates."""
    import pandas as pd
    from pyglmm.fit import glmm as G
    rng = np.random.default_rng(8)
    n, groups = 70_000, 700
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    y = rng.poisson(np.exp(0.2 + 0.3 * x + rng.normal(0, 0.6, groups)[g]))
    d = pd.DataFrame({"y": y, "x": x, "g": g})
    a = pyglmm.glmer("y ~ x + (1 | g)", d, family="poisson")
    monkeypatch.setattr(G, "SUBSAMPLE_ROWS", 10**12)
    b = pyglmm.glmer("y ~ x + (1 | g)", d, family="poisson")
    assert a.optinfo["stage2"].x0 is not None
    np.testing.assert_allclose(a.fixef.values, b.fixef.values, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(a.theta.values, b.theta.values, rtol=1e-6)
    assert abs(a.loglik - b.loglik) < 1e-6
    np.testing.assert_allclose(a.se.values, b.se.values, rtol=1e-4)


LMM_CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("sleepstudy", "Reaction ~ 0 + (Days || Subject)"),
]


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("ds,f", LMM_CASES)
def test_lmm_profiled_gradient(ds, f, reml):
    """The exact gradient of lmer's profiled deviance (ML and REML) against central differences."""
    from pyglmm.fit.lmm import LmmProblem
    fr = model_frame(f, pyglmm.datasets.load_dataset(ds), binomial=False)
    rs, _, sv = _structure(fr)
    pr = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=reml)
    th = rs.theta_start() * 0.8 + 0.1
    gf = fd_gradient(pr.deviance, th, np.full(th.size, -np.inf), rel=1e-6)
    np.testing.assert_allclose(pr.gradient(th), gf, rtol=1e-6, atol=1e-5)


def _crossprods_and_rows(sv, rs, w, off, reml, monkeypatch, path, dense_max_q=None):
    """The same LMM on a cross-products path (class name ``path``; ``dense_max_q``: the small
    dense path's limit for this build) and on the row path."""
    from pyglmm.fit.lmm import LmmProblem
    with monkeypatch.context() as mp:
        if dense_max_q is not None:
            mp.setattr("pyglmm.fit.lmm_dense.DENSE_MAX_Q", dense_max_q)
        a = LmmProblem(sv.y, sv.X, rs, w, off, REML=reml)
        mp.setattr(LmmProblem, "use_crossprods", False)
        b = LmmProblem(sv.y, sv.X, rs, w, off, REML=reml)
    assert type(a._xp).__name__ == path and b._xp is None
    return a, b


def _weights_and_offsets(sv, seed):
    """The data's own prior weights and offset, then random ones."""
    rng = np.random.default_rng(seed)
    return [(sv.weights, sv.offset),
            (rng.uniform(0.5, 2.0, sv.y.size), rng.normal(size=sv.y.size))]


def _assert_same_lmm(a, b, th):
    """Two LmmProblems (cross-products, rows) agree at theta: deviance, log|M|, beta, u,
    gradient and conditional variances."""
    sa, sb = a.evaluate(th), b.evaluate(th)
    assert abs(sa.deviance - sb.deviance) < 1e-9 * abs(sb.deviance)
    np.testing.assert_allclose(sa.factor.logdet_Z(), sb.factor.logdet_Z(), rtol=1e-12)
    np.testing.assert_allclose(sa.beta, sb.beta, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(sa.u, sb.u, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(a.gradient(th), b.gradient(th), rtol=1e-8, atol=1e-8)
    for ca, cb in zip(a.conditional_u_variances(th), b.conditional_u_variances(th)):
        np.testing.assert_allclose(ca, cb, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("ds,f,weighted", [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", False),
    ("sleepstudy", "Reaction ~ 0 + (Days | Subject)", True),
    ("sleepstudy", "Reaction ~ Days + (1 | Subject)", True),
    ("rehab", "incidents ~ treatment * gender + hours + (1 + treatment + gender | rehab)", False),
])
def test_lmm_crossproducts_match_the_row_path(ds, f, weighted, reml, monkeypatch):
    """One-term LMMs are evaluated from per-level cross-products (cost independent of n): the
    deviance, beta, u and gradient must equal the row-based blocked factor's, with prior weights
    and an offset too (p1 = 1, 2 and 3 random-effect columns)."""
    fr = model_frame(f, pyglmm.datasets.load_dataset(ds), binomial=False)
    rs, _, sv = _structure(fr)
    rng = np.random.default_rng(3)
    w = rng.uniform(0.5, 2.0, sv.y.size) if weighted else sv.weights
    off = rng.normal(size=sv.y.size) if weighted else sv.offset
    a, b = _crossprods_and_rows(sv, rs, w, off, reml, monkeypatch, "SingleTermCrossprods")
    for th in (rs.theta_start() * 0.8 + 0.1, rs.theta_start() * 0.3):
        _assert_same_lmm(a, b, th)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("ds,f", [
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),               # crossed, dense S
    ("pastes", "strength ~ 1 + (1 | batch/cask)"),                            # nested
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),                    # two scalar terms
    ("grouseticks", "cHEIGHT ~ YEAR + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"),  # block S
])
def test_lmm_scalar_crossproducts_match_the_row_path(ds, f, reml, monkeypatch):
    """LMMs whose terms are all scalar are evaluated from fixed cross-products (no pass over the
    rows): deviance, beta, u, gradient and conditional variances must equal the row path's,
    with prior weights and an offset too."""
    fr = model_frame(f, pyglmm.datasets.load_dataset(ds), binomial=False)
    rs, _, sv = _structure(fr)
    for w, off in _weights_and_offsets(sv, 4):
        a, b = _crossprods_and_rows(sv, rs, w, off, reml, monkeypatch, "ScalarTermsCrossprods",
                                    dense_max_q=0)          # not the small dense path
        for th in (rs.theta_start() * 0.8 + 0.1, rs.theta_start() * 0.3):
            _assert_same_lmm(a, b, th)
