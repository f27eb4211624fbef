"""Evaluate formula variable texts (``log(x)``, ``I(age^2)``, ``factor(g)``...) against a DataFrame safely."""
from __future__ import annotations

import datetime as _dt
import decimal
import difflib
import fractions
import numbers
import warnings
import weakref
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..formula import FormulaError, parse_expression
from ..formula.nodes import BinOp, Call, Name, Node, Num, Paren, Str, Unary, quote_name
from ..formula.numfmt import format_r_number, format_r_numbers
from .._warn import user_stacklevel
from ..fit import compiled
from .collation import r_sorted
from .data import column_array
from .errors import DataError


@dataclass
class Variable:
    """An evaluated variable: numeric ``values`` (n,) / (n, k), or categorical ``codes`` (-1 = NA) + ``levels``."""

    name: str
    values: np.ndarray | None = None
    codes: np.ndarray | None = None
    levels: list[str] = field(default_factory=list)
    ref: int = 0
    colnames: list[str] | None = None
    #: the exact integers behind ``values`` of an integer column (doubles blur ids from 1e15
    #: on): a grouping factor made of it keeps every id
    exact: np.ndarray | None = None
    #: an ordered factor (an ordered pandas Categorical): R codes it with polynomial contrasts
    ordered: bool = False

    @property
    def is_factor(self) -> bool:
        return self.codes is not None

    def na_mask(self) -> np.ndarray:
        """True where the value is missing."""
        if self.codes is not None:
            return self.codes < 0
        v = self.values
        return np.isnan(v) if v.ndim == 1 else np.isnan(v).any(axis=1)

    def subset(self, rows: np.ndarray | None) -> "Variable":
        """Keep ``rows`` (None: all) and, for factors, drop unused levels (keeping the reference
        level if still used)."""
        if self.codes is None:
            if rows is None:
                # no copy: a read-only view, since the values may be the user's own column
                vals = self.values.view()
                vals.flags.writeable = False
                return Variable(self.name, values=vals, colnames=self.colnames, exact=self.exact)
            return Variable(self.name, values=self.values[rows], colnames=self.colnames,
                            exact=None if self.exact is None else self.exact[rows])
        codes = self.codes if rows is None else self.codes[rows]
        if rows is None:                 # no row dropped, so no NA among the codes
            used = np.bincount(codes, minlength=len(self.levels)) > 0 if codes.size else \
                np.zeros(len(self.levels), dtype=bool)
            if used.all():
                return self
        else:
            used = np.zeros(len(self.levels), dtype=bool)
            used[codes[codes >= 0]] = True
        remap = np.cumsum(used) - 1
        new_codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype(np.int64)
        levels = [lv for lv, u in zip(self.levels, used) if u]
        ref = int(remap[self.ref]) if self.ref < len(used) and used[self.ref] else 0
        return Variable(self.name, codes=new_codes, levels=levels, ref=ref, ordered=self.ordered)


def _numeric_levels(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of a NaN-free float array and each value's index among them;
    integer ids in a small range by counting (O(n), not a sort of a million rows)."""
    ints = arr.astype(np.int64)
    if np.array_equal(ints, arr):
        lo = int(ints.min())
        key = ints - lo
        if int(key.max()) < 4 * key.size + 1024:
            used = np.bincount(key) > 0
            return (np.flatnonzero(used) + lo).astype(np.float64), (np.cumsum(used) - 1)[key]
    uniq, codes = np.unique(arr, return_inverse=True)
    return uniq, codes.astype(np.int64, copy=False).reshape(-1)


# --- what the values of an object column are --------------------------------------------------
_DATE_TYPES = (_dt.date, _dt.time, _dt.timedelta, np.datetime64, np.timedelta64)


def _value_kind(t: type) -> str:
    """The R-relevant kind of a Python value type: logical, integer, real, string or a refusal."""
    if issubclass(t, (bool, np.bool_)):
        return "logical"
    if issubclass(t, (numbers.Integral, np.integer)):
        return "integer"
    if issubclass(t, (float, np.floating, decimal.Decimal, fractions.Fraction)) or \
            (issubclass(t, numbers.Real)):
        return "real"
    if issubclass(t, str):
        return "string"
    if issubclass(t, (complex, np.complexfloating)):
        return "complex numbers"
    if issubclass(t, (bytes, bytearray, memoryview)):
        return "bytes"
    if issubclass(t, _DATE_TYPES) or issubclass(t, pd.Timestamp) or issubclass(t, pd.Timedelta):
        return "dates or times"
    return f"values of type {t.__name__}"


_KIND_HINT = {
    "complex numbers": "use the real part or the modulus (np.abs) explicitly",
    "bytes": "decode them to str first",
    "dates or times": "convert them to numbers (e.g. days since a start date) or to strings first",
}


def classify_object(obj: np.ndarray, na: np.ndarray, name: str) -> str:
    """The kind of an object array's non-missing values: "numeric" (all real numbers: int,
    float, Decimal, Fraction), "logical" (all bool), "string" (all str) or "empty"; raises
    DataError naming the column for complex numbers, bytes, dates or a mix of kinds (such as
    ``1`` and ``"1"``, or ``True`` and ``"TRUE"``), whose meaning as R data is unclear."""
    present = obj[~na] if na.any() else obj
    if not present.size:
        return "empty"
    types = set(map(type, present))
    kinds = {t: _value_kind(t) for t in types}
    numeric = {"integer", "real"}
    found = set(kinds.values())
    if found <= numeric:
        return "numeric"
    if len(found) == 1:
        kind = found.pop()
        if kind in ("logical", "string"):
            return kind
        example = next(v for v in present if kinds[type(v)] == kind)
        raise DataError(f"column {name!r} holds {kind} (e.g. {example!r}), which pyglmm cannot use as "
                        f"model data; {_KIND_HINT.get(kind, 'convert the column to numbers or strings first')}")
    # a mix: name two values of different kinds (numbers count as one kind)
    group = {t: ("number" if k in numeric else k) for t, k in kinds.items()}
    first: dict[str, object] = {}
    for v in present:
        g = group[type(v)]
        if g not in first:
            first[g] = v
            if len(first) == 2:
                break
    (ka, va), (kb, vb) = list(first.items())[:2]
    raise DataError(f"column {name!r} mixes {ka} and {kb} values (e.g. {va!r} and {vb!r}), so it is "
                    "unclear which values are equal (R's factor() would turn both into text); convert "
                    "the column to one type first (e.g. df[col].astype(str) or pd.to_numeric)")


def object_to_float(obj: np.ndarray, na: np.ndarray) -> np.ndarray:
    """An object array of real numbers (None/NaN as missing) as float64 with NaN."""
    out = np.full(obj.shape[0], np.nan)
    keep = ~na
    out[keep] = [float(v) for v in obj[keep]]
    return out


#: labels of categorical columns by their categories (an immutable pandas Index), so that
#: refits of the same data skip the conversion: id -> (weak reference, labels); bounded
_CATEGORY_LABELS: dict[int, tuple] = {}


def _category_labels(cats: pd.Index, name: str = "") -> list[str]:
    """The R labels of a Categorical's categories (cached per categories object)."""
    hit = _CATEGORY_LABELS.get(id(cats))
    if hit is not None and hit[0]() is cats:
        return list(hit[1])
    kind = cats.dtype.kind if isinstance(cats.dtype, np.dtype) else None
    if kind is None and isinstance(cats.dtype, pd.StringDtype):
        labels = _string_labels(cats)
    elif kind in ("i", "u"):
        labels = _int_labels(cats.to_numpy())
    elif kind == "f" or (kind is None and pd.api.types.is_numeric_dtype(cats.dtype)
                         and not pd.api.types.is_bool_dtype(cats.dtype)):
        labels = format_r_numbers(cats.to_numpy())
    else:
        raw = cats.to_numpy(dtype=object)
        if kind == "O":
            classify_object(raw, np.zeros(len(raw), dtype=bool), name)   # refuse mixed categories
        labels = [_label(c) for c in raw]
    try:
        ref = weakref.ref(cats)
    except TypeError:                         # not weak-referenceable: no caching
        return labels
    if len(_CATEGORY_LABELS) >= 256:
        _CATEGORY_LABELS.clear()
    _CATEGORY_LABELS[id(cats)] = (ref, tuple(labels))
    return labels


def _int_labels(uniq: np.ndarray) -> list[str]:
    """Labels of distinct integers: R's (15 significant digits) below 1e15, where they are
    exact; every digit beyond, so that distinct ids stay distinct levels (as R's factor() of
    integer64 or character ids) instead of merging into one label such as "1e+15"."""
    if not uniq.size:
        return []
    if max(abs(int(uniq.min())), abs(int(uniq.max()))) < 10 ** 15:
        return format_r_numbers(uniq.astype(np.float64))
    return [str(int(u)) for u in uniq.tolist()]


def _int_factor(ints: np.ndarray, na: np.ndarray | None, name: str) -> Variable:
    """A factor of exact integer values (``na``: missing rows, or None); int64 or uint64."""
    codes = np.full(ints.shape[0], -1, dtype=np.int64)
    present = ints if na is None else ints[~na]
    if not present.size:
        return Variable(name, codes=codes, levels=[])
    lo, hi = int(present.min()), int(present.max())
    if hi - lo < 4 * present.size + 1024:                     # small range: by counting
        key = (present - present.dtype.type(lo)).astype(np.int64)
        used = np.bincount(key) > 0
        off = np.flatnonzero(used)
        uniq = off.astype(np.uint64) + np.uint64(lo) if hi >= 2 ** 63 else off.astype(np.int64) + lo
        sub = (np.cumsum(used) - 1)[key]
    else:
        uniq, sub = np.unique(present, return_inverse=True)
        sub = sub.reshape(-1)
    if na is None:
        codes = sub.astype(np.int64, copy=False)
    else:
        codes[~na] = sub
    return Variable(name, codes=codes, levels=_int_labels(uniq))


def _merge_equal_labels(var: Variable, raw: list, name: str) -> Variable:
    """Levels whose labels coincide are one level, as in R (a factor's levels are text): R's
    factor() labels numbers with 15 significant digits, so 0.3 and 0.1 + 0.2 are one level.
    Warns naming the column and two merged values; raises DataError where the values are of
    different types (R's meaning is unclear)."""
    labels = var.levels
    if len(set(labels)) == len(labels):
        return var
    index: dict[str, int] = {}
    first: dict[str, object] = {}
    remap = np.empty(len(labels), dtype=np.int64)
    merged: list[tuple[object, object, str]] = []
    for i, lab in enumerate(labels):
        j = index.get(lab)
        if j is None:
            index[lab] = remap[i] = len(index)
            first[lab] = raw[i]
        else:
            remap[i] = j
            merged.append((first[lab], raw[i], lab))
    a, b, lab = merged[0]
    if not all(isinstance(v, (float, np.floating, int, np.integer)) and not isinstance(v, (bool, np.bool_))
               for v in raw):
        raise DataError(f"column {name!r} has distinct values {a!r} and {b!r} that both read {lab!r} as R "
                        "data, so it is unclear whether they are one level; convert the column to one type "
                        "first")
    warnings.warn(f"column {name!r}: {len(merged)} pair(s) of distinct numbers print alike at R's 15 "
                  f"significant digits and are one level, as R's factor() makes them (e.g. {a!r} and {b!r} "
                  f"are both level {lab!r}); round the column (or convert it to strings) if they are meant "
                  "to differ", UserWarning, stacklevel=user_stacklevel())
    codes = var.codes
    codes = np.where(codes >= 0, remap[np.maximum(codes, 0)], -1).astype(np.int64)
    ref = int(remap[var.ref]) if var.ref < len(remap) else 0
    return Variable(name, codes=codes, levels=list(index), ref=ref, ordered=var.ordered)


def factor_from_values(values, name: str, exact: np.ndarray | None = None) -> Variable:
    """Make a factor like R's ``factor()``: a Categorical's categories kept in order, other
    values sorted as R sorts them (strings in R's collation, numbers by value); bool ->
    FALSE/TRUE; integers exact (``exact``: the integers behind float ``values``); numbers whose
    15-significant-digit labels coincide are one level (with a warning); a column mixing kinds
    of values (``1`` and ``"1"``) raises DataError."""
    if exact is not None:
        na = np.isnan(values) if isinstance(values, np.ndarray) and values.dtype.kind == "f" else None
        return _int_factor(exact, na if na is not None and na.any() else None, name)
    if isinstance(values, pd.Categorical):
        labels = _category_labels(values.categories, name)
        var = Variable(name, codes=values.codes.astype(np.int64), levels=labels, ordered=bool(values.ordered))
        if len(set(labels)) == len(labels):
            return var
        return _merge_equal_labels(var, list(values.categories), name)
    if type(values) is np.ndarray and values.ndim == 1 and values.dtype.kind in "iu":
        return _int_factor(values, None, name)
    if type(values) is np.ndarray and values.ndim == 1 and values.dtype.kind == "f":
        if values.size and not np.isnan(values).any():     # numeric group ids: no pandas Series
            uniq, codes = _numeric_levels(values.astype(np.float64, copy=False))
            var = Variable(name, codes=codes, levels=format_r_numbers(uniq))
            return _merge_equal_labels(var, uniq.tolist(), name)
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        return factor_from_values(s.array, name)
    if s.dtype == bool or str(s.dtype) == "boolean":
        na = s.isna().to_numpy()
        vals = s.fillna(False).to_numpy(dtype=bool)
        codes = np.where(na, -1, vals.astype(np.int64))
        return Variable(name, codes=codes, levels=["FALSE", "TRUE"])
    na = s.isna().to_numpy()
    if pd.api.types.is_integer_dtype(s.dtype) and not isinstance(s.dtype, np.dtype):   # nullable Int64
        npd = getattr(s.dtype, "numpy_dtype", np.dtype(np.int64))
        ints = s.to_numpy(dtype=npd, na_value=0)
        return _int_factor(ints, na if na.any() else None, name)
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype):
        arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
        uniq = np.unique(arr[~na])
        codes = np.full(len(arr), -1, dtype=np.int64)
        codes[~na] = np.searchsorted(uniq, arr[~na])
        var = Variable(name, codes=codes, levels=format_r_numbers(uniq))
        return _merge_equal_labels(var, uniq.tolist(), name)
    obj = s.to_numpy(dtype=object)
    kind = classify_object(obj, na, name)
    if kind == "numeric":
        return factor_from_values(object_to_float(obj, na), name)
    if kind == "logical":
        codes = np.full(len(obj), -1, dtype=np.int64)
        codes[~na] = [1 if v else 0 for v in obj[~na]]
        return Variable(name, codes=codes, levels=["FALSE", "TRUE"])
    present = obj[~na]
    uniq = r_sorted(list(set(present)))
    index = {u: i for i, u in enumerate(uniq)}
    codes = np.full(len(obj), -1, dtype=np.int64)
    codes[~na] = [index[v] for v in present]
    return Variable(name, codes=codes, levels=[_label(u) for u in uniq])


def _string_labels(cats: pd.Index) -> list[str]:
    """The labels of string categories (no missing values among categories): through Arrow's
    list conversion when pandas stores them in Arrow (pandas 3's default str), a few times
    faster than an object array."""
    arr = cats.array
    if hasattr(arr, "__arrow_array__"):
        try:
            return arr.__arrow_array__().to_pylist()
        except (TypeError, ValueError, ImportError):
            pass
    return [_label(c) for c in cats.to_numpy(dtype=object)]


def _label(value: object) -> str:
    if type(value) is str:
        return value
    if isinstance(value, (bool, np.bool_)):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return format_r_number(float(value))
    return str(value)


#: integers from this magnitude on print differently as R's doubles (15 significant digits)
_BLURRED = 10 ** 15


def _column_names(node: Node, columns) -> list[str]:
    """The data columns an expression reads, in order of appearance."""
    out: list[str] = []

    def walk(n):
        if isinstance(n, Name):
            if n.id in columns and n.id not in out:
                out.append(n.id)
        elif isinstance(n, Paren):
            walk(n.inner)
        elif isinstance(n, Unary):
            walk(n.operand)
        elif isinstance(n, BinOp):
            walk(n.left)
            walk(n.right)
        elif isinstance(n, Call):
            for _, a in n.args:
                walk(a)

    walk(node)
    return out


class _Ints:
    """An integer column that doubles would blur (|value| >= 1e15): its float values for
    arithmetic and its exact integers for a factor (``exact``)."""

    def __init__(self, values: np.ndarray, exact: np.ndarray) -> None:
        self.values = values
        self.exact = exact


class _Factor:
    """Intermediate categorical value inside the evaluator."""

    def __init__(self, var: Variable) -> None:
        self.var = var


_UNARY_FUNCS = {
    "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs, "log10": np.log10, "log2": np.log2,
    "log1p": np.log1p, "expm1": np.expm1, "sin": np.sin, "cos": np.cos, "tan": np.tan,
    "floor": np.floor, "ceiling": np.ceil, "round": np.round,
}


class Evaluator:
    """Evaluate expression texts against a DataFrame with a whitelist of R functions (no Python eval)."""

    def __init__(self, df: pd.DataFrame, scale_params: dict[str, tuple[float, float]] | None = None,
                 lenient_ref: bool = False) -> None:
        self.df = df
        self.n = len(df)
        self.cache: dict[str, Variable] = {}
        # scale() centre/scale by call text: recorded when evaluating training data, reused (fixed) for
        # new data as R's makepredictcall does; lenient_ref: C(x, ref=) tolerates an absent level
        self.scale_params: dict[str, tuple[float, float]] = dict(scale_params or {})
        self._fixed_scale = scale_params is not None
        self.lenient_ref = lenient_ref

    def variable(self, text: str) -> Variable:
        """Evaluate ``text`` (a canonical variable text) into a Variable of length nrow(data)."""
        if text not in self.cache:
            try:
                node = parse_expression(text)
            except FormulaError as exc:  # pragma: no cover - texts come from the parser
                raise DataError(f"cannot evaluate {text!r}: {exc}") from exc
            var = self.finish(self.eval(node, text), text)
            if not isinstance(node, Name) and var.codes is None:
                self._warn_nan_produced(node, var, text)
            self.cache[text] = var
        return self.cache[text]

    def _warn_nan_produced(self, node: Node, var: Variable, text: str) -> None:
        """R's "NaNs produced": warn when a transformation (log, sqrt, 0/0, ...) gives NaN in
        rows where its columns have values; those rows then count as missing (na.omit)."""
        vals = var.values
        kern = compiled.frame_kernels()
        if not vals.size or (kern.all_finite(vals.reshape(-1)) if kern is not None and vals.dtype == np.float64
                             else not np.isnan(vals).any()):
            return
        nan = np.isnan(vals) if vals.ndim == 1 else np.isnan(vals).any(axis=1)
        cols = _column_names(node, self.df.columns)
        given = np.zeros(self.n, dtype=bool)
        for c in cols:                      # a column's text is its name, backquoted if not syntactic
            given |= self.variable(quote_name(c)).na_mask()
        produced = nan & ~given
        count = int(np.count_nonzero(produced))
        if count:
            where = ", ".join(repr(c) for c in cols) or "constants"
            warnings.warn(f"NaNs produced: {text!r} is NaN in {count} row(s) where {where} "
                          f"{'has' if len(cols) < 2 else 'have'} values (e.g. the log or square root of a "
                          "negative number, or 0/0); those rows count as missing values, and the fit "
                          "drops them as lme4's na.omit does", UserWarning, stacklevel=user_stacklevel())

    def finish(self, value, text: str) -> Variable:
        if isinstance(value, _Factor):
            v = value.var
            return Variable(text, codes=v.codes, levels=v.levels, ref=v.ref, ordered=v.ordered)
        if isinstance(value, tuple):  # cbind
            mats = [self._as_numeric(v, text) for v in value[0]]
            if any(m.ndim > 1 for m in mats):
                return Variable(text, values=np.column_stack(mats), colnames=value[1])
            out = np.empty((self.n, len(mats)))
            for j, m in enumerate(mats):
                out[:, j] = m                # a number is recycled, as R's cbind does
            return Variable(text, values=out, colnames=value[1])
        if isinstance(value, _Ints):
            return Variable(text, values=value.values, exact=value.exact)
        arr = np.asarray(value)
        if arr.ndim == 0:
            arr = np.full(self.n, arr.item())
        if arr.dtype == bool:
            return Variable(text, codes=arr.astype(np.int64), levels=["FALSE", "TRUE"])
        return Variable(text, values=self._as_numeric(arr, text))

    def column(self, node: Name, text: str):
        name = node.id
        if name not in self.df.columns:
            if name in ("TRUE", "T") and not node.backquoted:
                return True
            if name in ("FALSE", "F") and not node.backquoted:
                return False
            if name == "pi" and not node.backquoted:
                return np.pi
            close = difflib.get_close_matches(name, [str(c) for c in self.df.columns], n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise DataError(f"column {name!r} not found in data{hint}")
        arr = column_array(self.df, name)
        if isinstance(arr, np.ndarray) and arr.dtype.kind in "iuf":
            vals = arr.astype(np.float64) if arr.dtype != np.float64 else arr.view()
            vals.flags.writeable = False              # may be the user's own column
            if arr.dtype.kind in "iu":
                return _Ints(vals, arr)               # a factor of it uses the exact integers
            return vals
        if isinstance(arr, pd.Categorical):
            return _Factor(factor_from_values(arr, name))
        s = self.df[name]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == bool or str(s.dtype) == "boolean":
            return _Factor(factor_from_values(s, name))
        if pd.api.types.is_complex_dtype(s.dtype):
            raise DataError(f"column {name!r} holds complex numbers (dtype {s.dtype}); use the real part or "
                            "the modulus (np.abs) explicitly")
        if pd.api.types.is_numeric_dtype(s.dtype):
            vals = s.to_numpy(dtype=np.float64, na_value=np.nan)
            if pd.api.types.is_integer_dtype(s.dtype) and not np.isnan(vals).all() and \
                    np.nanmax(np.abs(vals)) >= _BLURRED:   # nullable Int64 ids: keep them exact
                npd = getattr(s.dtype, "numpy_dtype", np.dtype(np.int64))
                return _Ints(vals, s.to_numpy(dtype=npd, na_value=0))
            return vals
        if pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_timedelta64_dtype(s.dtype):
            raise DataError(f"column {name!r} has unsupported dtype {s.dtype}; convert it to numbers first")
        if isinstance(arr, np.ndarray) and arr.dtype.kind == "S":
            raise DataError(f"column {name!r} holds bytes (dtype {arr.dtype}); decode them to str first")
        if s.dtype == object:
            obj = s.to_numpy(dtype=object)
            na = s.isna().to_numpy()
            kind = classify_object(obj, na, name)     # refuses complex, bytes, dates, mixed kinds
            if kind in ("numeric", "empty"):          # numbers stored as objects (e.g. after a None)
                vals = object_to_float(obj, na)
                present = obj[~na]
                if present.size and all(isinstance(v, (int, np.integer)) for v in present) and \
                        np.nanmax(np.abs(vals)) >= _BLURRED:
                    exact = np.array([0 if m else int(v) for v, m in zip(obj, na)], dtype=object)
                    try:
                        exact = exact.astype(np.int64)
                    except OverflowError:
                        exact = exact.astype(np.uint64)
                    return _Ints(vals, exact)
                return vals
        return _Factor(factor_from_values(s, name))

    def _as_numeric(self, value, text: str) -> np.ndarray:
        if isinstance(value, _Factor):
            raise DataError(f"column {value.var.name!r} is not numeric (categorical) and cannot be used in "
                            f"arithmetic in {text!r}")
        if isinstance(value, str):
            raise DataError(f"a string cannot be used in arithmetic in {text!r}")
        if isinstance(value, _Ints):
            return value.values
        arr = np.asarray(value, dtype=np.float64) if not isinstance(value, np.ndarray) else value
        if arr.dtype == bool:
            arr = arr.astype(np.float64)
        if arr.dtype != np.float64:
            arr = arr.astype(np.float64)
        return arr

    def eval(self, node: Node, text: str):
        if isinstance(node, Name):          # a plain column: no arithmetic, no floating-point state
            return self.column(node, text)
        with np.errstate(all="ignore"):
            return self._eval(node, text)

    def _eval(self, node: Node, text: str):
        if isinstance(node, Paren):
            return self._eval(node.inner, text)
        if isinstance(node, Name):
            return self.column(node, text)
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Str):
            return node.value
        if isinstance(node, Unary):
            val = self._eval(node.operand, text)
            if node.op == "!":
                return ~self._as_bool(val, text)
            num = self._as_numeric(val, text)
            return -num if node.op == "-" else num
        if isinstance(node, BinOp):
            return self._binop(node, text)
        if isinstance(node, Call):
            return self._call(node, text)
        raise DataError(f"cannot evaluate {text!r}")

    def _as_bool(self, val, text: str) -> np.ndarray:
        if isinstance(val, _Factor) and val.var.levels == ["FALSE", "TRUE"]:
            return val.var.codes == 1
        arr = np.asarray(self._as_numeric(val, text))
        return arr != 0

    def _binop(self, node: BinOp, text: str):
        op = node.op
        left, right = self._eval(node.left, text), self._eval(node.right, text)
        if op in ("==", "!=") and (isinstance(left, (_Factor, str)) or isinstance(right, (_Factor, str))):
            eq = self._compare_labels(left, right, text)
            return eq if op == "==" else ~eq
        if op in ("&", "&&", "|", "||"):
            a, b = self._as_bool(left, text), self._as_bool(right, text)
            return a & b if op in ("&", "&&") else a | b
        a, b = self._as_numeric(left, text), self._as_numeric(right, text)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "^":
            return np.power(a, b)
        if op == "%%":
            return np.mod(a, b)
        if op == "%/%":
            return np.floor_divide(a, b)
        cmp = {"<": np.less, ">": np.greater, "<=": np.less_equal, ">=": np.greater_equal,
               "==": np.equal, "!=": np.not_equal}
        if op in cmp:
            res = cmp[op](a, b)
            na = np.broadcast_to(np.isnan(a) | np.isnan(b), np.shape(res))
            codes = np.where(na, -1, np.asarray(res).astype(np.int64))
            return _Factor(Variable(text, codes=np.broadcast_to(codes, (self.n,)).astype(np.int64),
                                    levels=["FALSE", "TRUE"]))
        raise DataError(f"operator {op!r} cannot be evaluated in {text!r}")

    def _compare_labels(self, left, right, text: str) -> np.ndarray:
        def labels(v):
            if isinstance(v, _Factor):
                lv = np.array(v.var.levels + [None], dtype=object)
                return lv[v.var.codes]
            if isinstance(v, str):
                return v
            raise DataError(f"cannot compare a categorical with a number in {text!r}")

        return np.asarray(labels(left) == labels(right), dtype=bool)

    def _call(self, node: Call, text: str):
        f = node.func
        args = [a for name, a in node.args if name is None]
        kwargs = {name: a for name, a in node.args if name is not None}
        if f in ("I", "offset", "as.numeric", "as.double") or f in _UNARY_FUNCS:
            if len(args) != 1 or kwargs:
                raise DataError(f"{f}() takes exactly one argument in {text!r}")
            val = self._eval(args[0], text)
            if f == "I" or f == "offset":
                return val
            if f in ("as.numeric", "as.double"):
                if isinstance(val, _Factor):
                    return np.where(val.var.codes >= 0, val.var.codes + 1.0, np.nan)
                return self._as_numeric(val, text)
            return _UNARY_FUNCS[f](self._as_numeric(val, text))
        if f == "scale":
            if len(args) != 1 or kwargs:
                raise DataError(f"scale() takes exactly one argument in {text!r}")
            x = self._as_numeric(self._eval(args[0], text), text)
            x = np.broadcast_to(x, (self.n,)).astype(np.float64)
            from ..formula import deparse

            key = deparse(node)
            if self._fixed_scale:
                if key not in self.scale_params:
                    raise DataError(f"the model does not record the training centre and scale of {key!r} "
                                    "(e.g. it was loaded from a file written without them), so it cannot be "
                                    "applied to new data; refit the model")
                centre, sd = self.scale_params[key]
                return (x - centre) / sd
            ok = ~np.isnan(x)
            if ok.sum() < 2:
                raise DataError(f"scale() needs at least two non-missing values in {text!r}")
            centre = float(x[ok].mean())
            centred = x - centre
            sd = float(np.std(centred[ok], ddof=1))
            self.scale_params.setdefault(key, (centre, sd))
            return centred / sd
        if f in ("factor", "as.factor"):
            if len(args) != 1 or kwargs:
                raise DataError(f"{f}() takes exactly one argument in {text!r}")
            val = self._eval(args[0], text)
            if isinstance(val, _Factor):
                return val
            if isinstance(val, _Ints):
                return _Factor(factor_from_values(val.values, text, exact=val.exact))
            arr = np.broadcast_to(np.asarray(val), (self.n,))
            return _Factor(factor_from_values(arr, text))
        if f == "C":
            return self._contrast_call(node, args, kwargs, text)
        if f == "cbind":
            if kwargs or len(args) < 2:
                raise DataError(f"cbind() needs at least two unnamed arguments in {text!r}")
            from ..formula import deparse

            return ([self._eval(a, text) for a in args], [deparse(a) for a in args])
        raise DataError(f"unknown function {f!r} in {text!r} (supported: I, log, exp, sqrt, abs, scale, "
                        "as.numeric, factor, C, offset, cbind and simple math functions)")

    def _contrast_call(self, node: Call, args, kwargs, text: str):
        if len(args) != 1 or set(kwargs) - {"ref", "base"} or len(kwargs) != 1:
            raise DataError(f'C() must be written C(x, ref = "level") in {text!r}')
        val = self._eval(args[0], text)
        fac = val.var if isinstance(val, _Factor) else \
            factor_from_values(val.values, text, exact=val.exact) if isinstance(val, _Ints) else \
            factor_from_values(np.broadcast_to(np.asarray(val), (self.n,)), text)
        key, refnode = next(iter(kwargs.items()))
        refval = self._eval(refnode, text)
        if key == "base":
            if not isinstance(refval, float) or refval != int(refval) or not 1 <= refval <= len(fac.levels):
                if self.lenient_ref:
                    return _Factor(Variable(text, codes=fac.codes, levels=list(fac.levels), ref=0))
                raise DataError(f"C(..., base = k) needs a level number between 1 and {len(fac.levels)} in {text!r}")
            ref = int(refval) - 1
        else:
            label = refval if isinstance(refval, str) else format_r_number(float(refval)) \
                if isinstance(refval, float) else ("TRUE" if refval is True else "FALSE")
            if label not in fac.levels:
                if self.lenient_ref:  # new data: the fit's reference level is restored by the caller
                    return _Factor(Variable(text, codes=fac.codes, levels=list(fac.levels), ref=0))
                raise DataError(f"reference level {label!r} is not a level of {fac.name!r} "
                                f"(levels: {', '.join(fac.levels)}) in {text!r}")
            ref = fac.levels.index(label)
        return _Factor(Variable(text, codes=fac.codes, levels=list(fac.levels), ref=ref))


def numeric_argument(value, what: str, df: pd.DataFrame, index: pd.Index | None,
                     data_kind: str = "data") -> np.ndarray | None:
    """A ``weights=`` / ``offset=`` argument as a float array of one value per row of ``df``
    (NaN = missing), or None. ``value``: None, the name of a column of ``df``, or a vector; a
    pandas Series is matched to the rows by its index labels when the data is a pandas
    DataFrame (``index``: its original index), as pandas aligns, and refused when the labels
    differ; against data without an index (polars, Arrow, dict) only a Series with the
    default 0..n-1 index is taken (by position). Raises DataError naming ``what`` for a wrong
    length, more than one column, or values that are not numbers."""
    if value is None:
        return None
    n = len(df)
    if isinstance(value, str):
        if value not in df.columns:
            close = difflib.get_close_matches(value, [str(c) for c in df.columns], n=3)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise DataError(f"{what} column {value!r} not found in the {data_kind}{hint}")
        return _numeric_vector(df[value], f"{what} column {value!r}")
    if isinstance(value, pd.DataFrame):
        if value.shape[1] != 1:
            raise DataError(f"{what} must be one column of numbers, got a DataFrame with {value.shape[1]} columns")
        value = value.iloc[:, 0]
    if isinstance(value, pd.Series):
        lab = value.index
        default = isinstance(lab, pd.RangeIndex) and lab.start == 0 and lab.step == 1 and len(lab) == n
        if index is not None and lab.equals(index):
            pass                                      # the same rows in the same order
        elif index is not None and len(lab) == n and index.is_unique and lab.is_unique and \
                bool(lab.isin(index).all()):
            value = value.reindex(index)              # the same labels in another order: align
        elif index is None and default:
            pass
        elif index is None:
            raise DataError(f"{what} is a pandas Series with index labels, but the {data_kind} has no index "
                            f"to align it with; pass {what}=series.to_numpy() to match rows by position")
        else:
            missing = [v for v in lab[~lab.isin(index)][:1]] if len(lab) else []
            detail = f" (e.g. label {missing[0]!r} is not in the data's index)" if missing else \
                f" (length {len(lab)}, the data has {n} rows)" if len(lab) != n else \
                " (repeated labels)"
            raise DataError(f"{what} is a pandas Series whose index does not match the data's index{detail}; "
                            f"align it first ({what}=series.reindex(data.index)) or pass series.to_numpy() "
                            "to match rows by position")
        return _numeric_vector(value, what)
    arr = np.asarray(value)
    if arr.ndim == 0:
        raise DataError(f"{what} must have one value per row (a vector of length {n}), got one number "
                        f"{arr.item()!r}")
    if arr.ndim > 1:
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        else:
            raise DataError(f"{what} must be one-dimensional (one value per row), got shape {arr.shape}")
    if len(arr) != n:
        raise DataError(f"{what} has length {len(arr)} but the {data_kind} has {n} rows")
    return _numeric_vector(pd.Series(arr, copy=False), what)


def _numeric_vector(s: pd.Series, what: str) -> np.ndarray:
    """The float values of a weights / offset Series, or DataError naming ``what``."""
    dt = s.dtype
    if dt == bool or str(dt) in ("boolean", "bool[pyarrow]"):
        raise DataError(f"{what} must be numeric, not logical (True/False); convert it with .astype(float) "
                        "if that is meant")
    if pd.api.types.is_complex_dtype(dt):
        raise DataError(f"{what} must be real numbers, not complex (dtype {dt})")
    if pd.api.types.is_numeric_dtype(dt) and not isinstance(dt, pd.CategoricalDtype):
        return s.to_numpy(dtype=np.float64, na_value=np.nan)
    if dt == object:
        obj = s.to_numpy(dtype=object)
        na = s.isna().to_numpy()
        try:
            kind = classify_object(obj, na, what)
        except DataError as exc:
            raise DataError(f"{what} must be numeric: {exc}") from None
        if kind in ("numeric", "empty"):
            return object_to_float(obj, na)
        example = next(iter(obj[~na]))
        raise DataError(f"{what} must be numeric, but holds {kind} values (e.g. {example!r})")
    raise DataError(f"{what} must be numeric (dtype {dt})")
