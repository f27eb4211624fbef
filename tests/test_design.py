"""Tests of model_frame: R/lme4 coefficient names, contrasts, NA handling, responses, errors, input types."""
from __future__ import annotations

import pathlib
import sys

try:
    import pyglmm  # noqa: F401
except ImportError:  # not installed: use the src layout directly
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "src"))

import numpy as np
import pandas as pd
import pytest

from pyglmm.design import DataError, lme4_term_order, model_frame, to_pandas
from pyglmm.fit.compiled import frame_kernels as compiled_frame


@pytest.fixture
def epil() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 24
    return pd.DataFrame({
        "y": rng.poisson(3, n).astype(float),
        "lbase": rng.normal(size=n), "lage": rng.normal(size=n), "V4": np.tile([0, 0, 0, 1], 6),
        "trt": np.repeat(["placebo", "progabide"], 12), "period": np.tile([1, 2, 3, 4], 6),
        "subject": np.repeat(np.arange(1, 9), 3),
        "a": np.tile(list("pqr"), 8), "b": np.repeat(list("uv"), 12), "x": np.arange(24.0),
        "flag": np.tile([True, False, False, True], 6),
    })


def test_epilepsy_names(epil):
    m = model_frame("y ~ lbase*trt + lage + V4 + (1 | subject)", epil)
    assert m.fixef_names == ["(Intercept)", "lbase", "trtprogabide", "lage", "V4", "lbase:trtprogabide"]
    np.testing.assert_array_equal(m.X[:, 2], (epil.trt == "progabide").astype(float))
    np.testing.assert_allclose(m.X[:, 5], epil.lbase * (epil.trt == "progabide"))
    rt = m.reterms[0]
    assert rt.group_name == "subject" and rt.levels == [str(i) for i in range(1, 9)]
    assert rt.colnames == ["(Intercept)"] and rt.X.shape == (24, 1) and rt.codes.dtype == np.int64
    np.testing.assert_array_equal(rt.codes, epil.subject - 1)
    assert m.n_dropped_na == 0 and m.binomial_response_kind is None
    np.testing.assert_array_equal(m.offset, 0) and np.testing.assert_array_equal(m.weights, 1)


def test_factor_period_and_functions(epil):
    epil["period"] = pd.Categorical(epil["period"])
    m = model_frame("y ~ period + I(x^2) + log(x + 1) + scale(lage)", epil)
    assert m.fixef_names == ["(Intercept)", "period2", "period3", "period4", "I(x^2)", "log(x + 1)",
                             "scale(lage)"]
    np.testing.assert_allclose(m.X[:, 4], epil.x ** 2)
    np.testing.assert_allclose(m.X[:, 6], (epil.lage - epil.lage.mean()) / epil.lage.std(ddof=1))
    assert m.xlevels["period"] == ["1", "2", "3", "4"]
    m2 = model_frame("y ~ factor(period)", epil.assign(period=np.tile([1, 2, 3, 4], 6)))
    assert m2.fixef_names == ["(Intercept)", "factor(period)2", "factor(period)3", "factor(period)4"]


def test_reference_level_bool_and_backquotes(epil):
    df = epil.assign(**{"my col": epil.x})
    m = model_frame("y ~ C(a, ref = 'q') + flag + `my col`", df)
    assert m.fixef_names == ["(Intercept)", 'C(a, ref = "q")p', 'C(a, ref = "q")r', "flagTRUE", "`my col`"]
    np.testing.assert_array_equal(m.X[:, 1], (epil.a == "p").astype(float))


def test_interaction_contrast_rules(epil):
    assert model_frame("y ~ a + a:b", epil).fixef_names == ["(Intercept)", "aq", "ar", "ap:bv", "aq:bv", "ar:bv"]
    assert model_frame("y ~ 0 + x:a + b", epil).fixef_names == ["bu", "bv", "x:ap", "x:aq", "x:ar"]
    assert model_frame("y ~ x:b + a:x", epil).fixef_names == ["(Intercept)", "x:bu", "x:bv", "x:aq", "x:ar"]
    assert model_frame("y ~ 0 + a + b", epil).fixef_names == ["ap", "aq", "ar", "bv"]


def test_rank_deficient_column_dropped(epil):
    m = model_frame("y ~ a:b", epil)  # full coding of both factors: 6 columns + intercept
    assert m.fixef_names == ["(Intercept)", "ap:bu", "aq:bu", "ar:bu", "ap:bv", "aq:bv"]
    assert m.dropped_fixef == ["ar:bv"] and m.X.shape == (24, 6)
    m2 = model_frame("y ~ x + I(2*x)", epil)
    assert m2.dropped_fixef == ["I(2 * x)"]


def test_na_rows_dropped_and_counted(epil):
    epil.loc[3, "x"] = np.nan
    epil.loc[5, "a"] = None
    epil.loc[7, "lage"] = np.nan  # not used: must not drop
    m = model_frame("y ~ x + (1|a)", epil)
    assert m.n_dropped_na == 2 and len(m.y) == 22
    np.testing.assert_array_equal(m.rows, [i for i in range(24) if i not in (3, 5)])
    np.testing.assert_array_equal(m.y, epil.y.drop([3, 5]).to_numpy())
    epil["w"] = 1.0
    epil.loc[10, "w"] = np.nan
    assert model_frame("y ~ x", epil, weights="w").n_dropped_na == 2


def test_random_terms(epil):
    m = model_frame("y ~ 1 + (1 + x | a:b) + (x || b/a) + (0 + a | b)", epil)
    got = [(r.group_name, r.colnames, r.correlated) for r in m.reterms]
    assert got == [("a:b", ["(Intercept)", "x"], True),
                   ("a:b", ["(Intercept)"], False), ("b", ["(Intercept)"], False),
                   ("a:b", ["x"], False), ("b", ["x"], False),
                   ("b", ["ap", "aq", "ar"], True)]
    assert m.reterms[0].levels == ["p:u", "p:v", "q:u", "q:v", "r:u", "r:v"]
    codes = m.reterms[0].codes
    labels = [m.reterms[0].levels[c] for c in codes]
    assert labels == [f"{a}:{b}" for a, b in zip(epil.a, epil.b)]
    assert lme4_term_order(m.reterms) == [3, 1, 0, 5, 4, 2]  # nl = 6,6,2,6,2,2


def test_numeric_grouping_levels_and_lme4_order():
    df = pd.DataFrame({"y": np.arange(8.0), "g": [1, 2, 10, 2.5] * 2, "h": ["b", "a"] * 4})
    m = model_frame("y ~ (1|h) + (1|g) + (1|h:g)", df)
    assert m.reterms[1].levels == ["1", "2", "2.5", "10"]
    assert m.reterms[2].levels == ["a:2", "a:2.5", "b:1", "b:10"]
    assert lme4_term_order(m.reterms) == [2, 1, 0]  # rev(order(nl)) as in lme4's mkReTrms


def test_binomial_responses():
    df = pd.DataFrame({"s": [1, 0, 3, 0], "n": [4, 2, 3, 0], "r": ["no", "yes", "yes", "no"],
                       "p": [0.5, 0.0, 1.0, 0.25], "g": list("aabb"), "r3": list("abcb")})
    m = model_frame("cbind(s, n - s) ~ 1 + (1|g)", df, binomial=True)
    np.testing.assert_allclose(m.y, [0.25, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(m.weights, [4, 2, 3, 0])
    assert m.binomial_response_kind == "cbind" and m.response_name == "cbind(s, n - s)"
    m = model_frame("r ~ 1", df, binomial=True)
    np.testing.assert_array_equal(m.y, [0, 1, 1, 0]) and m.binomial_response_kind == "factor"
    assert model_frame("p ~ 1", df, binomial=True).binomial_response_kind == "numeric"
    with pytest.raises(DataError, match=r"r3.*a, b, c"):
        model_frame("r3 ~ 1", df, binomial=True)
    with pytest.raises(DataError, match=r"response 'r' is not numeric"):
        model_frame("r ~ 1", df)


def test_offsets_and_weights_args(epil):
    m = model_frame("y ~ x + offset(log(lage + 10))", epil, offset=np.ones(24), weights="V4")
    np.testing.assert_allclose(m.offset, np.log(epil.lage + 10) + 1)
    np.testing.assert_array_equal(m.weights, epil.V4)
    with pytest.raises(DataError, match="length"):
        model_frame("y ~ x", epil, offset=np.ones(3))


def test_data_errors(epil):
    with pytest.raises(DataError, match=r"column 'hour' not found in data; did you mean 'hours'"):
        model_frame("y ~ hour", epil.assign(hours=1.0))
    with pytest.raises(DataError, match=r"grouping factor 'b' has only 1 level"):
        model_frame("y ~ 1 + (1|b)", epil.assign(b="u"))
    with pytest.raises(DataError, match=r"'x'.*1 infinite"):
        model_frame("y ~ x", epil.assign(x=np.r_[np.inf, np.arange(23.0)]))
    with pytest.raises(DataError, match=r"'a' is not numeric"):
        model_frame("y ~ I(a^2)", epil)
    with pytest.raises(DataError, match=r"'x' is entirely missing"):
        model_frame("y ~ x", epil.assign(x=np.nan))
    dup = pd.concat([epil[["y", "x"]], epil[["x"]]], axis=1)
    with pytest.raises(DataError, match="duplicate column names: 'x'"):
        model_frame("y ~ x", dup)
    na = epil.assign(x=[np.nan, 1.0] * 12, lbase=[1.0, np.nan] * 12)
    with pytest.raises(DataError, match=r"no rows left.*'x'.*'lbase'"):
        model_frame("y ~ x + lbase", na)
    with pytest.raises(DataError, match="unsupported data type"):
        to_pandas([1, 2, 3])


def test_polars_and_arrow_inputs_match_pandas(epil):
    pl = pytest.importorskip("polars")
    pa = pytest.importorskip("pyarrow")
    f = "y ~ lbase*trt + (1 + x | a:b)"
    ref = model_frame(f, epil)
    for data in (pl.from_pandas(epil), pa.Table.from_pandas(epil), {c: epil[c].to_numpy() for c in epil}):
        m = model_frame(f, data)
        assert m.fixef_names == ref.fixef_names
        np.testing.assert_array_equal(m.X, ref.X)
        np.testing.assert_array_equal(m.y, ref.y)
        np.testing.assert_array_equal(m.reterms[0].codes, ref.reterms[0].codes)
        assert m.reterms[0].levels == ref.reterms[0].levels
        np.testing.assert_array_equal(m.reterms[0].X, ref.reterms[0].X)


def test_large_integer_groups_labels_and_codes():
    """Integer group ids take the vectorised paths (labels as R prints them, counting-sort codes)."""
    from pyglmm.design.grouping import _dense_unique
    from pyglmm.formula.numfmt import format_r_number, format_r_numbers
    from pyglmm.linalg.restructure import stable_group_order
    vals = np.array([0, 7, -3, 100000, 120000, 2e6, -100000, 1e14, 123456789, 5e5])
    assert format_r_numbers(vals) == [format_r_number(float(v)) for v in vals]
    assert format_r_numbers(vals)[3] == "1e+05" and format_r_numbers(vals)[4] == "120000"
    assert format_r_numbers([0.5, 2.25]) == ["0.5", "2.25"]
    rng = np.random.default_rng(4)
    codes = rng.integers(0, 50, 2000)
    np.testing.assert_array_equal(stable_group_order(codes, 50), np.argsort(codes, kind="stable"))
    key = rng.integers(0, 10**12, 500)          # sparse keys: falls back to np.unique
    for k in (codes, key):
        uk, inv = _dense_unique(k)
        uk0, inv0 = np.unique(k, return_inverse=True)
        np.testing.assert_array_equal(uk, uk0)
        np.testing.assert_array_equal(inv, inv0.reshape(-1))
    df = pd.DataFrame({"y": rng.normal(size=2000), "g": pd.Categorical(codes * 100000)})
    fr = model_frame("y ~ 1 + (1 | g)", df, binomial=False)
    assert fr.reterms[0].levels[:3] == ["0", "1e+05", "2e+05"]


def test_rank_check_matches_r_tolerance_on_both_paths():
    """R's qr(X, tol = 1e-7) semantics: a column whose part orthogonal to the earlier ones is below
    1e-7 of its norm is dropped. Clearly full-rank designs take the Gram-matrix shortcut; near
    dependence takes the QR path, on either side of the tolerance."""
    from pyglmm.design.matrix import rank_deficient_columns
    rng = np.random.default_rng(2)
    X = np.column_stack([np.ones(500), rng.normal(size=(500, 3))])
    assert rank_deficient_columns(X) == []
    for eps, dropped in [(1e-6, []), (1e-9, [4]), (0.0, [4])]:
        extra = X[:, 1] + 2 * X[:, 2] + eps * rng.normal(size=500)
        assert rank_deficient_columns(np.column_stack([X, extra])) == dropped, eps
    assert rank_deficient_columns(np.column_stack([X, np.zeros(500)])) == [4]


def test_categorical_labels_follow_the_categories_object():
    """Factor labels of a Categorical column are cached per categories object (an immutable
    Index): renamed or reordered categories are new objects and give new labels; the returned
    list is the caller's own."""
    from pyglmm.design.variables import factor_from_values
    cat = pd.Categorical(["b", "a", "c", "a"], categories=["b", "a", "c"])
    v1 = factor_from_values(cat, "g")
    assert v1.levels == ["b", "a", "c"] and v1.codes.tolist() == [0, 1, 2, 1]
    v1.levels.append("junk")                     # must not reach the cache
    assert factor_from_values(cat, "g").levels == ["b", "a", "c"]
    renamed = cat.rename_categories(["x", "y", "z"])
    assert factor_from_values(renamed, "g").levels == ["x", "y", "z"]
    nums = pd.Categorical([2.5, 1.0, 2.5])
    assert factor_from_values(nums, "g").levels == ["1", "2.5"]


def test_small_gram_factor_matches_lapack():
    """The Python Cholesky of the unit-norm Gram matrix (few columns) gives LAPACK's smallest
    diagonal, and 0 for dependent columns (then the QR decides, as R's qr)."""
    from pyglmm.design.matrix import _unit_gram_diag_min, rank_deficient_columns
    rng = np.random.default_rng(3)
    for p in (2, 3, 5, 8):
        X = rng.normal(size=(40, p)) * rng.uniform(0.1, 100, p)
        G = X.T @ X
        nrm = np.sqrt(G.diagonal())
        ref = np.linalg.cholesky(G / np.outer(nrm, nrm)).diagonal().min()
        assert _unit_gram_diag_min(G.tolist(), nrm.tolist()) == pytest.approx(ref, rel=1e-10)
    X = rng.normal(size=(30, 3))
    X = np.column_stack([X, X[:, 0] - 2 * X[:, 2]])
    G = X.T @ X
    nrm = np.sqrt(G.diagonal())
    assert _unit_gram_diag_min(G.tolist(), nrm.tolist()) < 1e-5
    assert rank_deficient_columns(X) == [3]


@pytest.mark.skipif(compiled_frame() is None, reason="compiled model-frame helpers not built")
def test_compiled_frame_helpers_match_numpy():
    """The one-pass frame helpers give the numpy paths' answers: interaction codes and labels,
    factor NA / used-level counts, finiteness, the binomial checks and the rank shortcut."""
    from pyglmm.design import grouping
    from pyglmm.design.variables import Variable
    from pyglmm.fit import compiled
    kern = compiled_frame()
    rng = np.random.default_rng(5)
    for _ in range(200):
        k, n = int(rng.integers(1, 4)), int(rng.integers(1, 60))
        fs = []
        for j in range(k):
            nl = int(rng.integers(1, 6))
            fs.append(Variable(f"f{j}", codes=rng.integers(0, nl, n).astype(np.int64),
                               levels=[f"l{i}" for i in range(nl)]))
        fast = grouping.interaction_codes(fs)
        compiled.ENABLED = False
        try:
            ref = grouping.interaction_codes(fs)
        finally:
            compiled.ENABLED = True
        assert np.array_equal(fast[0], ref[0]) and fast[1] == ref[1]
    codes = np.array([0, -1, 3, 3, -1], dtype=np.int64)
    assert kern.factor_counts(codes, 5) == (2, 2)
    assert kern.all_finite(np.array([1.0, -2.0])) and not kern.all_finite(np.array([1.0, np.inf]))
    assert not kern.all_finite(np.array([1.0, -2.0]), True)
    assert not kern.all_finite(np.array([[1.0, np.nan], [0.0, 1.0]])[:, 1])
    y, w = np.array([0.0, 0.5, 1.0, 0.25]), np.array([1.0, 2.0, 3.0, 3.0])
    assert kern.binomial_counts(y, w, 1e-8) == (0, 1)
    assert kern.binomial_counts(np.array([1.5, -0.1]), np.ones(2), 1e-8)[0] == 2
    for p in (2, 3, 5, 8):
        X = rng.normal(size=(40, p)) * rng.uniform(0.1, 100, p)
        G = X.T @ X
        nrm = np.sqrt(G.diagonal())
        ref = np.linalg.cholesky(G / np.outer(nrm, nrm)).diagonal().min()
        assert kern.unit_gram_min_diag(X) == pytest.approx(ref, rel=1e-10)
    X = rng.normal(size=(30, 3))
    assert kern.unit_gram_min_diag(np.column_stack([X, X[:, 0] - 2 * X[:, 2]])) < 1e-5
    assert kern.unit_gram_min_diag(np.column_stack([X, np.zeros(30)])) == 0.0
