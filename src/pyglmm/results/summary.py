"""lme4-style summary text and its tables as DataFrames (formatting only, no numerics).

The text reproduces ``print(summary(m))`` of lme4 1.1-31: the number formatting is a port of
R's ``format()`` (``formatReal``), ``format.pval``, ``zapsmall``, ``abbreviate`` and
``printCoefmat`` with lme4's ``digits = 4``.  Differences from R: trailing blanks are stripped
from every line, the class tag (``[glmerMod]``) is omitted, and a line reports rows dropped
because of missing values.
"""
from __future__ import annotations

import math
import textwrap

import numpy as np
import pandas as pd

from .varcorr import term_labels

DIGITS = 4                        # lme4: max(3, getOption("digits") - 3)
COR_MAX = 12                      # lme4.summary.cor.max
DBL_EPS = 2.220446049250313e-16
PQL_NOTE = [
    "No likelihood: PQL fits a working linear mixed model, so there is no logLik, AIC, BIC or deviance.",
    "PQL variance estimates are biased towards zero for binary data and small counts",
    "(Breslow & Lin 1995; Rodriguez & Goldman 1995); compare with glmer (Laplace).",
]
PQL_ZNOTE = "(z tests from the working LMM; MASS::glmmPQL/nlme print t tests with the same estimates and SEs)"
SIGNIF_LEGEND = "Signif. codes:  0 '***' 0.001 '**' 0.01 '*' 0.05 '.' 0.1 ' ' 1"


# --- R's number formatting ---------------------------------------------------------------
def _scientific(x: float, digits: int) -> tuple[int, int, int, bool]:
    """R's scientific(): (neg, kpower, nsig, roundingwidens) of x shown with `digits` digits."""
    if x == 0.0:
        return 0, 0, 1, False
    neg = 1 if x < 0 else 0
    r = abs(x)
    mant, exp = f"{r:.{digits - 1}e}".split("e")
    kpower = int(exp)
    sig = mant.replace(".", "").rstrip("0")
    nsig = max(1, len(sig))
    rgt = min(max(digits - kpower, 0), 22)
    fuzz = 0.5 / 10.0**rgt
    widens = 0 < kpower <= 22 and r < 10.0**kpower - fuzz
    return neg, kpower, nsig, widens


def format_r(values, digits: int = 7, nsmall: int = 0) -> list[str]:
    """R's ``format(x, digits=, nsmall=)`` of a numeric vector: common notation and width."""
    # (+ 0.0 turns -0.0 into 0.0: R prints no sign for a negative zero)
    vals = [float(v) + 0.0 if v is not None else float("nan")
            for v in np.ravel(np.asarray(values, dtype=object))]
    fin = [v for v in vals if math.isfinite(v)]
    width = 0
    for v in vals:
        if not math.isfinite(v):
            width = max(width, len(_nonfinite(v)))
    if not fin:
        return [_nonfinite(v).rjust(width) for v in vals]
    neg = rgt = mxsl = mxns = mxe = -10**9
    mxl, mne = -10**9, 10**9
    neg = 0
    for v in fin:
        n_i, kp, nsig, widens = _scientific(v, digits)
        left = kp + 1 - (1 if widens else 0)
        sleft = n_i + (1 if left <= 0 else left)
        rgt = max(rgt, nsig - left)
        mxl = max(mxl, left)
        mxsl = max(mxsl, sleft)
        mxns = max(mxns, nsig)
        mxe, mne = max(mxe, kp), min(mne, kp)
        neg = neg or n_i
    if mxl < 0:
        mxsl = 1 + neg
    rgt = max(rgt, 0)
    wF = mxsl + rgt + (rgt != 0)
    e = 2 if (mxe >= 100 or mne <= -99) else 1
    d = mxns - 1
    wE = neg + (d > 0) + d + 4 + e
    out = []
    if wF <= wE:
        if nsmall > rgt:
            rgt = nsmall
            wF = mxsl + rgt + 1
        w = max(wF, width)
        for v in vals:
            out.append((f"{v:.{rgt}f}" if math.isfinite(v) else _nonfinite(v)).rjust(w))
    else:
        w = max(wE, width)
        for v in vals:
            out.append((_sci(v, d) if math.isfinite(v) else _nonfinite(v)).rjust(w))
    return out


def _sci(v: float, d: int) -> str:
    mant, exp = f"{v:.{d}e}".split("e")
    k = int(exp)
    return f"{mant}e{'-' if k < 0 else '+'}{abs(k):02d}"


def _nonfinite(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    return "Inf" if v > 0 else "-Inf"


def zapsmall(x, digits: int) -> np.ndarray:
    x = np.asarray(x, float)
    fin = x[np.isfinite(x)]
    mx = float(np.max(np.abs(fin))) if fin.size else 0.0
    # R 4.2: round(x, max(0, digits - log10(mx))); round() takes floor(digits + 0.5) decimals
    d = math.floor(max(0.0, digits - math.log10(mx)) + 0.5) if mx > 0 else digits
    return np.array([round(float(v), d) if math.isfinite(v) else v for v in x])


def format_pval(pv, digits: int = 3, eps: float = DBL_EPS) -> list[str]:
    """R's format.pval: p-values >= 1e-4 in fixed notation, smaller ones as R chooses, tiny as '<eps'."""
    pv = [float(p) for p in pv]
    out = [""] * len(pv)
    ok = [i for i, p in enumerate(pv) if not math.isnan(p)]
    is0 = [i for i in ok if pv[i] < eps]
    rest = [i for i in ok if pv[i] >= eps]
    rr: list[str] = []
    if rest:
        expo = {i: math.floor(math.log10(pv[i])) if pv[i] > 0 else -50 for i in rest}
        fixp = [i for i in rest if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
        other = [i for i in rest if i not in fixp]
        for grp in (fixp, other):
            if grp:
                for i, s in zip(grp, format_r([pv[i] for i in grp], digits)):
                    out[i] = s
                    rr.append(s)
    if is0:
        d = max(1, digits - 2)
        if rest:
            nc = max(len(s) for s in rr)
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if d == 1 and nc <= 6 else " "
        else:
            sep = "" if d == 1 else " "
        txt = "<" + sep + format_r([eps], d)[0]
        for i in is0:
            out[i] = txt
    for i, p in enumerate(pv):
        if math.isnan(p):
            out[i] = "NA"
    return out


def signif_stars(p: float) -> str:
    """symnum() with cutpoints 0, .001, .01, .05, .1, 1 (intervals closed on the right)."""
    if not np.isfinite(p):
        return ""
    return "***" if p <= 0.001 else "**" if p <= 0.01 else "*" if p <= 0.05 else "." if p <= 0.1 else " "


def abbreviate(names: list[str], minlength: int = 4) -> list[str]:
    """R's abbreviate() (method "left.kept", use.classes = TRUE)."""
    names = [str(n).strip(" ") for n in names]
    uniq = list(dict.fromkeys(names))
    x = list(uniq)
    dup2 = [True] * len(uniq)
    while True:
        for i in range(len(uniq)):
            if dup2[i]:
                x[i] = _stripchars(uniq[i], minlength)
        seen: set[str] = set()
        dups = []
        for v in x:
            dups.append(v in seen)
            seen.add(v)
        if not any(dups):
            break
        minlength += 1
        dupvals = {x[i] for i in range(len(x)) if dups[i]}
        dup2 = [dups[i] or x[i] in dupvals for i in range(len(x))]
    lookup = dict(zip(uniq, x))
    return [lookup[n] for n in names]


def _stripchars(s: str, minlen: int) -> str:
    """The C routine behind abbreviate(): drop lower-case vowels, then lower-case letters, from the right."""
    b = list(s) + ["\0", "\0"]

    def slen() -> int:
        return b.index("\0")

    def rm(i: int) -> None:
        del b[i]
        b.append("\0")

    def sp(c: str) -> bool:
        return c in " \t\n\r\f\v"

    def first(i: int) -> bool:
        return sp(b[i - 1])

    def last(i: int) -> bool:
        return not sp(b[i - 1]) and (b[i + 1] == "\0" or sp(b[i + 1]))

    def vowel(i: int) -> bool:
        return b[i] in "aeiou"

    def lower(i: int) -> bool:
        return "a" <= b[i] <= "z"

    nspace = 0
    if slen() < minlen:
        return s
    upper = slen() - 1

    def done() -> str:
        n = slen()
        if n > minlen:
            for i in range(n - 1, 0, -1):
                if sp(b[i]):
                    rm(i)
        return "".join(b[:slen()])

    j = True
    for i in range(upper, 0, -1):
        if sp(b[i]):
            if j:
                b[i] = "\0"
            else:
                nspace += 1
        else:
            j = False
        if slen() - nspace <= minlen:
            return done()
    for cond in (lambda i: vowel(i) and last(i), lambda i: vowel(i) and not first(i),
                 lambda i: lower(i) and last(i), lambda i: lower(i) and not first(i)):
        for i in range(upper, 0, -1):
            if cond(i):
                rm(i)
            if slen() - nspace <= minlen:
                return done()
    upper = slen() - 1
    for i in range(upper, 0, -1):
        if not first(i) and not sp(b[i]):
            rm(i)
        if slen() - nspace <= minlen:
            return done()
    return done()


def _print_matrix(cells: list[list[str]], colnames: list[str], rownames: list[str],
                  right: bool) -> list[str]:
    """R's print.default of a character matrix (quote = FALSE)."""
    rw = max((len(r) for r in rownames), default=0)
    ncol = len(colnames)
    widths = [max([len(colnames[j])] + [len(r[j]) for r in cells]) for j in range(ncol)]

    def just(s: str, w: int) -> str:
        return s.rjust(w) if right else s.ljust(w)

    lines = [" " * rw + "".join(" " + just(colnames[j], widths[j]) for j in range(ncol))]
    for rn, r in zip(rownames, cells):
        lines.append(rn.ljust(rw) + "".join(" " + just(r[j], widths[j]) for j in range(ncol)))
    return [ln.rstrip() for ln in lines]


def _print_named(values: list[str], names: list[str]) -> list[str]:
    """R's print of a named vector: one common column width, right-justified."""
    w = max(len(s) for s in list(values) + list(names))
    return [" ".join(n.rjust(w) for n in names).rstrip(), " ".join(v.rjust(w) for v in values).rstrip()]


def _wrap_title(title: str, cls: str) -> list[str]:
    """lme4's .prt.methTit: wrap long titles (width 80) with a 2-space indent; class tag omitted."""
    if len(title) + 5 + len(cls) > 80:
        return textwrap.wrap(title, width=77, subsequent_indent="  ", break_on_hyphens=False,
                             break_long_words=False)
    return [title]


# --- the summary ---------------------------------------------------------------------------
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
    def title(self) -> str:
        m = self.model
        if m.is_lmm:
            return f"Linear mixed model fit by {'REML' if m.REML else 'maximum likelihood'}"
        if getattr(m, "is_pql", False):
            return "Generalized linear mixed model fit by penalized quasi-likelihood (PQL)"
        if m.method == "Laplace":
            meth = "(Laplace Approximation)"
        else:
            nagq = m.method.split("=")[-1].strip() if "=" in m.method else m.method
            meth = f"(Adaptive Gauss-Hermite Quadrature, nAGQ = {nagq})"
        return f"Generalized linear mixed model fit by maximum likelihood {meth}"

    def _header(self) -> list[str]:
        m = self.model
        lines = _wrap_title(self.title(), "lmerMod" if m.is_lmm else "glmerMod")
        if not m.is_lmm:
            fam, link = m.family.describe()
            lines.append(f" Family: {fam}  ( {link} )")
        lines.append(f"Formula: {m.formula}")
        lines.append(f"   Data: {m.data_name or 'data'}")
        nd = m.frame.n_dropped_na
        if nd:
            lines.append(f"   ({nd} row{'s' if nd != 1 else ''} with missing values dropped; "
                         f"{m.nobs} used)")
        return lines

    def _stats_block(self) -> list[str]:
        m = self.model
        if getattr(m, "is_pql", False):
            return PQL_NOTE + [f"PQL iterations: {m.iterations} (working LMMs fitted by ML, as MASS::glmmPQL)"]
        if m.is_lmm and m.REML:
            return [f"REML criterion at convergence: {format_r([round(m.reml_criterion, 1)], 7)[0].strip()}"]
        s = self.fit_statistics
        names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        vals = format_r([round(float(s[k]), 1) for k in names], 7)
        vals[-1] = format_r([round(float(s["df.resid"]), 1)], 7)[0]
        return _print_named(vals, names)

    def _resid_block(self) -> list[str]:
        s = self.scaled_residuals
        vals = format_r(zapsmall(s.values, DIGITS + 1), DIGITS)
        return ["Scaled residuals:"] + _print_named(vals, list(s.index))

    def _random_block(self) -> list[str]:
        m = self.model
        labels = term_labels(m.terms)
        covs = m.covariances
        use_scale = m.is_lmm or m.dispersion is not None
        sds: list[float] = []
        groups: list[str] = []
        names: list[str] = []
        for lab, t, S in zip(labels, m.terms, covs):
            sd = np.sqrt(np.maximum(np.diag(S), 0.0))
            sds.extend(sd.tolist())
            groups.extend([lab] + [""] * (len(t.colnames) - 1))
            names.extend(t.colnames)
        if use_scale:
            sds.append(m.sigma)
            groups.append("Residual")
            names.append("")
        var_s = format_r([v * v for v in sds], DIGITS)
        sd_s = format_r(sds, DIGITS)
        cells = [[g, n, v, s] for g, n, v, s in zip(groups, names, var_s, sd_s)]
        header = ["Groups", "Name", "Variance", "Std.Dev."]
        maxlen = max(len(t.colnames) for t in m.terms)
        if maxlen > 1:
            dig = max(2, DIGITS - 2)
            rows: list[list[str]] = []
            for t, S in zip(m.terms, covs):
                p = len(t.colnames)
                sd = np.sqrt(np.maximum(np.diag(S), 0.0))
                with np.errstate(invalid="ignore", divide="ignore"):
                    C = S / np.outer(sd, sd)
                flat = format_r([round(float(c), dig) if np.isfinite(c) else float("nan")
                                 for c in C.ravel()], 7, nsmall=dig)
                cc = np.array(flat, dtype=object).reshape(p, p)
                for i in range(p):
                    rows.append([cc[i, j] if j < i else "" for j in range(maxlen)][:maxlen - 1])
            while len(rows) < len(cells):
                rows.append([""] * (maxlen - 1))
            cells = [c + r for c, r in zip(cells, rows)]
            header += ["Corr"] + [""] * (maxlen - 2)
        out = ["Random effects:"] + _print_matrix(cells, header, [""] * len(cells), right=False)
        grp = "; ".join(f"{g}, {n}" for g, n in m.ngroups.items())
        out.append(f"Number of obs: {m.nobs}, groups:  {grp}")
        if m.shape is not None:
            out.append(f"Negative binomial shape (theta): {format_r([m.shape], DIGITS)[0].strip()}")
        elif m.dispersion is not None and not m.is_lmm:
            out.append(f"Dispersion parameter: {format_r([m.dispersion], DIGITS)[0].strip()}")
        return out

    def fixed_effects_lines(self) -> list[str]:
        """The coefficient table as R's printCoefmat(digits = 4) prints it (lines, no title)."""
        m = self.model
        ct = self.coefficients
        digits, dig_tst = DIGITS, max(1, min(5, DIGITS - 1))
        est = ct["Estimate"].to_numpy(float)
        se = ct["Std. Error"].to_numpy(float)
        statcol = "t value" if "t value" in ct.columns else "z value"
        stat = ct[statcol].to_numpy(float)
        k = len(est)
        cs = np.concatenate([est, se])
        acs = np.abs(cs[np.isfinite(cs)])
        acs = acs[acs != 0]
        digmin = 1 + (math.floor(math.log10(acs.min())) if acs.size else 0)
        dec = max(1, digits - digmin)
        cs_s = format_r([round(float(v), dec) if np.isfinite(v) else v for v in cs], digits)
        # a non-zero number shown as zero is reformatted with digits - 1 (printCoefmat)
        bad = [i for i, v in enumerate(cs) if np.isfinite(v) and (v == 0) != (float(cs_s[i]) == 0)]
        if bad:
            for i, s in zip(bad, format_r([cs[i] for i in bad], max(1, digits - 1))):
                cs_s[i] = s
        cs_s = [("NA" if np.isnan(v) else s) for v, s in zip(cs, cs_s)]
        st_s = format_r([round(float(v), dig_tst) if np.isfinite(v) else v for v in stat], digits)
        cells = [[cs_s[i], cs_s[k + i], st_s[i]] for i in range(k)]
        header = ["Estimate", "Std. Error", statcol]
        legend = False
        if not m.is_lmm:
            p = ct["Pr(>|z|)"].to_numpy(float)
            p_s = format_pval(p, dig_tst)
            header.append("Pr(>|z|)")
            for c, s in zip(cells, p_s):
                c.append(s)
            if np.any(p[np.isfinite(p)] < 0.1):
                legend = True
                st = [signif_stars(v) for v in p]
                w = max(len(s) for s in st)
                for c, s in zip(cells, st):
                    c.append(s.ljust(w))
                header.append("")
        lines = _print_matrix(cells, header, list(ct.index), right=True)
        if legend:
            lines += ["---", SIGNIF_LEGEND]
        return lines

    def _fixed_block(self) -> list[str]:
        extra = [PQL_ZNOTE] if getattr(self.model, "is_pql", False) else []
        return ["Fixed effects:"] + self.fixed_effects_lines() + extra

    def _corr_block(self) -> list[str]:
        C = self.correlation
        p = C.shape[0]
        if p < 2:
            return []
        if p > COR_MAX:
            return [f"Correlation matrix not shown by default, as p = {p} > {COR_MAX}.",
                    "Use m.fixef_correlation() or m.vcov if you need it"]
        rn = [str(n) for n in C.index]
        rns = abbreviate(rn, 11)
        cns = abbreviate(rn, 6)
        flat = format_r([round(float(v), 3) for v in C.values.ravel()], 7, nsmall=3)
        cc = np.array(flat, dtype=object).reshape(p, p)
        cells = [[cc[i, j] if j < i else "" for j in range(p - 1)] for i in range(1, p)]
        return ["Correlation of Fixed Effects:"] + _print_matrix(cells, cns[:p - 1], rns[1:], right=False)

    def _fit_warnings(self) -> list[str]:
        m = self.model
        out = []
        dropped = list(getattr(m.frame, "dropped_fixef", []) or [])
        if dropped:
            s = "s" if len(dropped) > 1 else ""
            out += ["fit warnings:",
                    f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column{s} / "
                    f"coefficient{s}: {', '.join(dropped)}"]
        return out

    def text(self) -> str:
        m = self.model
        parts = self._header() + [""] + self._stats_block() + [""] + self._resid_block() + [""]
        parts += self._random_block() + [""] + self._fixed_block()
        cb = self._corr_block()
        if cb:
            parts += [""] + cb
        fw = self._fit_warnings()
        if fw:
            parts += fw
        msgs = m.messages
        if msgs:
            parts += [""] + msgs
        return "\n".join(parts)

    def short_text(self) -> str:
        return "\n".join(self._header() + self._stats_block() + self._random_block())

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()
