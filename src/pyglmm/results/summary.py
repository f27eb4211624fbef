"""lme4-style summary text and its tables as DataFrames (formatting only, no numerics)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .varcorr import term_labels


def _fmt_sig(x: float, digits: int = 4) -> str:
    """Like R's format(signif(x, digits))."""
    if x is None or not np.isfinite(x):
        return "NA" if x is None or np.isnan(x) else ("Inf" if x > 0 else "-Inf")
    if x == 0:
        return "0"
    s = f"{x:.{digits}g}"
    if "e" in s:
        m, e = s.split("e")
        return f"{m}e{int(e):+03d}"
    return s


def _fmt_column(vals: np.ndarray, digits: int = 5) -> list[str]:
    """R's printCoefmat style: a common number of decimals giving `digits` significant digits."""
    vals = np.asarray(vals, float)
    fin = np.abs(vals[np.isfinite(vals) & (vals != 0)])
    if fin.size == 0:
        return [f"{v:.1f}" for v in vals]
    mag = int(np.floor(np.log10(fin.min())))
    dec = min(max(digits - 1 - mag, 0), 7)
    return [f"{v:.{dec}f}" for v in vals]


def _fmt_p(p: float) -> str:
    if p < 2e-16:
        return "< 2e-16"
    if p < 1e-4:
        s = f"{p:.2e}"
        m, e = s.split("e")
        return f"{m}e{int(e):+03d}"
    return f"{p:.{max(1, 4 - int(np.floor(np.log10(p))) - 1)}f}" if p < 1 else "1"


def _stars(p: float) -> str:
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else "." if p < 0.1 else " "


def _table(rows: list[list[str]], header: list[str], left: set[int] = frozenset({0})) -> str:
    cols = list(zip(*([header] + rows)))
    widths = [max(len(c) for c in col) for col in cols]
    out = []
    for r in [header] + rows:
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append(" ".join(cells).rstrip())
    return "\n".join(out)


class Summary:
    """Everything `print(m.summary())` shows, with each table also available as a DataFrame."""

    def __init__(self, model):
        self.model = model
        m = model
        self.coefficients: pd.DataFrame = m.coef_table()
        self.varcorr: pd.DataFrame = m.varcorr
        self.fit_statistics = pd.Series({"AIC": m.aic, "BIC": m.bic, "logLik": m.loglik,
                                         "deviance": m.deviance, "df.resid": m.df_resid})
        if m.is_lmm:
            r = m.residuals("response") * np.sqrt(m.frame.weights) / m.sigma
        else:
            r = m.residuals("pearson") / (m.sigma if m.dispersion is not None else 1.0)
        self.scaled_residuals = pd.Series(np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0]),
                                          index=["Min", "1Q", "Median", "3Q", "Max"])
        self.correlation = m.fixef_correlation()

    # --- pieces ----------------------------------------------------------
    def _header(self) -> list[str]:
        m = self.model
        lines = []
        if m.is_lmm:
            lines.append(f"Linear mixed model fit by {'REML' if m.REML else 'maximum likelihood'}")
        else:
            meth = {"Laplace": "Laplace Approximation",
                    "nAGQ=0": "nAGQ = 0 (PIRLS estimates of the fixed effects)"}.get(m.method, m.method)
            lines.append("Generalized linear mixed model fit by maximum likelihood")
            lines.append(f"  ({meth})")
            fam, link = m.family.describe()
            lines.append(f" Family: {fam}  ( {link} )")
        lines.append(f"Formula: {m.formula}")
        if m.data_name:
            lines.append(f"   Data: {m.data_name}")
        if m.frame.n_dropped_na:
            lines.append(f"   ({m.frame.n_dropped_na} rows with missing values dropped)")
        return lines

    def _stats_block(self) -> list[str]:
        m = self.model
        if m.is_lmm and m.REML:
            return [f"REML criterion at convergence: {m.reml_criterion:.1f}"]
        s = self.fit_statistics
        hdr = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        vals = [f"{s['AIC']:.1f}", f"{s['BIC']:.1f}", f"{s['logLik']:.1f}", f"{s['deviance']:.1f}",
                f"{int(s['df.resid'])}"]
        w = [max(len(h), len(v)) + 1 for h, v in zip(hdr, vals)]
        return ["".join(h.rjust(k) for h, k in zip(hdr, w)), "".join(v.rjust(k) for v, k in zip(vals, w))]

    def _resid_block(self) -> list[str]:
        s = self.scaled_residuals
        vals = [_fmt_sig(v, 4) for v in s.values]
        w = [max(len(h), len(v)) for h, v in zip(s.index, vals)]
        return ["Scaled residuals: ", " ".join(h.rjust(k) for h, k in zip(s.index, w)),
                " ".join(v.rjust(k) for v, k in zip(vals, w))]

    def _random_block(self) -> list[str]:
        m = self.model
        rows = []
        maxp = max(len(t.colnames) for t in m.terms)
        covs = m.covariances
        for lab, t, S in zip(term_labels(m.terms), m.terms, covs):
            sd = np.sqrt(np.diag(S))
            for i, nm in enumerate(t.colnames):
                row = [lab if i == 0 else "", nm, _fmt_sig(S[i, i], 4), _fmt_sig(sd[i], 4)]
                cors = []
                for j in range(i):
                    c = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                    cors.append("NaN" if np.isnan(c) else f"{c:.2f}")
                rows.append(row + cors + [""] * (maxp - 1 - len(cors)))
        if m.sigma is not None and (m.is_lmm or m.dispersion is not None):
            rows.append(["Residual", "", _fmt_sig(m.sigma**2, 4), _fmt_sig(m.sigma, 4)] + [""] * (maxp - 1))
        header = ["Groups", "Name", "Variance", "Std.Dev."] + (["Corr"] + [""] * (maxp - 2) if maxp > 1 else [])
        rows = [r[:len(header)] for r in rows]
        out = ["Random effects:", " " + _table(rows, header, left={0, 1}).replace("\n", "\n ")]
        grp = ", ".join(f"{g}, {n}" for g, n in sorted(m.ngroups.items(), key=lambda kv: -kv[1]))
        out.append(f"Number of obs: {m.nobs}, groups:  {grp}")
        if m.shape is not None:
            out.append(f"Negative binomial shape (theta): {m.shape:.4g}")
        elif m.dispersion is not None and not m.is_lmm:
            out.append(f"Dispersion parameter: {m.dispersion:.4g}")
        return out

    def _fixed_block(self) -> list[str]:
        m = self.model
        ct = self.coefficients
        names = list(ct.index)
        est = _fmt_column(ct["Estimate"].values)
        se = _fmt_column(ct["Std. Error"].values)
        statcol = "t value" if m.is_lmm else "z value"
        st = [f"{v:.3f}" for v in ct[statcol].values]
        rows = []
        for i, nm in enumerate(names):
            r = [nm, est[i], se[i], st[i]]
            if not m.is_lmm:
                p = ct["Pr(>|z|)"].values[i]
                r += [_fmt_p(p), _stars(p)]
            rows.append(r)
        header = ["", "Estimate", "Std. Error", statcol] + ([] if m.is_lmm else ["Pr(>|z|)", ""])
        out = ["Fixed effects:", _table(rows, header)]
        if not m.is_lmm:
            out += ["---", "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"]
        return out

    def _corr_block(self) -> list[str]:
        C = self.correlation
        k = C.shape[0]
        if k < 2:
            return []
        abbrev = [_abbrev(n) for n in C.index]
        rows = []
        for i in range(1, k):
            rows.append([C.index[i]] + [f"{C.values[i, j]:.3f}" for j in range(i)] + [""] * (k - 1 - i))
        return ["Correlation of Fixed Effects:", _table(rows, [""] + abbrev[:k - 1])]

    def text(self) -> str:
        m = self.model
        parts = self._header() + [""] + self._stats_block() + [""] + self._resid_block() + [""]
        parts += self._random_block() + [""] + self._fixed_block()
        cb = self._corr_block()
        if cb:
            parts += [""] + cb
        if m.singular:
            parts += ["", "boundary (singular) fit: see help('isSingular')"]
        for msg in m.messages:
            parts += ["", msg]
        return "\n".join(parts)

    def short_text(self) -> str:
        m = self.model
        return "\n".join(self._header() + self._stats_block() + self._random_block())

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()


def _abbrev(name: str, minlength: int = 6) -> str:
    """A short column label like R's abbreviate(): drop lower-case vowels from the end first."""
    if len(name) <= minlength:
        return name
    chars = list(name)
    i = len(chars) - 1
    while len(chars) > minlength and i > 0:
        if chars[i] in "aeiou" and chars[i - 1] != " ":
            del chars[i]
        i -= 1
    s = "".join(chars)
    if len(s) > minlength:
        s = s[:minlength]
    return s
