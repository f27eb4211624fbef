"""The bounded optimiser: restarts only where they can help."""
import numpy as np
import pytest
import scipy.optimize as so

from pyglmm.fit import optimize as O


def _count_lbfgsb(monkeypatch):
    calls = []
    real = O._lbfgsb

    def counted(*a, **k):
        calls.append("L-BFGS-B")
        return real(*a, **k)

    monkeypatch.setattr(O, "_lbfgsb", counted)
    return calls


def _rosen_bounded():
    lb = np.array([0.0, -np.inf, 1.5])

    def f(x):
        return float(so.rosen(x))

    return f, so.rosen_der, np.array([3.0, 2.0, 2.0]), lb


def test_direct_lbfgsb_driver_matches_scipys():
    """The direct loop over scipy's compiled L-BFGS-B step takes scipy's own path: the same
    iterates, evaluations and optimum as scipy.optimize.minimize, bounds included."""
    assert O._setulb() is not None          # the private step answers correctly on this scipy
    f, g, x0, lb = _rosen_bounded()
    opts = dict(maxiter=2000, ftol=1e-13, gtol=1e-7, maxcor=20)
    ours = O._lbfgsb_direct(f, g, x0, lb, **opts)
    ref = so.minimize(f, x0, jac=g, method="L-BFGS-B",
                      bounds=[(l if np.isfinite(l) else None, None) for l in lb], options=opts)
    np.testing.assert_allclose(ours.x, ref.x, rtol=1e-12)
    assert ours.nfev == ref.nfev and ours.nit == ref.nit
    assert ours.success and ours.message == ref.message
    assert ours.x[2] == 1.5                 # the active bound


def test_public_driver_when_the_private_step_is_missing(monkeypatch):
    """Without the private step (another scipy), minimize_bounded runs scipy.optimize.minimize."""
    monkeypatch.setattr(O, "_SETULB", [None])
    used = []
    real = so.minimize
    monkeypatch.setattr(O.so, "minimize", lambda *a, **k: used.append(1) or real(*a, **k))
    f, g, x0, lb = _rosen_bounded()
    res = O.minimize_bounded(f, x0, lb, grad=g)
    assert used
    ref = real(f, x0, jac=g, method="L-BFGS-B", bounds=[(0, None), (None, None), (1.5, None)],
               options=dict(ftol=1e-15, gtol=1e-10))
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)
    assert res.x[2] == 1.5


def test_no_restart_at_the_gradient_floor_of_a_large_deviance(monkeypatch):
    """A deviance of ~3e6 (a million rows) has an exact gradient that cannot get below ~1e-3 at
    its optimum (measured on a 1M-row crossed lmer): restarting L-BFGS-B there only repeats
    failed line searches, so one run must be all."""
    calls = _count_lbfgsb(monkeypatch)
    c = np.array([0.7, 0.5])

    def f(x):
        return 3e6 + 1e3 * float(((x - c) ** 2).sum())

    def g(x):
        return 2e3 * (x - c) + 1e-3 * np.sin(1e9 * x)   # exact up to rounding noise

    res = O.minimize_bounded(f, np.array([1.0, 1.0]), np.zeros(2), grad=g)
    assert calls.count("L-BFGS-B") == 1
    np.testing.assert_allclose(res.x, c, atol=1e-5)


def test_restart_when_the_gradient_is_far_from_small(monkeypatch):
    """On a small deviance the same gradient offset is not rounding: restarts still run."""
    calls = _count_lbfgsb(monkeypatch)
    c = np.array([0.7, 0.5])

    def f(x):
        return 300.0 + 1e3 * float(((x - c) ** 2).sum())

    def g(x):
        return 2e3 * (x - c) + 1e-3 * np.sin(1e9 * x)

    O.minimize_bounded(f, np.array([1.0, 1.0]), np.zeros(2), grad=g)
    assert calls.count("L-BFGS-B") > 1


def test_stall_guard_stops_only_at_the_rounding_floor():
    """The guard raises after `patience` evaluations that do not lower f, and only once the best
    point's projected gradient is below the floor of its deviance."""
    lb = np.zeros(2)
    guard = O._StallGuard(lb, patience=3)
    x0 = np.array([0.5, 0.2])
    guard.on_f(x0, 3e6)
    guard.on_g(x0, np.array([5.0, 1.0]))               # far above the floor: keep searching
    for k in range(5):
        guard.on_f(x0 + 1e-9 * (k + 1), 3e6)
    x1 = np.array([0.5, 0.3])
    guard.on_f(x1, 2.9e6)                                # a real improvement
    guard.on_g(x1, np.array([1e-3, -2e-3]))             # 2e-3 < 1e-8 * 2.9e6: rounding
    guard.on_f(x1 + 1e-9, 2.9e6)
    guard.on_f(x1 - 1e-9, 2.9e6 + 1e-9)
    with pytest.raises(O._Stalled):
        guard.on_f(x1 + 2e-9, 2.9e6)


def test_large_lmer_does_not_spin_in_line_searches():
    """A 300,000-row lmer (1 + x | g): its deviance (9e5) stalls with gradients of 2e-3. Before
    the guard and the floor L-BFGS-B spent 59 evaluations there (30 on failed line searches and
    restarts); now about 30, at the same optimum."""
    import pandas as pd
    import pyglmm
    rng = np.random.default_rng(5)
    n, groups = 300_000, 30_000
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    u = rng.multivariate_normal([0, 0], [[0.64, 0.072], [0.072, 0.09]], size=groups)
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=n)
    m = pyglmm.lmer("y ~ x + (1 + x | g)", pd.DataFrame({"y": y, "x": x, "g": g}))
    assert m.optinfo["opt"].feval <= 40
    assert m.converged
    grad = m.optinfo["gradient"]
    assert np.max(np.abs(grad)) < 0.05                  # at the optimum, up to rounding


def test_lmer_does_not_stop_on_a_spurious_corner_of_the_bounds():
    """Seven sleepstudy responses (bootstrap replicates) on which L-BFGS-B from lme4's start
    stopped at theta_1 = theta_3 = 0 (a random slope alone, 1-5 REML units worse); lme4 finds
    the interior optimum (fixture from tests/reference/make_boundary_fixtures.R), and so must
    lmer, from the default start and in a refit."""
    import json
    from pathlib import Path

    import pandas as pd
    import pyglmm
    ref = Path(__file__).parent / "reference" / "boundary"
    d = pd.read_csv(ref / "sleepstudy_boundary_reps.csv")
    d["Subject"] = d["Subject"].astype(str)
    fx = json.loads((ref / "sleepstudy_boundary_reps.json").read_text())
    first = None
    for col, r in fx.items():
        m = pyglmm.lmer(f"{col} ~ Days + (Days | Subject)", d)
        assert not m.singular and not r["singular"]
        assert m.loglik > r["REML"] - 1e-6, col
        np.testing.assert_allclose(m.theta.values, r["theta"], atol=2e-4)
        first = first or m
        re = first.refit(d[col])              # warm start from another replicate's estimates
        assert re.loglik > r["REML"] - 1e-6, col
