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
from pyglmm.prepare import numerics_view as _structure

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
    """Run the body with the numpy paths. Both paths then optimise with L-BFGS-B, so that fits
    compare the numerics (the compiled bounded BFGS is compared with it in test_optimize)."""
    from pyglmm.fit import optimize
    monkeypatch.setattr(optimize, "QN_MAX_DIM", 0)

    def switch(on: bool):
        monkeypatch.setattr(compiled, "ENABLED", not on)
    return switch


def _both(pure, make):
    """(compiled, numpy) results of make() on the two paths."""
    out = {}
    for on in (False, True):
        pure(on)
        out[on] = make()
    return out[False], out[True]


def _modes_both(pure, pr, fr, rs, th, be, phi=1.0, gradient=True):
    """PIRLS (from u = 0) and the Laplace gradient at (th, be) on both paths."""
    def make():
        pr._u_warm[:] = 0.0
        pr._theta_warm = None
        r = pr.pirls(th, be, phi)
        g = laplace_gradient(rs, fr.X, fr.y, fr.weights, pr.family, th, r.u, r.eta, phi=phi,
                             factor=r._factor) if gradient else None
        return r, g
    return _both(pure, make)


def _assert_same_fit(c, p, ll_abs=1e-6, theta_rtol=1e-4, se_rtol=1e-3):
    assert float(c.loglik) == pytest.approx(float(p.loglik), abs=ll_abs)
    np.testing.assert_allclose(np.asarray(c.fixef, float), np.asarray(p.fixef, float), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(c.theta), np.asarray(p.theta), rtol=theta_rtol, atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.diag(np.asarray(c.vcov, float))),
                               np.sqrt(np.diag(np.asarray(p.vcov, float))), rtol=se_rtol)


@pytest.mark.parametrize("src,f,fam,wt", CASES + [
    ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
     "poisson", None),
])
def test_laplace_objective_matches_the_numpy_path(src, f, fam, wt, pure):
    """The compiled stage-2 objective (`_glmm.LaplaceObjective`, in the optimiser's coordinates
    theta = sc z, beta = beta1 + C z) gives the Laplace deviance and gradient of the numpy
    PIRLS and gradient, at points in any order (its output arrays are reused between calls) and
    +inf with a zero gradient where PIRLS fails."""
    from pyglmm.fit.glmm import _KernelLaplace
    fr, rs, pr = _problem(src, f, fam, wt)
    nth, p = rs.ntheta, fr.X.shape[1]
    rng = np.random.default_rng(7)
    sc = rng.uniform(0.5, 2.0, nth)
    beta1 = rng.normal(0, 0.1, p)
    A = rng.normal(0, 0.1, (p, p))
    C = np.eye(p) + A @ A.T
    obj = _KernelLaplace.make(pr, pr.family, nth, p, sc, beta1, C)
    assert obj is not None
    lb = rs.lower_bounds()
    zs = []
    for _ in range(3):
        z = np.concatenate([rs.theta_start() * 0.7 / sc + 0.05 * rng.normal(size=nth),
                            0.3 * rng.normal(size=p)])
        z[:nth] = np.where(lb == 0, np.abs(z[:nth]), z[:nth])
        zs.append(z)
    for z in zs + zs[::-1] + [zs[1]]:
        th, be = sc * z[:nth], beta1 + C @ z[nth:]
        dev, g = obj.deviance(z), obj.gradient(z)
        pure(True)
        r = pr.pirls(th, be)
        gx = laplace_gradient(rs, fr.X, fr.y, fr.weights, pr.family, th, r.u, r.eta,
                              factor=r._factor)
        pure(False)
        assert dev == pytest.approx(r.deviance, rel=1e-10)
        np.testing.assert_allclose(g, np.concatenate([sc * gx[:nth], C.T @ gx[nth:]]),
                                   rtol=1e-6, atol=1e-6 * max(1.0, np.abs(gx).max()))
        fz, gz = obj(z)                      # the compiled optimiser's (C-level) call
        assert fz == dev
        np.testing.assert_array_equal(gz, g)
    if fam == "poisson":                                     # exp(eta) overflows: PIRLS fails
        far = np.concatenate([zs[0][:nth], np.linalg.solve(C, np.full(p, 800.0) - beta1)])
        with np.errstate(over="ignore", invalid="ignore"):
            assert obj.deviance(far) == np.inf
            assert not np.any(obj.gradient(far))
            assert obj(far)[0] == np.inf
            assert np.isfinite(obj.deviance(zs[0]))             # and recovers from it


@pytest.mark.parametrize("src,f,fam,wt", CASES)
def test_pirls_and_gradient_match_numpy(src, f, fam, wt, pure):
    fr, rs, pr = _problem(src, f, fam, wt)
    rng = np.random.default_rng(1)
    th = np.abs(rs.theta_start() * 0.8 + 0.1 * rng.normal(size=rs.ntheta))
    be = np.linalg.lstsq(fr.X, np.log(fr.y + 0.5) if fam == "poisson" else fr.y - 0.5, rcond=None)[0] * 0.5
    (rc, gc), (rp, gp) = _modes_both(pure, pr, fr, rs, th, be)
    assert rc._factor is None                       # the compiled PIRLS builds no blocked factor
    np.testing.assert_allclose(rc.u, rp.u, rtol=1e-9, atol=1e-10)
    assert rc.deviance == pytest.approx(rp.deviance, rel=1e-12)
    assert rc.loglik_cond == pytest.approx(rp.loglik_cond, rel=1e-12)
    np.testing.assert_allclose(gc, gp, rtol=1e-8, atol=1e-8)
    # the factor built on demand is the numpy path's
    assert rc.factor.logdet_Z() == pytest.approx(rp.factor.logdet_Z(), rel=1e-10)


@pytest.mark.parametrize("src,f,fam,wt", CASES)
def test_joint_pirls_matches_numpy(src, f, fam, wt, pure):
    """The joint (u, beta) PIRLS of the start and of nAGQ = 0: the same modes, beta, deviance
    and R_X (the preconditioner of stage 2) as the numpy path's blocked factor."""
    fr, rs, pr = _problem(src, f, fam, wt)
    th = rs.theta_start()
    out = {}
    for on in (False, True):
        pure(on)
        pr._u_warm[:] = 0.0
        pr._theta_warm = None
        out[on] = pr.pirls(th, np.zeros(fr.X.shape[1]), joint=True)
    c, p = out[False], out[True]
    np.testing.assert_allclose(c.beta, p.beta, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(c.u, p.u, rtol=1e-8, atol=1e-9)
    assert c.deviance == pytest.approx(p.deviance, rel=1e-11)
    np.testing.assert_allclose(c.RX(), p.factor.RX(), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(c.factor.RX(), p.factor.RX(), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("src,f,fam,wt", CASES)
def test_joint_gradient_matches_numpy(src, f, fam, wt, pure):
    """The theta gradient of the nAGQ = 0 objective (beta at its PIRLS optimum), whose implicit
    derivative runs through the joint (u, beta) system."""
    fr, rs, pr = _problem(src, f, fam, wt)
    th = rs.theta_start() * 0.7
    out = {}
    for on in (False, True):
        pure(on)
        pr._u_warm[:] = 0.0
        pr._theta_warm = None
        r = pr.pirls(th, np.zeros(fr.X.shape[1]), joint=True)
        out[on] = laplace_gradient(rs, fr.X, fr.y, fr.weights, pr.family, th, r.u, r.eta,
                                   joint=True, factor=r._factor)
    assert out[False].shape == (rs.ntheta,)
    np.testing.assert_allclose(out[False], out[True], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("src,f,fam,wt", CASES[:3])
def test_nagq0_fits_match_numpy(src, f, fam, wt, pure):
    d = _data(src)
    c, p = _both(pure, lambda: pyglmm.glmer(f, d, family=fam, weights=wt, nAGQ=0))
    assert float(c.loglik) == pytest.approx(float(p.loglik), abs=1e-7)
    np.testing.assert_allclose(np.asarray(c.fixef, float), np.asarray(p.fixef, float), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("src,f,fam,wt", CASES)
def test_fits_match_numpy(src, f, fam, wt, pure):
    d = _data(src)
    c, p = _both(pure, lambda: pyglmm.glmer(f, d, family=fam, weights=wt))
    _assert_same_fit(c, p, ll_abs=1e-7, theta_rtol=1e-5, se_rtol=1e-4)


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


def _three_column_lmm():
    rng = np.random.default_rng(5)
    n, g = 600, 30
    grp = rng.integers(0, g, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    b = rng.normal(size=(g, 3)) * [1.0, 0.5, 0.3]
    y = 1 + 0.5 * x1 - x2 + b[grp, 0] + b[grp, 1] * x1 + b[grp, 2] * x2 + rng.normal(0, 0.7, n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": grp, "w": rng.uniform(0.5, 2, n)})


LMM_CASES = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    (_three_column_lmm, "y ~ x1 + x2 + (1 + x1 + x2 | g)", "w"),
    (_three_column_lmm, "y ~ 0 + (1 | g)", None),
    (_three_column_lmm, "y ~ x1 * x2 + (1 | g)", "w"),
]


@pytest.mark.parametrize("src,f,wt", LMM_CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_single_term_lmm_matches_numpy(src, f, wt, reml, pure):
    from pyglmm.fit.lmm import LmmProblem
    d = _data(src)
    fr = model_frame(f, d, weights=wt)
    rs, _, _ = _structure(fr)
    rng = np.random.default_rng(2)
    th = rs.theta_start() * 0.6 + 0.05 * rng.normal(size=rs.ntheta)
    th = np.where(rs.lower_bounds() == 0, np.abs(th), th)
    out = {}
    for on in (False, True):
        pure(on)
        prob = LmmProblem(fr.y, fr.X, rs, fr.weights, fr.offset, REML=reml)
        st = prob.evaluate(th)
        out[on] = (st, prob.gradient(th), prob.conditional_u_variances(th)[0])
    (sc, gc, vc), (sp_, gp, vp) = out[False], out[True]
    assert sc.deviance == pytest.approx(sp_.deviance, rel=1e-12)
    np.testing.assert_allclose(sc.beta, sp_.beta, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sc.u, sp_.u, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(sc.RX, sp_.RX, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(gc, gp, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(vc, vp, rtol=1e-10, atol=1e-14)
    # and whole fits agree
    fits = {}
    for on in (False, True):
        pure(on)
        fits[on] = pyglmm.lmer(f, d, REML=reml, weights=wt)
    assert float(fits[False].loglik) == pytest.approx(float(fits[True].loglik), abs=1e-8)
    np.testing.assert_allclose(np.asarray(fits[False].theta), np.asarray(fits[True].theta), rtol=1e-5, atol=1e-6)


def test_single_term_lmm_not_positive_definite(pure):
    """A zero fixed-effects column makes S singular: both paths raise the same LinAlgError, which the
    deviance turns into +inf."""
    from pyglmm.fit.lmm import LmmProblem
    d = _three_column_lmm()
    fr = model_frame("y ~ x1 + (1 | g)", d)
    rs, _, _ = _structure(fr)
    X = np.column_stack([fr.X, np.zeros(len(fr.y))])   # a zero column
    for on in (False, True):
        pure(on)
        prob = LmmProblem(fr.y, X, rs, fr.weights, fr.offset, REML=True)
        with pytest.raises(np.linalg.LinAlgError, match="fixed-effects system"):
            prob.evaluate(np.array([0.8]))
        assert prob.deviance(np.array([0.8])) == np.inf


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("src,f,wt", LMM_CASES + [
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    ("pastes", "strength ~ 1 + (1 | batch/cask)", None),
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)", None),
    (lambda: _small_crossed_slopes(), "y ~ x + (1 + x | a) + (1 | b)", None),
])
def test_lmm_objective_matches_the_state_path(src, f, wt, reml):
    """The optimiser's fused objective (one compiled call, kept working arrays: `LmmObjective`)
    gives the deviance and gradient of `evaluate` / `gradient`, at points in any order (no
    stale arrays) and with +inf where the system is not positive definite."""
    from pyglmm.fit.lmm import LmmProblem
    fr = model_frame(f, _data(src), weights=wt)
    rs, _, sv = _structure(fr)
    prob = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=reml)
    dev, grad = prob.objective()
    assert dev != prob.deviance                      # the compiled objective is in use
    rng = np.random.default_rng(4)
    lb = rs.lower_bounds()
    pts = [np.where(lb == 0, np.abs(t), t) for t in
           (rs.theta_start() * 0.6 + 0.1 * rng.normal(size=rs.ntheta) for _ in range(4))]
    pts.append(np.where(lb == 0, 0.0, 0.3))          # on the boundary
    from pyglmm.fit._optim import Objective
    kobj = prob.objective(fused=True)[2]               # what the compiled optimiser calls in C
    assert isinstance(kobj, Objective)
    for th in pts + pts[::-1]:
        assert dev(th) == pytest.approx(prob.deviance(th), rel=1e-12)
        np.testing.assert_allclose(grad(th), prob.gradient(th), rtol=1e-9, atol=1e-9)
        f, g = kobj(th)
        assert f == pytest.approx(prob.deviance(th), rel=1e-12)
        np.testing.assert_allclose(g, prob.gradient(th), rtol=1e-9, atol=1e-9)
    X0 = np.column_stack([sv.X, np.zeros(len(sv.y))])  # a zero column: S singular
    bad = LmmProblem(sv.y, X0, rs, sv.weights, sv.offset, REML=reml)
    dev0, grad0 = bad.objective()
    assert dev0(pts[0]) == np.inf and not np.any(grad0(pts[0]))
    f0, g0 = bad.objective(fused=True)[2](pts[0])
    assert f0 == np.inf and not np.any(g0)


def test_pattern_objective_factors_on_the_sparsity_pattern():
    """The dense block of a nested design is factored on its pattern: (1 | batch/cask) has 30
    cask levels (a diagonal block), 3 casks per batch and a full 10 x 10 Schur block, so the
    cask levels (a diagonal block) and 3 casks in each of 10 batches; eliminating a cask links
    only its own batch, so the batch block stays diagonal (no fill): the factor's lower triangle
    holds 40 + 30 entries, not the 820 of a dense 40 x 40. Crossed (1 | plate) + (1 | sample)
    (every plate meets every sample) fills its 6 x 6 block: 30 + 24 * 6 + 15."""
    from pyglmm.fit.lmm import LmmProblem
    fr = model_frame("strength ~ 1 + (1 | batch/cask)", _data("pastes"))
    rs, _, sv = _structure(fr)
    prob = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=True)
    assert prob._xp.kernel_objective().pattern_size() == 40 + 30
    fr = model_frame("diameter ~ 1 + (1 | plate) + (1 | sample)", _data("penicillin"))
    rs, _, sv = _structure(fr)
    prob = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=True)
    assert prob._xp.kernel_objective().pattern_size() == 30 + 24 * 6 + 15


def _small_crossed_slopes():
    rng = np.random.default_rng(6)
    a = np.repeat(np.arange(15), 12)
    b = np.tile(np.arange(10), 18)
    x = rng.normal(size=a.size)
    y = (2 + 0.5 * x + rng.normal(size=15)[a] + rng.normal(0, 0.4, 15)[a] * x
         + rng.normal(0, 0.7, 10)[b] + rng.normal(0, 0.5, a.size))
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b})


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("src,f", [
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    (_small_crossed_slopes, "y ~ x + (1 + x | a) + (1 | b)"),       # a vector term and a scalar one
])
def test_small_dense_lmm_matches_the_row_path(src, f, reml, monkeypatch):
    """Small LMMs (q <= DENSE_MAX_Q) are one dense block for the compiled kernel: deviance,
    beta, u, R_X, gradient and conditional variances equal the row-based blocked factor's,
    with prior weights and an offset too."""
    from test_gradient import _assert_same_lmm, _crossprods_and_rows, _weights_and_offsets
    fr = model_frame(f, _data(src))
    rs, _, sv = _structure(fr)
    for w, off in _weights_and_offsets(sv, 8):
        a, b = _crossprods_and_rows(sv, rs, w, off, reml, monkeypatch, "DenseCrossprods")
        lb = rs.lower_bounds()
        for th in (rs.theta_start() * 0.8 + 0.1, rs.theta_start() * 0.3,
                   np.where(lb == 0, 0.0, 0.2)):               # a boundary point: variances at 0
            _assert_same_lmm(a, b, th)
            np.testing.assert_allclose(a.evaluate(th).RX, b.evaluate(th).RX, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("src,f,fam,wt", CASES)
def test_glm_start_matches_glm_fit(src, f, fam, wt, pure):
    """The start of beta (the GLM without random effects): Newton with step halving in the
    compiled joint PIRLS at Lambda = 0 reaches glm.fit's IRLS estimate."""
    from pyglmm.fit.glmm import glm_start
    fr, rs, pr = _problem(src, f, fam, wt)
    got = {}
    for on in (False, True):
        pure(on)
        got[on] = glm_start(pr)
    np.testing.assert_allclose(got[False], got[True], rtol=1e-9, atol=1e-10)


# ---------------------------------------------------------------- several random-effects terms

def _crossed_many_shared():
    """256 subjects x 6 items, every pair once: two items share 256 subjects, a count that
    wrapped to 0 in an int8 pattern sum and lost entries of the Schur pattern."""
    rng = np.random.default_rng(9)
    g = np.repeat(np.arange(256), 6)
    h = np.tile(np.arange(6), 256)
    x = rng.normal(size=g.size)
    eta = -0.2 + 0.5 * x + rng.normal(0, 1.0, 256)[g] + rng.normal(0, 0.6, 6)[h]
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": g, "h": h})


def _nested_poisson():
    rng = np.random.default_rng(10)
    a = np.repeat(np.arange(12), 40)
    b = np.tile(np.repeat(np.arange(5), 8), 12)
    x = rng.normal(size=a.size)
    eta = 0.5 + 0.3 * x + rng.normal(0, 0.5, 12)[a] + rng.normal(0, 0.4, 60)[a * 5 + b]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "a": a, "b": b})


def _crossed_rest_slopes():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(80), 10)
    h = np.tile(np.arange(10), 80)
    x = rng.normal(size=g.size)
    t = rng.uniform(0.5, 2.0, g.size)
    eta = (0.3 + 0.4 * x + rng.normal(0, 0.5, 80)[g] + rng.normal(0, 0.5, 10)[h]
           + rng.normal(0, 0.3, 10)[h] * x)
    return pd.DataFrame({"y": rng.poisson(t * np.exp(eta)), "x": x, "g": g, "h": h, "t": t})


MULTI_CASES = [
    ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson", None),
    (_crossed_many_shared, "y ~ x + (1 | g) + (1 | h)", "binomial", None),
    (_nested_poisson, "y ~ x + (1 | a/b)", "poisson", None),
    (_crossed_rest_slopes, "y ~ x + offset(log(t)) + (1 | g) + (1 + x | h)", "poisson", None),
    (_weighted_binomial, "p ~ x + (1 | g) + (1 | n)", "binomial", "n"),
]


@pytest.mark.parametrize("src,f,fam,wt", MULTI_CASES)
def test_multi_term_pirls_and_gradient_match_numpy(src, f, fam, wt, pure):
    fr, rs, pr = _problem(src, f, fam, wt)
    rng = np.random.default_rng(1)
    th = rs.theta_start() * 0.7 + 0.1 * np.abs(rng.normal(size=rs.ntheta))
    be = np.linalg.lstsq(fr.X, np.log(fr.y + 0.5) if fam == "poisson" else fr.y - 0.5, rcond=None)[0] * 0.5
    (rc, gc), (rp, gp) = _modes_both(pure, pr, fr, rs, th, be)
    assert rc._factor is None and rp._factor is not None
    assert rc.iterations == rp.iterations
    np.testing.assert_allclose(rc.u, rp.u, rtol=1e-8, atol=1e-10)
    assert rc.deviance == pytest.approx(rp.deviance, rel=1e-12)
    np.testing.assert_allclose(gc, gp, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("src,f,fam,wt", MULTI_CASES)
def test_multi_term_fits_match_numpy(src, f, fam, wt, pure):
    d = _data(src)
    _assert_same_fit(*_both(pure, lambda: pyglmm.glmer(f, d, family=fam, weights=wt)))


def test_schur_pattern_has_every_entry():
    """The symbolic pattern of chol(S) covers S's nonzeros: with 256 shared subjects every pair
    of the 6 items is coupled, so the pattern is the full lower triangle."""
    from pyglmm.linalg.kernel_pattern import kernel_pattern
    fr, rs, pr = _problem(_crossed_many_shared, "y ~ x + (1 | g) + (1 | h)", "binomial", None)
    pat = kernel_pattern(rs)
    assert pat.qr == 6 and pat.nzi.size == 15
    assert np.array_equal(np.diff(pat.nzp), [5, 4, 3, 2, 1, 0])


@pytest.mark.parametrize("case,limit", [(CASES[0], "GLMM_MAX_ROWS"),
                                        (MULTI_CASES[0], "GLMM_MULTI_MAX_ROWS")])
def test_long_data_take_the_numpy_path(case, limit, monkeypatch):
    """Above the row limits (one term; several terms) the numpy path's vectorised passes are
    faster: no kernel runs."""
    fr, rs, pr = _problem(*case)
    assert pr._kernel_code() is not None
    monkeypatch.setattr(compiled, limit, 10)
    assert pr._kernel_code() is None
    r = pr.pirls(rs.theta_start(), np.zeros(fr.X.shape[1]))
    assert r._factor is not None


def test_many_levels_take_the_numpy_lmm_path(monkeypatch):
    """Above LMM_MAX_LEVELS levels numpy's levels-last vector code is faster than the kernel's
    per-level loops: the numpy path runs, with the same deviance."""
    from pyglmm.fit.lmm import LmmProblem
    fr = model_frame("Reaction ~ Days + (Days | Subject)", _data("sleepstudy"))
    rs, _, sv = _structure(fr)
    th = np.array([0.9, 0.02, 0.2])
    a = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=True)
    assert a._xp.solve(th)[-1] is not None              # the kernel's gradient pieces
    monkeypatch.setattr(compiled, "LMM_MAX_LEVELS", 10)
    b = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=True)
    assert b._xp.solve(th)[-1] is None
    assert a.deviance(th) == pytest.approx(b.deviance(th), rel=1e-12)
    # the vector code gets contiguous levels-last blocks (numpy's products over strided views
    # of the compiled set-up's levels-first arrays were 7x slower on a million rows)
    assert all(x.flags.c_contiguous for x in (b._xp.A, b._xp.C, b._xp.d))


@pytest.mark.parametrize("src,f,fam,wt", [CASES[2], MULTI_CASES[0], MULTI_CASES[3]])
def test_kernels_on_the_boundary(src, f, fam, wt, pure):
    """Variances at zero (a singular fit's theta): Z Lambda has zero columns, M has identity
    blocks; modes, deviance and the gradient (which must see the zero components) agree."""
    fr, rs, pr = _problem(src, f, fam, wt)
    lb = rs.lower_bounds()
    th = np.where(lb == 0, 0.0, 0.1)
    th[0] = 0.5                                     # one variance kept away from zero
    be = np.linalg.lstsq(fr.X, np.log(fr.y + 0.5) if fam == "poisson" else fr.y - 0.5, rcond=None)[0]
    (rc, gc), (rp, gp) = _modes_both(pure, pr, fr, rs, th, be)
    assert rc.deviance == pytest.approx(rp.deviance, rel=1e-12)
    np.testing.assert_allclose(rc.u, rp.u, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gc, gp, rtol=1e-7, atol=1e-8)


# ------------------------------------------------- nbinom2 and Gamma (log links; glmmTMB's curvature)

SHAPE_CASES = [
    ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", "nbinom2", 2.0, 1.0),
    ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION)", "nbinom2", 3.3, 1.0),
    ("gamma_sim", "y ~ x + (1 | g)", "Gamma(link='log')", None, 0.33),
]


@pytest.mark.parametrize("laplace", ["observed", "expected"])
@pytest.mark.parametrize("src,f,fam,shape,phi", SHAPE_CASES)
def test_shape_families_pirls_and_gradient_match_numpy(src, f, fam, shape, phi, laplace, pure):
    d = _data(src)
    fr = model_frame(f, d)
    rs, _, _ = _structure(fr)
    family = make_family(fam)
    if shape is not None:
        family = family.with_shape(shape)
    pr = GlmmProblem(fr.y, fr.X, rs, fr.weights, fr.offset, family, laplace_weights=laplace)
    th = rs.theta_start() * 0.6
    be = np.linalg.lstsq(fr.X, np.log(fr.y + 0.5), rcond=None)[0]
    (rc, gc), (rp, gp) = _modes_both(pure, pr, fr, rs, th, be, phi, gradient=laplace == "observed")
    assert rc._factor is None and rp._factor is not None
    assert rc.iterations == rp.iterations
    np.testing.assert_allclose(rc.u, rp.u, rtol=1e-8, atol=1e-10)
    assert rc.deviance == pytest.approx(rp.deviance, rel=1e-11)
    assert rc.factor.logdet_Z() == pytest.approx(rp.factor.logdet_Z(), rel=1e-10)
    if gc is not None:
        np.testing.assert_allclose(gc, gp, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("src,f,fam,shape,phi", SHAPE_CASES)
def test_shape_families_fits_match_numpy(src, f, fam, shape, phi, pure):
    d = _data(src)
    c, p = _both(pure, lambda: pyglmm.glmer(f, d, family=fam))
    _assert_same_fit(c, p)
    ec = c._r.shape if c._r.shape is not None else c._r.dispersion
    ep = p._r.shape if p._r.shape is not None else p._r.dispersion
    assert ec == pytest.approx(ep, rel=1e-5)


@pytest.mark.parametrize("src,f,fam", [
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    ("grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
])
def test_fitted_models_pickle_with_kernels_in_use(src, f, fam):
    """The kernels' bound arrays stay out of pickles (bootstrap workers, save/load): a model
    fitted through them pickles, and its refit gives the same fit."""
    import pickle
    from pyglmm.models import refit
    d = _data(src)
    m = pyglmm.lmer(f, d) if fam is None else pyglmm.glmer(f, d, family=fam)
    m2 = pickle.loads(pickle.dumps(m))
    assert float(refit(m2, m.frame.y).loglik) == pytest.approx(float(m.loglik), abs=1e-7)


@pytest.mark.parametrize("src,f,fam,wt", [CASES[2], MULTI_CASES[1]])
def test_kernels_on_rows_not_grouped_by_level(src, f, fam, wt, pure):
    """Fits sort the rows by the first term's levels, and the kernels then sum each level's rows
    in one run; in the user's row order they scatter row by row, with the same results."""
    from pyglmm.linalg.kernel_pattern import kernel_pattern
    d = _data(src)
    d = d.iloc[np.random.default_rng(7).permutation(len(d))].reset_index(drop=True)
    fr = model_frame(f, d, weights=wt, binomial=fam == "binomial")
    rs, _, sv = _structure(fr, sort=False)
    assert kernel_pattern(rs).seg.size == 0                     # not grouped
    pr = GlmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, make_family(fam))
    th = rs.theta_start() * 0.7
    be = np.linalg.lstsq(sv.X, np.log(sv.y + 0.5) if fam == "poisson" else sv.y - 0.5, rcond=None)[0] * 0.5
    (rc, gc), (rp, gp) = _modes_both(pure, pr, fr, rs, th, be)
    assert rc._factor is None
    assert rc.deviance == pytest.approx(rp.deviance, rel=1e-12)
    np.testing.assert_allclose(rc.u, rp.u, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gc, gp, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("src,f", [
    ("pastes", "strength ~ 1 + (1 | batch/cask)"),
    (_small_crossed_slopes, "y ~ x + (1 + x | a) + (1 | b)"),
])
def test_pattern_solution_matches_the_dense_solve(src, f):
    """After the optimiser, the fit's summaries (R_X, beta, u, pwrss, log|M|, conditional
    variances) come from the sparse kernel's solution: the same as the dense solve's."""
    from pyglmm.fit.lmm_dense import DenseCrossprods
    fr = model_frame(f, _data(src))
    rs, _, sv = _structure(fr)
    th = rs.theta_start() * 0.7 + 0.05
    a = DenseCrossprods(sv.y, sv.X, rs, sv.weights)
    b = DenseCrossprods(sv.y, sv.X, rs, sv.weights)
    b.kernel_objective()
    pa, pb = a.parts(th), b.parts(th)
    assert pb[0].logdet_Z() == pytest.approx(pa[0].logdet_Z(), rel=1e-12)
    for x, y in zip(pa[1:], pb[1:]):
        np.testing.assert_allclose(y, x, rtol=1e-10, atol=1e-12)
    for x, y in zip(a.conditional_u_variances(th), b.conditional_u_variances(th)):
        np.testing.assert_allclose(y, x, rtol=1e-10, atol=1e-12)


def _many_fixed():
    rng = np.random.default_rng(3)
    n, g = 400, 25
    d = pd.DataFrame({"g": rng.integers(0, g, n), **{f"x{i}": rng.normal(size=n) for i in range(6)}})
    d["y"] = d.x0 + rng.normal(size=g)[d.g] + rng.normal(size=n)
    d["w"] = rng.uniform(0.5, 2, n)
    return d


@pytest.mark.parametrize("f", ["y ~ 0 + (1 + x0 | g)", "y ~ 0 + (1 | g)",
                               "y ~ x0 + x1 + x2 + x3 + x4 + x5 + (1 | g)",
                               "y ~ x0 + x1 + x2 + x3 + x4 + x5 + (1 + x1 | g)"])
@pytest.mark.parametrize("wt", [None, "w"])
def test_closed_form_one_and_two_column_kernel(f, wt, pure):
    """The kernel's closed forms for (1 | g) and (1 + x | g) blocks give the numpy path's
    deviance and gradient, with no fixed effects and with six (its working space)."""
    from pyglmm.fit.lmm import LmmProblem
    fr = model_frame(f, _many_fixed(), weights=wt)
    rs, _, sv = _structure(fr)
    th = rs.theta_start() * 0.7 + 0.1
    out = {}
    for on in (False, True):
        pure(on)
        prob = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=True)
        out[on] = (prob.deviance(th), prob.gradient(th), prob.objective())
    (dc, gc, (dev, grad)), (dp, gp, _) = out[False], out[True]
    assert dc == pytest.approx(dp, rel=1e-13) and dev(th) == pytest.approx(dp, rel=1e-13)
    np.testing.assert_allclose(gc, gp, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad(th), gp, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("blocks", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_lmm_crossprods_match_numpy(blocks, weighted):
    """The compiled set-up pass of the LMM kernels (`_lmm.lmm_crossprods`) against numpy: the
    weighted least-squares centring (X'WX, b0, X'Wr, r'Wr) and Z'WZ, Z'WX, Z'Wr, per level
    (one term) and dense (two terms), on unsorted rows and a Fortran-ordered X."""
    rng = np.random.default_rng(11)
    n, p = 250, 3
    X = np.asfortranarray(np.column_stack([np.ones(n), rng.normal(size=(n, p - 1))]))
    y = X @ [3.0, -1.0, 0.5] + rng.normal(size=n)
    w = rng.uniform(0.2, 2.0, n) if weighted else np.ones(n)
    c1, c2 = rng.integers(0, 9, n), rng.integers(0, 4, n)
    Z1 = np.column_stack([np.ones(n), rng.normal(size=n)])
    Z2 = rng.normal(size=(n, 1))
    W = w[:, None]
    XtWX = X.T @ (W * X)
    b0 = np.linalg.solve(XtWX, X.T @ (w * y))
    r = y - X @ b0
    kern = compiled._lmm
    if blocks:
        out = kern.lmm_crossprods(y, X, w, not weighted, c1.reshape(1, -1).astype(np.int64), Z1,
                                  np.array([2], np.int64), np.array([0, 18], np.int64), 9)
        A = np.stack([(Z1[c1 == j] * W[c1 == j]).T @ Z1[c1 == j] for j in range(9)])
        C = np.stack([(Z1[c1 == j] * W[c1 == j]).T @ X[c1 == j] for j in range(9)])
        d = np.stack([(Z1[c1 == j] * W[c1 == j]).T @ r[c1 == j] for j in range(9)])
    else:
        Z = np.zeros((n, 22))
        Z[np.arange(n), 2 * c1] = Z1[:, 0]
        Z[np.arange(n), 2 * c1 + 1] = Z1[:, 1]
        Z[np.arange(n), 18 + c2] = Z2[:, 0]
        out = kern.lmm_crossprods(y, X, w, not weighted, np.stack([c1, c2]).astype(np.int64),
                                  np.hstack([Z1, Z2]), np.array([2, 1], np.int64),
                                  np.array([0, 18, 22], np.int64), 0)
        A, C, d = (W * Z).T @ Z, (W * Z).T @ X, (W * Z).T @ r
    XtWX_c, XtWr_c, b0_c, rWr_c, A_c, C_c, d_c = out
    np.testing.assert_allclose(XtWX_c, XtWX, rtol=1e-13)
    np.testing.assert_allclose(b0_c, b0, rtol=1e-12)
    np.testing.assert_allclose(XtWr_c, X.T @ (w * r), atol=1e-10)
    assert rWr_c == pytest.approx(float(w @ r**2), rel=1e-12)
    np.testing.assert_allclose(A_c, A, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(C_c, C, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d_c, d, rtol=1e-11, atol=1e-11)
    # a singular X'WX: None (the caller then solves by least squares)
    Xs = np.column_stack([X, np.zeros(n)])
    assert kern.lmm_crossprods(y, Xs, w, False, c1.reshape(1, -1).astype(np.int64), Z1,
                               np.array([2], np.int64), np.array([0, 18], np.int64), 9) is None


@pytest.mark.parametrize("src,f,fam", [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None),
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
])
def test_compiled_gradient_jacobian_matches_fd_jacobian(src, f, fam):
    """The post-fit Hessian by differences of the gradient in C (`_optim.gradient_jacobian`)
    gives what the Python differences of the same kernel's gradient give."""
    from pyglmm.fit.optimize import gradient_hessian
    d = _data(src)
    m = pyglmm.lmer(f, d) if fam is None else pyglmm.glmer(f, d, family=fam)
    if fam is None:
        _, grad, kobj = m._problem.objective(fused=True)
        x = np.asarray(m.theta, float) * 1.05
    else:
        from pyglmm.fit.glmm import _KernelLaplace
        pr = m._problem
        nth, p = pr.rs.ntheta, pr.p
        C = np.eye(p) * 0.3
        kobj = _KernelLaplace.make(pr, pr.family, nth, p, np.ones(nth),
                                   np.array(m.fixef, float), C)
        grad = kobj.gradient
        x = np.concatenate([np.asarray(m.theta, float), np.full(p, 0.1)])
    assert kobj is not None
    gc, hc = gradient_hessian(grad, x, 1e-4, fg=kobj)
    gp, hp = gradient_hessian(grad, x, 1e-4)
    np.testing.assert_allclose(gc, gp, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(hc, hp, rtol=1e-5, atol=1e-6)
    assert np.allclose(hc, hc.T)


@pytest.mark.parametrize("k", [1, 2, 5, 12, 40])
def test_convergence_check_matches_lapack(k, pure):
    """lme4's Hessian checks in one compiled call (Cholesky-scaled gradient, Jacobi eigenvalue
    ratio) against the LAPACK path, on well and badly conditioned Hessians and a non-PD one."""
    from pyglmm.checks import hessian_checks
    rng = np.random.default_rng(k)
    A = rng.normal(size=(k, k))
    well = A @ A.T + 0.1 * np.eye(k)
    ill = A @ np.diag(np.logspace(0, -11, k)) @ A.T + 1e-12 * np.eye(k)
    for H, rel in ((well, 1e-8), (ill, 1e-3)):     # L^{-1} g of a condition number 1e11
        g = rng.normal(size=k) * 1e-3
        c, p = _both(pure, lambda: hessian_checks(H, g))
        assert c[0] and p[0]
        assert c[1] == pytest.approx(p[1], rel=rel)
        if H is well:
            assert c[2] == pytest.approx(p[2], rel=1e-8)
        else:                                       # the same verdict on the eigenvalue ratio
            assert (c[2] < 1e-10) == (p[2] < 1e-10)
    if k > 1:
        bad = A @ A.T - 10 * np.eye(k) * np.abs(A).max() ** 2
        c, p = _both(pure, lambda: hessian_checks(bad, np.ones(k)))
        assert not c[0] and not p[0]


@pytest.mark.parametrize("fam,code", [("binomial", 1), ("poisson", 0)])
def test_saturated_loglik_matches_the_family(fam, code):
    """The compiled saturated -2 log-likelihood (the Laplace deviance's constant) against the
    family's loglik at mu = y: proportions with trials (some zero), non-integer Poisson weights."""
    rng = np.random.default_rng(7)
    n = 400
    if fam == "binomial":
        w = rng.integers(1, 30, n).astype(float)
        y = rng.binomial(w.astype(int), 0.35) / w
        w[:4] = 0.0
    else:
        y = rng.poisson(2.5, n).astype(float)
        w = np.ones(n)
        w[:3], w[3:9] = 0.0, 1.5
    ref = -2.0 * make_family(fam).loglik(y, y, w).sum()
    assert compiled._glmm.saturated_m2ll(code, y, w) == pytest.approx(ref, rel=1e-13)


@pytest.mark.parametrize("fam,code", [("binomial", 1), ("poisson", 0)])
def test_deviance_constant_matches_dev_resids(fam, code):
    """The compiled y-only part of sum(dev_resids): with it the deviance at any mu equals the
    family's dev_resids summed (binomial proportions with y = 0 and 1 among them, zero weights)."""
    rng = np.random.default_rng(8)
    n = 300
    if fam == "binomial":
        w = rng.integers(1, 20, n).astype(float)
        y = rng.binomial(w.astype(int), 0.3) / w
        y[:5], y[5:10], w[10:13] = 0.0, 1.0, 0.0
        mu = np.clip(y + rng.normal(0, 0.05, n), 0.02, 0.98)
    else:
        y = rng.poisson(1.5, n).astype(float)
        w = np.ones(n)
        w[:4] = 2.0
        mu = y + rng.uniform(0.1, 1.0, n)
    family = make_family(fam)
    got = compiled._glmm.deviance_constant(code, y, w)
    ref = family.dev_resids(y, mu, w).sum()
    if fam == "poisson":
        rest = 2.0 * (w * mu - w * y * np.log(mu)).sum()
    else:
        rest = -2.0 * (w * y * np.log(mu) + w * (1 - y) * np.log1p(-mu)).sum()
    assert got + rest == pytest.approx(ref, rel=1e-12)


def test_small_matrix_kernels_match_lapack():
    """The compiled small Cholesky, SPD inverse and triangular inverse agree with numpy's to
    rounding, and answer None (not garbage) on matrices that are not positive definite."""
    kern = compiled.optim_kernels()
    rng = np.random.default_rng(11)
    for k in (1, 2, 3, 5, 9, 24):
        B = rng.normal(size=(k + 3, k))
        A = B.T @ B + 0.1 * np.eye(k)
        L = kern.small_cholesky(A)
        np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=1e-10, atol=1e-12)
        inv = np.linalg.inv(A)
        np.testing.assert_allclose(kern.small_spd_inverse(A), inv, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(kern.small_spd_inverse(L, True), inv, rtol=1e-8, atol=1e-10)
        Lr = np.tril(L) + np.triu(rng.normal(size=(k, k)), 1)      # upper triangle ignored
        np.testing.assert_allclose(kern.small_lower_inverse(Lr), np.linalg.inv(L), rtol=1e-8,
                                   atol=1e-10)
    assert kern.small_cholesky(np.array([[1.0, 2.0], [2.0, 1.0]])) is None
    assert kern.small_spd_inverse(np.array([[1.0, 1.0], [1.0, 1.0]])) is None
    assert kern.small_spd_inverse(np.array([[np.nan]])) is None
    assert kern.small_lower_inverse(np.array([[1.0, 0.0], [3.0, 0.0]])) is None
    from pyglmm.linalg.small import cholesky_lower, spd_inverse
    with pytest.raises(np.linalg.LinAlgError):
        cholesky_lower(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(np.linalg.LinAlgError):
        spd_inverse(-np.eye(3))


def test_frame_range_and_constant_response_kernels():
    """column_ranges and constant_response give the answers of the numpy reductions they replace."""
    kern = compiled.frame_kernels()
    rng = np.random.default_rng(12)
    for _ in range(100):
        n, p = int(rng.integers(1, 30)), int(rng.integers(1, 5))
        X = np.round(rng.normal(size=(n, p)) * rng.uniform(0.1, 50, p), 1)
        X[:, rng.integers(0, p)] = 1.0                                    # an intercept
        r = X.max(0) - X.min(0)
        pos = r > 0
        got = kern.column_ranges(X)
        if pos.any():
            big = np.abs(X[:, pos]).max()
            assert got == pytest.approx((r[pos].min(), r[pos].max(), big))
        else:
            assert got[1] == 0.0
        assert kern.column_ranges(np.asfortranarray(X)) == got
        y = rng.integers(0, 2, n).astype(float)
        w = rng.integers(0, 3, n).astype(float)
        keep = w > 0
        ref_y = y[keep] if keep.any() else y
        constant, first = kern.constant_response(y, w)
        assert constant == bool((ref_y == ref_y[0]).all())
        if constant:
            assert first == ref_y[0]
