"""Fuzz test of input handling: random tables (dtypes, missing values, label types, column
names, indexes; pandas, polars and Arrow) and random lme4 formulas, fitted with lmer and glmer
(binomial, Poisson).

Every generated case must end in ONE of:

(a) a fit equal (logLik, fixef with their names, theta) to the fit on a *cleaned copy* of the
    data: a plain pandas DataFrame with a RangeIndex, the rows with a missing value in a used
    column (or a NaN from log/sqrt of a negative value) dropped, numbers as float64 and factor /
    grouping columns as str labels (R's labels: ``format_r_number`` for numbers, TRUE/FALSE for
    logicals) whose levels come in the order R's factor() gives them (a Categorical's categories
    -- kept by pandas and Arrow, sorted by polars -- else numbers by value and strings in R's
    collation, ``pyglmm.design.variables.r_sorted``); or
(b) a pyglmm error (a PyglmmError, not an internal exception wrapped as a FitError) with a
    non-empty message that, for a DataError, names a column, term or argument involved; the
    cleaned copy must then fail too, unless the generator planted a column to refuse (datetime,
    mixed types) in the formula.

Warnings must be UserWarning subclasses (no numpy RuntimeWarning leaking out).

CI runs a fixed (derandomized) set of examples; hunt locally with e.g.
``PYGLMM_FUZZ_EXAMPLES=3000 PYGLMM_FUZZ_RANDOM=1 pytest tests/test_fuzz_inputs.py``.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import pyglmm  # noqa: E402
from pyglmm.design.variables import r_sorted  # noqa: E402
from pyglmm.errors import DataError, FitError, PyglmmError  # noqa: E402
from pyglmm.formula.numfmt import format_r_number  # noqa: E402

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

EXAMPLES = int(os.environ.get("PYGLMM_FUZZ_EXAMPLES", "500"))   # ~20 s on one core
RANDOM = bool(os.environ.get("PYGLMM_FUZZ_RANDOM"))

STRINGS = ["a", "A", "b", "B", "ctl", "Treatment", "x y", " lead", "trail ", "é", "Ézé", "ñ", "日本",
           "None", "NA", "nan", "NaN", "null", "", "1", "10", "2", "a-b", "a_b", "TRUE", "α", "z", "Z9",
           "a.b", "(x)", "a+b", "a*b"]

#: column names: the logical name, then names a user may have (backquoted in formulas)
NAMES = {"x1": ["x1", "x.1", "my x", "ü1", "x_1", "T", "pi"], "x2": ["x2", "X2", "x 2", 7, "log", "TRUE"],
         "fac": ["fac", "f a c", "Fäc", "I"],
         "g1": ["g1", "group id", "g.1", "Gruppe-1"], "g2": ["g2", "sub_id", "sub id"],
         "off": ["off"], "wt": ["wt", "w t"], "y": ["y", "resp", "y val"], "fail": ["fail"],
         "bins": ["bins"]}


# --- columns: logical values, storage, missing values --------------------------------------

@dataclass
class Col:
    """A generated column: ``data`` as stored; ``clean`` its float values (numeric, NaN where
    missing) or str labels (factor, None where missing); ``na`` its missing rows; ``order`` a
    Categorical's category labels; ``natural`` R's sorted labels (None: strings, r_sorted)."""

    data: object
    na: np.ndarray
    clean: object
    storage: str
    factor: bool = False
    kind: str = "num"
    order: list | None = None
    natural: list | None = None
    values: np.ndarray | None = None            # the numbers behind a numeric-kind factor column


def _missing(draw, n, rng):
    kind = draw(st.sampled_from(["none", "none", "few", "many"]))
    if rng.random() < 0.01:
        kind = "all"
    na = np.zeros(n, dtype=bool)
    if kind == "few":
        na[rng.choice(n, int(rng.integers(1, 4)), replace=False)] = True
    elif kind == "many":
        na[rng.random(n) < 0.3] = True
    elif kind == "all":
        na[:] = True
    return na


def numeric_col(draw, values, na, integer, nonneg):
    """Store float ``values`` (integer-valued if ``integer``) in a random dtype with missing
    values (NaN, None, pd.NA) at ``na``."""
    opts = ["float64", "float32", "Float64", "object", "arrow-f", "sparse", "object-np"]
    if integer:
        opts += ["int64", "int32", "int8", "Int64", "Int32", "object-int", "arrow-i"] + \
            (["uint64", "uint8", "UInt64"] if nonneg else [])
    storage = draw(st.sampled_from(opts))
    if na.any() and storage in ("int64", "int32", "int8", "uint64", "uint8"):
        storage = "Int64" if storage.startswith("i") else "UInt64"
    vals = np.asarray(values, dtype=np.float64)
    if storage == "float32":
        vals = vals.astype(np.float32).astype(np.float64)
    clean = np.where(na, np.nan, vals)
    if storage in ("float64", "float32"):
        data = np.where(na, np.nan, vals).astype(storage)
    elif storage in ("int64", "int32", "int8", "uint64", "uint8"):
        data = vals.astype(storage)
    elif storage in ("Int64", "Int32", "UInt64", "Float64"):
        data = pd.array([None if m else (int(v) if storage != "Float64" else v) for v, m in zip(vals, na)],
                        dtype=storage)
    elif storage.startswith("arrow"):
        typ = pa.float64() if storage == "arrow-f" else pa.int64()
        data = pd.array([None if m else (int(v) if storage == "arrow-i" else v) for v, m in zip(vals, na)],
                        dtype=pd.ArrowDtype(typ))
    elif storage == "object-np":                      # numpy scalars in an object column
        data = pd.Series([None if m else (np.int64(v) if integer else np.float64(v)) for v, m in zip(vals, na)],
                         dtype=object)
    elif storage == "sparse":
        data = pd.arrays.SparseArray(clean, fill_value=np.nan if draw(st.booleans()) else 0.0)
    else:                                             # object: None, NaN or pd.NA for missing
        nas = [None, np.nan, pd.NA] if storage == "object" else [None]
        data = pd.Series([nas[i % len(nas)] if m else (int(v) if storage == "object-int" else float(v))
                          for i, (v, m) in enumerate(zip(vals, na))], dtype=object)
    return Col(data=data, na=na, clean=clean, storage=storage)


def _label(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, np.integer)):
        return str(int(v)) if abs(int(v)) >= 10 ** 15 else format_r_number(float(v))
    if isinstance(v, (float, np.floating)):
        return format_r_number(float(v))
    return str(v)


def label_pool(draw, rng, k):
    """``k`` distinct label values of a random kind."""
    kind = draw(st.sampled_from(["int", "bigint", "ubig", "float", "str", "str", "str"] +
                                (["bool"] if k == 2 else [])))
    if kind == "int":
        vals = [int(v) for v in rng.choice(np.arange(-5, 200), k, replace=False)]
        if draw(st.booleans()):
            vals[0] = 100000                          # R's label "1e+05"
    elif kind == "bigint":
        vals = [2 ** 60 + int(v) for v in rng.choice(1000, k, replace=False)]
    elif kind == "ubig":
        vals = [2 ** 63 + int(v) for v in rng.choice(1000, k, replace=False)]
    elif kind == "float":
        vals = [float(v) / 4 for v in rng.choice(np.arange(-10, 40), k, replace=False)]
    elif kind == "bool":
        vals = [False, True]
    else:
        vals = [STRINGS[i] for i in rng.choice(len(STRINGS), k, replace=False)]
    return kind, vals


FACTOR_STORAGE = {"int": ["int64", "object", "Int64", "category", "float64", "arrow-i"],
                  "bigint": ["int64", "object", "Int64", "category"],
                  "ubig": ["uint64", "object", "UInt64"],
                  "float": ["float64", "object", "Float64", "category"],
                  "bool": ["bool", "boolean", "object", "category", "arrow-b"],
                  "str": ["object", "string", "str", "category", "category-ordered", "arrow-s", "arrow-dict"]}


def factor_col(draw, rng, codes, na, *, grouping=False):
    """A column of labels (``codes`` into a random label pool) in a random storage; a factor in
    a formula unless numbers stored as numbers (``grouping``: always made a factor)."""
    k = int(codes.max()) + 1
    kind, pool = label_pool(draw, rng, k)
    values = [pool[c] for c in codes]
    storage = draw(st.sampled_from(FACTOR_STORAGE[kind]))
    if na.any() and storage in ("int64", "uint64", "bool") or (storage == "float64" and kind == "int" and na.any()):
        storage = {"int64": "Int64", "uint64": "UInt64", "bool": "boolean", "float64": "Int64"}[storage]
    masked = [None if m else v for v, m in zip(values, na)]
    cats = None
    if storage in ("int64", "uint64", "bool", "float64"):
        data = np.array(values, dtype=storage)
        if storage == "float64":
            data = np.where(na, np.nan, data)
    elif storage in ("Int64", "UInt64", "Float64", "boolean", "str"):
        data = pd.array(masked, dtype=storage)
    elif storage == "string":
        data = pd.array(masked, dtype=pd.StringDtype("python"))
    elif storage.startswith("arrow"):
        typ = {"arrow-i": pa.int64(), "arrow-b": pa.bool_(), "arrow-s": pa.string()}.get(storage)
        data = pd.array(masked, dtype=pd.ArrowDtype(typ)) if typ is not None else \
            pd.Series(pa.array(masked, pa.string()).dictionary_encode().to_pandas(types_mapper=pd.ArrowDtype))
    elif storage == "object":
        data = pd.Series([(None if i % 2 else np.nan) if m else v for i, (v, m) in enumerate(zip(values, na))],
                         dtype=object)
    else:                                             # Categorical, maybe with unused categories
        cats = list(pool)
        extra = {"int": [999], "bigint": [2 ** 61], "float": [99.5], "bool": [], "str": ["unused", "zz"]}[kind]
        if draw(st.booleans()):
            cats += extra
        perm = draw(st.permutations(range(len(cats))))
        cats = [cats[i] for i in perm]
        data = pd.Categorical(masked, categories=cats, ordered=storage == "category-ordered")
    col = Col(data=data, na=na, storage=storage, kind=kind,
              clean=np.array([None if m else _label(v) for v, m in zip(values, na)], dtype=object))
    col.factor = grouping or kind in ("str", "bool") or cats is not None
    col.order = None if cats is None else [_label(c) for c in cats]
    col.natural = None if kind == "str" else [_label(v) for v in sorted(pool)]
    col.values = np.array([np.nan if m or kind == "str" else float(v) for v, m in zip(values, na)])
    return col


def _interval_col(x, na):
    """pd.cut of a numeric column: a Categorical of Intervals (labels as pandas prints them)."""
    na = na.copy()
    na[:3] = False                                    # pd.cut needs some values
    data = pd.cut(pd.Series(np.where(na, np.nan, x)), 3)
    col = Col(data=data.array, na=na | data.isna().to_numpy(), storage="category-interval", kind="interval",
              clean=np.array([None if pd.isna(v) else str(v) for v in data], dtype=object))
    col.factor, col.order = True, [str(c) for c in data.cat.categories]
    return col


# --- a whole case -----------------------------------------------------------------------------

@dataclass
class Case:
    family: str
    formula: str
    data: object
    backend: str
    kwargs: dict                       # weights= / offset= for the table as the user has it
    clean: pd.DataFrame
    clean_kwargs: dict
    names: list                        # the columns, terms and arguments a DataError may name
    planted: list                      # columns whose use must be refused (datetime, mixed types)
    notes: dict

    def __repr__(self) -> str:
        kw = {k: type(v).__name__ for k, v in self.kwargs.items()}
        return f"Case({self.family}, {self.formula!r}, backend={self.backend}, {kw}, {self.notes})"


FIXED = ["x1", "x2", "fac", "log(x1)", "I(x1^2)", "x1:x2", "x2*fac", "fac:x1", "offset(off)", "factor(g2)",
         "sqrt(x1)", "I(x2 - 1)", "log(x2)", "sqrt(x2 + 1)", "I(x1 > 2)", "bins", "- 1", "x1 * x2", "fac:x2",
         "factor(x1)", "fac:factor(g2)", "offset(log(x1))", "exp(x2)"]
RANDOM_TERMS = ["(1|g1)", "(1|g2)", "(x2|g1)", "(x2||g1)", "(1|g1/g2)", "(1|g1:g2)", "(0+x2|g2)",
                "(1|g2) + (1|g1)", "(1|bins)", "(x1|g2)", "(0+fac|g2)", "(1|g1) + (1|g1:g2)"]
PLANTED = ["when", "mix", "(1|mixg)", "(1|when)"]       # columns to refuse: datetime, mixed types
#: random terms that repeat (1|g1): refused (FormulaError) when they come together
_SAME = [{"(1|g1)", "(x2||g1)", "(1|g1/g2)", "(1|g2) + (1|g1)", "(1|g1) + (1|g1:g2)"},
         {"(1|g2) + (1|g1)", "(1|g2)"}, {"(1|g1:g2)", "(1|g1/g2)", "(1|g1) + (1|g1:g2)"}]
#: transformations that give NaN for some rows, dropped with R's "NaNs produced" warning
_NAN_TERMS = {"log(x2)": lambda c: c["x2"].clean < 0, "sqrt(x2 + 1)": lambda c: c["x2"].clean < -1}


def _expected_order(col: Col, present: set, backend: str) -> list:
    order = col.order if col.order is not None and (backend != "polars" or col.kind == "interval") \
        else col.natural
    if order is None:
        return r_sorted(sorted(present))
    return [lv for lv in order if lv in present]


def _dates(rng, n):
    """A column of dates or times, to be refused as model data."""
    kind = int(rng.integers(6))
    days = pd.date_range("2021-01-01", periods=n, freq="D")
    return [days, days.tz_localize("Europe/Berlin"), pd.Series(days - days[0]),
            pd.Series(days.to_period("D")), pd.Series(list(days.date), dtype=object),
            pd.Series(days.astype("datetime64[s]")).where(np.arange(n) % 7 > 0)][kind]


def _index(draw, n):
    kind = draw(st.sampled_from(["range", "range", "shuffled", "nonunique", "multi", "string", "offset",
                                 "float-nan", "dates"]))
    if kind == "float-nan":
        return kind, pd.Index([np.nan] + [i + 0.5 for i in range(n - 1)])
    if kind == "dates":
        return kind, pd.date_range("2020-01-01", periods=n, freq="h")
    if kind == "shuffled":
        return kind, pd.Index(np.random.default_rng(n).permutation(n) * 3)
    if kind == "nonunique":
        return kind, pd.Index(np.arange(n) // 2)
    if kind == "multi":
        return kind, pd.MultiIndex.from_arrays([np.arange(n) % 3, np.arange(n)])
    if kind == "string":
        return kind, pd.Index([f"r{i}" for i in range(n)][::-1])
    if kind == "offset":
        return kind, pd.RangeIndex(5, 5 + n)
    return kind, pd.RangeIndex(n)


def _quote(name) -> str:
    name = str(name)
    reserved = {"TRUE", "FALSE", "NA", "NULL", "Inf", "NaN", "if", "else", "for", "while", "function"}
    return name if re.fullmatch(r"[A-Za-z.][A-Za-z0-9._]*", name) and name not in reserved else f"`{name}`"


def _vector(draw, col: Col, frame_col: pd.Series, index, backend, what):
    """weights= / offset= as a column name, a Series (aligned on the index) or an array."""
    mode = draw(st.sampled_from(["name", "series", "array", "list"]))
    if mode == "name":
        return mode, frame_col.name
    if mode == "series":
        s = pd.Series(frame_col.array, index=index)
        if backend == "pandas" and index.is_unique and draw(st.booleans()):
            s = s.sample(frac=1.0, random_state=1)        # other order, same labels: aligned
        if backend == "polars" and draw(st.booleans()):
            return "polars-series", pl.from_pandas(frame_col.reset_index(drop=True))
        if backend == "arrow" and draw(st.booleans()):
            return "arrow-array", pa.Table.from_pandas(frame_col.to_frame(), preserve_index=False).column(0)
        return mode, s if backend == "pandas" else s.reset_index(drop=True)
    arr = np.where(col.na, np.nan, col.clean)
    return mode, (arr if mode == "array" else [None if np.isnan(v) else float(v) for v in arr])


@st.composite
def cases(draw):
    n = draw(st.integers(20, 80))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    family = draw(st.sampled_from(["lmer", "poisson", "binomial"]))
    ng1, ng2, nf = draw(st.integers(2, 8)), draw(st.integers(2, 8)), draw(st.integers(2, 4))
    c1, c2, cf = (rng.permutation(np.arange(n) % k) for k in (ng1, ng2, nf))

    cols: dict[str, Col] = {}
    x1_int = draw(st.booleans())
    x1 = rng.integers(1, 7, n).astype(float) if x1_int else rng.uniform(0.5, 3.0, n)
    cols["x1"] = numeric_col(draw, x1, _missing(draw, n, rng), x1_int, True)
    x2_int = draw(st.booleans())
    x2 = np.round(rng.normal(size=n) * 2) if x2_int else rng.normal(size=n)
    cols["x2"] = numeric_col(draw, x2, _missing(draw, n, rng), x2_int, False)
    cols["off"] = numeric_col(draw, np.round(rng.normal(0, 0.2, n), 3), _missing(draw, n, rng), False, False)
    wint = family == "binomial" or draw(st.booleans())
    w = rng.integers(1, 4, n).astype(float) if wint else rng.uniform(0.5, 2.0, n)
    if rng.random() < 0.2:
        w[rng.choice(n, 3, replace=False)] = 0.0      # some zero weights
    cols["wt"] = numeric_col(draw, w, _missing(draw, n, rng), wint, True)

    eta = 0.2 + 0.4 * x2 / (2 if x2_int else 1) + rng.normal(0, 0.7, ng1)[c1] + rng.normal(0, 0.4, ng2)[c2]
    yna = _missing(draw, n, rng)
    response = "y"
    if family == "lmer":
        y_int = draw(st.booleans())
        y = eta + rng.normal(0, 0.5, n)
        cols["y"] = numeric_col(draw, np.round(y * 3) if y_int else y, yna, y_int, False)
    elif family == "poisson":
        cols["y"] = numeric_col(draw, rng.poisson(np.exp(eta)).astype(float), yna, True, True)
    else:
        kind = draw(st.sampled_from(["01", "logical", "cbind"]))
        p = 1 / (1 + np.exp(-eta))
        if kind == "01":
            cols["y"] = numeric_col(draw, (rng.random(n) < p).astype(float), yna, True, True)
        elif kind == "cbind":                          # successes and failures
            size = rng.integers(1, 6, n)
            succ = rng.binomial(size, p).astype(float)
            cols["y"] = numeric_col(draw, succ, yna, True, True)
            cols["fail"] = numeric_col(draw, size - succ, _missing(draw, n, rng), True, True)
            response = "cbind(y, fail)"
        else:                                          # a logical response
            yb = rng.random(n) < p
            storage = draw(st.sampled_from(["bool", "boolean", "object", "arrow-b"]))
            if yna.any() and storage == "bool":
                storage = "boolean"
            vals = [None if m else bool(v) for v, m in zip(yb, yna)]
            data = np.array(vals, dtype=bool) if storage == "bool" else \
                pd.array(vals, dtype="boolean") if storage == "boolean" else \
                pd.array(vals, dtype=pd.ArrowDtype(pa.bool_())) if storage == "arrow-b" else \
                pd.Series(vals, dtype=object)
            cols["y"] = Col(data=data, na=yna, clean=np.where(yna, np.nan, yb.astype(float)), storage=storage)

    cols["g1"] = factor_col(draw, rng, c1, _missing(draw, n, rng), grouping=True)
    cols["g2"] = factor_col(draw, rng, c2, _missing(draw, n, rng), grouping=True)
    cols["fac"] = factor_col(draw, rng, cf, _missing(draw, n, rng))
    cols["bins"] = _interval_col(x1, _missing(draw, n, rng))

    if rng.random() < 0.15:                            # a row missing in every column
        _missing_row(cols, int(rng.integers(n)))

    # the formula ------------------------------------------------------------------------
    fixed = draw(st.lists(st.sampled_from(FIXED), max_size=4, unique=True))
    rand = draw(st.lists(st.sampled_from(RANDOM_TERMS), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 4)):                        # mostly no repeated random term
        for same in _SAME:
            hits = [t for t in rand if t in same]
            rand = [t for t in rand if t not in hits[1:]]
    if rng.random() < 0.06:
        bad = PLANTED[int(rng.integers(len(PLANTED)))]
        (rand if bad.startswith("(") else fixed).append(bad)
    zero = rng.random() < 0.15
    rhs = " + ".join((["0"] if zero else []) + fixed + rand).replace("+ - 1", "- 1")
    if rhs.startswith("- 1"):
        rhs = "-1 " + rhs[3:]
    use_offset_arg = rng.random() < 0.15
    backend = draw(st.sampled_from(["pandas", "pandas", "polars", "arrow"]))
    planted = [c for c in ("when", "mix") if c in fixed] + [t[3:-1] for t in rand if t in PLANTED]
    if planted:
        backend = "pandas"                             # polars / Arrow cannot hold the mixed columns

    # the user's column names ---------------------------------------------------------------
    names = {k: draw(st.sampled_from(NAMES[k])) for k in cols}
    if len(set(names.values())) < len(names):
        names = {k: k for k in cols}
    formula = f"{response} ~ {rhs}"
    token = re.compile(r"(?<![\w.`])(" + "|".join(sorted(cols, key=len, reverse=True)) + r")(?![\w.`])")
    user_formula = token.sub(lambda m: _quote(names[m.group(1)]), formula)

    # the table as the user has it ------------------------------------------------------------
    frame = pd.DataFrame({names[k]: c.data for k, c in cols.items()})
    frame["when"] = _dates(rng, n)
    frame["mix"] = pd.Series([1.5, "a", 2] * (n // 3) + [3] * (n % 3), dtype=object)
    frame["mixg"] = pd.Series([1, "1", "b"] * (n // 3) + ["b"] * (n % 3), dtype=object)
    frame["junk"] = pd.Series([[1, 2], {"a": 1}, 1 + 2j] * (n // 3) + [None] * (n % 3), dtype=object)
    ikind, index = _index(draw, n)
    frame.index = index
    data = frame
    if backend != "pandas":                            # the same table in polars / Arrow
        convert = (lambda d: pl.from_pandas(d)) if backend == "polars" else \
            (lambda d: pa.Table.from_pandas(d, preserve_index=False))
        keep_cols = []
        for c in frame.columns:                        # columns it cannot hold are left out
            try:
                convert(frame[[c]].reset_index(drop=True))
                keep_cols.append(c)
            except Exception:
                pass
        if all(names[k] in keep_cols for k in cols if _quote(names[k]) in user_formula) and \
                names["wt"] in keep_cols and names["off"] in keep_cols:
            data = convert(frame[keep_cols].reset_index(drop=True))
        else:
            backend = "pandas"

    # weights= and offset= -----------------------------------------------------------------
    kwargs, clean_kwargs, modes, used = {}, {}, {}, set(re.findall(r"\w+", formula)) & set(cols)
    if "offset(off)" in fixed:
        used.add("off")
    for arg, key in (("weights", "wt"), ("offset", "off")):
        if (arg == "weights" and rng.random() < 0.35) or (arg == "offset" and use_offset_arg):
            modes[arg], kwargs[arg] = _vector(draw, cols[key], frame[names[key]], index, backend, arg)
            clean_kwargs[arg] = names[key] if modes[arg] == "name" else key
            used.add(key)

    # the cleaned copy -----------------------------------------------------------------------
    drop = np.zeros(n, dtype=bool)
    for u in used:
        drop |= cols[u].na
    for term, bad in _NAN_TERMS.items():
        if term in fixed:
            drop |= bad(cols) & ~np.isnan(cols["x2"].clean)
    keep = ~drop
    clean = {}
    for u in sorted(used):
        c = cols[u]
        polars_number = backend == "polars" and c.order is not None and c.kind not in ("str", "bool", "interval")
        if c.factor and not (u == "fac" and polars_number):
            labels = c.clean[keep]
            order = _expected_order(c, set(labels), backend)
            clean[str(names[u])] = pd.Series(list(labels), dtype=object) if r_sorted(sorted(set(labels))) == order \
                else pd.Series(pd.Categorical(list(labels), categories=order))
        elif c.values is not None:                     # numbers stored as numbers: a covariate
            clean[str(names[u])] = c.values[keep]
        else:
            clean[str(names[u])] = np.asarray(c.clean, dtype=np.float64)[keep]
    clean = pd.DataFrame(clean)
    for arg in list(clean_kwargs):
        if modes[arg] != "name":
            clean_kwargs[arg] = np.asarray(cols[clean_kwargs[arg]].clean, dtype=np.float64)[keep]

    if backend == "polars" and "bins" in used:
        planted.append("bins")                         # polars holds pandas Intervals as objects: refused
    terms = [t.strip() for t in re.split(r"[~+]", user_formula)]
    notes = {"n": n, "index": ikind, "dropped": int(drop.sum()), "args": modes,
             "storage": {k: (c.storage, c.kind) for k, c in cols.items() if k in used}}
    return Case(family, user_formula, data, backend, kwargs, clean, clean_kwargs,
                [str(names[u]) for u in used] + planted + terms + list(kwargs) + ["response"], planted, notes)


def _missing_row(cols: dict, r: int) -> None:
    """Make row ``r`` missing in every column."""
    for c in cols.values():
        c.na = c.na.copy()
        c.na[r] = True
        d = c.data
        if isinstance(d, np.ndarray) and d.dtype.kind in "iub":   # cannot hold a missing value
            d = pd.Series(list(d), dtype=object)
            d[r] = None
        elif isinstance(d, pd.arrays.SparseArray):
            d = pd.arrays.SparseArray(np.where(np.arange(len(d)) == r, np.nan, np.asarray(d)),
                                      fill_value=d.fill_value)
        else:
            d = d.copy()
            d[r] = None if isinstance(d, pd.Series) and d.dtype == object else \
                np.nan if isinstance(d, (np.ndarray, pd.Categorical)) else pd.NA
        c.data = d
        c.clean = c.clean.copy()
        c.clean[r] = None if c.clean.dtype == object else np.nan
        if c.values is not None:
            c.values = c.values.copy()
            c.values[r] = np.nan


# --- fitting and checking ------------------------------------------------------------------

def _run(family, formula, data, kwargs):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            if family == "lmer":
                out = pyglmm.lmer(formula, data, **kwargs)
            else:
                out = pyglmm.glmer(formula, data, family=family, **kwargs)
        except PyglmmError as exc:
            out = exc
    return out, rec


def _is_internal(exc: PyglmmError) -> bool:
    """An exception from numpy / pandas / Python inside pyglmm, converted at the entry point."""
    cause = exc.__cause__
    return isinstance(exc, FitError) and ("failed with an internal" in str(exc) or (
        cause is not None and not isinstance(cause, (PyglmmError, np.linalg.LinAlgError))))


def check_case(case: Case) -> str:
    """Run one case and assert the contract; returns "fit", "error" or "refused"."""
    res, rec = _run(case.family, case.formula, case.data, case.kwargs)
    bad = [w for w in rec if not issubclass(w.category, UserWarning)]
    assert not bad, f"non-UserWarning leaked: {[(w.category.__name__, str(w.message)) for w in bad]}"
    if isinstance(res, PyglmmError):
        msg = str(res)
        assert msg.strip(), f"empty message from {type(res).__name__}"
        assert not _is_internal(res), f"internal exception: {msg}"
        if isinstance(res, DataError):
            assert any(nm and nm in msg for nm in case.names), f"DataError names nothing involved: {msg}"
        if case.planted:                               # refused (a formula error may come first)
            return "refused"
        ref, _ = _run(case.family, case.formula, case.clean, case.clean_kwargs)
        assert isinstance(ref, PyglmmError), f"refused ({type(res).__name__}: {msg}) but the cleaned copy fits"
        return "error"
    assert not case.planted, f"planted bad column(s) {case.planted} were not refused"
    ref, _ = _run(case.family, case.formula, case.clean, case.clean_kwargs)
    assert not isinstance(ref, PyglmmError), f"fit succeeded, cleaned copy raised {type(ref).__name__}: {ref}"
    assert res.nobs == ref.nobs == len(case.clean), (res.nobs, ref.nobs, len(case.clean))
    assert list(res.fixef.index) == list(ref.fixef.index), (list(res.fixef.index), list(ref.fixef.index))
    assert list(res.theta.index) == list(ref.theta.index), (list(res.theta.index), list(ref.theta.index))
    np.testing.assert_allclose(res.loglik, ref.loglik, rtol=1e-6, err_msg="logLik")
    np.testing.assert_allclose(res.fixef.to_numpy(), ref.fixef.to_numpy(), rtol=1e-6, atol=1e-8, err_msg="fixef")
    np.testing.assert_allclose(res.theta.to_numpy(), ref.theta.to_numpy(), rtol=1e-6, atol=1e-6, err_msg="theta")
    return "fit"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None, print_blob=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
@given(case=cases())
def test_fuzz_inputs_fit_equals_cleaned_copy_or_pyglmm_error(case):
    check_case(case)
