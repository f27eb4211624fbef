"""Tidy table of conditional modes with conditional standard deviations and intervals."""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def ranef_table(model, level: float = 0.95) -> pd.DataFrame:
    """One row per (grouping factor, level, random-effect term).

    Columns: ``group``, ``level``, ``term``, ``estimate`` (conditional mode), ``condsd``
    (conditional sd, as ``as.data.frame(ranef(m, condVar = TRUE))`` in lme4) and the
    ``lower``/``upper`` bounds of the Wald interval ``estimate +- z * condsd``. These are
    prediction intervals for the random effect given the data at the estimated parameters
    (they ignore the uncertainty in the fixed effects and variance components), the intervals
    lme4's ``dotplot(ranef(m, condVar = TRUE))`` draws. ``condsd`` is NaN when the fit did not
    compute conditional variances.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level!r}")
    z = stats.norm.ppf(0.5 + level / 2.0)
    r = model._r
    rows = []
    for k, t in enumerate(model.terms):
        b = np.asarray(r.b[k], float)
        cv = None if r.condvar is None else np.asarray(r.condvar[k], float)
        for i, c in enumerate(t.colnames):
            sd = np.sqrt(np.maximum(cv[:, i, i], 0.0)) if cv is not None else np.full(len(t.levels), np.nan)
            rows.append(pd.DataFrame({"group": t.group, "level": [str(v) for v in t.levels],
                                      "term": c, "estimate": b[:, i], "condsd": sd}))
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["group", "level", "term", "estimate", "condsd"])
    out["lower"] = out["estimate"] - z * out["condsd"]
    out["upper"] = out["estimate"] + z * out["condsd"]
    out.attrs["level"] = level
    return out
