"""R-like text formatting of anova-type tables (R's ``format``, ``format.pval``, ``printCoefmat``).

Only what ``print.anova`` needs: numeric columns at ``digits`` significant digits with a common
number of decimals (fixed or scientific, whichever is narrower, as R's formatReal chooses),
p-values formatted by ``format.pval`` and significance stars.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..results.summary import signif_stars, format_pval as _format_pval, format_r

EPS = float(np.finfo(float).eps)
SIGNIF_LEGEND = "Signif. codes:  0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 \u2018.\u2019 0.1 \u2018 \u2019 1"


def format_numbers(values, digits: int = 7) -> list[str]:
    """R's ``format(x, digits = digits)`` without the padding, NaN printed as R's "NA"
    (one implementation of R's number formatting: ``results.summary.format_r``)."""
    vals = [float(v) for v in values]
    out = [s.strip() for s in format_r(vals, digits)]
    return ["NA" if math.isnan(v) else o for v, o in zip(vals, out)]


def format_pval(pv, digits: int = 4, eps: float = EPS) -> list[str]:
    """R's ``format.pval`` (shared with the model summary)."""
    return _format_pval(pv, digits, eps)


def stars(p: float) -> str:
    return signif_stars(p)


def print_anova(table: pd.DataFrame, *, heading: list[str], test_cols=("Chisq",),
                pval_cols=("Pr(>Chisq)",), star_col: str | None = "Pr(>Chisq)",
                int_cols=("npar", "Df"), digits: int = 5, star_values=None) -> str:
    """Text of ``print.anova`` (printCoefmat with P values, zapped columns, na.print = "")."""
    dig_tst = max(1, min(5, digits - 1))
    cols: dict[str, list[str]] = {}
    for c in table.columns:
        x = table[c].to_numpy(dtype=float)
        ok = np.isfinite(x)
        cells = [""] * len(x)
        if c in pval_cols:
            for i, s in zip(np.flatnonzero(ok), format_pval(x[ok], dig_tst)):
                cells[i] = s
        else:
            if c in test_cols:
                vals = np.round(x[ok], dig_tst)
            elif c in int_cols:
                vals = x[ok]
            else:
                vals = x[ok]
                if vals.size:  # zapsmall
                    mx = np.max(np.abs(vals))
                    if mx > 0:   # R 4.2's zapsmall: round(x, max(0, digits - log10(mx))), digits rounded
                        vals = np.round(vals, int(math.floor(max(0.0, digits - math.log10(mx)) + 0.5)))
            for i, s in zip(np.flatnonzero(ok), format_numbers(vals, digits)):
                cells[i] = s
        cols[str(c)] = cells
    has_stars = False
    if star_col is not None and star_col in table.columns:
        sv = table[star_col].to_numpy(dtype=float) if star_values is None else np.asarray(star_values, float)
        has_stars = bool(np.any(np.isfinite(sv) & (sv < 0.1)))   # R: stars only if any p < 0.1
    if has_stars:
        cols[""] = [stars(p).ljust(3) for p in sv]
    rn = [str(r) for r in table.index]
    rw = max([len(r) for r in rn] + [0])
    widths = {c: max([len(c)] + [len(s) for s in cells]) for c, cells in cols.items()}
    lines = list(heading)
    lines.append(" " * rw + "".join(" " + c.rjust(widths[c]) for c in cols))
    for i, r in enumerate(rn):
        lines.append(r.ljust(rw) + "".join(" " + cols[c][i].rjust(widths[c]) for c in cols))
    if has_stars:
        lines += ["---", SIGNIF_LEGEND]
    return "\n".join(lines)
