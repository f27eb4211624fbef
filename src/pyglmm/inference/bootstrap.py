"""Parametric bootstrap (lme4's bootMer) and percentile confidence intervals.

Each replicate simulates a response from the fitted model with new random effects
(`simulate`, lme4's default), refits the same model to it (`refit`) and records the parameters
in lme4's confint order: .sig01.. (sd, then correlations, per term as theta is ordered),
.sigma, then the fixed effects. Replicates run in worker processes when ``workers`` > 1; each
replicate's seed derives from ``seed`` and its index, so results do not depend on ``workers``.
"""
from __future__ import annotations

import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from .confint import select_parameters, percent_labels, register_method, variance_parameter_names
from .._warn import user_stacklevel


def sd_cor_values(model) -> np.ndarray:
    """The sd/cor parameters in lme4's .sig order (and .sigma when there is a residual scale)."""
    vals = []
    for S in model.covariances:
        p = S.shape[0]
        sd = np.sqrt(np.diag(S))
        for c in range(p):
            for r in range(c, p):
                if r == c:
                    vals.append(sd[r])
                else:
                    vals.append(S[r, c] / (sd[r] * sd[c]) if sd[r] > 0 and sd[c] > 0 else np.nan)
    if model.is_lmm or model._r.sigma is not None:
        vals.append(model.sigma)
    return np.array(vals)


def parameter_vector(model) -> np.ndarray:
    return np.concatenate([sd_cor_values(model), model.fixef.values])


def _one(args):
    model, y = args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            # only the estimates are kept: no Hessian for standard errors per replicate
            return parameter_vector(model.fit_method.refit(model, y, hessian=False))
        except Exception:                       # a failed refit is recorded as missing
            return np.full(len(parameter_vector(model)), np.nan)


class BootResult:
    """Bootstrap replicates (``t``, one row per replicate) and the original estimates (``t0``)."""

    def __init__(self, t0: pd.Series, t: pd.DataFrame, seed, elapsed: float):
        self.t0, self.t, self.seed, self.elapsed = t0, t, seed, elapsed

    @property
    def n_failed(self) -> int:
        return int(self.t.isna().all(axis=1).sum())

    def percentile(self, level: float = 0.95) -> pd.DataFrame:
        a = (1 - level) / 2
        lo, hi = percent_labels(level)
        q = self.t.quantile([a, 1 - a]).T
        q.columns = [lo, hi]
        return q


def boot(model, nsim: int = 500, seed=None, workers: int = 1, progress: bool | None = None) -> BootResult:
    """Parametric bootstrap of all parameters (lme4's ``bootMer(m, FUN, nsim, type="parametric")``)."""
    names = variance_parameter_names(model) + list(model.frame.fixef_names)
    t0 = pd.Series(parameter_vector(model), index=names)
    ss = np.random.SeedSequence(seed)
    child = ss.spawn(nsim)
    Y = np.column_stack([model.simulate(1, seed=np.random.default_rng(c))[:, 0] for c in child])
    show = sys.stderr.isatty() if progress is None else progress
    start = time.perf_counter()
    out = []
    tasks = [(model, Y[:, i]) for i in range(nsim)]
    if workers and workers > 1:
        # the numerical problem objects are rebuilt by refit in each worker
        with ProcessPoolExecutor(max_workers=workers) as ex:
            for i, r in enumerate(ex.map(_one, tasks, chunksize=max(1, nsim // (4 * workers)))):
                out.append(r)
                _tick(show, i + 1, nsim, start)
    else:
        for i, t in enumerate(tasks):
            out.append(_one(t))
            _tick(show, i + 1, nsim, start)
    if show:
        sys.stderr.write("\n")
    t = pd.DataFrame(np.vstack(out), columns=names)
    res = BootResult(t0, t, seed, time.perf_counter() - start)
    if res.n_failed:
        warnings.warn(f"{res.n_failed} of {nsim} bootstrap refits failed; intervals use the others",
                      UserWarning, stacklevel=user_stacklevel())
    return res


def _tick(show, i, n, start):
    if show and (i == n or i % max(1, n // 50) == 0):
        el = time.perf_counter() - start
        sys.stderr.write(f"\rbootstrap {i}/{n} ({el:.0f} s, about {el / i * (n - i):.0f} s left)")
        sys.stderr.flush()


def confint_boot(model, parm=None, level: float = 0.95, nsim: int = 500, seed=None,
                 workers: int = 1, progress: bool | None = None) -> pd.DataFrame:
    """Percentile intervals from a parametric bootstrap (lme4: confint(m, method = "boot"))."""
    rows = select_parameters(model, parm)
    res = boot(model, nsim=nsim, seed=seed, workers=workers, progress=progress)
    ci = res.percentile(level)
    out = ci.loc[rows]
    out.attrs["boot"] = res
    return out


register_method("boot", confint_boot)
