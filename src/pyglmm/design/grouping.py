"""Grouping factors of random-effect terms, including interactions a:b (first factor varies slowest)."""
from __future__ import annotations

import numpy as np

from .errors import DataError
from .variables import Variable, factor_from_values


def as_factor(var: Variable) -> Variable:
    """Treat a numeric variable as a factor (levels = sorted values printed as R does)."""
    if var.is_factor:
        return var
    if var.values.ndim != 1:
        raise DataError(f"grouping factor {var.name!r} must be a single column")
    return factor_from_values(var.values, var.name)


def interaction_codes(factors: list[Variable]) -> tuple[np.ndarray, list[str]]:
    """Codes and labels of the interaction of factors (rows already NA-free); only combinations present."""
    codes = factors[0].codes.astype(np.int64)
    combos = np.arange(len(factors[0].levels))[:, None]
    for f in factors[1:]:
        key = codes * len(f.levels) + f.codes
        uk, codes = np.unique(key, return_inverse=True)
        combos = np.column_stack([combos[uk // len(f.levels)], uk % len(f.levels)])
    uk, codes = np.unique(codes, return_inverse=True)
    combos = combos[uk]
    labels = [":".join(f.levels[c] for f, c in zip(factors, row)) for row in combos]
    return codes.astype(np.int64).reshape(-1), labels
