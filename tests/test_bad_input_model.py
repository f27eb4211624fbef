"""Bad-input catalogue, part 2: formulas, arguments, internal exceptions and extreme scales.

Each case asserts the exact pyglmm error class and that the message names the culprit
(argument, term or column), or that the answer equals lme4's (or the exactly rescaled fit).
Part 1 (columns, levels, families, NA handling, ...) is tests/test_bad_input.py; formula syntax
errors are in tests/test_api_errors.py and tests/test_formula.py.
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import pyglmm
from pyglmm import ArgumentError, ArgumentTypeError, DataError, FitError, FormulaError, PyglmmError


@pytest.fixture(scope="module")
def d():
    rng = np.random.default_rng(3)
    n = 40
    g = np.repeat(np.arange(8), 5)
    x = rng.normal(size=n)
    re = rng.normal(0, 0.6, 8)[g]
    return pd.DataFrame({"y": 1 + 0.5 * x + re + rng.normal(size=n), "x": x, "g": g,
                         "h": np.tile(np.arange(4), 10),
                         "c": rng.poisson(np.exp(0.8 + 0.3 * x + re))})


@pytest.fixture(scope="module")
def lm(d):
    return pyglmm.lmer("y ~ x + (1|g)", d)


L = pyglmm.lmer


def G(f, d, **kw):
    return pyglmm.glmer(f, d, family=kw.pop("family", "poisson"), **kw)


def P(f, d, **kw):
    return pyglmm.glmmPQL(f, d, family="poisson", **kw)


# (case, callable(d), exact error class, fragment of the message naming the culprit)
ERRORS = [
    # formulas
    ("formula is a number", lambda d: L(1, d), ArgumentTypeError, "formula must be a string"),
    ("formula is None", lambda d: G(None, d), ArgumentTypeError, "formula must be a string"),
    ("formula is a list", lambda d: L(["y ~ x + (1|g)"], d), ArgumentTypeError, "not a sequence"),
    ("formula is bytes", lambda d: P(b"c ~ x + (1|g)", d), ArgumentTypeError, "decode"),
    ("same random term twice", lambda d: L("y ~ x + (1|g) + (1|g)", d), FormulaError, "(1 | g) is given twice"),
    ("random term twice via ||", lambda d: G("c ~ x + (1|g) + (x||g)", d), FormulaError, "(1 | g) is given twice"),
    ("nobs <= nRE (lmer)", lambda d: L("y ~ x + (1 + x|h)", d.iloc[:8]), DataError,
     "number of observations (=8) <= number of random effects (=8) for term (1 + x | h); the "
     "random-effects parameters and the residual variance (or scale parameter) are probably unidentifiable"),
    ("nobs < nRE (glmer)", lambda d: G("c ~ x + (1 + x|h)", d.iloc[:6]), DataError,
     "number of observations (=6) < number of random effects (=8) for term (1 + x | h)"),
    ("nobs <= nRE (glmmPQL)", lambda d: P("c ~ x + (1 + x|h)", d.iloc[:8]), DataError,
     "for term (1 + x | h)"),
    # as many fixed effects as observations: no residual degree of freedom (was a ZeroDivisionError
    # in lmer's REML criterion, found by tests/test_fuzz_inputs.py)
    ("nobs == p (lmer)", lambda d: L("y ~ factor(x) + (1|h)", d.iloc[:8]), DataError,
     "number of observations (=8) <= number of fixed effects (=8: (Intercept), factor(x)"),
    ("nobs == p (lmer ML)", lambda d: L("y ~ factor(x) + (1|h)", d.iloc[:8], REML=False), DataError,
     "no residual degrees of freedom"),
    ("nobs == p with zero weights", lambda d: L("y ~ x + I(x^2) + (1|h)", d.iloc[:8],
                                                 weights=np.r_[1.0, 1, 1, 0, 0, 0, 0, 0]), DataError,
     "number of observations (=3 with positive weights) <= number of fixed effects (=3: (Intercept), x, I(x^2))"),
    ("nobs == p (glmmPQL)", lambda d: P("c ~ factor(x) + (1|h)", d.iloc[:8]), DataError,
     "<= number of fixed effects (=8"),
    # lmer / glmer / glmmPQL arguments
    ("REML a string", lambda d: L("y ~ x + (1|g)", d, REML="FALSE"), ArgumentTypeError, "REML must be True or False"),
    ("REML an int", lambda d: L("y ~ x + (1|g)", d, REML=0), ArgumentTypeError, "REML"),
    ("nAGQ a float", lambda d: G("c ~ x + (1|g)", d, nAGQ=2.5), ArgumentTypeError, "nAGQ must be an integer"),
    ("nAGQ a bool", lambda d: G("c ~ x + (1|g)", d, nAGQ=True), ArgumentTypeError, "nAGQ"),
    ("start a string", lambda d: G("c ~ x + (1|g)", d, start="a"), ArgumentTypeError, "start must be a dict"),
    ("start theta too long", lambda d: G("c ~ x + (1|g)", d, start={"theta": [1, 2, 3]}), ArgumentError,
     "start['theta'] has 3 values; this model has 1"),
    ("start theta NaN", lambda d: G("c ~ x + (1|g)", d, start={"theta": [np.nan]}), ArgumentError,
     "start['theta'] must be finite"),
    ("start theta negative", lambda d: G("c ~ x + (1|g)", d, start={"theta": [-1.0]}), ArgumentError,
     "start['theta'][0]"),
    ("start beta too short", lambda d: G("c ~ x + (1|g)", d, start={"beta": [1.0]}), ArgumentError,
     "start['beta'] has 1 values; the model has 2 fixed effects"),
    ("start misspelt key", lambda d: G("c ~ x + (1|g)", d, start={"thetta": [1.0]}), ArgumentError,
     "'thetta' (did you mean 'theta'?)"),
    ("lmer start too long", lambda d: L("y ~ x + (1|g)", d, start=[1.0, 2.0]), ArgumentError, "start['theta']"),
    ("control a list", lambda d: G("c ~ x + (1|g)", d, control=[1]), ArgumentTypeError, "control must be a dict"),
    ("control misspelt", lambda d: G("c ~ x + (1|g)", d, control={"maxiterr": 5}), ArgumentError,
     "'maxiterr' (did you mean 'maxiter'?)"),
    ("control maxiter a string", lambda d: G("c ~ x + (1|g)", d, control={"maxiter": "a"}), ArgumentTypeError,
     "control['maxiter']"),
    ("control maxiter negative", lambda d: G("c ~ x + (1|g)", d, control={"maxiter": -1}), ArgumentError,
     "control['maxiter']"),
    ("family a number", lambda d: G("c ~ x + (1|g)", d, family=3), ArgumentTypeError, "family"),
    ("weights a dict", lambda d: G("c ~ x + (1|g)", d, weights={"a": 1}), ArgumentTypeError, "weights"),
    ("weights 2-D", lambda d: G("c ~ x + (1|g)", d, weights=np.ones((40, 2))), ArgumentError,
     "weights must be a column name or a 1-D array"),
    ("offset a set", lambda d: L("y ~ x + (1|g)", d, offset={1, 2}), ArgumentTypeError, "offset"),
    ("verbose a string", lambda d: G("c ~ x + (1|g)", d, verbose="yes"), ArgumentTypeError, "verbose"),
    ("progress a string", lambda d: L("y ~ x + (1|g)", d, progress="no"), ArgumentTypeError, "progress"),
    ("method a number", lambda d: G("c ~ x + (1|g)", d, method=3), ArgumentTypeError, "method"),
    ("laplace misspelt", lambda d: G("c ~ x + (1|g)", d, laplace="obs"), ArgumentError,
     "laplace must be one of 'expected', 'observed' or None; got 'obs' (did you mean 'observed'?)"),
    ("nAGQ with method PQL", lambda d: G("c ~ x + (1|g)", d, method="PQL", nAGQ=5), ArgumentError,
     "nAGQ is not used by method='PQL'"),
    ("niter a string", lambda d: P("c ~ x + (1|g)", d, niter="a"), ArgumentTypeError, "niter"),
    ("niter a float", lambda d: P("c ~ x + (1|g)", d, niter=2.5), ArgumentTypeError, "niter"),
    # extreme magnitudes that glmer cannot fit: refused, naming the column
    ("Gamma response at 1e160", lambda d: G("z ~ x + (1|g)", d.assign(z=np.exp(d.y / 3) * 1e160),
                                             family="Gamma(link='log')"), DataError, "response 'z'"),
    ("Gamma response at 1e-160", lambda d: G("z ~ x + (1|g)", d.assign(z=np.exp(d.y / 3) * 1e-160),
                                              family="Gamma"), DataError, "z * 1e"),
    ("gaussian(log) response at 1e160", lambda d: G("z ~ x + (1|g)", d.assign(z=np.exp(d.y / 3) * 1e160),
                                                     family="gaussian(link='log')"), DataError, "response 'z'"),
    ("Poisson counts near 1e12", lambda d: G("big ~ x + (1|g)", d.assign(big=np.round(np.exp(27.6 + 0.3 * d.x))),
                                             ), DataError, "response 'big' has counts"),
    ("weights zero in every row", lambda d: L("y ~ x + (1|g)", d, weights=np.zeros(40)), DataError,
     "weights are zero in every row"),
    ("weights zero in every row (glmer)", lambda d: G("c ~ x + (1|g)", d, weights=np.zeros(40)), DataError,
     "weights"),
    ("random slope at 1e150", lambda d: L("y ~ xs + (xs|g)", d.assign(xs=d.x * 1e150)), DataError,
     "random-effect column 'xs'"),
    ("random slope at 1e-150", lambda d: G("c ~ xs + (xs|g)", d.assign(xs=d.x * 1e-150)), DataError,
     "e.g. xs * 1e1"),
]

METHOD_ERRORS = [
    ("simulate nsim a string", lambda m: m.simulate(nsim="a"), ArgumentTypeError, "nsim must be an integer"),
    ("simulate nsim 0", lambda m: m.simulate(nsim=0), ArgumentError, "nsim must be an integer >= 1"),
    ("simulate nsim negative", lambda m: m.simulate(nsim=-1), ArgumentError, "nsim"),
    ("simulate nsim a float", lambda m: m.simulate(nsim=2.5), ArgumentTypeError, "nsim"),
    ("simulate seed a string", lambda m: m.simulate(seed="a"), ArgumentTypeError, "seed must be None, an integer"),
    ("simulate seed a float", lambda m: m.simulate(seed=1.5), ArgumentTypeError, "seed"),
    ("simulate re_form a number", lambda m: m.simulate(re_form=3), ArgumentTypeError, "re_form"),
    ("confint level a string", lambda m: m.confint(level="a"), ArgumentTypeError, "level must be a number"),
    ("confint unknown argument", lambda m: m.confint(foo=1), ArgumentTypeError, "unknown argument 'foo'"),
    ("confint boot nsim a string", lambda m: m.confint(method="boot", nsim="a"), ArgumentTypeError, "nsim"),
    ("confint boot nsim 0", lambda m: m.confint(method="boot", nsim=0), ArgumentError, "nsim"),
    ("confint method misspelt", lambda m: m.confint(method="bot"), ArgumentError, "(did you mean 'boot'?)"),
    ("predict type misspelt", lambda m: m.predict(type="resp"), ArgumentError, "(did you mean 'response'?)"),
    ("predict n_nodes 0", lambda m: m.predict(type="response", marginal=True, n_nodes=0), ArgumentError, "n_nodes"),
    ("predict se_fit a string", lambda m: m.predict(se_fit="yes"), ArgumentTypeError, "se_fit"),
    ("predict seed a string", lambda m: m.predict(seed="x"), ArgumentTypeError, "seed"),
    ("predict interval misspelt", lambda m: m.predict(interval="pred"), ArgumentError, "interval"),
    ("ranef_table level 2", lambda m: m.ranef_table(level=2), ArgumentError, "level"),
    ("confint parm a bare index", lambda m: m.confint(parm=2), ArgumentTypeError, "parm must be None"),
    ("refit newresp of strings", lambda m: m.refit(["a"] * 40), ArgumentTypeError, "newresp"),
    ("unknown keyword", lambda m: m.simulate(nsims=3), ArgumentTypeError, "nsims"),
]


def _raises(fn, exc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(PyglmmError) as ei:
            fn()
    assert type(ei.value) is exc, f"{type(ei.value).__name__}: {ei.value}"
    return str(ei.value)


@pytest.mark.parametrize("case,fn,exc,fragment", ERRORS, ids=[e[0] for e in ERRORS])
def test_entry_point_error_names_the_culprit(d, case, fn, exc, fragment):
    msg = _raises(lambda: fn(d), exc)
    assert fragment in msg, msg


@pytest.mark.parametrize("case,fn,exc,fragment", METHOD_ERRORS, ids=[e[0] for e in METHOD_ERRORS])
def test_method_error_names_the_culprit(lm, case, fn, exc, fragment):
    msg = _raises(lambda: fn(lm), exc)
    assert fragment in msg, msg


def test_numpy_bool_and_integer_arguments_are_accepted(d):
    m = L("y ~ x + (1|g)", d, REML=np.False_)
    assert not m.REML
    s = m.simulate(nsim=np.int64(2), seed=np.random.default_rng(1))
    assert s.shape == (40, 2)


@pytest.mark.parametrize("family", ["poisson", "binomial"])
def test_glmer_without_fixed_effects_and_every_theta_at_zero(d, family):
    """y ~ 0 + (0 + z | g) whose theta ends at the boundary: no free parameter left (was an
    internal ValueError on an empty gradient, or AttributeError building R_X of no columns;
    found by tests/test_fuzz_inputs.py)."""
    dd = d.assign(zbig=d.x * 1e18, b=(d.c > 2).astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = G(("c" if family == "poisson" else "b") + " ~ 0 + (0 + zbig | g)", dd, family=family)
    assert m.fixef.shape == (0,) and m.vcov.shape == (0, 0) and np.isfinite(m.loglik)


def test_response_on_the_right_hand_side_is_dropped_with_rs_warning(d):
    """R's model.matrix drops the response from the right-hand side with a warning, and lme4
    fits the model without it (was: lmer LinAlgError, glmer a model with c as a predictor)."""
    for fit, f0, f1 in ((L, "y ~ y + x + (1|g)", "y ~ x + (1|g)"),
                        (G, "c ~ c + x + (1|g)", "c ~ x + (1|g)")):
        with pytest.warns(UserWarning, match="the response '.' appeared on the right-hand side and was dropped"):
            m = fit(f0, d)
        ref = fit(f1, d)
        assert list(m.fixef.index) == ["(Intercept)", "x"]
        np.testing.assert_allclose(m.fixef.values, ref.fixef.values, rtol=1e-10)
        assert m.loglik == pytest.approx(ref.loglik, rel=1e-12)


def test_a_formula_with_thousands_of_terms_parses():
    """A sum of 2,000 predictors is a left-deep tree; it was 'too deeply nested' from ~500 terms."""
    pf = pyglmm.parse_formula("y ~ " + " + ".join(f"x{i}" for i in range(2000)) + " - x7 + (1 | g)")
    assert len(pf.fixed.terms) == 1999 and pf.fixed.terms[0].label == "x0"


def test_deep_nesting_is_a_formula_error(d):
    msg = _raises(lambda: L("y ~ " + "(" * 5000 + "x" + ")" * 5000 + " + (1|g)", d), FormulaError)
    assert "too deeply nested" in msg


def _fail_with(monkeypatch, exc):
    from pyglmm import models

    def boom(*a, **k):
        raise exc
    monkeypatch.setattr(models, "fit_glmm", boom)


@pytest.mark.parametrize("internal,cls", [
    (np.linalg.LinAlgError("Matrix is singular"), FitError),
    (KeyError("theta"), FitError),
    (IndexError("index 3 is out of bounds"), FitError),
    (AttributeError("'NoneType' object has no attribute 'u'"), FitError),
    (ZeroDivisionError("division by zero"), FitError),
    (OverflowError("math range error"), FitError),
    (ValueError("operands could not be broadcast together with shapes (5,) (3,)"), FitError),
    (RecursionError("maximum recursion depth exceeded"), FormulaError),
])
def test_internal_exceptions_become_pyglmm_errors_naming_the_formula(d, monkeypatch, internal, cls):
    _fail_with(monkeypatch, internal)
    with pytest.raises(PyglmmError) as ei:
        G("c ~ x + (1|g)", d)
    assert type(ei.value) is cls
    assert "'c ~ x + (1|g)'" in str(ei.value)
    assert ei.value.__cause__ is internal           # the original is chained


@pytest.mark.parametrize("internal", [MemoryError("no memory"), KeyboardInterrupt()])
def test_memory_error_and_keyboard_interrupt_pass_through(d, monkeypatch, internal):
    _fail_with(monkeypatch, internal)
    with pytest.raises(type(internal)):
        G("c ~ x + (1|g)", d)


def test_internal_exception_in_a_method_names_the_formula(lm, monkeypatch):
    import importlib
    sim = importlib.import_module("pyglmm.predict.simulate")
    monkeypatch.setattr(sim, "simulate", lambda *a, **k: {}["missing"])
    with pytest.raises(FitError, match=r"simulate\(\) of 'y ~ x \+ \(1\|g\)'") as ei:
        lm.simulate(nsim=2)
    assert isinstance(ei.value.__cause__, KeyError)


def test_deliberate_value_errors_keep_their_message_as_pyglmm_errors(d):
    """A ValueError written for the user deep inside (e.g. a family's check) keeps its message
    and becomes a DataError (still a ValueError)."""
    with pytest.raises(DataError, match="'z'"):
        G("z ~ x + (1|g)", d.assign(z=-d.c), family="poisson")


@pytest.mark.parametrize("scale", [1e160, 1e-160, 1e100, 1e-100])
@pytest.mark.parametrize("REML", [True, False])
def test_lmer_on_an_extreme_response_scale_is_the_rescaled_fit(d, scale, REML):
    """lmer of y * s equals s times lmer of y (beta, sigma, random effects, fitted values; vcov
    times s^2; theta unchanged; logLik shifted by -n log s, REML -(n - p) log s). Was: a
    LinAlgError at 1e160, a wrong fit (theta = 1, 'Hessian not positive definite') at 1e-160."""
    ref = L("y ~ x + (1|g)", d, REML=REML)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = L("y ~ x + (1|g)", d.assign(y=d.y * scale), REML=REML)
    msgs = " | ".join(str(x.message) for x in w)
    n, p = 40, 2
    np.testing.assert_allclose(m.fixef.values / scale, ref.fixef.values, rtol=1e-7)
    assert m.sigma / scale == pytest.approx(ref.sigma, rel=1e-7)
    np.testing.assert_allclose(m.theta.values, ref.theta.values, rtol=1e-6)
    np.testing.assert_allclose(m.ranef["g"].values / scale, ref.ranef["g"].values, rtol=1e-6)
    np.testing.assert_allclose(m.fitted / scale, ref.fitted, rtol=1e-7)
    np.testing.assert_allclose(m.residuals("response") / scale, ref.residuals("response"), rtol=1e-6, atol=1e-9)
    assert m.loglik == pytest.approx(ref.loglik - (n - p if REML else n) * np.log(scale), rel=1e-9)
    if abs(np.log10(scale)) < 150:
        assert msgs == ""                                   # no convergence warning
        np.testing.assert_allclose(m.se.values / scale, ref.se.values, rtol=1e-6)
    else:                                                   # s^2 vcov is beyond double precision: said so
        assert msgs.count("|") == 0 and "vcov and the standard errors are not representable" in msgs


def test_glmer_gaussian_identity_on_an_extreme_scale_is_the_rescaled_ml_fit(d):
    ref = L("y ~ x + (1|g)", d, REML=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = G("y ~ x + (1|g)", d.assign(y=d.y * 1e160), family="gaussian")
    np.testing.assert_allclose(m.fixef.values / 1e160, ref.fixef.values, rtol=1e-7)
    assert m.sigma / 1e160 == pytest.approx(ref.sigma, rel=1e-7)


def test_rescaled_lmer_refits_and_refuses_profiles(d):
    m = L("y ~ x + (1|g)", d.assign(y=d.y * 1e160), REML=False)
    r = m.refit(m.frame.y[::-1].copy())
    ref = L("y ~ x + (1|g)", d.assign(y=d.y.values[::-1]), REML=False)
    np.testing.assert_allclose(r.fixef.values / 1e160, ref.fixef.values, rtol=1e-6)
    with pytest.raises(ArgumentError, match="rescaled internally"):
        m.confint(method="profile")
