"""Laplace, adaptive Gauss-Hermite quadrature and PQL on the same model and data (README table)."""
from __future__ import annotations

import time
import warnings

import pandas as pd

import pyglmm

CASES = [
    ("cbpp", "cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial"),
    ("rehab", "incidents ~ treatment + gender + hours + (1 | rehab)", "poisson"),
]
METHODS = [("Laplace", dict(nAGQ=1)), ("AGQ, nAGQ = 25", dict(nAGQ=25)), ("PQL", dict(method="PQL"))]


def main() -> pd.DataFrame:
    rows = []
    for ds, f, fam in CASES:
        data = pyglmm.datasets.load_dataset(ds)
        for label, kw in METHODS:
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m = pyglmm.glmer(f, data, family=fam, **kw)
            dt = time.perf_counter() - t0
            row = {"data": ds, "method": label, "seconds": round(dt, 3), "logLik": round(m.loglik, 3)}
            for k, v in m.fixef.items():
                row[k] = round(v, 4)
            vc = m.varcorr
            row["group sd"] = round(float(vc.sdcor.iloc[0]), 4)
            rows.append(row)
    tab = pd.DataFrame(rows)
    print(tab.to_string(index=False))
    return tab


if __name__ == "__main__":
    main()
