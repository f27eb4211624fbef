"""Bad-input catalogue (issue #8): each case asserts the kind of answer and that it names the culprit.

More cases live next to the code they concern: tests/test_api_errors.py (columns, levels,
formula syntax, NA handling, singular fits), tests/test_design.py, tests/test_families.py,
tests/test_io.py (tampered / truncated files), tests/test_predict.py (unseen levels in newdata),
tests/test_inference.py (anova on different rows).
"""
import warnings

import numpy as np
import pandas as pd
import pytest

import pyglmm
from pyglmm import DataError, FormulaError


@pytest.fixture(scope="module")
def d():
    rng = np.random.default_rng(1)
    n = 200
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=n)
    return pd.DataFrame({"y": rng.poisson(np.exp(0.3 + 0.4 * x + rng.normal(0, 0.5, 20)[g])),
                         "x": x, "x2": 2 * x, "g": g, "b": (x > 0.3).astype(int)})


def _warn(fn):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    return out, " | ".join(str(x.message) for x in w)


ERRORS = [
    # (case, callable(d), exception, fragment of message)
    ("empty data", lambda d: pyglmm.glmer("y ~ x + (1|g)", d.iloc[:0], family="poisson"), DataError, "no rows"),
    ("misspelt column", lambda d: pyglmm.glmer("y ~ xx + (1|g)", d, family="poisson"), DataError, "'xx'"),
    ("misspelt grouping", lambda d: pyglmm.glmer("y ~ x + (1|gg)", d, family="poisson"), DataError, "'gg'"),
    ("numeric response as strings", lambda d: pyglmm.glmer("ys ~ x + (1|g)", d.assign(ys=d.y.astype(str)),
                                                             family="poisson"), DataError, "'ys' is not numeric"),
    ("negative counts", lambda d: pyglmm.glmer("yn ~ x + (1|g)", d.assign(yn=d.y - 3), family="poisson"),
     ValueError, "'yn'"),
    ("binomial outside [0,1]", lambda d: pyglmm.glmer("y ~ x + (1|g)", d, family="binomial"), ValueError, "'y'"),
    ("successes > trials", lambda d: pyglmm.glmer("cbind(y, 1 - y) ~ x + (1|g)", d, family="binomial"),
     ValueError, "y"),
    ("three-level binomial response", lambda d: pyglmm.glmer(
        "f ~ x + (1|g)", d.assign(f=np.array(["a", "b", "c", "d"] * 50)), family="binomial"), DataError, "'f'"),
    ("Gamma with non-positive response", lambda d: pyglmm.glmer(
        "z ~ x + (1|g)", d.assign(z=d.x), family="Gamma(link='log')"), ValueError, "'z'"),
    ("infinite predictor", lambda d: pyglmm.glmer("y ~ xi + (1|g)", d.assign(xi=np.where(d.index == 3, np.inf, d.x)),
                                                  family="poisson"), DataError, "'xi'"),
    ("duplicated column names", lambda d: pyglmm.glmer("y ~ x + (1|g)", pd.concat([d, d[["x"]]], axis=1),
                                                       family="poisson"), DataError, "duplicate"),
    ("one-level grouping factor", lambda d: pyglmm.glmer("y ~ x + (1|one)", d.assign(one=1), family="poisson"),
     DataError, "'one'"),
    ("grouping factor with a level per row (lmer)", lambda d: pyglmm.lmer("x ~ 1 + (1|row)", d.assign(row=np.arange(200))),
     ValueError, "'row'"),
    ("all rows dropped by NA", lambda d: pyglmm.glmer("y ~ xn + (1|g)", d.assign(xn=np.nan), family="poisson"),
     DataError, "xn"),
    ("response constant", lambda d: pyglmm.glmer("y0 ~ x + (1|g)", d.assign(y0=0), family="poisson"),
     ValueError, "'y0' is 0 in every row"),
    ("offset of the wrong length", lambda d: pyglmm.glmer("y ~ x + (1|g)", d, family="poisson", offset=np.zeros(5)),
     DataError, "offset"),
    ("negative weights", lambda d: pyglmm.glmer("y ~ x + (1|g)", d, family="poisson", weights=-np.ones(200)),
     (DataError, ValueError), "negative"),
    ("unknown function", lambda d: pyglmm.glmer("y ~ foo(x) + (1|g)", d, family="poisson"), DataError, "'foo'"),
    ("formula syntax error", lambda d: pyglmm.glmer("y ~ x + (1|g", d, family="poisson"), FormulaError, "^"),
    ("no random effects", lambda d: pyglmm.glmer("y ~ x", d, family="poisson"), ValueError, "random-effects"),
    ("unknown family", lambda d: pyglmm.glmer("y ~ x + (1|g)", d, family="poison"), ValueError, "poisson"),
    ("link not allowed for the family", lambda d: pyglmm.glmer("y ~ x + (1|g)", d, family="poisson(link='logit')"),
     ValueError, "logit"),
    ("nAGQ > 1 with crossed factors", lambda d: pyglmm.glmer("y ~ x + (1|g) + (1|b)", d, family="poisson", nAGQ=5),
     ValueError, "single random-effects term"),
    ("negative nAGQ", lambda d: pyglmm.glmer("y ~ x + (1|g)", d, family="poisson", nAGQ=-1), ValueError, "nAGQ"),
    ("unknown control option", lambda d: pyglmm.glmer("y ~ x + (1|g)", d, family="poisson", control={"maxfun": 3}),
     ValueError, "maxfun"),
    ("unknown estimation method", lambda d: pyglmm.glmer("y ~ x + (1|g)", d, family="poisson", method="REML"),
     ValueError, "method"),
    ("unsupported data type", lambda d: pyglmm.glmer("y ~ x + (1|g)", [1, 2, 3], family="poisson"), DataError, "data"),
]


@pytest.mark.parametrize("case,fn,exc,fragment", ERRORS, ids=[e[0] for e in ERRORS])
def test_error_names_the_culprit(d, case, fn, exc, fragment):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(exc) as ei:
            fn(d)
    assert fragment in str(ei.value), str(ei.value)


def test_complete_separation_warns_and_names_the_term(d):
    m, w = _warn(lambda: pyglmm.glmer("b ~ x + (1|g)", d, family="binomial"))
    assert "separation" in w and "'x'" in w


def test_collinear_random_slopes_give_a_singular_fit(d):
    m, w = _warn(lambda: pyglmm.glmer("y ~ x + (1 + x + x2 | g)", d, family="poisson"))
    assert m.singular and "singular" in w


def test_tiny_iteration_limit_reports_non_convergence(d):
    m, w = _warn(lambda: pyglmm.glmer("y ~ x + (1|g)", d, family="poisson", control={"maxiter": 1}))
    assert not m.converged and "converge" in w


def test_huge_magnitudes_warn_to_rescale(d):
    m, w = _warn(lambda: pyglmm.glmer("y ~ big + (1|g)", d.assign(big=d.x * 1e7), family="poisson"))
    assert "rescal" in w and "big" in w
    ref = pyglmm.glmer("y ~ x + (1|g)", d, family="poisson")
    # the estimate is still right on the original scale
    np.testing.assert_allclose(m.fixef["big"] * 1e7, ref.fixef["x"], rtol=1e-4)


def test_unicode_and_spaces_in_column_names(d):
    dd = d.rename(columns={"x": "mean hours"}).assign(größe=d.x2 + np.random.default_rng(2).normal(size=200))
    m = pyglmm.glmer("y ~ `mean hours` + größe + (1|g)", dd, family="poisson")
    assert list(m.fixef.index) == ["(Intercept)", "`mean hours`", "größe"]


def test_nan_predictor_rows_are_dropped_and_counted(d):
    dd = d.assign(x=np.where(d.index < 7, np.nan, d.x))
    m = pyglmm.glmer("y ~ x + (1|g)", dd, family="poisson")
    assert m.nobs == 193 and m.frame.n_dropped_na == 7


def _crossed(n=3000, g=300, h=250, seed=4):
    rng = np.random.default_rng(seed)
    a, b, x = rng.integers(0, g, n), rng.integers(0, h, n), rng.normal(size=n)
    y = rng.poisson(np.exp(0.3 + 0.2 * x + rng.normal(0, 0.5, g)[a] + rng.normal(0, 0.4, h)[b]))
    return pd.DataFrame({"y": y, "x": x, "user": a.astype(str), "item": b.astype(str)})


def test_crossed_design_too_large_for_memory_is_refused(monkeypatch):
    """A second crossed factor whose dense Schur complement cannot fit in RAM: a clear
    MemoryError naming the term and its levels, before any allocation (not numpy's)."""
    from pyglmm import checks
    monkeypatch.setattr(checks, "physical_memory", lambda: 2 * 3 * 8 * 200 ** 2)   # tiny machine
    with pytest.raises(MemoryError, match=r"\(\.\.\. \| item\) with 250 levels.*'user'"):
        pyglmm.glmer("y ~ x + (1 | user) + (1 | item)", _crossed(), family="poisson")


def test_crossed_design_with_many_levels_warns_it_will_be_slow(monkeypatch):
    from pyglmm import checks
    monkeypatch.setattr(checks, "DENSE_SLOW_Q", 100)
    with pytest.warns(UserWarning, match="dense 250 x 250 system"):
        pyglmm.lmer("y ~ x + (1 | user) + (1 | item)", _crossed())


def test_scale_precheck_never_hides_the_scale_message():
    """The range-based precheck of checkScaleX only skips the sd computation where the sds
    cannot differ by 1e3 (or magnitudes exceed 1e6): on random designs with widely spread
    column scales, whenever it says "fine" the exact check agrees."""
    from pyglmm.checks import scales_surely_fine
    rng = np.random.default_rng(11)
    skipped = 0
    for _ in range(2000):
        n, p = int(rng.integers(2, 60)), int(rng.integers(2, 5))
        X = rng.normal(size=(n, p)) * 10.0 ** rng.uniform(-4, 7, size=p)
        X[:, 0] = 1.0
        if rng.random() < 0.3:                       # a column with one outlier: small sd, wide range
            X[:, 1] = 0.0
            X[0, 1] = 10.0 ** rng.uniform(-2, 3)
        sd = X.std(axis=0)
        nc = sd > 0
        exact_fine = (sd[nc].max() / sd[nc].min() <= 1e3) and np.abs(X[:, nc]).max() <= 1e6
        if scales_surely_fine(X):
            skipped += 1
            assert exact_fine
    assert skipped > 100                             # the precheck does skip most ordinary designs
