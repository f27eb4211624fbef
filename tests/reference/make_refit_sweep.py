"""Responses simulated from fitted models, for a refit sweep against lme4.

For each case: fit the model with pyglmm to the shipped data, simulate NREP responses (seed
2026) and write them to tests/reference/sweep/<case>.csv (responses only; the covariates are
the shipped data set's). `make_refit_sweep.R` then fits every response with lme4 (glmmTMB for the
negative binomial and Gamma cases) and writes lme4_loglik.json; tests/test_lme4_reference.py checks that pyglmm's log-likelihood is never
below lme4's. Run from the repository root:

    PYTHONPATH=src python tests/reference/make_refit_sweep.py
    Rscript tests/reference/make_refit_sweep.R
"""
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import pyglmm
from pyglmm import datasets

NREP = 30
OUT = Path("tests/reference/sweep")
# id, data set, formula fitted to simulate from, kind ("REML", "ML" or a glmer family), template
CASES = [
    ("sleep_reml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "REML", "{y} ~ Days + (Days | Subject)"),
    ("sleep_ml", "sleepstudy", "Reaction ~ Days + (Days | Subject)", "ML", "{y} ~ Days + (Days | Subject)"),
    ("penicillin", "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", "REML",
     "{y} ~ 1 + (1 | plate) + (1 | sample)"),
    ("pastes", "pastes", "strength ~ 1 + (1 | batch/cask)", "REML", "{y} ~ 1 + (1 | batch/cask)"),
    ("cbpp", "cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial",
     "cbind({y}, size - {y}) ~ period + (1 | herd)"),
    ("rehab", "rehab", "incidents ~ treatment + gender + hours + (1 + treatment | rehab)", "poisson",
     "{y} ~ treatment + gender + hours + (1 + treatment | rehab)"),
    ("grouse", "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
     "poisson", "{y} ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"),
    ("epil", "epil", "y ~ lbase*trt + lage + V4 + (1 | subject)", "poisson",
     "{y} ~ lbase*trt + lage + V4 + (1 | subject)"),
    ("verbagg", "verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)", "binomial",
     "{y} ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)"),
    ("sleep_uncorr", "sleepstudy", "Reaction ~ Days + (Days || Subject)", "REML",
     "{y} ~ Days + (Days || Subject)"),
    # glmmTMB's families (fitted by glmmTMB in the R script)
    ("grouse_nb", "grouseticks", "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", "nbinom2",
     "{y} ~ YEAR + cHEIGHT + (1 | LOCATION)"),
    ("gamma", "gamma_sim", "y ~ x + (1 | g)", "Gamma(link='log')", "{y} ~ x + (1 | g)"),
    # simulated designs (data set None: the covariates are stored with the responses)
    ("bin_slope", None, "y ~ x + (1 + x | g)", "binomial", "{y} ~ x + (1 + x | g)"),
    ("pois_slope", None, "y ~ x + (1 + x | g)", "poisson", "{y} ~ x + (1 + x | g)"),
    ("lmm_cross_slope", None, "y ~ x + (1 + x | g) + (1 | h)", "REML", "{y} ~ x + (1 + x | g) + (1 | h)"),
    ("bin_cross_slope", None, "y ~ x + (1 + x | g) + (1 | h)", "binomial",
     "{y} ~ x + (1 + x | g) + (1 | h)"),
    ("pois_nested", None, "y ~ x + (1 | h/g)", "poisson", "{y} ~ x + (1 | h/g)"),
    # prior weights (lmer) and an offset (glmer), through the cross-products paths too
    ("lmm_weighted", None, "y ~ x + (1 + x | g)", "REML", "{y} ~ x + (1 + x | g)"),
    ("lmm_scalar_weighted", None, "y ~ x + (1 | g) + (1 | h)", "ML", "{y} ~ x + (1 | g) + (1 | h)"),
    ("pois_offset", None, "y ~ x + offset(log(t)) + (1 | g) + (1 | h)", "poisson",
     "{y} ~ x + offset(log(t)) + (1 | g) + (1 | h)"),
]
WEIGHTED = {"lmm_weighted", "lmm_scalar_weighted"}      # fitted with weights = w


def simulated_design(cid: str) -> pd.DataFrame:
    """Covariates (x; g, and h crossed with g or, for the nested case, containing it) and a first
    response for the simulated cases (fixed seeds)."""
    seed, n, groups = {"bin_slope": (7, 600, 40), "pois_slope": (8, 800, 50),
                       "lmm_cross_slope": (9, 500, 30), "bin_cross_slope": (10, 800, 40),
                       "pois_nested": (11, 600, 60), "lmm_weighted": (12, 400, 30),
                       "lmm_scalar_weighted": (13, 500, 40), "pois_offset": (14, 600, 40)}[cid]
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    h = g // 6 if cid == "pois_nested" else rng.integers(0, 10, n)
    x = rng.normal(size=n)
    u = rng.multivariate_normal([0, 0], [[0.5, 0.1], [0.1, 0.2]], size=groups)
    v = rng.normal(0, 0.5, h.max() + 1)
    eta = -0.3 + 0.5 * x + u[g, 0] + (0 if cid == "pois_nested" else u[g, 1] * x) + \
        (v[h] if cid in ("lmm_cross_slope", "bin_cross_slope", "pois_nested") else 0)
    w = rng.uniform(0.3, 3.0, n)                        # prior weights (variance sigma^2 / w)
    t = rng.uniform(0.5, 4.0, n)                        # exposure for the offset log(t)
    if cid.startswith("bin"):
        y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
    elif cid.startswith("pois"):
        y = rng.poisson(t * np.exp(0.2 + eta)).astype(float)
    else:
        y = 2.0 + eta + rng.normal(size=n) / np.sqrt(w)
    return pd.DataFrame({"x": x, "g": [f"g{k}" for k in g], "h": [f"h{k}" for k in h], "w": w,
                         "t": t, "y": y})


def main() -> None:
    warnings.simplefilter("ignore")
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {}
    for cid, ds, f, kind, tmpl in CASES:
        d = datasets.load_dataset(ds) if ds is not None else simulated_design(cid)
        wts = "w" if cid in WEIGHTED else None
        m = pyglmm.lmer(f, d, REML=kind == "REML", weights=wts) if kind in ("REML", "ML") else \
            pyglmm.glmer(f, d, family=kind)
        Y = m.simulate(NREP, seed=2026)
        if ds == "cbpp":                                   # proportions -> counts of size
            Y = np.rint(Y * d["size"].to_numpy()[:, None])
        cols = {f"ysim{i}": Y[:, i] for i in range(NREP)}
        out = pd.DataFrame(cols) if ds is not None else \
            pd.concat([d[["x", "g", "h", "w", "t"]], pd.DataFrame(cols)], axis=1)
        out.to_csv(OUT / f"{cid}.csv", index=False, float_format="%.17g")
        meta[cid] = {"dataset": ds, "kind": kind, "template": tmpl, "weights": wts}
    (OUT / "cases.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
