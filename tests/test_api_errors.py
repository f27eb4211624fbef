"""Bad input gives a clear exception (or warning) whose message names the culprit."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import pyglmm
from pyglmm import ConvergenceWarning, DataError, FormulaError, datasets

CBIND = "cbind(incidence, size - incidence)"


@pytest.fixture()
def cbpp():
    return datasets.load_cbpp()


def test_unknown_column_with_suggestion(cbpp):
    with pytest.raises(DataError) as ei:
        pyglmm.glmer(f"{CBIND} ~ perod + (1 | herd)", cbpp, family="binomial")
    msg = str(ei.value)
    assert "'perod'" in msg and "not found" in msg and "did you mean 'period'" in msg


def test_unknown_grouping_column(cbpp):
    with pytest.raises(DataError, match=r"'hrd' not found in data; did you mean 'herd'"):
        pyglmm.glmer(f"{CBIND} ~ period + (1 | hrd)", cbpp, family="binomial")


def test_grouping_factor_with_one_level(cbpp):
    cbpp["farm"] = "A"
    with pytest.raises(DataError) as ei:
        pyglmm.glmer(f"{CBIND} ~ period + (1 | farm)", cbpp, family="binomial")
    assert "'farm'" in str(ei.value) and "only 1 level" in str(ei.value)


def test_negative_counts_poisson(cbpp):
    cbpp.loc[4, "incidence"] = -2
    with pytest.raises(ValueError) as ei:
        pyglmm.glmer("incidence ~ period + (1 | herd)", cbpp, family="poisson")
    msg = str(ei.value)
    assert "'incidence'" in msg and "negative" in msg and "row index 4" in msg


def test_negative_counts_cbind(cbpp):
    cbpp.loc[0, "incidence"] = -1
    with pytest.raises(DataError, match="negative counts"):
        pyglmm.glmer(f"{CBIND} ~ period + (1 | herd)", cbpp, family="binomial")


def test_non_integer_counts_warn(cbpp):
    cbpp["rate"] = cbpp["incidence"] + 0.5
    with pytest.warns(UserWarning, match=r"'rate'.*non-integer"):
        m = pyglmm.glmer("rate ~ period + (1 | herd)", cbpp, family="poisson")
    assert np.isfinite(m.loglik)


def test_binomial_response_outside_unit_interval(cbpp):
    cbpp["prop"] = cbpp["incidence"] / cbpp["size"]
    cbpp.loc[3, "prop"] = 1.5
    with pytest.raises(ValueError) as ei:
        pyglmm.glmer("prop ~ period + (1 | herd)", cbpp, family="binomial", weights="size")
    msg = str(ei.value)
    assert "'prop'" in msg and "outside [0, 1]" in msg and "1.5" in msg


@pytest.mark.parametrize("formula, position, fragment", [
    ("incidence ~ period + (1 | herd", 21, "never closed"),
    ("incidence ~ period + * (1 | herd)", 21, "unexpected '*'"),
])
def test_formula_syntax_error_has_position(cbpp, formula, position, fragment):
    with pytest.raises(FormulaError) as ei:
        pyglmm.glmer(formula, cbpp, family="poisson")
    e = ei.value
    assert isinstance(e, ValueError)
    assert fragment in str(e)
    assert e.position == position and e.formula == formula
    # the message repeats the formula with a caret under the culprit
    lines = str(e).splitlines()
    assert lines[1] == "  " + formula and lines[2] == "  " + " " * position + "^"


def test_all_na_column(cbpp):
    cbpp["temp"] = np.nan
    with pytest.raises(DataError, match=r"'temp' is entirely missing"):
        pyglmm.glmer("incidence ~ period + temp + (1 | herd)", cbpp, family="poisson")


def test_rows_with_na_are_dropped_and_reported(cbpp):
    cbpp["x"] = np.linspace(0, 1, len(cbpp))
    cbpp.loc[[1, 5], "x"] = np.nan
    m = pyglmm.glmer(f"{CBIND} ~ period + x + (1 | herd)", cbpp, family="binomial")
    assert m.frame.n_dropped_na == 2
    assert m.nobs == len(cbpp) - 2
    text = str(m.summary())
    assert "2 rows with missing values dropped" in text
    assert "Number of obs: 54," in text


def _rank_deficient_data(cbpp):
    cbpp["x"] = np.random.default_rng(1).normal(size=len(cbpp))
    cbpp["x2"] = 2 * cbpp["x"]
    return cbpp


def test_rank_deficient_fixed_effect_dropped_and_reported(cbpp):
    d = _rank_deficient_data(cbpp)
    with pytest.warns(UserWarning, match=r"rank deficient so dropping 1 column / coefficient: x2"):
        m = pyglmm.glmer("incidence ~ period + x + x2 + (1 | herd)", d, family="poisson")
    assert m.frame.dropped_fixef == ["x2"]
    assert list(m.fixef.index) == ["(Intercept)", "period2", "period3", "period4", "x"]
    ref = pyglmm.glmer("incidence ~ period + x + (1 | herd)", d, family="poisson")
    np.testing.assert_allclose(m.fixef.values, ref.fixef.values, rtol=1e-8)
    text = str(m.summary())
    assert "fixed-effect model matrix is rank deficient so dropping 1 column / coefficient: x2" in text


def test_formula_without_random_effects(cbpp):
    with pytest.raises(ValueError, match=r"no random-effects terms"):
        pyglmm.glmer("incidence ~ period", cbpp, family="poisson")
    with pytest.raises(ValueError, match=r"no random-effects terms"):
        pyglmm.lmer("incidence ~ period", cbpp)


def test_lmer_grouping_factor_with_a_level_per_row(cbpp):
    cbpp["obs"] = np.arange(len(cbpp))
    with pytest.raises(ValueError) as ei:
        pyglmm.lmer("incidence ~ period + (1 | obs)", cbpp)
    msg = str(ei.value)
    assert "'obs'" in msg and "as many levels (56) as observations (56)" in msg


def test_polars_input_matches_pandas():
    pl = pytest.importorskip("polars")
    pytest.importorskip("pyarrow")
    cbpp = datasets.load_cbpp()
    f = f"{CBIND} ~ period + (1 | herd)"
    m_pd = pyglmm.glmer(f, cbpp, family="binomial")
    m_pl = pyglmm.glmer(f, pl.from_pandas(cbpp), family="binomial")
    assert list(m_pl.fixef.index) == list(m_pd.fixef.index)
    np.testing.assert_allclose(m_pl.fixef.values, m_pd.fixef.values, rtol=0, atol=1e-10)
    assert m_pl.loglik == pytest.approx(m_pd.loglik, abs=1e-10)


def test_family_typo_lists_valid_families(cbpp):
    with pytest.raises(ValueError) as ei:
        pyglmm.glmer(f"{CBIND} ~ period + (1 | herd)", cbpp, family="poison")
    msg = str(ei.value)
    assert "'poison'" in msg
    for fam in ("'poisson'", "'binomial'", "'gaussian'", "'Gamma'", "'nbinom2'"):
        assert fam in msg


def _null_group_data(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=100)
    return pd.DataFrame({"y": 1 + 0.5 * x + rng.normal(size=100), "x": x,
                         "g": np.repeat(np.arange(10), 10)})


def test_singular_fit_is_flagged():
    d = _null_group_data()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        m = pyglmm.lmer("y ~ x + (1 | g)", d)
    assert m.singular is True
    msgs = [str(w.message) for w in rec if issubclass(w.category, UserWarning)]
    assert any("singular" in s for s in msgs), msgs
    assert any(issubclass(w.category, ConvergenceWarning) for w in rec)
    assert "singular" in str(m.summary())


def test_singular_glmer_fit_is_flagged(cbpp):
    # a Poisson GLMM whose grouping factor carries no signal: variance estimated as zero
    rng = np.random.default_rng(3)
    d = pd.DataFrame({"y": rng.poisson(3.0, size=120), "g": np.repeat(np.arange(12), 10)})
    with pytest.warns(UserWarning, match="singular"):
        m = pyglmm.glmer("y ~ 1 + (1 | g)", d, family="poisson")
    assert m.singular is True
