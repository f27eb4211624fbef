"""The bounded optimiser: restarts only where they can help."""
import numpy as np
import pytest
import scipy.optimize as so

from pyglmm.fit import optimize as O


def _count_searches(monkeypatch):
    """Record each run of the local quasi-Newton search (compiled BFGS or L-BFGS-B)."""
    calls = []
    real = O._local_search

    def counted(*a, **k):
        calls.append("search")
        return real(*a, **k)

    monkeypatch.setattr(O, "_local_search", counted)
    return calls


@pytest.fixture(params=["bfgs", "lbfgsb"])
def driver(request, monkeypatch):
    """Run the test with the compiled bounded BFGS and with scipy's L-BFGS-B."""
    if request.param == "lbfgsb":
        monkeypatch.setattr(O, "QN_MAX_DIM", 0)
    elif O.compiled.optim_kernels() is None:
        pytest.skip("compiled kernels not built")
    else:            # the compiled driver also for the Python objectives of these tests
        monkeypatch.setattr(O, "QN_PYTHON_OBJECTIVES", True)
    return request.param


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
    """Without the private step (another scipy) and without the compiled BFGS (pure-Python
    install), minimize_bounded runs scipy.optimize.minimize."""
    monkeypatch.setattr(O, "_SETULB", [None])
    monkeypatch.setattr(O, "QN_MAX_DIM", 0)
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


def test_no_restart_at_the_gradient_floor_of_a_large_deviance(monkeypatch, driver):
    """A deviance of ~3e6 (a million rows) has an exact gradient that cannot get below ~1e-3 at
    its optimum (measured on a 1M-row crossed lmer): restarting L-BFGS-B there only repeats
    failed line searches, so one run must be all."""
    calls = _count_searches(monkeypatch)
    c = np.array([0.7, 0.5])

    def f(x):
        return 3e6 + 1e3 * float(((x - c) ** 2).sum())

    def g(x):
        return 2e3 * (x - c) + 1e-3 * np.sin(1e9 * x)   # exact up to rounding noise

    res = O.minimize_bounded(f, np.array([1.0, 1.0]), np.zeros(2), grad=g)
    assert calls.count("search") == 1
    np.testing.assert_allclose(res.x, c, atol=1e-5)


def test_restart_when_the_gradient_is_far_from_small(monkeypatch, driver):
    """On a small deviance the same gradient offset is not rounding: restarts still run."""
    calls = _count_searches(monkeypatch)
    c = np.array([0.7, 0.5])

    def f(x):
        return 300.0 + 1e3 * float(((x - c) ** 2).sum())

    def g(x):
        return 2e3 * (x - c) + 1e-3 * np.sin(1e9 * x)

    O.minimize_bounded(f, np.array([1.0, 1.0]), np.zeros(2), grad=g)
    assert calls.count("search") > 1


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


def test_large_lmer_does_not_spin_in_line_searches(driver):
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


def test_lmer_does_not_stop_on_a_spurious_corner_of_the_bounds(driver):
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


def _bfgs():
    qn = O.compiled.optim_kernels()
    if qn is None:
        pytest.skip("compiled kernels not built")
    return qn.bfgs_bounded


def test_bounded_bfgs_reaches_lbfgsbs_optimum_with_an_active_bound():
    """The compiled projected BFGS on Rosenbrock with a bound active at the optimum: scipy's
    optimum, the bound exactly, a converged status, a similar number of calls."""
    f, g, x0, lb = _rosen_bounded()
    x, fx, gx, nfev, nit, status, msg = _bfgs()(lambda z: (f(z), g(z)), x0, lb)
    ref = so.minimize(f, x0, jac=g, method="L-BFGS-B",
                      bounds=[(l if np.isfinite(l) else None, None) for l in lb],
                      options=dict(ftol=1e-13, gtol=1e-7, maxcor=20))
    np.testing.assert_allclose(x, ref.x, rtol=1e-7)
    assert x[2] == 1.5 and gx[2] > 0                  # on its bound, pushing against it
    assert status <= 2 and msg.startswith("CONVERGENCE")
    assert fx <= ref.fun + 1e-12 and nfev <= 2 * ref.nfev


@pytest.mark.parametrize("n", [2, 5, 10])
def test_bounded_bfgs_unconstrained_rosenbrock(n):
    """Without bounds the method is plain BFGS: Rosenbrock's minimum at ones."""
    x, fx, *_ = _bfgs()(lambda z: (float(so.rosen(z)), so.rosen_der(z)), np.zeros(n),
                        np.full(n, -np.inf))
    np.testing.assert_allclose(x, np.ones(n), atol=1e-6)


def test_bounded_bfgs_stops_on_a_variance_at_zero():
    """A quadratic whose minimum lies below the bound: the answer is the bound, exactly."""
    c = np.array([-0.3, 0.4])
    x, fx, gx, nfev, nit, status, msg = _bfgs()(
        lambda z: (float(((z - c) ** 2).sum()), 2 * (z - c)), np.array([1.0, 1.0]), np.zeros(2))
    assert x[0] == 0.0 and x[1] == pytest.approx(0.4, abs=1e-8)
    assert status <= 2


def test_bounded_bfgs_reports_a_non_finite_start_and_backs_off_infinite_values():
    """No finite value at the start is reported (not iterated on); an infinite value along the
    way (a non-positive-definite system) is a failed trial that shortens the step."""
    x, fx, g, nfev, nit, status, msg = _bfgs()(lambda z: (np.inf, np.zeros(1)), np.ones(1),
                                               np.zeros(1))
    assert status == 6 and nfev == 1 and "START" in msg

    def fg(z):                                  # infinite beyond 1.5
        return (float((z[0] - 1.0) ** 2) if z[0] < 1.5 else np.inf), np.array([2 * (z[0] - 1.0)])
    x, fx, *_ = _bfgs()(fg, np.array([0.0]), np.array([-np.inf]))
    assert x[0] == pytest.approx(1.0, abs=1e-7)


def test_bounded_bfgs_floor_rule():
    """Gradient noise of 1e-3 on a deviance of 3e6 is under the rounding floor (1e-8 |f|): the
    search stops as converged after `patience` failed trials, not after maxls of them."""
    c = np.array([0.7, 0.5])

    def fg(z):
        return 3e6 + 1e3 * float(((z - c) ** 2).sum()), 2e3 * (z - c) + 1e-3 * np.sin(1e9 * z)
    x, fx, g, nfev, nit, status, msg = _bfgs()(fg, np.array([1.0, 1.0]), np.zeros(2))
    np.testing.assert_allclose(x, c, atol=1e-5)
    assert status <= 2 and nfev < 40


@pytest.mark.parametrize("name,formula,family", [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    ("rehab", "incidents ~ treatment + gender + hours + (1 + treatment | rehab)", "poisson"),
])
def test_fits_with_bfgs_and_lbfgsb_agree(name, formula, family, monkeypatch):
    """The compiled BFGS and L-BFGS-B reach the same optimum of real fits: logLik to 1e-7, the
    estimates to the optimisers' tolerance (both stop at relative changes of f of 1e-13)."""
    import pyglmm
    from pyglmm.datasets import load_dataset
    _bfgs()
    d = load_dataset(name)

    def fit():
        return pyglmm.lmer(formula, d) if family is None else pyglmm.glmer(formula, d, family=family)
    a = fit()
    monkeypatch.setattr(O, "QN_MAX_DIM", 0)
    b = fit()
    assert a.optinfo.get("opt", a.optinfo.get("stage2")).optimizer.startswith("BFGS, bounded")
    assert b.optinfo.get("opt", b.optinfo.get("stage2")).optimizer.startswith("L-BFGS-B")
    assert a.loglik == pytest.approx(b.loglik, abs=1e-7)
    np.testing.assert_allclose(a.fixef.values, b.fixef.values, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(a.theta.values, b.theta.values, rtol=1e-4, atol=1e-5)
    assert a.converged and b.converged
