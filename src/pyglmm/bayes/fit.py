"""The NumPyro model and the NUTS run behind :func:`pyglmm.bayes.bglmer` (imports JAX)."""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.infer import MCMC, NUTS

from .jaxfam import loglik_fn
from .priors import PriorSet


def make_dist(spec: tuple, shape: tuple = ()):
    """A NumPyro distribution for a prior tuple, broadcast to ``shape``."""
    name, *p = spec
    if name == "normal":
        d = dist.Normal(p[0], p[1])
    elif name == "student_t":
        d = dist.StudentT(p[0], p[1], p[2])
    elif name == "cauchy":
        d = dist.Cauchy(p[0], p[1])
    elif name == "laplace":
        d = dist.Laplace(p[0], p[1])
    elif name == "halfnormal":
        d = dist.HalfNormal(p[0])
    elif name == "halfcauchy":
        d = dist.HalfCauchy(p[0])
    elif name == "half_student_t":
        d = dist.FoldedDistribution(dist.StudentT(p[0], 0.0, p[1]))
    elif name == "exponential":
        d = dist.Exponential(p[0])
    elif name == "gamma":
        d = dist.Gamma(p[0], p[1])
    elif name == "lognormal":
        d = dist.LogNormal(p[0], p[1])
    else:  # pragma: no cover - validated in priors.py
        raise ValueError(name)
    return d.expand(shape) if shape else d


def _stack_params(specs: list[tuple]):
    """Vectorise priors of one distribution: tuple of parameter arrays."""
    return (specs[0][0],) + tuple(np.array([s[i] for s in specs], float) for i in range(1, len(specs[0])))


@dataclass
class ModelSpec:
    """Static structure of the model (what JAX traces against); the data arrays are arguments."""

    family: str
    link: str
    p: int
    int_col: int | None                       # index of the intercept column, or None
    fixef_groups: list[tuple[str, np.ndarray, tuple]]   # (site suffix, coefficient indices, prior)
    terms: list[dict]                          # per term: p, nlev, correlated, sd prior, lkj eta
    aux_name: str | None
    aux_prior: tuple | None


def build_spec(family: str, link: str, fixef_names: list[str], priors: PriorSet, rs, infos, labels,
               ) -> ModelSpec:
    p = len(fixef_names)
    int_col = fixef_names.index("(Intercept)") if "(Intercept)" in fixef_names else None
    by_dist: dict[str, list[int]] = {}
    for j, nm in enumerate(fixef_names):
        by_dist.setdefault(priors.fixef[nm][0], []).append(j)
    groups = [(name, np.array(idx, int), _stack_params([priors.fixef[fixef_names[j]] for j in idx]))
              for name, idx in by_dist.items()]
    terms = []
    for t, info, lab in zip(rs.terms, infos, labels):
        pk = t.X.shape[1]
        corr = bool(info.correlated) and pk > 1
        terms.append(dict(p=pk, nlev=int(t.nlevels), correlated=corr, sd=priors.sd[lab],
                          lkj=priors.lkj.get(lab, 2.0)))
    return ModelSpec(family=family, link=link, p=p, int_col=int_col, fixef_groups=groups, terms=terms,
                     aux_name=priors.aux_name, aux_prior=priors.aux)


def make_model(spec: ModelSpec):
    """NumPyro model: centred fixed effects, non-centred random effects, family log density."""
    from ..families import make_family
    fam = make_family(spec.family, spec.link)
    ll = loglik_fn(fam, with_const=False)

    def model(y, Xc, wt, off, codes, Zx):
        beta_c = jnp.zeros(spec.p, dtype=Xc.dtype)
        for name, idx, prior in spec.fixef_groups:
            v = numpyro.sample(f"bc_{name}", make_dist(prior, (len(idx),)))
            beta_c = beta_c.at[idx].set(v)
        eta = off + Xc @ beta_c
        for k, t in enumerate(spec.terms):
            sd = numpyro.sample(f"sd_{k}", make_dist(t["sd"], (t["p"],)))
            z = numpyro.sample(f"z_{k}", dist.Normal(0.0, 1.0).expand((t["nlev"], t["p"])).to_event(2))
            if t["correlated"]:
                # b[l] ~ N(0, diag(sd) R diag(sd)), R = Lc Lc': correlate the standard normals
                # first, then scale each column by its sd (scaling first, (z * sd) @ Lc', gives
                # Lc diag(sd^2) Lc', whose sds and correlations are not sd and R)
                Lc = numpyro.sample(f"L_{k}", dist.LKJCholesky(t["p"], t["lkj"]))
                b = (z @ Lc.T) * sd
            else:
                b = z * sd
            if t["p"] == 1:
                eta = eta + Zx[k][:, 0] * b[codes[k], 0]
            else:
                eta = eta + jnp.sum(Zx[k] * b[codes[k]], axis=1)
        aux = None
        if spec.aux_name is not None:
            a = numpyro.sample(spec.aux_name, make_dist(spec.aux_prior))
            aux = fam.aux_to_parameter(a)     # sigma -> phi = sigma^2, shape -> phi or theta
        numpyro.factor("loglik", jnp.sum(ll(y, eta, wt, aux)))

    return model


def model_args(y, X, wt, off, rs, int_col, xbar):
    """Arguments of the model: centred X (intercept column kept as ones), codes and Z columns."""
    Xc = np.array(X, float)
    if int_col is not None:
        mask = np.ones(X.shape[1], bool)
        mask[int_col] = False
        Xc[:, mask] -= xbar[mask]
    codes = tuple(jnp.asarray(np.asarray(t.codes, np.int32)) for t in rs.terms)
    Zx = tuple(jnp.asarray(np.ascontiguousarray(t.X, float)) for t in rs.terms)
    return (jnp.asarray(np.asarray(y, float)), jnp.asarray(Xc), jnp.asarray(np.asarray(wt, float)),
            jnp.asarray(np.asarray(off, float)), codes, Zx)


class Runner:
    """One compiled NUTS sampler; ``run`` can be repeated with a new response (same design)."""

    def __init__(self, spec: ModelSpec, *, draws: int, tune: int, chains: int, progress: bool,
                 target_accept: float = 0.8, max_tree_depth: int = 10, chain_method: str | None = None):
        self.spec = spec
        self.draws, self.tune, self.chains = int(draws), int(tune), int(chains)
        kernel = NUTS(make_model(spec), target_accept_prob=target_accept, max_tree_depth=max_tree_depth)
        if chain_method is None:
            chain_method = "parallel" if jax.local_device_count() >= self.chains > 1 else "sequential"
        show = bool(progress) and sys.stderr.isatty()
        self.mcmc = MCMC(kernel, num_warmup=self.tune, num_samples=self.draws, num_chains=self.chains,
                         chain_method=chain_method, progress_bar=show, jit_model_args=True)

    def run(self, args, seed) -> tuple[dict, dict, float]:
        """Samples grouped by chain (numpy), extra fields, wall time in seconds."""
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        t0 = time.perf_counter()
        self.mcmc.run(jax.random.PRNGKey(int(seed) % (2**32)), *args,
                      extra_fields=("diverging", "num_steps", "accept_prob", "energy"))
        samples = {k: np.asarray(v) for k, v in self.mcmc.get_samples(group_by_chain=True).items()}
        extra = {k: np.asarray(v) for k, v in self.mcmc.get_extra_fields(group_by_chain=True).items()}
        return samples, extra, time.perf_counter() - t0
