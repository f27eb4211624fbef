"""The compiled one-term kernels against the numpy code paths they replace (same algorithm, so
the same modes, deviances, gradients and fits to rounding)."""
import numpy as np
import pandas as pd
import pytest

import pyglmm
from pyglmm.design import model_frame
from pyglmm.families import make_family
from pyglmm.fit import compiled
from pyglmm.fit.gradient import laplace_gradient
from pyglmm.fit.pirls import GlmmProblem, PirlsFailure
from pyglmm.models import _structure

pytestmark = pytest.mark.skipif(not compiled.AVAILABLE, reason="compiled kernels not built")


def _weighted_binomial():
    rng = np.random.default_rng(3)
    n, g = 400, 40
    grp = rng.integers(0, g, n)
    x = rng.normal(size=n)
    size = rng.integers(1, 12, n)
    eta = -0.3 + 0.8 * x + rng.normal(0, 0.9, g)[grp] + rng.normal(0, 0.5, g)[grp] * x
    succ = rng.binomial(size, 1 / (1 + np.exp(-eta)))
    return pd.DataFrame({"p": succ / size, "n": size, "x": x, "g": grp.astype(str)})


def _offset_poisson():
    rng = np.random.default_rng(4)
    n, g = 300, 25
    grp = rng.integers(0, g, n)
    t = rng.uniform(0.5, 3, n)
    x = rng.normal(size=n)
    y = rng.poisson(t * np.exp(0.2 + 0.4 * x + rng.normal(0, 0.6, g)[grp]))
    return pd.DataFrame({"y": y, "x": x, "t": t, "g": grp})


CASES = [
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", None),
    ("epil", "y ~ lbase*trt + lage + V4 + (1 | subject)", "poisson", None),
    ("rehab", "incidents ~ treatment + gender + hours + (1 + treatment | rehab)", "poisson", None),
    (_weighted_binomial, "p ~ x + (1 + x | g)", "binomial", "n"),
    (_offset_poisson, "y ~ x + offset(log(t)) + (1 | g)", "poisson", None),
]


def _data(src):
    return pyglmm.datasets.load_dataset(src) if isinstance(src, str) else src()


def _problem(src, f, fam, weights):
    d = _data(src)
    fr = model_frame(f, d, weights=weights, binomial=fam == "binomial")
    rs, _, _ = _structure(fr)
    return fr, rs, GlmmProblem(fr.y, fr.X, rs, fr.weights, fr.offset, make_family(fam))


@pytest.fixture
def pure(monkeypatch):
    """Run the body with the numpy paths."""
    def switch(on: bool):
        monkeypatch.setattr(compiled, "ENABLED", not on)
    return switch


@pytest.mark.parametrize("src,f,fam,wt", CASES)
def test_pirls_and_gradient_match_numpy(src, f, fam, wt, pure):
    fr, rs, pr = _problem(src, f, fam, wt)
    rng = np.random.default_rng(1)
    th = np.abs(rs.theta_start() * 0.8 + 0.1 * rng.normal(size=rs.ntheta))
    be = np.linalg.lstsq(fr.X, np.log(fr.y + 0.5) if fam == "poisson" else fr.y - 0.5, rcond=None)[0] * 0.5
    out = {}
    for on in (False, True):
        pure(on)
        pr._u_warm[:] = 0.0
        pr._theta_warm = None
        r = pr.pirls(th, be)
        g = laplace_gradient(rs, fr.X, fr.y, fr.weights, pr.family, th, r.u, r.eta)
        out[on] = (r, g)
    (rc, gc), (rp, gp) = out[False], out[True]
    assert rc._factor is None                       # the compiled PIRLS builds no blocked factor
    np.testing.assert_allclose(rc.u, rp.u, rtol=1e-9, atol=1e-10)
    assert rc.deviance == pytest.approx(rp.deviance, rel=1e-12)
    assert rc.loglik_cond == pytest.approx(rp.loglik_cond, rel=1e-12)
    np.testing.assert_allclose(gc, gp, rtol=1e-8, atol=1e-8)
    # the factor built on demand is the numpy path's
    assert rc.factor.logdet_Z() == pytest.approx(rp.factor.logdet_Z(), rel=1e-10)


@pytest.mark.parametrize("src,f,fam,wt", CASES)
def test_fits_match_numpy(src, f, fam, wt, pure):
    d = _data(src)
    fits = {}
    for on in (False, True):
        pure(on)
        fits[on] = pyglmm.glmer(f, d, family=fam, weights=wt)
    c, p = fits[False], fits[True]
    assert float(c.loglik) == pytest.approx(float(p.loglik), abs=1e-7)
    np.testing.assert_allclose(np.asarray(c.fixef, float), np.asarray(p.fixef, float), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c.theta), np.asarray(p.theta), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.diag(np.asarray(c.vcov, float))), np.sqrt(np.diag(np.asarray(p.vcov, float))), rtol=1e-4)


def test_warm_start_falls_back_to_zero_modes(pure):
    """After a long step in theta the previous modes are a poor start: both paths restart from
    u = 0 when that is better, and land on the same mode."""
    fr, rs, pr = _problem(*CASES[0])
    be = np.array([-1.4, -1.0, -1.1, -1.6])
    res = {}
    for on in (False, True):
        pure(on)
        pr._u_warm[:] = 0.0
        pr._theta_warm = None
        pr.pirls(np.array([3.0]), be)            # large modes at a large theta
        res[on] = pr.pirls(np.array([0.05]), be)
    np.testing.assert_allclose(res[False].u, res[True].u, rtol=1e-9, atol=1e-10)


def test_overflow_and_far_start(pure):
    """An overflowing linear predictor raises PirlsFailure on both paths (the optimiser treats it
    as +inf); a start far from the mode takes the same step-halving path to the same mode."""
    fr, rs, pr = _problem(*CASES[1])
    for b0, want in ((800.0, PirlsFailure), (50.0, None)):
        be = np.zeros(fr.X.shape[1])
        be[0] = b0
        res = {}
        for on in (False, True):
            pure(on)
            pr._u_warm[:] = 0.0
            pr._theta_warm = None
            if want is not None:
                with np.errstate(all="ignore"), pytest.raises(want, match="diverged"):
                    pr.pirls(np.array([1.0]), be)
            else:
                res[on] = pr.pirls(np.array([1.0]), be)
        if res:
            assert res[False].iterations == res[True].iterations
            assert res[False].deviance == pytest.approx(res[True].deviance, rel=1e-12)
