"""Evaluate formula variable texts (``log(x)``, ``I(age^2)``, ``factor(g)``...) against a DataFrame safely."""
from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..formula import FormulaError, parse_expression
from ..formula.nodes import BinOp, Call, Name, Node, Num, Paren, Str, Unary
from ..formula.numfmt import format_r_number, format_r_numbers
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
                return Variable(self.name, values=vals, colnames=self.colnames)
            return Variable(self.name, values=self.values[rows], colnames=self.colnames)
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
        return Variable(self.name, codes=new_codes, levels=levels, ref=ref)


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


#: labels of categorical columns by their categories (an immutable pandas Index), so that
#: refits of the same data skip the conversion: id -> (weak reference, labels); bounded
_CATEGORY_LABELS: dict[int, tuple] = {}


def _category_labels(cats: pd.Index) -> list[str]:
    """The R labels of a Categorical's categories (cached per categories object)."""
    hit = _CATEGORY_LABELS.get(id(cats))
    if hit is not None and hit[0]() is cats:
        return list(hit[1])
    kind = cats.dtype.kind if isinstance(cats.dtype, np.dtype) else None
    if kind is None and isinstance(cats.dtype, pd.StringDtype):
        labels = _string_labels(cats)
    elif kind in ("i", "u", "f") or (kind is None and pd.api.types.is_numeric_dtype(cats.dtype)
                                     and not pd.api.types.is_bool_dtype(cats.dtype)):
        labels = format_r_numbers(cats.to_numpy())
    else:
        labels = [_label(c) for c in cats.to_numpy(dtype=object)]
    try:
        ref = weakref.ref(cats)
    except TypeError:                         # not weak-referenceable: no caching
        return labels
    if len(_CATEGORY_LABELS) >= 256:
        _CATEGORY_LABELS.clear()
    _CATEGORY_LABELS[id(cats)] = (ref, tuple(labels))
    return labels


def factor_from_values(values: np.ndarray | pd.Series, name: str) -> Variable:
    """Make a factor like R's ``factor()``: categories kept in order, others sorted; bool -> FALSE/TRUE."""
    if isinstance(values, pd.Categorical):
        return Variable(name, codes=values.codes.astype(np.int64),
                        levels=_category_labels(values.categories))
    if type(values) is np.ndarray and values.ndim == 1 and values.dtype.kind in "fiu":
        arr = values.astype(np.float64, copy=False)
        if arr.size and not np.isnan(arr).any():     # numeric group ids: no pandas Series
            uniq, codes = _numeric_levels(arr)
            return Variable(name, codes=codes, levels=format_r_numbers(uniq))
    s = values if isinstance(values, pd.Series) else pd.Series(values)
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        codes = s.cat.codes.to_numpy(dtype=np.int64)
        if pd.api.types.is_numeric_dtype(cats.dtype) and not pd.api.types.is_bool_dtype(cats.dtype):
            return Variable(name, codes=codes, levels=format_r_numbers(cats.to_numpy()))
        return Variable(name, codes=codes, levels=[_label(c) for c in cats])
    if s.dtype == bool or str(s.dtype) == "boolean":
        na = s.isna().to_numpy()
        vals = s.fillna(False).to_numpy(dtype=bool)
        codes = np.where(na, -1, vals.astype(np.int64))
        return Variable(name, codes=codes, levels=["FALSE", "TRUE"])
    na = s.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(s.dtype):
        arr = s.to_numpy(dtype=np.float64, na_value=np.nan)
        uniq = np.unique(arr[~na])
        codes = np.full(len(arr), -1, dtype=np.int64)
        codes[~na] = np.searchsorted(uniq, arr[~na])
        return Variable(name, codes=codes, levels=format_r_numbers(uniq))
    obj = s.to_numpy(dtype=object)
    present = obj[~na]
    try:
        uniq = sorted(set(present))
    except TypeError:
        uniq = sorted(set(present), key=str)
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
            self.cache[text] = self.finish(self.eval(node, text), text)
        return self.cache[text]

    def finish(self, value, text: str) -> Variable:
        if isinstance(value, _Factor):
            v = value.var
            return Variable(text, codes=v.codes, levels=v.levels, ref=v.ref)
        if isinstance(value, tuple):  # cbind
            mats = [self._as_numeric(v, text) for v in value[0]]
            if any(m.ndim > 1 for m in mats):
                return Variable(text, values=np.column_stack(mats), colnames=value[1])
            out = np.empty((self.n, len(mats)))
            for j, m in enumerate(mats):
                out[:, j] = m                # a number is recycled, as R's cbind does
            return Variable(text, values=out, colnames=value[1])
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
            return vals
        if isinstance(arr, pd.Categorical):
            return _Factor(factor_from_values(arr, name))
        s = self.df[name]
        if isinstance(s.dtype, pd.CategoricalDtype) or s.dtype == bool or str(s.dtype) == "boolean":
            return _Factor(factor_from_values(s, name))
        if pd.api.types.is_numeric_dtype(s.dtype):
            return s.to_numpy(dtype=np.float64, na_value=np.nan)
        if pd.api.types.is_datetime64_any_dtype(s.dtype) or pd.api.types.is_timedelta64_dtype(s.dtype):
            raise DataError(f"column {name!r} has unsupported dtype {s.dtype}; convert it to numbers first")
        return _Factor(factor_from_values(s, name))

    def _as_numeric(self, value, text: str) -> np.ndarray:
        if isinstance(value, _Factor):
            raise DataError(f"column {value.var.name!r} is not numeric (categorical) and cannot be used in "
                            f"arithmetic in {text!r}")
        if isinstance(value, str):
            raise DataError(f"a string cannot be used in arithmetic in {text!r}")
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
        fac = val.var if isinstance(val, _Factor) else factor_from_values(
            np.broadcast_to(np.asarray(val), (self.n,)), text)
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
