"""Time pyglmm against lme4 (when Rscript with lme4 is installed) on the same data, same run.

    python benchmarks/run_benchmarks.py            # all cases, 3 repetitions
    python benchmarks/run_benchmarks.py --smoke    # one small case, one repetition (CI)

Prints a table: case, rows, pyglmm seconds (median), lme4 seconds (median), ratio, and both
logLik values. Timings are wall-clock medians; nothing here asserts on time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

import pyglmm
from pyglmm import datasets

# (case id, dataset, formula, family or None for lmer, extra kwargs)
CASES = [
    ("cbpp binomial", "cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", {}),
    ("sleepstudy lmer REML", "sleepstudy", "Reaction ~ Days + (Days | Subject)", None, {}),
    ("penicillin lmer crossed", "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", None, {}),
    ("pastes lmer nested", "pastes", "strength ~ 1 + (1 | batch/cask)", None, {}),
    ("epil poisson", "epil", "y ~ lbase*trt + lage + V4 + (1 | subject)", "poisson", {}),
    ("grouseticks poisson 3 terms", "grouseticks",
     "TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson", {}),
    ("rehab poisson slope", "rehab",
     "incidents ~ treatment + gender + hours + (1 + treatment | rehab)", "poisson", {}),
    ("VerbAgg binomial crossed", "verbagg", "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
     "binomial", {}),
]
SMOKE = ["cbpp binomial"]


def time_pyglmm(df, formula, family, reps):
    times, m = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        if family is None:
            m = pyglmm.lmer(formula, df)
        else:
            m = pyglmm.glmer(formula, df, family=family)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), m.loglik


def _r_read(df: pd.DataFrame, path: str) -> str:
    lines = [f'd <- read.csv("{path}", stringsAsFactors = FALSE)']
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            levs = ", ".join(json.dumps(str(v)) for v in df[c].cat.categories)
            lines.append(f'd[["{c}"]] <- factor(as.character(d[["{c}"]]), levels = c({levs}))')
    return "\n".join(lines)


def time_lme4(df, formula, family, reps):
    if shutil.which("Rscript") is None:
        return None, None
    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "d.csv")
        df.to_csv(csv, index=False)
        call = (f"lmer({formula}, d)" if family is None else f"glmer({formula}, d, family = {family})")
        script = f"""suppressMessages(library(lme4))
{_r_read(df, csv)}
ts <- numeric(0)
for (i in seq_len({reps})) {{ t0 <- proc.time()[["elapsed"]]; m <- suppressWarnings({call}); ts <- c(ts, proc.time()[["elapsed"]] - t0) }}
cat(median(ts), as.numeric(logLik(m)), "\\n")
"""
        rf = os.path.join(tmp, "b.R")
        with open(rf, "w") as fh:
            fh.write(script)
        out = subprocess.run(["Rscript", rf], capture_output=True, text=True)
        if out.returncode != 0:
            if "lme4" in out.stderr:
                return None, None
            return float("nan"), float("nan")
        t, ll = out.stdout.split()[:2]
        return float(t), float(ll)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--no-r", action="store_true")
    a = ap.parse_args(argv)
    cases = [c for c in CASES if (c[0] in SMOKE or not a.smoke)]
    reps = 1 if a.smoke else a.reps
    rows = []
    for cid, ds, formula, family, _ in cases:
        df = datasets.load_dataset(ds)
        tp, llp = time_pyglmm(df, formula, family, reps)
        tr, llr = (None, None) if a.no_r else time_lme4(df, formula, family, reps)
        rows.append({"case": cid, "rows": len(df), "pyglmm_s": tp, "lme4_s": tr,
                     "ratio lme4/pyglmm": (tr / tp) if tr else None,
                     "logLik pyglmm": llp, "logLik lme4": llr})
        print(f"done: {cid}", file=sys.stderr)
    tab = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(tab.to_string(index=False, float_format=lambda v: f"{v:.4g}" if abs(v) < 1e4 else f"{v:.2f}"))
    return tab


if __name__ == "__main__":
    main()
