"""Variance components from theta: lme4's VarCorr and its as.data.frame layout."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class TermInfo:
    """What reporting needs to know about one random-effects term."""

    group: str              # grouping factor name as printed ("rehab", "cask:batch")
    colnames: list[str]     # random-effect names ("(Intercept)", "treatmentnew")
    levels: list[str]       # levels of the grouping factor
    correlated: bool


def term_labels(terms: list[TermInfo]) -> list[str]:
    """lme4's labels for terms sharing a grouping factor: "Subject", "Subject.1", ..."""
    seen: dict[str, int] = {}
    out = []
    for t in terms:
        k = seen.get(t.group, 0)
        out.append(t.group if k == 0 else f"{t.group}.{k}")
        seen[t.group] = k + 1
    return out


def covariance_blocks(T_blocks: list[np.ndarray], scale: float) -> list[np.ndarray]:
    """Sigma_k = scale^2 T_k T_k' for each term (scale = residual sd for LMMs, 1 for Poisson/binomial)."""
    return [scale**2 * (T @ T.T) for T in T_blocks]


def varcorr_frame(terms: list[TermInfo], covs: list[np.ndarray], sigma: float | None) -> pd.DataFrame:
    """Rows as R's as.data.frame(VarCorr(m)): variances, then covariances, then Residual."""
    rows = []
    for lab, t, S in zip(term_labels(terms), terms, covs):
        sd = np.sqrt(np.diag(S))
        for i, nm in enumerate(t.colnames):
            rows.append((lab, nm, None, S[i, i], sd[i]))
        for j in range(len(t.colnames)):
            for i in range(j + 1, len(t.colnames)):
                cor = S[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                rows.append((lab, t.colnames[j], t.colnames[i], S[i, j], cor))
    if sigma is not None:
        rows.append(("Residual", None, None, sigma**2, sigma))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])


def theta_names(terms: list[TermInfo]) -> list[str]:
    """lme4's names for theta: "g.(Intercept)", "g.x.(Intercept)", "g.x" (lower triangle, by column)."""
    out = []
    for t in terms:
        p = len(t.colnames)
        for c in range(p):
            for r in range(c, p):
                if r == c:
                    out.append(f"{t.group}.{t.colnames[r]}")
                else:
                    out.append(f"{t.group}.{t.colnames[r]}.{t.colnames[c]}")
    return out
