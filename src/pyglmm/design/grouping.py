"""Grouping factors of random-effect terms, including interactions a:b (first factor varies slowest)."""
from __future__ import annotations

import numpy as np

from ..fit import compiled
from .errors import DataError
from .variables import Variable, factor_from_values


def as_factor(var: Variable) -> Variable:
    """Treat a numeric variable as a factor (levels = sorted values printed as R does)."""
    if var.is_factor:
        return var
    if var.values.ndim != 1:
        raise DataError(f"grouping factor {var.name!r} must be a single column")
    return factor_from_values(var.values, var.name, exact=var.exact)


def interaction_codes(factors: list[Variable]) -> tuple[np.ndarray, list[str]]:
    """Codes and labels of the interaction of factors (rows already NA-free); only combinations present."""
    codes = factors[0].codes.astype(np.int64, copy=False)
    kern = compiled.frame_kernels()
    if kern is not None and codes.size:
        cl = [np.ascontiguousarray(f.codes, dtype=np.int64) for f in factors]
        nl = [len(f.levels) for f in factors]
        if len(factors) == 1:
            na, used = kern.factor_counts(cl[0], nl[0])
            if not na and used == nl[0]:
                return codes, list(factors[0].levels)  # already dense: every level is used
        out = kern.interaction(cl, nl, 4 * codes.size + 1024)
        if out is not None:
            codes, combos = out
            return codes, _labels(factors, combos.tolist())
    if len(factors) == 1 and codes.size and codes.min() >= 0 and \
            np.bincount(codes, minlength=len(factors[0].levels)).all():
        return codes, list(factors[0].levels)        # already dense: every level is used
    # the level of each factor in every combination present, one array per factor
    combos = [np.arange(len(factors[0].levels))]
    if len(factors) == 1:
        uk, codes = _dense_unique(codes)          # drop the levels not present
        combos = [combos[0][uk]]
    for f in factors[1:]:
        nl = len(f.levels)
        uk, codes = _dense_unique(codes * nl + f.codes)
        combos = [c[uk // nl] for c in combos] + [uk % nl]
    names = [np.asarray(f.levels, dtype=object)[c] for f, c in zip(factors, combos)]
    labels = list(names[0]) if len(names) == 1 else list(map(":".join, zip(*names)))
    return codes.astype(np.int64, copy=False).reshape(-1), labels


def _labels(factors: list[Variable], combos: list[list[int]]) -> list[str]:
    """The labels "a:b" of the combinations given by each factor's level index."""
    names = [[f.levels[i] for i in c] for f, c in zip(factors, combos)]
    return names[0] if len(names) == 1 else list(map(":".join, zip(*names)))


def _dense_unique(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(key, return_inverse=True) for non-negative integer keys; by counting when the
    key range is small (the usual case: O(n) instead of a sort of a million rows)."""
    if key.size and key.min() >= 0 and key.max() < 4 * key.size + 1024:
        used = np.bincount(key) > 0
        uk = np.flatnonzero(used)
        remap = np.cumsum(used) - 1
        return uk, remap[key]
    uk, inv = np.unique(key, return_inverse=True)
    return uk, inv.reshape(-1)
