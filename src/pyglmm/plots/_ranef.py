"""Caterpillar (forest) plots and normal Q-Q plots of the conditional modes."""
from __future__ import annotations

import numpy as np
from scipy import stats

from ._common import grid, new_figure

UNUSUAL_GID = "unusual"      # gid of the highlighted points (interval excludes 0)
MAX_LABELS = 60              # more levels than this: no level names on the axis


def _select(table, group, term):
    if group is not None:
        groups = [group] if isinstance(group, str) else list(group)
        missing = [g for g in groups if g not in set(table["group"])]
        if missing:
            raise KeyError(f"no grouping factor {missing[0]!r}; grouping factors: "
                           f"{', '.join(dict.fromkeys(table['group']))}")
        table = table[table["group"].isin(groups)]
    if term is not None:
        terms = [term] if isinstance(term, str) else list(term)
        missing = [t for t in terms if t not in set(table["term"])]
        if missing:
            raise KeyError(f"no random-effect term {missing[0]!r}; terms: "
                           f"{', '.join(dict.fromkeys(table['term']))}")
        table = table[table["term"].isin(terms)]
    return [(k, d) for k, d in table.groupby(["group", "term"], sort=False)]


def caterpillar(model, group=None, term=None, level: float = 0.95):
    """Caterpillar plot: conditional modes with ``level`` intervals (estimate +- z condsd).

    One panel per random-effects term (grouping factor x effect), levels sorted by estimate,
    a dashed line at 0; levels whose interval excludes 0 are drawn in red (their points carry
    the matplotlib gid ``"unusual"``). ``group``/``term`` select panels (a name or a list).
    Returns the matplotlib Figure (never shown; save with ``fig.savefig``).
    """
    from ..diagnostics.ranef import ranef_table
    panels = _select(ranef_table(model, level=level), group, term)
    nrows, ncols = grid(len(panels))
    nmax = max(len(d) for _, d in panels)
    height = min(max(3.0, 0.2 * nmax + 1.2), 14.0) * nrows
    fig = new_figure(4.2 * ncols, min(height, 40.0))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, ((g, t), d) in zip(axes, panels):
        d = d.sort_values("estimate", kind="stable")
        pos = np.arange(len(d))
        est, lo, hi = d["estimate"].to_numpy(), d["lower"].to_numpy(), d["upper"].to_numpy()
        unusual = (lo > 0) | (hi < 0)
        ok = np.isfinite(lo) & np.isfinite(hi)
        for mask, colour, gid in ((~unusual, "0.35", "usual"), (unusual, "C3", UNUSUAL_GID)):
            m = mask & ok
            ax.hlines(pos[m], lo[m], hi[m], colors=colour, linewidth=1.2)
            sc = ax.scatter(est[mask], pos[mask], s=14 if len(d) <= MAX_LABELS else 6,
                            color=colour, zorder=3)
            sc.set_gid(gid)
        ax.axvline(0.0, color="0.5", linestyle="--", linewidth=0.8)
        ax.set_ylim(-0.7, len(d) - 0.3)
        if len(d) <= MAX_LABELS:
            ax.set_yticks(pos)
            ax.set_yticklabels(d["level"].tolist(), fontsize=8 if len(d) <= 30 else 6)
        else:
            ax.set_yticks([])
            ax.set_ylabel(f"{len(d)} levels, sorted")
        ax.set_title(f"{g}: {t}", fontsize=10)
        ax.set_xlabel(f"conditional mode, {round(100 * level, 1):g}% interval")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    n_unusual = sum(int(((d["lower"] > 0) | (d["upper"] < 0)).sum()) for _, d in panels)
    fig.suptitle(f"Random effects ({n_unusual} interval{'s' if n_unusual != 1 else ''} excluding 0 in red)",
                 fontsize=11)
    return fig


def qq_ranef(model, group=None, term=None):
    """Normal Q-Q plot of the conditional modes, one panel per random-effects term.

    Reference line through the first and third quartiles (R's ``qqline``). Conditional modes
    are shrunk towards 0, so look at the shape (skew, outlying groups), not at the slope.
    Returns the matplotlib Figure.
    """
    from ..diagnostics.ranef import ranef_table
    panels = _select(ranef_table(model), group, term)
    nrows, ncols = grid(len(panels))
    fig = new_figure(3.8 * ncols, 3.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, ((g, t), d) in zip(axes, panels):
        y = np.sort(d["estimate"].to_numpy())
        n = len(y)
        a = 3.0 / 8.0 if n <= 10 else 0.5       # R's ppoints
        x = stats.norm.ppf((np.arange(1, n + 1) - a) / (n + 1 - 2 * a))
        ax.scatter(x, y, s=14, color="C0", zorder=3)
        q1, q3 = np.quantile(y, [0.25, 0.75])
        z1, z3 = stats.norm.ppf([0.25, 0.75])
        if q3 > q1:
            slope = (q3 - q1) / (z3 - z1)
            xs = np.array([x.min(), x.max()])
            ax.plot(xs, q1 + slope * (xs - z1), color="C3", linewidth=1.0)
        ax.set_title(f"{g}: {t}", fontsize=10)
        ax.set_xlabel("standard normal quantiles")
        ax.set_ylabel("conditional modes")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return fig
