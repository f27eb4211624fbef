"""The printed summary follows lme4's print(summary(m)) layout and R's number formatting.

Expected strings were produced by R 4.2.2 / lme4 1.1-31 (summary of the same fits with
glmerControl(tolPwrss = 1e-12), where lme4 and pyglmm agree to the printed digits).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import pyglmm
from pyglmm import datasets
from pyglmm.results.summary import abbreviate, format_pval, format_r, zapsmall


@pytest.fixture(scope="module")
def cbpp_fit():
    d = datasets.load_cbpp()
    return pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, family="binomial")


@pytest.fixture(scope="module")
def sleep_fit():
    return pyglmm.lmer("Reaction ~ Days + (Days | Subject)", datasets.load_sleepstudy())


def _in_order(text: str, items: list[str]) -> None:
    pos = 0
    for it in items:
        k = text.find(it, pos)
        assert k >= 0, f"{it!r} missing or out of order"
        pos = k + len(it)


def test_glmer_sections_in_order(cbpp_fit):
    text = str(cbpp_fit.summary())
    lines = text.splitlines()
    assert lines[:5] == [
        "Generalized linear mixed model fit by maximum likelihood (Laplace",
        "  Approximation)",
        " Family: binomial  ( logit )",
        "Formula: cbind(incidence, size - incidence) ~ period + (1 | herd)",
        "   Data: cbpp",
    ]
    _in_order(text, ["     AIC      BIC   logLik deviance df.resid\n",
                     "   194.1    204.2    -92.0    184.1       51\n",
                     "\nScaled residuals:\n    Min      1Q  Median      3Q     Max\n",
                     "\nRandom effects:\n Groups Name        Variance Std.Dev.\n",
                     " herd   (Intercept) 0.4125   0.6423\n",
                     "Number of obs: 56, groups:  herd, 15\n",
                     "\nFixed effects:\n",
                     "---\nSignif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1\n",
                     "\nCorrelation of Fixed Effects:\n        (Intr) perid2 perid3\n"])
    assert not any(ln != ln.rstrip() for ln in lines), "no trailing blanks"


def test_glmer_fixed_effects_table(cbpp_fit):
    # printCoefmat(digits = 4): Estimate/SE jointly to 4 decimals (smallest |value| 0.2325 has
    # 4 significant digits), z to 3 decimals, p-values by format.pval(digits = 3)
    assert cbpp_fit.summary().fixed_effects_lines() == [
        "            Estimate Std. Error z value Pr(>|z|)",
        "(Intercept)  -1.3985     0.2325  -6.016 1.79e-09 ***",
        "period2      -0.9923     0.3066  -3.236 0.001212 **",
        "period3      -1.1287     0.3266  -3.455 0.000549 ***",
        "period4      -1.5803     0.4274  -3.697 0.000218 ***",
        "---",
        "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1",
    ]


def test_scaled_residuals_common_decimals(cbpp_fit):
    text = str(cbpp_fit.summary())
    row = text.splitlines()[text.splitlines().index("Scaled residuals:") + 2]
    vals = row.split()
    assert len(vals) == 5 and {len(v.split(".")[1]) for v in vals} == {4}


def test_lmer_layout(sleep_fit):
    text = str(sleep_fit.summary())
    lines = text.splitlines()
    assert lines[:3] == ["Linear mixed model fit by REML",
                         "Formula: Reaction ~ Days + (Days | Subject)",
                         "   Data: sleepstudy"]
    _in_order(text, ["REML criterion at convergence: 1743.6\n",
                     "\nRandom effects:\n Groups   Name        Variance Std.Dev. Corr\n",
                     "          Days         35.07    5.922   0.07\n",
                     "\nFixed effects:\n"
                     "            Estimate Std. Error t value\n"
                     "(Intercept)  251.405      6.825  36.838\n"
                     "Days          10.467      1.546   6.771\n",
                     "\nCorrelation of Fixed Effects:\n     (Intr)\nDays -0.138"])
    assert " Residual " in text and "Signif. codes" not in text and "Pr(>" not in text


def test_ml_lmer_shows_aic_table():
    m = pyglmm.lmer("Reaction ~ Days + (Days | Subject)", datasets.load_sleepstudy(), REML=False)
    text = str(m.summary())
    assert text.startswith("Linear mixed model fit by maximum likelihood\n")
    assert "     AIC      BIC   logLik deviance df.resid\n" in text
    assert "REML criterion" not in text


def test_data_line_defaults_to_data(cbpp_fit):
    d = datasets.load_cbpp()
    assert d.attrs["name"] == "cbpp"
    d.attrs.clear()
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, family="binomial")
    assert "   Data: data\n" in str(m.summary())
    d.attrs["name"] = "my_herds"
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d, family="binomial")
    assert "   Data: my_herds\n" in str(m.summary())


def test_loaders_set_name():
    for name in datasets.list_datasets():
        assert datasets.load_dataset(name).attrs["name"] == name


def test_summary_tables_are_dataframes(cbpp_fit):
    s = cbpp_fit.summary()
    assert list(s.coefficients.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    assert list(s.scaled_residuals.index) == ["Min", "1Q", "Median", "3Q", "Max"]
    assert s.fit_statistics["AIC"] == pytest.approx(cbpp_fit.aic)
    assert repr(cbpp_fit).startswith("Generalized linear mixed model")


# --- the R formatting primitives (expected values printed by R 4.2.2) ------------------------
@pytest.mark.parametrize("x, digits, expected", [
    ([612.0898, 35.07171, 654.9415], 4, ["612.09", " 35.07", "654.94"]),
    ([24.741, 5.922, 25.592], 4, ["24.741", " 5.922", "25.592"]),
    ([0.41199], 4, ["0.412"]),
    ([194.1, 204.2, -92.0, 184.1, 51], 7, ["194.1", "204.2", "-92.0", "184.1", " 51.0"]),
    ([1e-5, 2, 3.5e5], 4, ["1.0e-05", "2.0e+00", "3.5e+05"]),
    ([123456789.123, 0.5], 7, ["123456789.1", "        0.5"]),
    ([9996.0], 3, ["9996"]),
    ([-0.0, -71.0], 2, ["  0", "-71"]),
])
def test_format_r(x, digits, expected):
    assert format_r(x, digits) == expected


def test_format_r_nsmall():
    assert format_r([1.0, -0.363, 0.28], 7, nsmall=3) == [" 1.000", "-0.363", " 0.280"]


@pytest.mark.parametrize("p, expected", [
    ([1.47e-9, 0.00106835, 0.000474, 0.000182], ["1.47e-09", "0.001068", "0.000474", "0.000182"]),
    ([0.0537, 0.126, 1e-20, 8.08e-05, 0.00322], ["0.05370", "0.12600", "< 2e-16", "8.08e-05", "0.00322"]),
    ([1e-20, 0.5], ["<2e-16", "0.5"]),
])
def test_format_pval(p, expected):
    assert format_pval(p, 3) == expected


def test_zapsmall():
    # R 4.2.2: zapsmall(c(-2.381641234, 0.51422, 2.87913), 5) and zapsmall(c(-12.381641234, 0.51422), 5)
    np.testing.assert_array_equal(zapsmall([-2.381641234, 0.51422, 2.87913], 5), [-2.38164, 0.51422, 2.87913])
    np.testing.assert_array_equal(zapsmall([-12.381641234, 0.51422], 5), [-12.3816, 0.5142])


def test_abbreviate_like_r():
    names = ["(Intercept)", "period2", "Days", "treatmentnew:hours", "genderbelow average"]
    assert abbreviate(names, 6) == ["(Intr)", "perid2", "Days", "trtmn:", "gndrba"]
    assert abbreviate(names[:4], 11) == ["(Intercept)", "period2", "Days", "trtmntnw:hr"]


def test_na_and_rank_messages_in_summary():
    d = datasets.load_cbpp()
    d["x"] = np.linspace(0, 1, len(d))
    d.loc[0, "x"] = np.nan
    d["x2"] = 3 * d["x"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pyglmm.glmer("incidence ~ period + x + x2 + (1 | herd)", d, family="poisson")
    text = str(m.summary())
    assert "   (1 row with missing values dropped; 55 used)" in text
    assert text.index("Correlation of Fixed Effects:") < text.index("fit warnings:")
    assert "dropping 1 column / coefficient: x2" in text


def test_nagq0_title_wrapped_as_lme4():
    d = datasets.load_cbpp()
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", d,
                     family="binomial", nAGQ=0)
    assert str(m.summary()).splitlines()[:2] == [
        "Generalized linear mixed model fit by maximum likelihood (Adaptive",
        "  Gauss-Hermite Quadrature, nAGQ = 0)"]


@pytest.mark.parametrize("src,f,fam", [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)", None),
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
])
def test_lazy_record_values_computed_on_first_use_and_pickled(src, f, fam):
    """Conditional variances, random effects, fitted values and (LMM) vcov are computed when
    first read, as lme4 computes condVar and vcov on request; the values are those of the fit
    (condVar against the dense solve of M), kept once computed, and computed before pickling."""
    import pickle
    import pyglmm
    from pyglmm.datasets import load_dataset
    from pyglmm.results.model import FitRecord
    d = load_dataset(src)
    m = pyglmm.lmer(f, d) if fam is None else pyglmm.glmer(f, d, family=fam)
    r = m._r
    assert isinstance(r, FitRecord) and {"condvar", "b", "T"} <= set(r._lazy)
    cv = r.condvar
    assert r.condvar is cv and "condvar" not in r._lazy
    # the first term's conditional variances from M = Lambda'Z'WZ Lambda + I, densely
    rs, sv = m._rs, m._sorted
    t = rs.terms[0]
    T = rs.T_blocks(r.theta)[0]
    Z = np.zeros((rs.n, t.q))
    for a in range(t.p):
        Z[np.arange(rs.n), t.codes * t.p + a] = t.X[:, a]
    Lam = np.kron(np.eye(t.nlevels), T)
    if fam is None:
        w, scale = sv.weights, r.sigma ** 2
    else:
        mu = r.mu[sv.perm]
        w, scale = sv.weights * mu * (1 - mu), 1.0
    M = Lam.T @ (Z.T * w) @ Z @ Lam + np.eye(t.q)
    dense = scale * Lam @ np.linalg.inv(M) @ Lam.T
    lev = np.arange(t.nlevels)
    np.testing.assert_allclose(cv[0], dense.reshape(t.nlevels, t.p, t.nlevels, t.p)[lev, :, lev, :],
                               rtol=1e-8, atol=1e-12)
    if fam is None:
        assert r.mu is r.eta
    m2 = pickle.loads(pickle.dumps(m))
    assert not m2._r._lazy
    np.testing.assert_allclose(m2._r.b[0], r.b[0])
    np.testing.assert_allclose(np.asarray(m2.vcov, float), np.asarray(m.vcov, float))
