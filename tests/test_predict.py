"""predict(): lme4 reference predictions, re_form variants, new levels, coding of new data, standard
errors, intervals and marginal means."""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pyglmm
from pyglmm import DataError

FIX = Path(__file__).parent / "reference" / "fixtures"
REHAB = "incidents ~ treatment + gender + hours + (1 + treatment | rehab)"
RE_FORMS = {"population": "~0", "conditional": None, "slope_only": "~(0 + Days | Subject)"}


def _load(name):
    return json.loads((FIX / f"predict_{name}.json").read_text())


def _newdata(cols):
    return pd.DataFrame({k: (np.array([np.nan if x is None else x for x in v], float)
                             if v and not isinstance(v[0], str) else v) for k, v in cols.items()})


@pytest.fixture(scope="module")
def rehab():
    return pyglmm.datasets.load_rehab()


@pytest.fixture(scope="module")
def m_rehab(rehab):
    return pyglmm.glmer(REHAB, rehab, family="poisson")


@pytest.fixture(scope="module")
def m_cbpp():
    return pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                        pyglmm.datasets.load_cbpp(), family="binomial")


@pytest.fixture(scope="module")
def m_sleep():
    return pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy())


@pytest.mark.parametrize("name", ["rehab", "cbpp", "sleep"])
def test_lme4_reference_predictions(name, m_rehab, m_cbpp, m_sleep):
    m = {"rehab": m_rehab, "cbpp": m_cbpp, "sleep": m_sleep}[name]
    fx = _load(name)
    np.testing.assert_allclose(m.fixef[list(fx["fixef"])].values, list(fx["fixef"].values()), rtol=1e-3)
    n_checked = 0
    for case in fx["cases"].values():
        nd = _newdata(case["newdata"])
        for key, ref in case["predictions"].items():
            rf, ty = key.rsplit("_", 1)
            got = m.predict(nd, re_form=RE_FORMS[rf], type=ty, allow_new_levels=True)
            want = np.array([np.nan if v is None else v for v in ref], float)
            # link scale: values near 0, so also an absolute tolerance (estimates agree to ~5e-5)
            atol = 1e-4 if ty == "link" else 1e-8
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=atol, err_msg=f"{name} {key}")
            n_checked += 1
    assert n_checked >= 8


def test_newdata_none_matches_fitted(m_rehab, m_sleep):
    np.testing.assert_allclose(m_rehab.predict(), m_rehab.linear_predictor)
    np.testing.assert_allclose(m_rehab.predict(type="response"), m_rehab.fitted)
    # computed from the design (se_fit path) agrees with the stored linear predictor
    df = m_rehab.predict(se_fit=True)
    np.testing.assert_allclose(df["fit"], m_rehab.linear_predictor, rtol=1e-10, atol=1e-12)
    fr = m_sleep.frame
    np.testing.assert_allclose(m_sleep.predict(re_form="~0"), fr.X @ m_sleep.fixef.values)


def test_newdata_equal_to_training_rows(m_rehab, rehab):
    np.testing.assert_allclose(m_rehab.predict(rehab, type="response"), m_rehab.fitted, rtol=1e-10)


def test_re_form_variants(m_rehab, rehab):
    nd = rehab.iloc[::37]
    pop = m_rehab.predict(nd, re_form="~0")
    for rf in ("NA", float("nan"), "~ 0", "~-1"):
        np.testing.assert_allclose(m_rehab.predict(nd, re_form=rf), pop)
    full = m_rehab.predict(nd)
    np.testing.assert_allclose(m_rehab.predict(nd, re_form="~(1 + treatment | rehab)"), full)
    # a subset of the term's columns: only the random intercept
    b = m_rehab.ranef["rehab"]
    lev = nd["rehab"].astype(str).to_numpy()
    np.testing.assert_allclose(m_rehab.predict(nd, re_form="~(1 | rehab)"),
                               pop + b.loc[lev, "(Intercept)"].to_numpy(), rtol=1e-12)
    # (0 + treatment | rehab) has full dummy coding: 'treatmentstandard' is not a column of the model
    with pytest.raises(ValueError, match="treatmentstandard"):
        m_rehab.predict(nd, re_form="(0 + treatment | rehab)")
    with pytest.raises(ValueError, match="'site'"):
        m_rehab.predict(nd, re_form="~(1 | site)")
    with pytest.raises(ValueError, match="genderfemale"):
        m_rehab.predict(nd, re_form="~(0 + gender | rehab)")


def test_new_levels(m_rehab, rehab):
    nd = rehab.iloc[:3].copy()
    nd["rehab"] = [1, 999, 1000]
    with pytest.raises(DataError, match=r"'rehab'.*999, 1000.*allow_new_levels"):
        m_rehab.predict(nd)
    got = m_rehab.predict(nd, allow_new_levels=True, type="response")
    pop = m_rehab.predict(nd, re_form="~0", type="response")
    np.testing.assert_allclose(got[1:], pop[1:])
    np.testing.assert_allclose(got[0], m_rehab.fitted[0])
    # population-level predictions do not look at the grouping column
    nd2 = nd.drop(columns="rehab")
    np.testing.assert_allclose(m_rehab.predict(nd2, re_form="~0", type="response"), pop)


def test_unseen_categorical_level_names_column(m_rehab, rehab):
    nd = rehab.iloc[:4].copy()
    nd["treatment"] = ["standard", "experimental", "new", "experimental"]
    with pytest.raises(DataError, match=r"'treatment'.*'experimental'"):
        m_rehab.predict(nd, re_form="~0")


def test_factor_coding_independent_of_newdata_levels(m_rehab, rehab):
    # a single level, strings instead of categoricals, a different category order: same coding
    nd = pd.DataFrame({"rehab": [3, 3], "treatment": ["new", "new"], "gender": ["male", "male"],
                       "hours": [2.0, 6.0]})
    nd_cat = nd.assign(treatment=pd.Categorical(nd["treatment"], categories=["new", "standard"]))
    fe = m_rehab.fixef
    want = fe["(Intercept)"] + fe["treatmentnew"] + fe["gendermale"] + fe["hours"] * nd["hours"].to_numpy()
    np.testing.assert_allclose(m_rehab.predict(nd, re_form="~0"), want, rtol=1e-12)
    np.testing.assert_allclose(m_rehab.predict(nd_cat, re_form="~0"), want, rtol=1e-12)


def test_missing_predictor_gives_nan(m_rehab, rehab):
    nd = rehab.iloc[:4].copy()
    nd["hours"] = [1.0, np.nan, 2.0, 3.0]
    nd["gender"] = nd["gender"].astype(object)
    nd.loc[3, "gender"] = None
    p = m_rehab.predict(nd, type="response")
    assert np.isnan(p[1]) and np.isnan(p[3]) and np.all(np.isfinite(p[[0, 2]]))
    df = m_rehab.predict(nd, se_fit=True, interval="confidence")
    assert df.iloc[[1, 3]].isna().all().all()


def test_scale_uses_training_centre_and_sd(rehab):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pyglmm.glmer("incidents ~ treatment + scale(hours) + log(hours + 1) + (1 | rehab)", rehab,
                         family="poisson")
    nd = rehab.iloc[[0, 50, 100]]
    np.testing.assert_allclose(m.predict(nd, type="response"), m.fitted[[0, 50, 100]], rtol=1e-10)
    assert "scale(hours)" in m.frame.scale_params


def test_offset_term_evaluated_on_newdata():
    cbpp = pyglmm.datasets.load_cbpp()
    m = pyglmm.glmer("incidence ~ period + offset(log(size)) + (1 | herd)", cbpp, family="poisson")
    nd = cbpp.iloc[:5].assign(size=cbpp["size"].iloc[:5] * 2)
    np.testing.assert_allclose(m.predict(nd, type="response"), 2 * m.fitted[:5], rtol=1e-10)


def test_interaction_grouping_factor():
    pastes = pyglmm.datasets.load_pastes()
    m = pyglmm.lmer("strength ~ 1 + (1 | batch/cask)", pastes)
    np.testing.assert_allclose(m.predict(pastes), m.fitted, rtol=1e-10)
    nd = pd.DataFrame({"batch": ["A", "B"], "cask": ["a", "z"]})
    with pytest.raises(DataError, match=r"'cask:batch'.*z:B"):
        m.predict(nd)
    p = m.predict(nd, allow_new_levels=True)
    b = m.ranef
    np.testing.assert_allclose(p[0], m.fixef.iloc[0] + b["cask:batch"].loc["a:A"].iloc[0]
                               + b["batch"].loc["A"].iloc[0])
    np.testing.assert_allclose(p[1], m.fixef.iloc[0] + b["batch"].loc["B"].iloc[0])


def test_se_fit_and_confidence_interval(m_rehab):
    nd = pd.DataFrame({"rehab": [1, 2, 3], "treatment": ["standard", "new", "new"],
                       "gender": ["female", "male", "female"], "hours": [1.0, 5.5, 9.0]})
    X = np.column_stack([np.ones(3), [0, 1, 1], [0, 1, 0], nd["hours"]])
    V = m_rehab.vcov.values
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
    link = m_rehab.predict(nd, se_fit=True, interval="confidence", level=0.9)
    np.testing.assert_allclose(link["se_link"], se, rtol=1e-12)
    np.testing.assert_allclose(link["fit"], m_rehab.predict(nd), rtol=1e-12)
    z = 1.6448536269514722
    np.testing.assert_allclose(link["lower"], link["fit"] - z * se, rtol=1e-10)
    resp = m_rehab.predict(nd, type="response", interval="confidence", level=0.9)
    assert list(resp.columns) == ["fit", "lower", "upper"]
    np.testing.assert_allclose(resp["fit"], np.exp(link["fit"]), rtol=1e-12)
    np.testing.assert_allclose(resp["lower"], np.exp(link["lower"]), rtol=1e-12)
    np.testing.assert_allclose(resp["upper"], np.exp(link["upper"]), rtol=1e-12)
    with pytest.raises(ValueError, match="interval"):
        m_rehab.predict(nd, interval="prediction")


def test_marginal_poisson_closed_form(rehab):
    m = pyglmm.glmer("incidents ~ treatment + gender + hours + (1 | rehab)", rehab, family="poisson")
    nd = rehab.iloc[::25]
    s2 = m.covariances[0][0, 0]
    eta0 = m.predict(nd, re_form="~0")
    marg = m.predict(nd, type="response", marginal=True)
    np.testing.assert_allclose(marg, np.exp(eta0 + s2 / 2.0), rtol=1e-10)
    assert np.all(marg > m.predict(nd, re_form="~0", type="response"))
    mc = m.predict(nd, type="response", marginal=True, method="mc", n_draws=20000, seed=1)
    np.testing.assert_allclose(mc, marg, rtol=0.05)
    # integrating over no term is the population-level prediction
    np.testing.assert_allclose(m.predict(nd, type="response", marginal=True, re_form="~0"), np.exp(eta0))


def test_marginal_correlated_slope_closed_form(m_rehab, rehab):
    nd = rehab.iloc[::40]
    S = m_rehab.covariances[0]
    z = np.column_stack([np.ones(len(nd)), (nd["treatment"] == "new").to_numpy(float)])
    s2 = np.einsum("ij,jk,ik->i", z, S, z)
    eta0 = m_rehab.predict(nd, re_form="~0")
    np.testing.assert_allclose(m_rehab.predict(nd, type="response", marginal=True), np.exp(eta0 + s2 / 2),
                               rtol=1e-10)
    with pytest.raises(ValueError, match="response"):
        m_rehab.predict(nd, marginal=True)


def test_marginal_probit_closed_form():
    cbpp = pyglmm.datasets.load_cbpp()
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                     family=pyglmm.make_family("binomial", "probit"))
    from scipy.stats import norm
    s2 = m.covariances[0][0, 0]
    eta0 = m.predict(cbpp, re_form="~0")
    np.testing.assert_allclose(m.predict(cbpp, type="response", marginal=True),
                               norm.cdf(eta0 / np.sqrt(1 + s2)), rtol=1e-8)


def test_polars_newdata(m_rehab, rehab):
    pl = pytest.importorskip("polars")
    nd = rehab.iloc[:10]
    pnd = pl.DataFrame({"rehab": nd["rehab"].to_list(), "treatment": nd["treatment"].astype(str).to_list(),
                        "gender": nd["gender"].astype(str).to_list(), "hours": nd["hours"].to_list()})
    np.testing.assert_allclose(m_rehab.predict(pnd, type="response"), m_rehab.fitted[:10], rtol=1e-10)
    pnd_cat = pnd.with_columns(pl.col("treatment").cast(pl.Categorical))
    np.testing.assert_allclose(m_rehab.predict(pnd_cat, re_form="~0"), m_rehab.predict(nd, re_form="~0"))


def test_se_fit_agrees_with_lme4_vcov(m_rehab):
    fx = _load("rehab")
    nd = _newdata(fx["cases"]["new"]["newdata"]).iloc[:7]
    fe = list(fx["fixef"])
    X = np.column_stack([np.ones(len(nd)), nd["treatment"] == "new", nd["gender"] == "male", nd["hours"]])
    V = np.array(fx["vcov"]["matrix"])
    assert fx["vcov"]["names"] == fe == list(m_rehab.fixef.index)
    se_lme4 = np.sqrt(np.einsum("ij,jk,ik->i", X, V, X))
    got = m_rehab.predict(nd, re_form="~0", se_fit=True, allow_new_levels=True)["se_link"]
    np.testing.assert_allclose(got, se_lme4, rtol=2e-3)
