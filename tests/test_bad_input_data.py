"""Bad input data: every case gives R's answer (the fit on a cleaned copy, R's factor levels)
or a pyglmm error that names the culprit, never a quietly different model.

R references (R 4.2, lme4, UTF-8 locale with ICU): ``levels(factor(c("b","B","a","A")))`` is
``a A b B``; ``nlevels(factor(c(0.3, 0.1 + 0.2)))`` is 1 (15 significant digits);
``lmer(y ~ log(x) + (1|g))`` with one x < 0 warns "NaNs produced" and fits the other rows;
with x = 0 it stops ("NA/NaN/Inf in foreign function call").
"""
import datetime
import decimal
import fractions
import warnings

import numpy as np
import pandas as pd
import pytest

import pyglmm
from pyglmm import DataError
from pyglmm.design import model_frame, to_pandas
from pyglmm.design import variables

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

N = 40


@pytest.fixture(scope="module")
def base():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(8), 5)
    x = rng.uniform(0.5, 2.0, N)
    return pd.DataFrame({"y": 1 + 0.5 * x + rng.normal(0, 0.4, 8)[g] + rng.normal(0, 0.3, N),
                         "x": x, "g": g})


def _frame(formula, data, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        mf = model_frame(formula, data, **kw)
    return mf, " | ".join(str(x.message) for x in w)


def _levels(mf, k=0):
    return list(mf.reterms[k].levels)


# --- 1. level order of categorical columns ----------------------------------------------------

@pytest.fixture(scope="module")
def rehab():
    return pyglmm.datasets.load_rehab()


def _rehab_text(rehab):
    return rehab.assign(gender=rehab.gender.astype(str), treatment=rehab.treatment.astype(str))


def test_polars_categorical_levels_are_sorted_as_r_factor(rehab):
    # polars numbers categories by first appearance (male first): R's factor() sorts them
    p = pl.from_pandas(_rehab_text(rehab)).with_columns(pl.col("gender").cast(pl.Categorical),
                                                         pl.col("treatment").cast(pl.Categorical))
    assert p.to_pandas().gender.cat.categories[0] == "male"        # the trap
    mf = model_frame("incidents ~ gender + treatment + (1|rehab)", p)
    ref = model_frame("incidents ~ gender + treatment + (1|rehab)", _rehab_text(rehab))  # factor() of text
    assert mf.fixef_names == ref.fixef_names == ["(Intercept)", "gendermale", "treatmentstandard"]
    np.testing.assert_array_equal(mf.X, ref.X)


def test_polars_categorical_fit_equals_pandas_text_fit(rehab):
    p = pl.from_pandas(_rehab_text(rehab)).with_columns(pl.col("gender").cast(pl.Categorical))
    m1 = pyglmm.glmer("incidents ~ gender + hours + (1|rehab)", p, family="poisson")
    m2 = pyglmm.glmer("incidents ~ gender + hours + (1|rehab)", _rehab_text(rehab), family="poisson")
    assert list(m1.fixef.index) == list(m2.fixef.index) == ["(Intercept)", "gendermale", "hours"]
    np.testing.assert_allclose(m1.fixef.to_numpy(), m2.fixef.to_numpy(), rtol=1e-6)


def test_polars_enum_keeps_its_declared_order(rehab):
    p = pl.from_pandas(_rehab_text(rehab)).with_columns(pl.col("gender").cast(pl.Enum(["male", "female"])))
    mf = model_frame("incidents ~ gender + (1|rehab)", p)
    assert mf.fixef_names == ["(Intercept)", "genderfemale"]
    assert not to_pandas(p).gender.cat.ordered       # an R factor with levels=, not an ordered one


def test_arrow_dictionary_is_sorted_unless_ordered():
    y = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    vals = ["b", "a", "c", "b", "a", "c"]
    unordered = pa.table({"f": pa.array(vals).dictionary_encode(), "y": y})
    assert unordered.column("f").chunk(0).dictionary.to_pylist() == ["b", "a", "c"]   # first seen
    assert list(to_pandas(unordered).f.cat.categories) == ["a", "b", "c"]
    typ = pa.dictionary(pa.int8(), pa.string(), ordered=True)
    ordered = pa.table({"f": pa.DictionaryArray.from_arrays(pa.array([0, 1, 2, 0, 1, 2], pa.int8()),
                                                            pa.array(["c", "b", "a"])).cast(typ), "y": y})
    assert list(to_pandas(ordered).f.cat.categories) == ["c", "b", "a"]


def test_arrow_table_from_pandas_keeps_the_categorical_order(rehab):
    d = rehab.assign(gender=rehab.gender.cat.reorder_categories(["male", "female"]))
    mf = model_frame("incidents ~ gender + (1|rehab)", pa.Table.from_pandas(d))
    assert mf.fixef_names == ["(Intercept)", "genderfemale"]


def test_arrow_table_from_pandas_arrow_dictionary_is_sorted():
    # pandas records an ArrowDtype dictionary column as "categorical" too, but its dictionary is in
    # order of first appearance, as in pandas (sorted there): was kept, so "b" was the reference
    vals = ["b", "a", "c", "b", "a", "c"]
    d = pd.DataFrame({"f": pd.Series(pa.array(vals).dictionary_encode().to_pandas(types_mapper=pd.ArrowDtype)),
                      "y": [1.0, 2.0, 4.0, 3.0, 5.0, 7.0], "g": [1, 1, 2, 2, 3, 3]})
    t = pa.Table.from_pandas(d, preserve_index=False)
    assert list(to_pandas(t).f.cat.categories) == ["a", "b", "c"]
    assert model_frame("y ~ f + (1|g)", t).fixef_names == model_frame("y ~ f + (1|g)", d).fixef_names == \
        ["(Intercept)", "fb", "fc"]


def test_arrow_table_with_a_pd_cut_column(base):
    # pyarrow cannot turn a dictionary of pandas Intervals back into pandas (TypeError: unhashable
    # type: 'dict' for the whole table): every fit of such a table failed, used column or not
    d = base.assign(b=pd.cut(base.x, 3))
    t = pa.Table.from_pandas(d, preserve_index=False)
    np.testing.assert_array_equal(model_frame("y ~ x + (1|g)", t).X, model_frame("y ~ x + (1|g)", base).X)
    mf, _ = _frame("y ~ b + (1|g)", t)
    ref, _ = _frame("y ~ b + (1|g)", d)
    assert mf.fixef_names == ref.fixef_names and len(mf.fixef_names) == 3
    np.testing.assert_array_equal(mf.X, ref.X)


@pytest.mark.parametrize("ordered", [False, True])
def test_pandas_categorical_keeps_its_categories(ordered):
    d = pd.DataFrame({"y": np.arange(6.0), "f": pd.Categorical(list("abcabc"), categories=["c", "a", "b"],
                                                                  ordered=ordered), "g": [1, 1, 2, 2, 3, 3]})
    mf, _ = _frame("y ~ f + (1|g)", d)
    assert mf.fixef_names == ["(Intercept)", "fa", "fb"]          # as R keeps a factor's levels


def test_ordered_categorical_warns_about_r_polynomial_contrasts():
    d = pd.DataFrame({"y": np.arange(6.0), "f": pd.Categorical(list("lmhlmh"), categories=["l", "m", "h"],
                                                                  ordered=True), "g": [1, 1, 2, 2, 3, 3]})
    mf, msg = _frame("y ~ f + (1|g)", d)
    assert "'f'" in msg and "contr.poly" in msg and mf.fixef_names == ["(Intercept)", "fm", "fh"]
    _, msg = _frame("y ~ f + (1|g)", d.assign(f=d.f.cat.as_unordered()))
    assert msg == ""


def test_mixed_case_strings_sort_as_r():
    assert variables.r_sorted(["b", "B", "a", "A"]) == ["a", "A", "b", "B"]
    assert variables.r_sorted(["ab", "Aa", "aB", "Ab", "AB", "a-b", "a_b", "ab1", "a1b", "éa", "eb", "Éa", "ea"]) == \
        ["a_b", "a-b", "a1b", "Aa", "ab", "aB", "Ab", "AB", "ab1", "ea", "éa", "Éa", "eb"]   # R's sort()
    d = pd.DataFrame({"y": np.arange(6.0), "trt": ["control", "Treatment"] * 3, "g": [1, 1, 2, 2, 3, 3]})
    # Python's sort would make "Treatment" the reference level; R's makes "control"
    assert model_frame("y ~ trt + (1|g)", d).fixef_names == ["(Intercept)", "trtTreatment"]


# --- 2. identifier columns ---------------------------------------------------------------------

def _with(base, **cols):
    return base.assign(**cols)


@pytest.mark.parametrize("ids, labels", [
    (np.array([2 ** 53, 2 ** 53 + 1] * 20, dtype=np.int64), ["9007199254740992", "9007199254740993"]),
    (np.array([2 ** 63 + 1, 2 ** 63 + 2] * 20, dtype=np.uint64), ["9223372036854775809", "9223372036854775810"]),
    (np.array([10 ** 15 + 1, 10 ** 15 + 2] * 20, dtype=np.int64), ["1000000000000001", "1000000000000002"]),
    (np.array([-(2 ** 60), 2 ** 60] * 20, dtype=np.int64), ["-1152921504606846976", "1152921504606846976"]),
], ids=["int64>2^53", "uint64>2^63", "int64>=1e15", "negative"])
def test_big_integer_ids_stay_distinct_groups(base, ids, labels):
    mf, msg = _frame("y ~ x + (1|id)", _with(base, id=ids))
    assert _levels(mf) == labels and msg == ""


def test_big_integer_ids_in_factor_call_stay_distinct(base):
    ids = np.array([2 ** 53, 2 ** 53 + 1] * 20, dtype=np.int64)
    mf = model_frame("y ~ factor(id) + (1|g)", _with(base, id=ids))
    assert mf.fixef_names == ["(Intercept)", "factor(id)9007199254740993"]


def test_polars_nullable_big_ids_stay_exact(base):
    ids = [2 ** 60 + (i % 2) for i in range(N)]
    ids[3] = None
    p = pl.from_pandas(base).with_columns(pl.Series("id", ids, dtype=pl.Int64))
    mf = model_frame("y ~ x + (1|id)", p)
    assert _levels(mf) == ["1152921504606846976", "1152921504606846977"] and mf.n_dropped_na == 1


def test_small_integer_ids_unchanged(base):
    mf = model_frame("y ~ x + (1|g)", base)
    assert _levels(mf) == [str(i) for i in range(8)]


@pytest.mark.parametrize("values, shown", [
    ([1, "1"], ["1", "'1'"]),
    ([True, "TRUE"], ["True", "'TRUE'"]),
    ([2.5, "2.5"], ["2.5", "'2.5'"]),
    ([False, 0], ["False", "0"]),
], ids=["1 and '1'", "True and 'TRUE'", "2.5 and '2.5'", "False and 0"])
def test_mixed_type_object_column_is_refused(base, values, shown):
    col = pd.Series(values * (N // 2), dtype=object)
    with pytest.raises(DataError) as err:
        model_frame("y ~ x + (1|h)", _with(base, h=col))
    msg = str(err.value)
    assert "'h'" in msg and all(s in msg for s in shown)


def test_mixed_type_categorical_categories_are_refused(base):
    col = pd.Categorical([1, "1"] * (N // 2))
    with pytest.raises(DataError, match="'h'"):
        model_frame("y ~ x + (1|h)", _with(base, h=col))


def test_floats_that_print_alike_are_one_level_as_in_r(base):
    # R: nlevels(factor(c(0.3, 0.1 + 0.2))) == 1 (labels at 15 significant digits)
    h = np.tile([0.3, 0.1 + 0.2, 0.7, 0.9], N // 4)
    mf, msg = _frame("y ~ x + (1|h)", _with(base, h=h))
    assert _levels(mf) == ["0.3", "0.7", "0.9"]
    assert "'h'" in msg and "0.30000000000000004" in msg
    clean = model_frame("y ~ x + (1|h)", _with(base, h=np.round(h, 10)))
    np.testing.assert_array_equal(mf.reterms[0].codes, clean.reterms[0].codes)


def test_object_integers_group_like_an_integer_column(base):
    h = pd.Series(list(base.g.astype(int)), dtype=object)
    assert _levels(model_frame("y ~ x + (1|h)", _with(base, h=h))) == _levels(model_frame("y ~ x + (1|g)", base))


# --- 3. numbers in object columns, and values that are not numbers --------------------------

def test_object_numbers_after_none_are_a_covariate(base):
    z = list(base.x)
    z[5] = None
    mf = model_frame("y ~ z + (1|g)", _with(base, z=pd.Series(z, dtype=object)))
    ref = model_frame("y ~ z + (1|g)", _with(base, z=np.where(np.arange(N) == 5, np.nan, base.x)))
    assert mf.fixef_names == ["(Intercept)", "z"] and mf.n_dropped_na == 1
    np.testing.assert_array_equal(mf.X, ref.X)


@pytest.mark.parametrize("convert", [lambda v: decimal.Decimal(repr(v)), lambda v: fractions.Fraction(v),
                                     lambda v: np.float32(v).item(), int],
                         ids=["Decimal", "Fraction", "float", "int"])
def test_object_real_numbers_convert_to_float(base, convert):
    z = pd.Series([convert(v) for v in base.x * 10], dtype=object)
    mf = model_frame("y ~ z + (1|g)", _with(base, z=z))
    ref = model_frame("y ~ z + (1|g)", _with(base, z=np.array([float(v) for v in z])))
    assert mf.fixef_names == ["(Intercept)", "z"]
    np.testing.assert_allclose(mf.X, ref.X)


@pytest.mark.parametrize("col, fragment", [
    (lambda n: np.arange(n) + 1j, "complex"),
    (lambda n: pd.Series([complex(i, 1) for i in range(n)], dtype=object), "complex"),
    (lambda n: pd.date_range("2020-01-01", periods=n).to_numpy(), "datetime"),
    (lambda n: np.arange(n).astype("timedelta64[s]"), "timedelta"),
    (lambda n: pd.Series([datetime.date(2020, 1, 1 + i % 28) for i in range(n)], dtype=object), "dates"),
    (lambda n: pd.Series([b"a", b"b"] * (n // 2), dtype=object), "bytes"),
    (lambda n: np.array([b"a", b"b"] * (n // 2)), "bytes"),
    (lambda n: pd.Series([object()] * n, dtype=object), "object"),
], ids=["complex128", "complex objects", "datetime64", "timedelta64", "date objects", "bytes objects",
        "numpy bytes", "arbitrary objects"])
def test_values_that_are_not_numbers_or_text_are_refused(base, col, fragment):
    with pytest.raises(DataError) as err:
        model_frame("y ~ z + (1|g)", _with(base, z=col(N)))
    assert "'z'" in str(err.value) and fragment in str(err.value)


def test_object_booleans_are_a_logical_factor(base):
    b = pd.Series([True, False, None, True] * (N // 4), dtype=object)
    mf = model_frame("y ~ b + (1|g)", _with(base, b=b))
    assert mf.fixef_names == ["(Intercept)", "bTRUE"] and mf.n_dropped_na == N // 4


def test_numeric_looking_text_covariate_is_a_factor_and_warns(base):
    z = [f"{v:.3f}" for v in base.x]            # R: a character column is a factor
    mf, msg = _frame("y ~ z + (1|g)", _with(base, z=z))
    assert len(mf.fixef_names) > 30 and "'z'" in msg and "pd.to_numeric" in msg


def test_factor_with_a_level_per_row_warns(base):
    mf, msg = _frame("y ~ z + (1|g)", _with(base, z=[f"row{i}" for i in range(N)]))
    assert "'z'" in msg and "40 levels" in msg


def test_ordinary_factor_does_not_warn(base):
    _, msg = _frame("y ~ f + (1|g)", _with(base, f=["a", "b", "c", "d"] * (N // 4)))
    assert msg == ""


# --- 4. weights= and offset= vectors ---------------------------------------------------------

@pytest.fixture(scope="module")
def shuffled(base):
    d = base.copy()
    d.index = pd.Index(np.arange(N)[::-1] * 10)          # labels 390, 380, ..., 0
    return d


def test_weights_series_is_aligned_on_the_index(shuffled):
    w = pd.Series(np.arange(1.0, N + 1), index=shuffled.index)
    mf = model_frame("y ~ x + (1|g)", shuffled, weights=w.sort_index())     # other order, same labels
    np.testing.assert_array_equal(mf.weights, w.to_numpy())


def test_weights_series_aligned_fit_equals_numpy_fit(shuffled):
    w = pd.Series(np.linspace(0.5, 2.0, N), index=shuffled.index)
    m1 = pyglmm.lmer("y ~ x + (1|g)", shuffled, weights=w.sort_index())
    m2 = pyglmm.lmer("y ~ x + (1|g)", shuffled, weights=w.to_numpy())
    np.testing.assert_allclose(m1.fixef.to_numpy(), m2.fixef.to_numpy(), rtol=1e-8)


def test_offset_series_is_aligned_on_the_index(shuffled):
    o = pd.Series(np.arange(N, dtype=float), index=shuffled.index)
    mf = model_frame("y ~ x + (1|g)", shuffled, offset=o.sort_index())
    np.testing.assert_array_equal(mf.offset, o.to_numpy())


@pytest.mark.parametrize("what", ["weights", "offset"])
@pytest.mark.parametrize("value, data, fragment", [
    (lambda d: pd.Series(np.ones(N), index=d.index + 1000), "pandas", "index"),
    (lambda d: pd.Series(np.ones(N - 1), index=d.index[:-1]), "pandas", "index"),
    (lambda d: pd.Series(np.ones(N), index=np.arange(N) + 5), "polars", "no index"),
    (lambda d: np.ones(N + 1), "pandas", "length 41"),
    (lambda d: np.ones((N // 2, 2)), "pandas", "one-dimensional"),
    (lambda d: np.array(["1"] * N), "pandas", "numeric"),
    (lambda d: np.ones(N, dtype=bool), "pandas", "logical"),
    (lambda d: pd.Series(["a"] * N, dtype=object, index=d.index), "pandas", "numeric"),
    (lambda d: np.full(N, 1 + 1j), "pandas", "complex"),
    (lambda d: 2.0, "pandas", "one value per row"),
], ids=["other labels", "short series", "series vs polars", "wrong length", "2-d", "strings", "bool",
        "object strings", "complex", "scalar"])
def test_bad_weights_or_offset_name_the_argument(shuffled, what, value, data, fragment):
    d = shuffled if data == "pandas" else pl.from_pandas(shuffled.reset_index(drop=True))
    with pytest.raises(DataError) as err:
        model_frame("y ~ x + (1|g)", d, **{what: value(shuffled)})
    assert str(err.value).startswith(what) and fragment in str(err.value)


def test_weights_as_object_numbers_with_none(base):
    w = pd.Series([1.0] * (N - 1) + [None], dtype=object)
    mf = model_frame("y ~ x + (1|g)", base, weights=w)
    assert mf.n_dropped_na == 1 and np.all(mf.weights == 1.0)


def test_weights_column_name_must_be_numeric(base):
    mf = model_frame("y ~ x + (1|g)", _with(base, w=np.linspace(1, 2, N)), weights="w")
    np.testing.assert_array_equal(mf.weights, np.linspace(1, 2, N))
    with pytest.raises(DataError, match="weights column 'w'"):
        model_frame("y ~ x + (1|g)", _with(base, w=["a"] * N), weights="w")


def test_weights_series_with_polars_data_and_default_index(base):
    mf = model_frame("y ~ x + (1|g)", pl.from_pandas(base), weights=pd.Series(np.linspace(1, 2, N)))
    np.testing.assert_array_equal(mf.weights, np.linspace(1, 2, N))


def test_predict_offset_series_is_aligned(shuffled):
    m = pyglmm.lmer("y ~ x + (1|g)", shuffled)
    o = pd.Series(np.arange(N, dtype=float), index=shuffled.index)
    p1 = m.predict(newdata=shuffled, offset=o.sort_index())
    p2 = m.predict(newdata=shuffled, offset=o.to_numpy())
    np.testing.assert_allclose(np.asarray(p1), np.asarray(p2))
    with pytest.raises(DataError, match="^offset"):
        m.predict(newdata=shuffled, offset=pd.Series(np.zeros(N)))


# --- 5. transformations that produce NaN or Inf ---------------------------------------------

@pytest.mark.parametrize("formula, bad, count", [
    ("y ~ log(x) + (1|g)", -1.0, 1),
    ("y ~ sqrt(x) + (1|g)", -4.0, 1),
    ("y ~ log10(x) + (1|g)", -1.0, 1),
    ("y ~ I(x/x) + (1|g)", 0.0, 1),            # 0/0
], ids=["log", "sqrt", "log10", "0/0"])
def test_nan_produced_warns_and_drops_the_rows_as_lme4(base, formula, bad, count):
    d = base.copy()
    d.loc[[3], "x"] = bad
    mf, msg = _frame(formula, d)
    assert "NaNs produced" in msg and f"in {count} row(s)" in msg and "'x'" in msg
    clean = model_frame(formula, d.drop(index=3))
    assert mf.n_dropped_na == count
    np.testing.assert_array_equal(mf.X, clean.X)


def test_nan_produced_fit_equals_fit_without_the_rows(base):
    d = base.copy()
    d.loc[[3, 17], "x"] = -1.0
    with pytest.warns(UserWarning, match="NaNs produced.*2 row"):
        m1 = pyglmm.lmer("y ~ log(x) + (1|g)", d)
    m2 = pyglmm.lmer("y ~ log(x) + (1|g)", d.drop(index=[3, 17]))
    np.testing.assert_allclose(m1.fixef.to_numpy(), m2.fixef.to_numpy(), rtol=1e-8)


def test_non_syntactic_column_with_missing_values_in_a_transformation(base):
    # the NaN-produced check re-read each column by its bare name: "cannot evaluate 'x 2':
    # unexpected '2'" whenever such a column had a missing value
    d = base.rename(columns={"x": "x 2", "y": "y val"})
    d.loc[3, "x 2"] = np.nan
    d.loc[5, "y val"] = np.nan
    mf, msg = _frame("`y val` ~ log(`x 2`) + I(`x 2`^2) + (1|g)", d)
    assert msg == "" and mf.n_dropped_na == 2
    np.testing.assert_array_equal(mf.X, model_frame("y ~ log(x) + I(x^2) + (1|g)", base.drop(index=[3, 5])).X)
    d.loc[7, "x 2"] = -1.0
    mf, msg = _frame("`y val` ~ sqrt(`x 2`) + (1|g)", d)
    assert "NaNs produced" in msg and "in 1 row(s) where 'x 2' has values" in msg and mf.n_dropped_na == 3


def test_missing_values_already_in_data_do_not_warn(base):
    d = base.copy()
    d.loc[3, "x"] = np.nan
    mf, msg = _frame("y ~ log(x) + (1|g)", d)
    assert msg == "" and mf.n_dropped_na == 1


@pytest.mark.parametrize("formula, text", [
    ("y ~ log(x) + (1|g)", "'log(x)'"),
    ("y ~ I(1/x) + (1|g)", "'I(1/x)'"),
    ("log(x) ~ 1 + (1|g)", "'log(x)'"),
], ids=["log(0)", "1/0", "response log(0)"])
def test_infinite_from_transformation_is_an_error_as_in_lme4(base, formula, text):
    d = base.copy()
    d.loc[3, "x"] = 0.0
    with pytest.raises(DataError) as err:
        model_frame(formula, d)
    assert text in str(err.value) and "infinite" in str(err.value)


# --- direct checks of the factor maker ----------------------------------------------------------

def test_factor_from_values_nullable_integers_exact():
    s = pd.Series([2 ** 62, None, 2 ** 62 + 1], dtype="Int64")
    v = variables.factor_from_values(s, "id")
    assert v.levels == ["4611686018427387904", "4611686018427387905"] and v.codes.tolist() == [0, -1, 1]
