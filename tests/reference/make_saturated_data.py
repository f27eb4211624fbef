"""Data sets whose linear predictor reaches saturation, for the stable-likelihood fixtures."""
import numpy as np, pandas as pd

OUT = "tests/reference/fixtures/"   # run from the repository root
rng = np.random.default_rng(20261204)
# cloglog, 20 trials per row, 10 rows forced to 19/20 where the truth is saturated
G, m, n = 40, 20, 20
g = np.repeat(np.arange(G), m)
x = np.round(rng.uniform(-3, 3, G * m), 6)
b = rng.normal(0, 0.5, G)
eta = 2.5 * x + b[g]
k = rng.binomial(n, -np.expm1(-np.exp(eta))).astype(int)
bad = rng.choice(np.flatnonzero(x > 2.0), 10, replace=False)
k[bad] = n - 1
pd.DataFrame({"k": k, "f": n - k, "x": x, "g": ["g%02d" % j for j in g]}).to_csv(OUT + "cloglog_saturated.csv", index=False)
# logit, binary, steep slope: eta beyond +-30, 6 failures where eta > 30
G, m = 30, 20
g = np.repeat(np.arange(G), m)
x = np.round(rng.uniform(-3, 3, G * m), 6)
b = rng.normal(0, 1.0, G)
eta = 12 * x + b[g]
y = (rng.uniform(size=G * m) < 1 / (1 + np.exp(-eta))).astype(int)
bad = rng.choice(np.flatnonzero(eta > 33), 6, replace=False)
y[bad] = 0
pd.DataFrame({"y": y, "x": x, "g": ["g%02d" % j for j in g]}).to_csv(OUT + "logit_saturated.csv", index=False)
# Poisson log: counts where eta < -30 for a few rows (rare events with a strong covariate)
G, m = 30, 20
g = np.repeat(np.arange(G), m)
x = np.round(rng.uniform(-3, 3, G * m), 6)
b = rng.normal(0, 0.5, G)
eta = 1 + 12 * x + b[g]
y = rng.poisson(np.exp(np.minimum(eta, 5)))
bad = rng.choice(np.flatnonzero(eta < -33), 5, replace=False)
y[bad] = 1
pd.DataFrame({"y": y, "x": x, "g": ["g%02d" % j for j in g]}).to_csv(OUT + "poisson_rare.csv", index=False)
