"""pyglmm.inference against real R (lme4 anova / confint, car::Anova); fixtures made by
tests/reference/make_inference_fixtures.R — R is not needed to run these tests.

lme4's default glmer fits stop PIRLS at a loose tolerance (see test_lme4_reference.py), so
its log-likelihoods are a little low (pyglmm's may be higher by ~1e-3) and its Hessian-based
standard errors off by up to a few percent. LRT tables are therefore compared at ~1e-3
relative; Wald quantities are compared with the fixtures' ``*_tight`` entries (lme4 with
tolPwrss = 1e-12, the objective pyglmm optimises), and the Wald algebra itself (type II / III
hypothesis matrices) exactly, by feeding R's own estimates and covariance matrix to it.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pyglmm
from pyglmm import datasets
from pyglmm.inference import NotNestedWarning, mixture_pvalue, term_columns
from pyglmm.inference.rformat import format_numbers, format_pval

FIX = Path(__file__).parent / "reference" / "fixtures"


def _load(fid):
    p = FIX / f"inference_{fid}.json"
    if not p.exists():
        pytest.skip(f"fixture inference_{fid} not generated")
    with open(p) as fh:
        return json.load(fh)


def _table(ref):
    cols = {k: [np.nan if v is None else v for v in vals] for k, vals in ref["columns"].items()}
    return pd.DataFrame(cols, index=ref["rownames"])


def _fit(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


@pytest.fixture(scope="module")
def rehab():
    return datasets.load_rehab()


@pytest.fixture(scope="module")
def rehab_models(rehab):
    f = _load("anova_rehab")["formulas"]
    return {k: _fit(pyglmm.glmer, v, rehab, family="poisson") for k, v in f.items()}


@pytest.fixture(scope="module")
def cbpp_models():
    d = datasets.load_cbpp()
    f = _load("anova_cbpp")["formulas"]
    return {k: _fit(pyglmm.glmer, v, d, family="binomial") for k, v in f.items()}


@pytest.fixture(scope="module")
def sleep_models():
    d = datasets.load_sleepstudy()
    f = _load("anova_sleep")["formulas"]
    return {k: _fit(pyglmm.lmer, v, d) for k, v in f.items()}


@pytest.fixture(scope="module")
def cross_model(rehab):
    ref = _load("car_rehab_cross")
    return _fit(pyglmm.glmer, ref["formula"], rehab, family="poisson")


# ----------------------------------------------------------------------------- anova (LRT)
def _check_anova(a, ref):
    exp = _table(ref["table"])
    got = a.table
    assert list(got.index) == ref["order"] == list(exp.index)
    assert list(got.columns) == list(exp.columns)
    np.testing.assert_array_equal(got["npar"], exp["npar"])
    np.testing.assert_array_equal(got["Df"].iloc[1:], exp["Df"].iloc[1:])
    assert np.isnan(got["Chisq"].iloc[0]) and np.isnan(got["Pr(>Chisq)"].iloc[0])
    for c in ("AIC", "BIC", "logLik", "deviance"):
        np.testing.assert_allclose(got[c], exp[c], rtol=1e-5)
    np.testing.assert_allclose(got["Chisq"].iloc[1:], exp["Chisq"].iloc[1:], rtol=1e-3)
    np.testing.assert_allclose(got["Pr(>Chisq)"].iloc[1:], exp["Pr(>Chisq)"].iloc[1:], rtol=2e-3)
    # logLik at least as high as lme4's (loose PIRLS in lme4), never much higher
    assert np.all(got["logLik"].to_numpy() >= exp["logLik"].to_numpy() - 1e-5)
    # R's printed layout: identical heading lines, same header and row structure
    lines = str(a).splitlines()
    printed = ref["printed"]
    n_head = 2 + len(ref["order"])
    assert lines[:n_head] == printed[:n_head]
    assert lines[n_head] == printed[n_head]            # column header line
    assert lines[-2:] == printed[-2:]                  # signif legend
    for g, e in zip(lines[n_head + 1:-2], printed[n_head + 1:-2]):
        assert g.split()[:5] == e.split()[:5] or len(g) == len(e)


def test_anova_rehab_poisson(rehab_models):
    ref = _load("anova_rehab")
    m = rehab_models
    a = pyglmm.anova(m["m2"], m["m0"], m["m1"], names=["m2", "m0", "m1"])   # any order
    _check_anova(a, ref)
    assert a.messages == []


def test_anova_caller_names(rehab_models):
    m0, m1 = rehab_models["m0"], rehab_models["m1"]
    a = pyglmm.anova(m0, m1)
    assert list(a.table.index) == ["m0", "m1"]
    assert "m0: incidents ~ treatment + gender + (1 | rehab)" in str(a)


def test_anova_cbpp_binomial(cbpp_models):
    ref = _load("anova_cbpp")
    a = pyglmm.anova(cbpp_models["g0"], cbpp_models["g1"], names=["g0", "g1"])
    _check_anova(a, ref)
    lines = str(a).splitlines()
    assert lines[5].split()[:2] == ["g0", "2"]
    # R's digits for this column: 3 decimals (5 significant for -92.03), as "-104.832" / "-92.027"
    assert re.search(r" -104\.83\d ", lines[5]) and re.search(r" -92\.02\d ", lines[6])


def test_anova_sleepstudy_refits_reml_by_ml(sleep_models, capsys):
    ref = _load("anova_sleep")
    fm0, fm1 = sleep_models["fm0"], sleep_models["fm1"]
    assert fm0.REML and fm1.REML
    a = pyglmm.anova(fm1, fm0, names=["fm1", "fm0"])
    err = capsys.readouterr().err
    assert "refitting model(s) with ML (instead of REML)" in err
    assert ref["messages"][0].strip() == a.messages[0]
    assert all(not m.REML for m in a.models)
    _check_anova(a, ref)
    # LMMs optimise the exact objective: tight agreement with lme4
    exp = _table(ref["table"])
    np.testing.assert_allclose(a.table["logLik"], exp["logLik"], rtol=1e-7)
    np.testing.assert_allclose(a.table["Chisq"].iloc[1], exp["Chisq"].iloc[1], rtol=1e-5)
    assert str(a).splitlines() == ref["printed"]            # byte-identical print
    # originals untouched
    assert fm0.REML and fm1.REML


# ----------------------------------------------------------------------------- errors
def test_anova_different_number_of_rows(rehab):
    d = rehab.copy()
    d.loc[d.index[:5], "hours"] = np.nan
    m_a = _fit(pyglmm.glmer, "incidents ~ treatment + (1 | rehab)", d, family="poisson")
    m_b = _fit(pyglmm.glmer, "incidents ~ treatment + hours + (1 | rehab)", d, family="poisson")
    with pytest.raises(ValueError, match="same size of dataset"):
        pyglmm.anova(m_a, m_b)


def test_anova_different_rows_same_count(rehab):
    d = rehab.copy()
    d["x"] = d["hours"]
    d.loc[d.index[:5], "hours"] = np.nan
    d.loc[d.index[5:10], "x"] = np.nan
    m_a = _fit(pyglmm.glmer, "incidents ~ treatment + hours + (1 | rehab)", d, family="poisson")
    m_b = _fit(pyglmm.glmer, "incidents ~ treatment + x + (1 | rehab)", d, family="poisson")
    assert m_a.nobs == m_b.nobs
    with pytest.raises(ValueError, match="different rows"):
        pyglmm.anova(m_a, m_b)


def test_anova_different_response_and_family(rehab, rehab_models):
    d = rehab.copy()
    d["inc2"] = d["incidents"] + 1
    m_y = _fit(pyglmm.glmer, "inc2 ~ treatment + gender + (1 | rehab)", d, family="poisson")
    with pytest.raises(ValueError, match="different responses"):
        pyglmm.anova(rehab_models["m0"], m_y)
    d["any"] = (d["incidents"] > 0).astype(float)
    m_bin = _fit(pyglmm.glmer, "any ~ treatment + gender + (1 | rehab)", d, family="binomial")
    m_bin0 = _fit(pyglmm.glmer, "any ~ treatment + (1 | rehab)", d, family="binomial")
    with pytest.raises(ValueError, match="different families"):
        pyglmm.anova(m_bin0, rehab_models["m1"])
    with pytest.raises(ValueError, match="two or more"):
        pyglmm.anova(m_bin)


def test_anova_not_nested_warnings(rehab, rehab_models):
    import copy
    m = rehab_models
    # a "larger" model with a lower log-likelihood (stand-in: the fit record's logLik lowered)
    big = copy.copy(m["m2"])
    big._r = copy.copy(m["m2"]._r)
    big._r.loglik = m["m0"].loglik - 1.0
    with pytest.warns(NotNestedWarning, match="lower log-likelihood"):
        a = pyglmm.anova(m["m0"], big, names=["small", "big"])
    assert a.table["Chisq"].iloc[1] == 0.0                   # R: 2 * pmax(0, diff(logLik))
    # same number of parameters, different log-likelihoods: printed, no test, warning
    alt = _fit(pyglmm.glmer, "incidents ~ treatment + hours + (1 | rehab)", rehab, family="poisson")
    with pytest.warns(NotNestedWarning, match="same number of parameters"):
        a = pyglmm.anova(m["m0"], alt, names=["m0", "alt"])
    assert np.isnan(a.table["Pr(>Chisq)"].iloc[1])
    # more parameters but not containing the smaller model's fixed effects
    slope = _fit(pyglmm.glmer, "incidents ~ treatment + gender + (1 + treatment | rehab)", rehab,
                 family="poisson")
    with pytest.warns(NotNestedWarning, match="does not look nested"):
        pyglmm.anova(m["m1"], slope, names=["m1", "slope"])


# ----------------------------------------------------------------------------- boundary LRT
def test_mixture_pvalue_formula():
    for x, df in [(3.2, 1), (5.0, 2), (0.7, 3), (12.0, 4)]:
        naive = stats.chi2.sf(x, df)
        lower = 0.0 if df == 1 else stats.chi2.sf(x, df - 1)
        mix = mixture_pvalue(x, df)
        assert mix == pytest.approx(0.5 * lower + 0.5 * naive, rel=1e-12)
        assert mix < naive
    assert mixture_pvalue(3.2, 1) == pytest.approx(0.5 * stats.chi2.sf(3.2, 1))
    assert mixture_pvalue(0.0, 1) == pytest.approx(1.0)


def test_boundary_anova_column(rehab_models):
    m = rehab_models
    a = pyglmm.anova(m["m0"], m["m1"], m["m2"], boundary=True, names=["m0", "m1", "m2"])
    t = a.table
    assert "Pr(>Chisq) mix" in t.columns
    assert np.isnan(t["Pr(>Chisq) mix"].iloc[1])        # m1 adds a fixed effect: no correction
    x, df = t["Chisq"].iloc[2], int(t["Df"].iloc[2])     # m2 adds a slope variance + covariance
    assert df == 2
    p_mix = t["Pr(>Chisq) mix"].iloc[2]
    assert p_mix == pytest.approx(0.5 * stats.chi2.sf(x, 1) + 0.5 * stats.chi2.sf(x, 2), rel=1e-12)
    assert p_mix < t["Pr(>Chisq)"].iloc[2]
    s = str(a)
    assert "Pr(>Chisq) mix" in s and "Pr(>Chisq)" in s


def test_lrt_boundary_function(rehab_models, sleep_models):
    r = pyglmm.lrt_boundary(rehab_models["m1"], rehab_models["m2"])
    assert r.df == 2 and r.added_variances == 1
    assert r.p_mixture == pytest.approx(0.5 * stats.chi2.sf(r.chisq, 1) + 0.5 * stats.chi2.sf(r.chisq, 2))
    assert r.p_mixture < r.p_naive
    ref = _table(_load("anova_sleep")["table"])
    r2 = pyglmm.lrt_boundary(sleep_models["fm0"], sleep_models["fm1"], quiet=True)
    assert r2.chisq == pytest.approx(ref["Chisq"].iloc[1], rel=1e-5)
    assert r2.p_naive == pytest.approx(ref["Pr(>Chisq)"].iloc[1], rel=1e-4)
    with pytest.raises(ValueError, match="random-effect variances"):
        pyglmm.lrt_boundary(rehab_models["m0"], rehab_models["m1"])   # adds a fixed effect


# ----------------------------------------------------------------------------- Wald tests
def _r_stand_in(model, ref):
    """The pyglmm model with lme4's (tight) estimates and covariance: checks the algebra exactly."""
    names = ref["fixef_names"]
    assert names == list(model.frame.fixef_names)
    return SimpleNamespace(formula=model.formula, frame=model.frame,
                           fixef=pd.Series(ref["fixef_tight"], index=names),
                           vcov=pd.DataFrame(ref["vcov_tight"], index=names, columns=names))


@pytest.mark.parametrize("fid", ["car_rehab_cross", "car_cbpp"])
@pytest.mark.parametrize("typ", ["III", "II"])
def test_wald_tests_match_car(fid, typ, cross_model, cbpp_models):
    ref = _load(fid)
    model = cross_model if fid == "car_rehab_cross" else cbpp_models["g1"]
    key = "type3" if typ == "III" else "type2"
    exp_t = _table(ref[f"{key}_tight"])
    # exact algebra: car's statistics from R's own estimates
    from pyglmm.inference import wald_tests
    w_exact = wald_tests(_r_stand_in(model, ref), type=typ)
    assert list(w_exact.table.index) == list(exp_t.index)
    np.testing.assert_allclose(w_exact.table["Chisq"], exp_t["Chisq"], rtol=1e-8)
    np.testing.assert_array_equal(w_exact.table["Df"], exp_t["Df"])
    np.testing.assert_allclose(w_exact.table["Pr(>Chisq)"], exp_t["Pr(>Chisq)"], rtol=1e-6)
    # pyglmm's own fit (rehab_cross: lme4's optimizer stops short, so agreement to ~1%)
    w = model.wald_tests(type=typ)
    tol = 1e-2 if fid == "car_rehab_cross" else 2e-3
    np.testing.assert_allclose(w.table["Chisq"], exp_t["Chisq"], rtol=tol)
    # car's default-fit table and layout
    exp_d = _table(ref[key])
    np.testing.assert_allclose(w.table["Chisq"], exp_d["Chisq"], rtol=0.05)
    printed = ref["printed3" if typ == "III" else "printed2"]
    lines = str(w).splitlines()
    assert lines[:4] == printed[:4] and lines[-2:] == printed[-2:]
    assert [ln.split()[0] for ln in lines[4:-2]] == [ln.split()[0] for ln in printed[4:-2]]


def test_term_columns(cross_model, cbpp_models):
    tc = {t.label: [cross_model.frame.fixef_names[j] for j in t.columns] for t in term_columns(cross_model)}
    assert tc == {"(Intercept)": ["(Intercept)"], "treatment": ["treatmentnew"], "hours": ["hours"],
                  "gender": ["gendermale"], "treatment:hours": ["treatmentnew:hours"]}
    tc = {t.label: list(t.columns) for t in term_columns(cbpp_models["g1"])}
    assert tc == {"(Intercept)": [0], "period": [1, 2, 3]}


def test_wald_type_errors(cbpp_models):
    with pytest.raises(ValueError, match="type must be"):
        cbpp_models["g1"].wald_tests(type="I")
    assert pyglmm.wald_tests(cbpp_models["g1"], type=3).type == "III"


# ----------------------------------------------------------------------------- confint
@pytest.mark.parametrize("fid", ["confint_cbpp", "confint_rehab", "confint_sleep"])
def test_confint_wald(fid, cbpp_models, rehab_models, sleep_models):
    ref = _load(fid)
    model = {"confint_cbpp": cbpp_models["g1"], "confint_rehab": rehab_models["m2"],
             "confint_sleep": sleep_models["fm1"]}[fid]
    ci = model.confint(method="Wald")
    assert list(ci.index) == ref["rownames"]
    assert list(ci.columns) == ref["colnames"] == ["2.5 %", "97.5 %"]
    lo = np.array([np.nan if v is None else v for v in ref["lower_tight"]], float)
    hi = np.array([np.nan if v is None else v for v in ref["upper_tight"]], float)
    np.testing.assert_array_equal(np.isnan(ci.iloc[:, 0]), np.isnan(lo))
    ok = ~np.isnan(lo)
    se = (hi - lo)[ok] / (2 * stats.norm.ppf(0.975))
    tol = 1e-4 if fid == "confint_sleep" else 5e-3
    np.testing.assert_array_less(np.abs(ci.iloc[:, 0].to_numpy()[ok] - lo[ok]), tol * se + 1e-8)
    np.testing.assert_array_less(np.abs(ci.iloc[:, 1].to_numpy()[ok] - hi[ok]), tol * se + 1e-8)


def test_confint_dispatch_and_parm(cbpp_models):
    m = cbpp_models["g1"]
    ci90 = pyglmm.confint(m, level=0.9, parm="beta_")
    assert list(ci90.columns) == ["5 %", "95 %"]
    assert list(ci90.index) == list(m.fixef.index)
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose(ci90.iloc[:, 0], m.fixef - z * m.se)
    assert list(m.confint(parm="theta_").index) == [".sig01"]
    assert list(m.confint(parm=[2]).index) == ["(Intercept)"]
    with pytest.raises(ValueError, match="unknown confint method"):
        m.confint(method="bayes")


# ----------------------------------------------------------------------------- exp_fixef
def test_exp_fixef(rehab_models, cbpp_models, sleep_models):
    m = rehab_models["m1"]
    e = m.exp_fixef()
    assert list(e.columns) == ["estimate", "lower", "upper", "label"]
    assert e.attrs["label"] == "rate ratio"
    assert e.loc["hours", "label"] == "rate ratio" and e.loc["(Intercept)", "label"] == "baseline rate"
    np.testing.assert_allclose(e["estimate"], np.exp(m.fixef))
    np.testing.assert_allclose(e["upper"], np.exp(m.fixef + stats.norm.ppf(0.975) * m.se))
    assert cbpp_models["g1"].exp_fixef(level=0.9).attrs["label"] == "odds ratio"
    with pytest.raises(ValueError, match="identity link"):
        sleep_models["fm1"].exp_fixef()
    from pyglmm.inference import ratio_label
    fake = lambda fam, link: SimpleNamespace(is_lmm=False, family=SimpleNamespace(
        name=fam, link=SimpleNamespace(name=link)))
    assert ratio_label(fake("nbinom2", "log")) == "rate ratio"
    assert ratio_label(fake("Gamma", "log")) == "ratio"
    assert ratio_label(fake("binomial", "cloglog")) == "hazard ratio"
    with pytest.raises(ValueError, match="probit"):
        ratio_label(fake("binomial", "probit"))


# ----------------------------------------------------------------------------- R formatting
def test_r_number_formatting():
    assert format_numbers([4084.2485, 4074.8853], 5) == ["4084.2", "4074.9"]
    assert format_numbers([-104.832, -92.027], 5) == ["-104.832", "-92.027"]
    assert format_pval([0.00074914, 2.9396e-13], 4) == ["0.0007491", "2.94e-13"]
    assert format_pval([0.052031, 0.122614, 7.487e-05, 1e-25, 0.002999], 4) == \
        ["0.052031", "0.122614", "7.487e-05", "< 2.2e-16", "0.002999"]
