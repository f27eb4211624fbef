"""R-style formatting of numbers (15 significant digits, fixed unless scientific is shorter)."""
from __future__ import annotations

import math

import numpy as np


def format_r_number(value: float) -> str:
    """Format a double as R's ``as.character``/``deparse`` would, e.g. 2 -> "2", 1e5 -> "1e+05"."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    sci = f"{value:.14e}"
    mant, exp = sci.split("e")
    if "." in mant:
        mant = mant.rstrip("0").rstrip(".")
    e = int(exp)
    sci_text = f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    # fixed notation with the same significant digits
    digits = len(mant.replace("-", "").replace(".", ""))
    decimals = max(0, digits - 1 - e)
    fixed = f"{value:.{decimals}f}"
    if "." in fixed:
        fixed = fixed.rstrip("0").rstrip(".")
    return fixed if len(fixed) <= len(sci_text) else sci_text


def format_r_numbers(values) -> list[str]:
    """format_r_number for many values; integral values (the usual group ids) in one numpy pass."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size and np.all(np.abs(arr) < 1e15):            # False for NaN and +-Inf
        ints = arr.astype(np.int64)
        if not np.array_equal(ints, arr):
            return [format_r_number(float(v)) for v in arr]
        out = list(map(str, ints.tolist()))
        # R prints integers with five or more trailing zeros in scientific notation (1e+05)
        for i in np.flatnonzero((arr % 100_000 == 0) & (arr != 0)):
            out[i] = format_r_number(float(arr[i]))
        return out
    return [format_r_number(float(v)) for v in arr]
