"""Simulated large data sets for the benchmarks (fixed seeds, documented generating models)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def poisson_slopes(n: int = 200_000, groups: int = 2_000, seed: int = 1) -> pd.DataFrame:
    """y ~ Poisson(exp(0.5 + 0.3 x + u0 + u1 x)), sd(u0)=0.5, sd(u1)=0.3, corr -0.4; g uniform."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    sd = np.array([0.5, 0.3])
    C = np.array([[1, -0.4], [-0.4, 1]]) * np.outer(sd, sd)
    u = rng.multivariate_normal([0, 0], C, size=groups)
    eta = 0.5 + 0.3 * x + u[g, 0] + u[g, 1] * x
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": pd.Categorical(g)})


def binomial_crossed(n: int = 100_000, g1: int = 2_000, g2: int = 100, seed: int = 2) -> pd.DataFrame:
    """y ~ Bernoulli(logit^-1(-0.5 + 0.4 x + a_g + b_h)), sd(a)=0.8, sd(b)=0.5."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, g1, n)
    h = rng.integers(0, g2, n)
    x = rng.normal(size=n)
    eta = -0.5 + 0.4 * x + rng.normal(0, 0.8, g1)[g] + rng.normal(0, 0.5, g2)[h]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g), "h": pd.Categorical(h)})


def poisson_intercept(n: int = 1_000_000, groups: int = 100_000, seed: int = 3) -> pd.DataFrame:
    """y ~ Poisson(exp(0.2 + 0.3 x + u)), sd(u) = 0.6: the 'millions of rows' case."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    eta = 0.2 + 0.3 * x + rng.normal(0, 0.6, groups)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": pd.Categorical(g)})


def poisson_nested(n: int = 1_000_000, outer: int = 1_000, inner: int = 100, seed: int = 4) -> pd.DataFrame:
    """y ~ Poisson(exp(-0.3 + 0.2 x + a_a + b_ab)), sd(a)=0.5, sd(b)=0.3: b nested in a, 100,000 a:b levels."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, outer, n)
    b = rng.integers(0, inner, n)
    x = rng.normal(size=n)
    eta = (-0.3 + 0.2 * x + rng.normal(0, 0.5, outer)[a]
           + rng.normal(0, 0.3, outer * inner)[a * inner + b])
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "a": pd.Categorical(a),
                         "b": pd.Categorical(b)})


def gaussian_slopes(n: int = 1_000_000, groups: int = 100_000, seed: int = 5) -> pd.DataFrame:
    """y = 1 + 0.5 x + u0 + u1 x + e, sd(u0)=0.8, sd(u1)=0.3, corr 0.3, sd(e)=1: a large lmer."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    sd = np.array([0.8, 0.3])
    C = np.array([[1, 0.3], [0.3, 1]]) * np.outer(sd, sd)
    u = rng.multivariate_normal([0, 0], C, size=groups)
    y = 1.0 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})
