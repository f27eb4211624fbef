"""Fitted mixed models: the accessors a statistician expects from lme4 (fixef, ranef, VarCorr, ...)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from .varcorr import TermInfo, covariance_blocks, theta_names, varcorr_frame
from .._warn import user_stacklevel
from ..guard import public_method
from .method_args import check_confint, check_level_only, check_predict, check_simulate


class Lazy:
    """A FitRecord value computed on first use: the conditional variances, random effects, fitted
    values and (LMM) vcov of a small fit cost as much as its optimisation, and lme4 too computes
    condVar and vcov only when asked."""

    __slots__ = ("fn", "_value")

    def __init__(self, fn):
        self.fn = fn

    def get(self):
        """The value, computed on the first call (one Lazy may fill several fields: eta, mu)."""
        try:
            return self._value
        except AttributeError:
            self._value = self.fn()
            return self._value


@dataclass
class FitRecord:
    """Numbers produced by a fit, handed from the numerics to the result object. A field given as
    `Lazy` is computed when first read (and then kept)."""

    kind: str                      # "glmm" or "lmm"
    method: str                    # "Laplace", "nAGQ=0", "REML", "ML", "PQL"
    theta: np.ndarray
    beta: np.ndarray
    u: np.ndarray
    b: list[np.ndarray]            # per term, nlevels x p
    T: list[np.ndarray]            # per term relative covariance factors
    vcov: np.ndarray
    loglik: float
    sigma: float | None            # residual sd (LMM) or sqrt(dispersion) (Gamma, ...); None otherwise
    dispersion: float | None
    shape: float | None            # nbinom2 shape
    n_params: int
    eta: np.ndarray
    mu: np.ndarray
    condvar: list[np.ndarray] | None
    converged: bool
    singular: bool
    messages: list[str] = field(default_factory=list)
    reml_criterion: float | None = None
    ml_deviance: float | None = None
    optinfo: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        d = self.__dict__
        lazy = {k: v for k, v in d.items() if isinstance(v, Lazy)}
        for k in lazy:
            del d[k]                         # read through __getattr__ until computed
        d["_lazy"] = lazy

    def __getattr__(self, name: str):
        lazy = self.__dict__.get("_lazy")
        if lazy and name in lazy:
            value = lazy[name].get()
            self.__dict__[name] = value
            del lazy[name]
            return value
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __getstate__(self) -> dict:
        """Pickled with every lazy value computed (the functions are closures)."""
        for name in list(self.__dict__.get("_lazy", ())):
            getattr(self, name)
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_lazy", {})


class MixedModel:
    """A fitted linear or generalized linear mixed model."""

    def __init__(self, *, formula: str, data_name: str, frame, family, terms: list[TermInfo],
                 record: FitRecord, quiet: bool = False):
        self.formula = formula
        self.data_name = data_name
        self.frame = frame
        self.family = family
        self.terms = terms
        self._r = record
        self._refit_spec: dict = {}
        self.fit_method = None        # the estimation method (pyglmm.method.Method), set by the fit
        if not quiet:
            for msg in record.messages:
                warnings.warn(msg, ConvergenceWarning, stacklevel=user_stacklevel())

    @public_method(check_simulate)
    def simulate(self, nsim: int = 1, seed=None, re_form="~0") -> np.ndarray:
        """Simulated responses (n x nsim): new random effects (re_form "~0", lme4's default) or
        conditional on the estimated ones (re_form None)."""
        from ..predict.simulate import simulate
        return simulate(self, nsim=nsim, seed=seed, re_form=re_form)

    @public_method(check_predict)
    def predict(self, newdata=None, re_form=None, type: str = "link", allow_new_levels: bool = False,
                se_fit: bool = False, interval: str | None = None, level: float = 0.95, *,
                marginal: bool = False, offset=None, method: str = "quadrature", n_nodes: int = 64,
                n_draws: int = 2000, seed=None):
        """Predictions as lme4's ``predict(m, newdata, re.form, type, allow.new.levels)``.

        newdata: None (the fitted rows, after NA removal) or a table (pandas, polars, Arrow, dict) with
            the predictor columns; factors keep the fit's levels and reference level (a level not
            seen in the fit raises DataError naming column and level), scale() uses the training
            centre and sd (as R's makepredictcall), offset() terms are evaluated on newdata.
            Rows with a missing (NA) predictor or grouping value give NaN (lme4's na.pass).
        re_form: None = conditional on all random effects; "~0" (or "NA", float("nan")) = random
            effects at zero; "~(1|g)" = only the listed terms (matched by grouping factor and
            random-effect column names, as lme4).
        type: "link" (linear predictor) or "response" (inverse link; proportions for binomial).
        allow_new_levels: a grouping level absent from the fit raises DataError unless True; then
            its random effects are zero (as lme4).
        se_fit / interval="confidence": return a DataFrame with "fit", "se_link" (the standard error
            sqrt(x' V x) of the fixed part on the link scale) and/or "lower"/"upper" (link-scale
            Wald limits at ``level``, mapped through the inverse link for type="response"). They
            reflect fixed-effect uncertainty only: the random effects (conditional modes) are
            treated as known, and the random-effect variances are not propagated.
        marginal: with type="response", the population-averaged mean E[g^-1(x'beta + z'b)] over
            b ~ N(0, Sigma) of the terms in re_form (default: all), by Gauss-Hermite quadrature
            (``n_nodes``; exact reduction to one dimension) or Monte Carlo (``method="mc"``,
            ``n_draws``, ``seed``). For a Poisson log link with a random intercept of variance
            s^2 it equals exp(x'beta + s^2/2), above the random-effects-at-zero prediction
            exp(x'beta): see :mod:`pyglmm.predict.predict` for the rehab example.
        offset: for newdata, an offset column name or array added to the formula's offset() terms
            (give it when the model was fitted with the ``offset=`` argument).
        """
        from ..predict.predict import predict
        return predict(self, newdata, re_form=re_form, type=type, allow_new_levels=allow_new_levels,
                       se_fit=se_fit, interval=interval, level=level, marginal=marginal, offset=offset,
                       method=method, n_nodes=n_nodes, n_draws=n_draws, seed=seed)

    def save(self, path):
        """Write the fitted model to a versioned .npz file (no pickle); read it with pyglmm.load."""
        from ..io import save
        return save(self, path)

    @public_method()
    def refit(self, newresp=None) -> "MixedModel":
        """The same model refitted to a new response (same rows and design), as lme4's refit()."""
        if self.fit_method is None:
            raise NotImplementedError(f"refit is not available for {self.method} fits")
        return self.fit_method.refit(self, newresp)

    # --- fit statistics ------------------------------------------------------
    @property
    def is_lmm(self) -> bool:
        return self._r.kind == "lmm"

    @property
    def REML(self) -> bool:
        return self._r.method == "REML"

    @property
    def method(self) -> str:
        return self._r.method

    @property
    def is_pql(self) -> bool:
        """Fitted by penalized quasi-likelihood (:func:`pyglmm.glmmPQL`)."""
        return self._r.method == "PQL"

    @property
    def iterations(self) -> int | None:
        """Number of working-LMM fits of a PQL fit (None for other methods)."""
        return self._r.optinfo.get("iterations") if self.is_pql else None

    @property
    def loglik(self) -> float:
        """Log-likelihood (REML criterion / -2 for REML fits, as lme4's logLik).

        NaN for PQL fits: PQL maximises the quasi-likelihood of a working linear model that
        changes between iterations, so there is no likelihood of the data to report (glmmPQL
        sets logLik to NA); AIC, BIC and the deviance are NaN with it.
        """
        if self.is_pql:
            return float("nan")
        return float(self._r.loglik)

    @property
    def nobs(self) -> int:
        return int(self.frame.y.shape[0])

    @property
    def n_params(self) -> int:
        return int(self._r.n_params)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + np.log(self.nobs) * self.n_params

    @property
    def deviance(self) -> float:
        """-2 log L (for REML fits: the ML deviance at the REML estimates, as lme4's deviance())."""
        if self._r.ml_deviance is not None:
            return float(self._r.ml_deviance)
        return -2.0 * self.loglik

    @property
    def reml_criterion(self) -> float | None:
        return self._r.reml_criterion

    @property
    def df_resid(self) -> int:
        return self.nobs - self.n_params

    @property
    def converged(self) -> bool:
        return bool(self._r.converged)

    @property
    def singular(self) -> bool:
        return bool(self._r.singular)

    @property
    def messages(self) -> list[str]:
        return list(self._r.messages)

    @property
    def optinfo(self) -> dict:
        return dict(self._r.optinfo)

    # --- parameters ----------------------------------------------------------
    @property
    def fixef(self) -> pd.Series:
        return pd.Series(self._r.beta, index=self.frame.fixef_names, name="fixef")

    @property
    def vcov(self) -> pd.DataFrame:
        nm = self.frame.fixef_names
        return pd.DataFrame(self._r.vcov, index=nm, columns=nm)

    @property
    def se(self) -> pd.Series:
        return pd.Series(np.sqrt(np.diag(self._r.vcov)), index=self.frame.fixef_names, name="se")

    @property
    def theta(self) -> pd.Series:
        return pd.Series(self._r.theta, index=theta_names(self.terms), name="theta")

    @property
    def sigma(self) -> float:
        """Residual standard deviation (LMM), sqrt(dispersion) for Gamma-type families, else 1."""
        return 1.0 if self._r.sigma is None else float(self._r.sigma)

    @property
    def shape(self) -> float | None:
        """Negative binomial shape (theta in glmer.nb / glmmTMB's sigma for nbinom2)."""
        return self._r.shape

    @property
    def dispersion(self) -> float | None:
        return self._r.dispersion

    def _cov_scale(self) -> float:
        # PQL: the working LMM's covariances are relative to its residual variance (as lme)
        return self._r.sigma if (self.is_lmm or self.is_pql) else 1.0

    @property
    def covariances(self) -> list[np.ndarray]:
        """Covariance matrix of each random-effects term."""
        return covariance_blocks(self._r.T, self._cov_scale())

    @property
    def varcorr(self) -> pd.DataFrame:
        """as.data.frame(VarCorr(m)): grp, var1, var2, vcov, sdcor."""
        resid = self._r.sigma if self._r.sigma is not None else None
        return varcorr_frame(self.terms, self.covariances, resid)

    @property
    def ngroups(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.terms:
            out.setdefault(t.group, len(t.levels))
        return out

    def ranef_frames(self, condvar: bool = False) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor (terms with the same factor side by side)."""
        out: dict[str, pd.DataFrame] = {}
        for k, t in enumerate(self.terms):
            df = pd.DataFrame(self._r.b[k], index=pd.Index(t.levels, name=t.group), columns=t.colnames)
            if condvar and self._r.condvar is not None:
                cv = self._r.condvar[k]
                for i, c in enumerate(t.colnames):
                    df[f"{c} condsd"] = np.sqrt(cv[:, i, i])
            out[t.group] = df if t.group not in out else pd.concat([out[t.group], df], axis=1)
        return out

    @property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes of the random effects (BLUPs), one DataFrame per grouping factor."""
        return self.ranef_frames()

    # --- random-effect diagnostics (pyglmm.diagnostics, pyglmm.plots) ----------
    @public_method(check_level_only("ranef_table"))
    def ranef_table(self, level: float = 0.95) -> pd.DataFrame:
        """Tidy conditional modes: group, level, term, estimate, condsd, lower, upper."""
        from ..diagnostics import ranef_table
        return ranef_table(self, level=level)

    def plot_caterpillar(self, group=None, term=None, level: float = 0.95):
        """Caterpillar plot of the conditional modes (matplotlib Figure); see pyglmm.plots."""
        from ..plots import caterpillar
        return caterpillar(self, group=group, term=term, level=level)

    def plot_qq(self, group=None, term=None):
        """Normal Q-Q plots of the conditional modes (matplotlib Figure); see pyglmm.plots."""
        from ..plots import qq_ranef
        return qq_ranef(self, group=group, term=term)

    def plot_residuals(self, nsim: int = 250, seed=None, simulate_res: str = "conditional"):
        """DHARMa-style simulated quantile residual plot (matplotlib Figure); see pyglmm.plots."""
        from ..plots import residuals
        return residuals(self, nsim=nsim, seed=seed, simulate_res=simulate_res)

    @property
    def coef(self) -> dict[str, pd.DataFrame]:
        """Fixed plus random effects per level, as lme4's coef()."""
        fe = self.fixef
        out = {}
        for g, re in self.ranef.items():
            df = pd.DataFrame(np.tile(fe.values, (len(re), 1)), index=re.index, columns=fe.index)
            for c in re.columns:
                if c in df.columns:
                    df[c] = df[c] + re[c].values
                else:
                    df[c] = re[c].values
            out[g] = df
        return out

    @property
    def fitted(self) -> np.ndarray:
        """Fitted values on the response scale, conditional on the random effects."""
        return np.asarray(self._r.mu)

    @property
    def linear_predictor(self) -> np.ndarray:
        return np.asarray(self._r.eta)

    @public_method()
    def residuals(self, type: str = "deviance") -> np.ndarray:
        """Residuals of type "deviance", "pearson", "response" (or "working")."""
        y, mu, wt = self.frame.y, self._r.mu, self.frame.weights
        if type == "response":
            return y - mu
        if self.is_lmm:
            r = (y - mu) * np.sqrt(wt)
            if type in ("pearson", "deviance", "working"):
                return r if type != "working" else y - mu
        fam = self.family
        if type == "pearson":
            return (y - mu) * np.sqrt(wt) / np.sqrt(fam.variance(mu))
        if type == "deviance":
            d = fam.dev_resids(y, mu, wt)
            return np.sign(y - mu) * np.sqrt(np.maximum(d, 0.0))
        if type == "working":
            return (y - mu) / fam.link.mu_eta(self._r.eta)
        raise ValueError(f"unknown residual type {type!r}; use 'deviance', 'pearson', 'response' or 'working'")

    # --- inference (pyglmm.inference) ---------------------------------------
    @public_method()
    def wald_tests(self, type: str = "III"):
        """Wald chi-square test per fixed-effect term, as car::Anova(m, type = "III"/"II")."""
        from ..inference import wald_tests
        return wald_tests(self, type=type)

    @public_method(check_level_only("exp_fixef"))
    def exp_fixef(self, level: float = 0.95) -> pd.DataFrame:
        """exp(fixed effects) with Wald intervals, labelled rate/odds/hazard ratio by family and link."""
        from ..inference import exp_fixef
        return exp_fixef(self, level=level)

    @public_method(check_confint)
    def confint(self, parm=None, level: float = 0.95, method: str = "wald", **kwargs) -> pd.DataFrame:
        """Confidence intervals as lme4's confint() (rows .sig01.., .sigma, fixed effects)."""
        from ..inference import confint
        return confint(self, parm=parm, level=level, method=method, **kwargs)

    # --- tables --------------------------------------------------------------
    def coef_table(self) -> pd.DataFrame:
        """Estimate, Std. Error, z (or t) value and, for GLMMs, Pr(>|z|)."""
        est, se = self.fixef, self.se
        stat = est / se
        if self.is_lmm:
            return pd.DataFrame({"Estimate": est, "Std. Error": se, "t value": stat})
        p = 2.0 * stats.norm.sf(np.abs(stat))
        # lme4 labels the statistic "t value" when a scale is estimated (Gamma, ...) but keeps
        # the normal reference, "Pr(>|z|)"
        lab = "t value" if self._r.dispersion is not None and not self.is_pql else "z value"
        return pd.DataFrame({"Estimate": est, "Std. Error": se, lab: stat, "Pr(>|z|)": p})

    def fixef_correlation(self) -> pd.DataFrame:
        V = self.vcov
        d = np.sqrt(np.diag(V.values))
        return pd.DataFrame(V.values / np.outer(d, d), index=V.index, columns=V.columns)

    def summary(self):
        """lme4-style summary; print it, or use its DataFrames (``.coefficients`` etc.)."""
        from .summary import Summary
        return Summary(self)

    def __repr__(self) -> str:
        return self.summary().short_text()


class ConvergenceWarning(UserWarning):
    """A fit that may not be at the optimum, or is singular: read the advice in the message."""
