"""R-like text formatting of anova-type tables (R's ``format``, ``format.pval``, ``printCoefmat``).

Only what ``print.anova`` needs: numeric columns at ``digits`` significant digits with a common
number of decimals (fixed or scientific, whichever is narrower, as R's formatReal chooses),
p-values formatted by ``format.pval`` and significance stars.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

EPS = float(np.finfo(float).eps)
SIGNIF_LEGEND = "Signif. codes:  0 \u2018***\u2019 0.001 \u2018**\u2019 0.01 \u2018*\u2019 0.05 \u2018.\u2019 0.1 \u2018 \u2019 1"


def _sig_info(x: float, digits: int) -> tuple[int, int]:
    """(needed significant digits <= digits, decimal exponent) of |x| rounded to ``digits``."""
    if x == 0:
        return 1, 0
    m = f"{abs(x):.{digits - 1}e}"
    mant, exp = m.split("e")
    mant = mant.replace(".", "").rstrip("0")
    return max(1, len(mant)), int(exp)


def format_numbers(values, digits: int = 7) -> list[str]:
    """R's ``format(x, digits = digits)`` for a numeric vector (NaN -> "NA"), common formatting."""
    vals = [float(v) for v in values]
    fin = [v for v in vals if math.isfinite(v)]
    if not fin:
        return ["NA" if math.isnan(v) else ("Inf" if v > 0 else "-Inf") for v in vals]
    neg = any(v < 0 for v in fin)
    infos = [_sig_info(v, digits) for v in fin]
    mxsl = max(max(1, e + 1) for _, e in infos)
    rgt = max(max(0, s - e - 1) for s, e in infos)
    w_fixed = neg + mxsl + (rgt > 0) + rgt
    mxns = max(s for s, _ in infos)
    big_exp = any(abs(e) >= 100 for _, e in infos)
    w_sci = neg + (mxns + 1 if mxns > 1 else mxns) + 4 + big_exp
    out = []
    for v in vals:
        if math.isnan(v):
            out.append("NA")
        elif math.isinf(v):
            out.append("Inf" if v > 0 else "-Inf")
        elif w_fixed <= w_sci:
            out.append(f"{v:.{rgt}f}")
        else:
            out.append(f"{v:.{mxns - 1}e}")
    return out


def format_pval(pv, digits: int = 4, eps: float = EPS) -> list[str]:
    """R's ``format.pval``: fixed notation for p >= 1e-3, scientific below, "< eps" below eps."""
    pv = [float(p) for p in pv]
    out = [""] * len(pv)
    small = [i for i, p in enumerate(pv) if p < eps]
    rest = [i for i, p in enumerate(pv) if p >= eps]
    expo = {i: math.floor(math.log10(pv[i])) if pv[i] > 0 else -50 for i in rest}
    fix = [i for i in rest if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
    sci = [i for i in rest if i not in fix]
    for group in (fix, sci):
        if group:
            for i, s in zip(group, format_numbers([pv[i] for i in group], digits)):
                out[i] = s
    if small:
        d = max(1, digits - 2)
        if rest:
            nc = max(len(out[i]) for i in rest)
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if d == 1 and nc <= 6 else " "
        else:
            sep = "" if d == 1 else " "
        for i in small:
            out[i] = "<" + sep + format_numbers([eps], d)[0]
    return out


def stars(p: float) -> str:
    if not math.isfinite(p):
        return ""
    for cut, s in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p <= cut:
            return s
    return " "


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
