"""The result of :func:`pyglmm.bayes.bglmer`: posterior summaries in the ML summary's layout."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..results.varcorr import term_labels
from .._warn import user_stacklevel

STAT_COLS = ["Estimate", "Est.Error", "l-95% CI", "u-95% CI", "Rhat", "Bulk_ESS", "Tail_ESS"]


class DivergenceWarning(UserWarning):
    """NUTS reported divergent transitions after warmup: the posterior may be biased."""


def _draws_from_samples(samples: dict, spec, fixef_names, xbar, labels, infos) -> dict[str, np.ndarray]:
    """Reported quantities (chain, draw, ...) from the sampler's sites."""
    C, D = next(iter(samples.values())).shape[:2]
    bc = np.zeros((C, D, spec.p))
    for name, idx, _ in spec.fixef_groups:
        bc[..., idx] = samples[f"bc_{name}"]
    beta = bc.copy()
    if spec.int_col is not None:
        mask = np.ones(spec.p, bool)
        mask[spec.int_col] = False
        beta[..., spec.int_col] = bc[..., spec.int_col] - bc[..., mask] @ xbar[mask]
    out = {"beta": beta}
    for k, (t, lab) in enumerate(zip(spec.terms, labels)):
        sd = samples[f"sd_{k}"]
        z = samples[f"z_{k}"]
        if t["correlated"]:
            L = samples[f"L_{k}"]
            # as in the model (fit.make_model): b = (z @ L') * sd, Cov(b[l]) = diag(sd) L L' diag(sd)
            b = np.einsum("cdlp,cdqp->cdlq", z, L) * sd[..., None, :]
            R = np.einsum("cdip,cdjp->cdij", L, L)
            ii, jj = np.tril_indices(t["p"], -1)
            # pairs ordered by column as lme4's VarCorr: (1,0), (2,0), ..., (2,1), ...
            order = np.lexsort((ii, jj))
            out[f"cor_{lab}"] = R[..., ii[order], jj[order]]
        else:
            b = z * sd[..., None, :]
        out[f"sd_{lab}"] = sd
        out[f"r_{lab}"] = b
    if spec.aux_name is not None:
        out[spec.aux_name] = samples[spec.aux_name]
    return out


def _dims_coords(spec, fixef_names, labels, infos):
    coords = {"coef": list(fixef_names)}
    dims = {"beta": ["coef"]}
    for t, lab, info in zip(spec.terms, labels, infos):
        coords[f"{lab}_effect"] = list(info.colnames)
        coords[f"{lab}_level"] = list(info.levels)
        dims[f"sd_{lab}"] = [f"{lab}_effect"]
        dims[f"r_{lab}"] = [f"{lab}_level", f"{lab}_effect"]
        if t["correlated"]:
            p = t["p"]
            pairs = [f"{info.colnames[j]},{info.colnames[i]}" for j in range(p) for i in range(j + 1, p)]
            coords[f"{lab}_pair"] = pairs
            dims[f"cor_{lab}"] = [f"{lab}_pair"]
    return dims, coords


def _stats(x: np.ndarray) -> dict:
    """Summary statistics of one scalar quantity with draws (chain, draw)."""
    import arviz as az
    flat = x.reshape(-1)
    lo, hi = np.quantile(flat, [0.025, 0.975])
    import logging
    log = logging.getLogger("arviz")
    level = log.level
    log.setLevel(logging.ERROR)        # one chain: ArviZ logs a shape warning; R-hat is NaN then
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rhat = float(az.rhat(x)) if x.shape[0] > 1 and x.shape[1] > 3 else np.nan
            bulk = float(az.ess(x, method="bulk"))
            tail = float(az.ess(x, method="tail"))
    finally:
        log.setLevel(level)
    return {"Estimate": flat.mean(), "Est.Error": flat.std(ddof=1), "l-95% CI": lo, "u-95% CI": hi,
            "Rhat": rhat, "Bulk_ESS": bulk, "Tail_ESS": tail}


class BayesMixedModel:
    """A GLMM fitted by MCMC (NUTS): posterior draws, summaries, diagnostics, predictive draws.

    Attributes: ``idata`` (ArviZ InferenceData: ``posterior`` with ``beta`` [coef],
    ``sd_<group>`` [<group>_effect], ``cor_<group>`` [<group>_pair], ``r_<group>``
    [<group>_level, <group>_effect] and ``sigma``/``shape`` when the family has one;
    ``sample_stats`` with ``diverging``, ``n_steps``, ``acceptance_rate``, ``energy``;
    ``observed_data``), ``draws`` (the same arrays as numpy, shape (chain, draw, ...)),
    ``divergences``, ``elapsed`` (seconds: compilation + warmup + sampling), ``priors``.
    """

    def __init__(self, *, formula, data_name, frame, family, terms, sorted_view, rs, spec, priors,
                 xbar, samples, extra, elapsed, runner, args, draws, tune, chains):
        self.formula = formula
        self.data_name = data_name
        self.frame = frame
        self.family = family
        self.terms = terms
        self.labels = term_labels(terms)
        self.priors = priors
        self._sv, self._rs, self._spec, self._xbar = sorted_view, rs, spec, xbar
        self._runner, self._args = runner, args
        self.n_draws, self.n_tune, self.n_chains = draws, tune, chains
        self._set_samples(samples, extra, elapsed)

    # --- construction ----------------------------------------------------------------------
    def _set_samples(self, samples, extra, elapsed):
        self.elapsed = float(elapsed)
        self.draws = _draws_from_samples(samples, self._spec, self.frame.fixef_names, self._xbar,
                                         self.labels, self.terms)
        self._extra = extra
        self.divergences = int(np.sum(extra.get("diverging", 0)))
        self._idata = None
        self._tables = {}
        if self.divergences:
            warnings.warn(f"{self.divergences} divergent transition(s) after warmup (of "
                          f"{self.n_chains * self.n_draws} draws): the posterior summaries may be "
                          "biased; increase target_accept (e.g. 0.95), tighten the priors or "
                          "simplify the random-effects structure", DivergenceWarning, stacklevel=user_stacklevel())

    def refit(self, newresp, seed=None) -> "BayesMixedModel":
        """Re-run the (already compiled) sampler on a new response vector with the same design and
        priors (rows in the model frame's order); used for simulation studies such as SBC."""
        import jax
        y = np.asarray(newresp, float).reshape(-1)
        if y.shape[0] != self.frame.y.shape[0]:
            raise ValueError(f"newresp has {y.shape[0]} values; the model has {self.frame.y.shape[0]} rows")
        args = (jax.numpy.asarray(y[self._sv.perm]),) + tuple(self._args[1:])
        from .precision import X64, x64_scope
        with x64_scope(X64):
            samples, extra, el = self._runner.run(args, seed)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._args = args
        new._set_samples(samples, extra, el)
        return new

    # --- posterior summaries -----------------------------------------------------------------
    @property
    def idata(self):
        """ArviZ InferenceData with named coordinates (built on first access)."""
        if self._idata is None:
            import arviz as az
            dims, coords = _dims_coords(self._spec, self.frame.fixef_names, self.labels, self.terms)
            ex = self._extra
            stats = {"diverging": ex["diverging"].astype(bool), "n_steps": ex["num_steps"],
                     "acceptance_rate": ex["accept_prob"], "energy": ex["energy"]}
            self._idata = az.from_dict(posterior=dict(self.draws), sample_stats=stats,
                                       observed_data={"y": np.asarray(self.frame.y)},
                                       coords=coords, dims=dims)
        return self._idata

    def _table(self, key, rows) -> pd.DataFrame:
        if key not in self._tables:
            idx, data = [], []
            for name, x in rows:
                idx.append(name)
                data.append(_stats(x))
            self._tables[key] = pd.DataFrame(data, index=idx, columns=STAT_COLS)
        return self._tables[key]

    def coef_table(self) -> pd.DataFrame:
        """Fixed effects: posterior mean (Estimate), sd (Est.Error), central 95% interval, R-hat,
        bulk and tail ESS (ArviZ), one row per coefficient as in the ML summary."""
        b = self.draws["beta"]
        return self._table("fixef", [(nm, b[..., j]) for j, nm in enumerate(self.frame.fixef_names)])

    @property
    def fixef(self) -> pd.Series:
        """Posterior means of the fixed effects."""
        return pd.Series(self.draws["beta"].mean(axis=(0, 1)), index=list(self.frame.fixef_names),
                         name="fixef")

    def varcorr(self) -> pd.DataFrame:
        """Random-effect sds and correlations (rows as ``as.data.frame(VarCorr)``: grp, var1, var2),
        then sigma/shape, with the posterior statistics of ``coef_table``."""
        if "varcorr" not in self._tables:
            rows, keys = [], []
            for t, lab, info in zip(self._spec.terms, self.labels, self.terms):
                sd = self.draws[f"sd_{lab}"]
                for i, nm in enumerate(info.colnames):
                    rows.append((f"sd({lab}:{nm})", sd[..., i]))
                    keys.append((lab, nm, None))
                if t["correlated"]:
                    cor = self.draws[f"cor_{lab}"]
                    c = 0
                    for j in range(t["p"]):
                        for i in range(j + 1, t["p"]):
                            rows.append((f"cor({lab}:{info.colnames[j]},{info.colnames[i]})", cor[..., c]))
                            keys.append((lab, info.colnames[j], info.colnames[i]))
                            c += 1
            if self._spec.aux_name is not None:
                rows.append((self._spec.aux_name, self.draws[self._spec.aux_name]))
                keys.append((self._spec.aux_name, None, None))
            tab = self._table("vc", rows).copy()
            tab.insert(0, "var2", [k[2] for k in keys])
            tab.insert(0, "var1", [k[1] for k in keys])
            tab.insert(0, "grp", [k[0] for k in keys])
            self._tables["varcorr"] = tab
        return self._tables["varcorr"]

    def ranef(self) -> dict[str, pd.DataFrame]:
        """Posterior means of the random effects, one DataFrame (levels x effects) per term."""
        return {lab: pd.DataFrame(self.draws[f"r_{lab}"].mean(axis=(0, 1)), index=info.levels,
                                  columns=info.colnames)
                for lab, info in zip(self.labels, self.terms)}

    def prior_summary(self) -> pd.DataFrame:
        """The priors used (defaults and the user's), as rstanarm's prior_summary."""
        return self.priors.table()

    def diagnostics(self) -> dict:
        """max R-hat, min bulk/tail ESS over the fixed effects and variance parameters, divergences."""
        tabs = pd.concat([self.coef_table(), self.varcorr()[STAT_COLS]])
        return {"max_rhat": float(tabs["Rhat"].max()), "min_bulk_ess": float(tabs["Bulk_ESS"].min()),
                "min_tail_ess": float(tabs["Tail_ESS"].min()), "divergences": self.divergences}

    # --- predictions --------------------------------------------------------------------------
    def _flat(self, name):
        x = self.draws[name]
        return x.reshape((-1,) + x.shape[2:])

    def linear_predictor_draws(self, ndraws: int | None = None, seed=None) -> np.ndarray:
        """Draws (ndraws x n) of the linear predictor for the model's rows (user order)."""
        idx = self._draw_index(ndraws, seed)
        return self._eta(idx)

    def _draw_index(self, ndraws, seed):
        total = self.n_chains * self.n_draws
        if ndraws is None or ndraws >= total:
            return np.arange(total)
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(total, size=int(ndraws), replace=False))

    def _eta(self, idx):
        sv = self._sv
        eta = sv.offset[None, :] + self._flat("beta")[idx] @ sv.X.T
        for t, lab in zip(self._rs.terms, self.labels):
            b = self._flat(f"r_{lab}")[idx]                     # (S, L, p)
            eta = eta + np.einsum("snp,np->sn", b[:, t.codes, :], t.X)
        return eta[:, sv.back]

    def posterior_predict(self, ndraws: int | None = None, seed=None) -> np.ndarray:
        """Posterior predictive draws (ndraws x n, rows in the model frame's order): new responses
        given each posterior draw of the parameters and random effects (brms' posterior_predict).
        Responses are on the model frame's scale, as ``simulate``: proportions for binomial
        (successes / trials), counts for Poisson and nbinom2."""
        idx = self._draw_index(ndraws, seed)
        rng = np.random.default_rng(None if seed is None else [int(seed), 1])
        mu = self.family.link.inverse(self._eta(idx))
        wt = np.asarray(self.frame.weights, float)[None, :]
        fam = self.family
        aux = None if self._spec.aux_name is None else self._flat(self._spec.aux_name)[idx][:, None]
        par = None if aux is None else fam.aux_to_parameter(aux)    # phi, or nbinom2's theta
        shape = par if fam.extra_parameter == "shape" else None
        phi = par if fam.extra_parameter == "dispersion" else 1.0
        with np.errstate(all="ignore"):
            return fam.simulate(mu, wt, phi, rng, shape=shape)

    # --- text -----------------------------------------------------------------------------------
    def summary(self) -> "BayesSummary":
        return BayesSummary(self)

    def __repr__(self) -> str:
        return str(self.summary())


def _fmt_table(df: pd.DataFrame) -> str:
    out = df.copy()
    for c in ["Estimate", "Est.Error", "l-95% CI", "u-95% CI"]:
        out[c] = out[c].map(lambda v: f"{v:.2f}")
    out["Rhat"] = out["Rhat"].map(lambda v: "NA" if not np.isfinite(v) else f"{v:.2f}")
    for c in ["Bulk_ESS", "Tail_ESS"]:
        out[c] = out[c].map(lambda v: "NA" if not np.isfinite(v) else f"{int(round(v))}")
    return out.to_string()


class BayesSummary:
    """brms-style text summary (``str(summary)``) of a :class:`BayesMixedModel`."""

    def __init__(self, m: BayesMixedModel):
        self.m = m

    def __str__(self) -> str:
        m = self.m
        fam, link = m.family.describe() if hasattr(m.family, "describe") else (m.family.name, m.family.link.name)
        lines = [f" Family: {m.family.name}", f"  Links: mu = {m.family.link.name}",
                 f"Formula: {m.formula}",
                 f"   Data: {m.data_name} (Number of observations: {m.frame.y.shape[0]})",
                 f"  Draws: {m.n_chains} chains, each with iter = {m.n_tune + m.n_draws}; "
                 f"warmup = {m.n_tune}; thin = 1;",
                 f"         total post-warmup draws = {m.n_chains * m.n_draws}", ""]
        vc = m.varcorr()
        lines.append("Multilevel Hyperparameters:")
        for lab, info in zip(m.labels, m.terms):
            lines.append(f"~{lab} (Number of levels: {len(info.levels)})")
            sub = vc[vc["grp"] == lab]
            names = [f"sd({r.var1})" if not isinstance(r.var2, str) else f"cor({r.var1},{r.var2})"
                     for r in sub.itertuples()]
            t = sub[STAT_COLS].copy()
            t.index = names
            lines.append(_fmt_table(t))
            lines.append("")
        lines.append("Regression Coefficients:")
        lines.append(_fmt_table(m.coef_table()))
        if m._spec.aux_name is not None:
            lines.append("")
            lines.append("Further Distributional Parameters:")
            t = vc[vc["grp"] == m._spec.aux_name][STAT_COLS].copy()
            t.index = [m._spec.aux_name]
            lines.append(_fmt_table(t))
        lines.append("")
        import numpyro
        lines.append(f"Draws were sampled using NUTS (NumPyro {numpyro.__version__}) in {m.elapsed:.1f} s "
                     f"(compilation, warmup and sampling); divergent transitions: {m.divergences}.")
        lines.append("For each parameter, Bulk_ESS and Tail_ESS are effective sample size measures, "
                     "and Rhat is the potential scale reduction factor on split chains (at "
                     "convergence, Rhat = 1).")
        return "\n".join(lines)

    __repr__ = __str__
