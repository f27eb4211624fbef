"""The bounded optimiser: restarts only where they can help."""
import numpy as np
import scipy.optimize as so

from pyglmm.fit import optimize as O


def _count_lbfgsb(monkeypatch):
    calls = []
    real = so.minimize

    def counted(*a, **k):
        calls.append(k.get("method"))
        return real(*a, **k)

    monkeypatch.setattr(O.so, "minimize", counted)
    return calls


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
