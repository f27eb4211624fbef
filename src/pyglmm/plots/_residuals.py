"""Residual diagnostics from simulated quantile residuals (DHARMa's plot)."""
from __future__ import annotations

import numpy as np
from scipy import stats

from ._common import new_figure


def residuals(model, nsim: int = 250, seed=None, simulate_res: str = "conditional"):
    """DHARMa-style residual plot of simulated quantile residuals.

    Left: uniform Q-Q plot with the KS, dispersion and zero-inflation p-values; right:
    residuals against the rank-transformed fitted values, with lines at 0.25/0.5/0.75 and
    the residuals' binned quartiles (they should be flat at those lines). ``model`` is a fitted
    model (residuals are simulated with ``nsim``, ``seed``, ``simulate_res`` as
    :func:`pyglmm.diagnostics.quantile_residuals`) or an existing ``QuantileResiduals``.
    Returns the matplotlib Figure.
    """
    from ..diagnostics.quantile import QuantileResiduals, quantile_residuals
    qr = model if isinstance(model, QuantileResiduals) else quantile_residuals(
        model, nsim=nsim, seed=seed, simulate_res=simulate_res)
    r = np.asarray(qr.residuals, float)
    n = len(r)
    fig = new_figure(9.0, 4.2)
    ax1, ax2 = fig.subplots(1, 2)

    expected = (np.arange(1, n + 1) - 0.5) / n
    ax1.scatter(expected, np.sort(r), s=8, color="C0", zorder=3)
    ax1.plot([0, 1], [0, 1], color="C3", linewidth=1.0)
    ax1.set_xlim(0, 1)
    ax1.set_ylim(0, 1)
    ax1.set_xlabel("expected (uniform)")
    ax1.set_ylabel("observed quantile residual")
    ax1.set_title("Q-Q plot of quantile residuals", fontsize=10)
    tests = [("KS", qr.uniformity), ("dispersion", qr.dispersion), ("zero-infl.", qr.zero_inflation)]
    text = "\n".join(f"{lab} p = {t.p_value:.3g}" for lab, t in tests)
    bad = any(t.p_value < 0.05 for _, t in tests)
    ax1.text(0.03, 0.97, text, transform=ax1.transAxes, va="top", fontsize=8,
             color="C3" if bad else "0.2")

    rank = stats.rankdata(qr.fitted, method="average") / n
    ax2.scatter(rank, r, s=8, color="C0", alpha=0.6 if n > 500 else 1.0, zorder=3)
    for q in (0.25, 0.5, 0.75):
        ax2.axhline(q, color="0.5", linestyle="--", linewidth=0.8)
    nbins = int(np.clip(n // 25, 0, 10))
    if nbins >= 3:
        edges = np.linspace(0, 1, nbins + 1)
        idx = np.clip(np.searchsorted(edges, rank, side="right") - 1, 0, nbins - 1)
        mids = 0.5 * (edges[:-1] + edges[1:])
        qs = np.array([np.quantile(r[idx == b], [0.25, 0.5, 0.75]) if np.any(idx == b)
                       else [np.nan] * 3 for b in range(nbins)])
        for j in range(3):
            ax2.plot(mids, qs[:, j], color="C3", linewidth=1.2)
    ax2.set_xlim(0, 1)
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("fitted value (rank transformed)")
    ax2.set_ylabel("quantile residual")
    ax2.set_title("Residuals vs fitted", fontsize=10)
    fig.suptitle(f"Simulated quantile residuals ({qr.nsim} simulations, {qr.simulate_res})",
                 fontsize=11)
    return fig
