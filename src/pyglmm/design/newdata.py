"""Model arrays for new data with the coding of a fitted model's frame (R's predict(..., newdata))."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..formula import FixedSpec, ParsedFormula
from .data import to_pandas
from .errors import DataError
from .grouping import as_factor
from .matrix import build_model_matrix
from .variables import Evaluator, Variable, factor_from_values, numeric_argument


@dataclass
class NewFixed:
    """Fixed part of new data: X with the fit's columns, summed offsets and the rows with missing values."""

    X: np.ndarray
    offset: np.ndarray
    na: np.ndarray


@dataclass
class NewReTerm:
    """One random term of the model on new data: codes into the fitted levels (-1 = new level, -2 = NA)."""

    codes: np.ndarray
    X: np.ndarray
    colnames: list[str]
    na: np.ndarray
    new_levels: list[str]


class NewDataEvaluator:
    """Evaluate a fitted model's variables on new data, restoring the fit's factor levels and scale()s."""

    def __init__(self, frame, data: Any) -> None:
        self.frame = frame
        self.df = to_pandas(data)
        self.index = data.index if isinstance(data, pd.DataFrame) else None
        self.data_kind = "new data" if self.index is not None else \
            f"new data ({type(data).__name__}, which has no index)"
        self.n = len(self.df)
        self.ev = Evaluator(self.df, scale_params=getattr(frame, "scale_params", {}) or {}, lenient_ref=True)
        self._cache: dict[str, Variable] = {}

    def variable(self, text: str) -> Variable:
        """A variable with the training coding: factors get the fit's levels (unseen level -> DataError)."""
        if text in self._cache:
            return self._cache[text]
        v = self.ev.variable(text)
        xlev = self.frame.xlevels.get(text)
        if xlev is not None:
            v = _remap_factor(v, list(xlev), int(getattr(self.frame, "xref", {}).get(text, 0)), text)
        elif v.is_factor:
            raise DataError(f"column {text!r} is categorical in the new data but was numeric when the model "
                            "was fitted")
        self._cache[text] = v
        return v

    def fixed(self, pf: ParsedFormula, offset: Any = None) -> NewFixed:
        """Fixed-effects matrix (the fit's columns, in order), offsets and NA rows."""
        n = self.n
        fvars = {t: self.variable(t) for t in pf.fixed.variables}
        na = np.zeros(n, dtype=bool)
        for v in fvars.values():
            na |= v.na_mask()
        X, names = build_model_matrix(pf.fixed, fvars, n)
        pos = {nm: j for j, nm in enumerate(names)}
        missing = [nm for nm in self.frame.fixef_names if nm not in pos]
        if missing:  # pragma: no cover - same spec and coding give the same names
            raise DataError(f"cannot rebuild fixed-effect columns {', '.join(missing)} from the new data")
        X = X[:, [pos[nm] for nm in self.frame.fixef_names]]
        off = np.zeros(n)
        for t in pf.fixed.offsets:
            v = self.ev.variable(t)
            if v.is_factor:
                raise DataError(f"offset {t!r} must be numeric, not categorical")
            vals = v.values if v.values.ndim == 1 else v.values.sum(axis=1)
            off = off + vals
            na |= np.isnan(vals)
        if offset is not None:
            if not isinstance(offset, str) and np.ndim(offset) == 0 and not isinstance(offset, pd.Series):
                try:                                   # one number: the same offset for every row
                    vals = np.full(n, float(offset))
                except (TypeError, ValueError):
                    raise DataError(f"offset must be numeric, got {offset!r}") from None
            else:
                vals = numeric_argument(offset, "offset", self.df, self.index, self.data_kind)
            off = off + vals
            na |= np.isnan(vals)
        X = np.where(na[:, None], np.nan, X)
        return NewFixed(np.ascontiguousarray(X, dtype=np.float64), off, na)

    def reterm(self, rt, levels: list[str], colnames: list[str]) -> NewReTerm:
        """Codes of the grouping factor in the fitted ``levels`` and the term's columns on the new data."""
        n = self.n
        factors = [as_factor(self.ev.variable(g)) for g in rt.group]
        na = np.zeros(n, dtype=bool)
        for f in factors:
            na |= f.codes < 0
        lab_arrays = [np.array(list(f.levels) + [""], dtype=object)[f.codes] for f in factors]
        labels = lab_arrays[0] if len(lab_arrays) == 1 else \
            np.array([":".join(parts) for parts in zip(*lab_arrays)], dtype=object)
        index = {lv: i for i, lv in enumerate(levels)}
        codes = np.array([index.get(lab, -1) for lab in labels], dtype=np.int64)
        codes[na] = -2
        new = list(dict.fromkeys(str(lab) for lab, c in zip(labels, codes) if c == -1))  # first-seen order
        lvars = {t: self.variable(t) for t in rt.lhs.variables}
        for v in lvars.values():
            na |= v.na_mask()
        Z, names = build_model_matrix(rt.lhs, lvars, n)
        pos = {nm: j for j, nm in enumerate(names)}
        if any(c not in pos for c in colnames):  # pragma: no cover
            raise DataError(f"cannot rebuild the columns of random term ({rt.text}) from the new data")
        Z = Z[:, [pos[c] for c in colnames]]
        return NewReTerm(codes, np.ascontiguousarray(Z, dtype=np.float64), list(colnames), na, new)


def _remap_factor(v: Variable, levels: list[str], ref: int, name: str) -> Variable:
    """Recode ``v`` into the fitted ``levels``; a level not seen in the fit raises DataError naming it."""
    if not v.is_factor:
        if v.values.ndim != 1:
            raise DataError(f"column {name!r} must be a single column")
        v = factor_from_values(v.values, name, exact=v.exact)
    index = {lv: i for i, lv in enumerate(levels)}
    lut = np.array([index.get(lv, -1) for lv in v.levels] + [-2], dtype=np.int64)
    codes = lut[np.where(v.codes >= 0, v.codes, len(v.levels))]
    bad = sorted({v.levels[c] for c in np.unique(v.codes[(v.codes >= 0) & (codes == -1)])})
    if bad:
        raise DataError(f"column {name!r} has level(s) {', '.join(map(repr, bad))} in the new data that were "
                        f"not present when the model was fitted (levels: {', '.join(levels)})")
    codes = np.where(codes < 0, -1, codes)
    return Variable(name, codes=codes.astype(np.int64), levels=list(levels), ref=ref)


def prototype_colnames(spec: FixedSpec, frame) -> list[str]:
    """Column names ``spec`` produces with the fit's coding, without data (factors from ``frame.xlevels``)."""
    variables: dict[str, Variable] = {}
    for t in spec.variables:
        lev = frame.xlevels.get(t)
        if lev is None:
            variables[t] = Variable(t, values=np.zeros(1))
        else:
            variables[t] = Variable(t, codes=np.zeros(1, dtype=np.int64), levels=list(lev),
                                    ref=int(getattr(frame, "xref", {}).get(t, 0)))
    _, names = build_model_matrix(spec, variables, 1)
    return names
