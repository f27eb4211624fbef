"""Parametric bootstrap intervals (lme4's bootMer / confint(method = "boot"))."""
import numpy as np
import pandas as pd
import pytest

import pyglmm


def test_boot_is_reproducible_and_worker_independent():
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     pyglmm.datasets.load_cbpp(), family="binomial")
    a = m.confint(method="boot", nsim=12, seed=5, progress=False)
    b = m.confint(method="boot", nsim=12, seed=5, workers=2, progress=False)
    pd.testing.assert_frame_equal(a, b)
    assert list(a.index) == [".sig01", "(Intercept)", "period2", "period3", "period4"]
    assert np.all(a.iloc[:, 0] < a.iloc[:, 1])


def test_bootstrap_coverage_on_simulated_data():
    """Percentile intervals for the fixed slope cover the true value at about the nominal rate."""
    rng = np.random.default_rng(11)
    n_rep, nsim, covered = 30, 40, 0
    g = np.repeat(np.arange(12), 6)
    for r in range(n_rep):
        x = rng.normal(size=g.size)
        y = 1.0 + 0.5 * x + rng.normal(0, 0.7, 12)[g] + rng.normal(0, 1.0, g.size)
        m = pyglmm.lmer("y ~ x + (1 | g)", pd.DataFrame({"y": y, "x": x, "g": g}), REML=False)
        ci = m.confint(parm="x", method="boot", nsim=nsim, seed=r, progress=False)
        covered += ci.iloc[0, 0] <= 0.5 <= ci.iloc[0, 1]
    # nominal 0.95; with 30 replicates a working bootstrap lands in [0.8, 1] with high probability,
    # while intervals that ignore the estimation noise (e.g. of width ~0) would fail
    assert 0.8 <= covered / n_rep <= 1.0


def test_bootstrap_refits_skip_the_hessian_not_the_estimates():
    """The bootstrap keeps only estimates, so its refits skip the Hessian (k gradient evaluations
    each); the estimates equal a full refit's."""
    from pyglmm.models import refit
    d = pyglmm.datasets.load_rehab()
    m = pyglmm.glmer("incidents ~ treatment + gender + hours + (1 + treatment | rehab)", d,
                     family="poisson")
    y = m.simulate(1, seed=5)[:, 0]
    full, lean = m.refit(y), refit(m, y, hessian=False)
    assert full.optinfo["hessian"] is not None and lean.optinfo["hessian"] is None
    np.testing.assert_allclose(lean.fixef.values, full.fixef.values, rtol=1e-9)
    np.testing.assert_allclose(lean.theta.values, full.theta.values, rtol=1e-9)
    s = pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy())
    ys = s.simulate(1, seed=5)[:, 0]
    np.testing.assert_allclose(refit(s, ys, hessian=False).theta.values, s.refit(ys).theta.values,
                               rtol=1e-9)
