"""GLM(M) families in the spirit of R's ``family`` objects.

Formulas follow R's ``stats`` families (``binomial``, ``poisson``,
``gaussian``, ``Gamma``, ``inverse.gaussian``) and ``MASS::negative.binomial``
(used by ``lme4::glmer.nb``) / glmmTMB's ``nbinom2``.

Conventions for :meth:`Family.loglik` (per-observation conditional
log-likelihood contributions, ``wt`` = prior weights):

* poisson:  ``wt * dpois(y, mu, log=TRUE)``.  For non-integer ``y`` R's
  ``dpois`` returns ``-Inf`` (with a warning); we use the continuous
  lgamma-based density ``y log mu - mu - lgamma(y+1)`` (as glmmTMB/TMB does).
* binomial: ``y`` is the proportion of successes and ``wt`` the number of
  trials. For whole-number ``wt*y`` and ``wt`` this is exactly R's
  ``binomial()$aic`` term ``dbinom(round(wt*y), round(wt), mu, log=TRUE)``
  (rows with ``wt == 0`` contribute 0).  When ``wt*y`` or ``wt`` are not whole
  numbers (R warns "non-integer #successes in a binomial glm!") the default,
  ``noninteger="continuous"``, uses the lgamma-based continuous binomial
  ``lchoose(n, k) + k log mu + (n-k) log(1-mu)`` with ``k = wt*y``, ``n = wt``
  (what glmmTMB/TMB's ``dbinom_robust`` computes).  Pass
  ``noninteger="round"`` to get R's ``family$aic`` / lme4 ``logLik`` behaviour,
  which rounds ``k`` and ``n`` first.
* gaussian: normal log density with variance ``dispersion / wt`` (lme4's
  weighted-LMM convention); rows with ``wt == 0`` contribute 0.
* Gamma: ``wt * dgamma(y, shape=1/phi, scale=mu*phi, log=TRUE)``.
* inverse.gaussian: ``wt * log dinvgauss(y, mean=mu, dispersion=phi)``
  (variance ``mu^3 phi``), as in R's ``inverse.gaussian()$aic``.
* nbinom2: ``wt * dnbinom(y, size=theta, mu=mu, log=TRUE)``.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings

import numpy as np
from scipy import special as sp

from .links import LINKS, Link, make_link
from .._warn import user_stacklevel
from ..fit import compiled

__all__ = [
    "Family",
    "Poisson",
    "Binomial",
    "Gaussian",
    "Gamma",
    "InverseGaussian",
    "NegativeBinomial2",
    "FAMILIES",
    "ALLOWED_LINKS",
    "make_family",
]

_LOG_2PI = math.log(2.0 * math.pi)
# tolerance R uses for "non-integer #successes" in binomial()$initialize
_BINOM_INT_TOL = 1e-3
_EPS = float(np.finfo(np.float64).eps)


def _f(x):
    return np.asarray(x, dtype=np.float64)


def _wt(wt, like):
    if wt is None:
        return np.ones_like(_f(like))
    return _f(wt)


def _fmt_value(v) -> str:
    v = float(v)
    if not np.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"


def _r_format(x: float, digits: int = 7) -> str:
    """Approximate R's ``format(x)`` (7 significant digits, fixed vs sci)."""
    if not np.isfinite(x):
        return "Inf" if x > 0 else ("-Inf" if x < 0 else "NaN")
    if x == 0:
        return "0"
    # minimal number of significant digits representing x to `digits` digits
    target = float(f"{x:.{digits - 1}e}")
    sig = digits
    for s in range(1, digits + 1):
        if float(f"{x:.{s - 1}e}") == target:
            sig = s
            break
    mant, exp = f"{target:.{sig - 1}e}".split("e")
    e = int(exp)
    sci = f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    ndec = max(0, sig - 1 - e)
    fixed = f"{target:.{ndec}f}"
    return fixed if len(fixed) <= len(sci) else sci


class Family:
    """Base class for families.  Instances are immutable.

    Attributes: ``name`` (R's family name), ``link`` (:class:`Link`),
    ``has_dispersion`` (True if a dispersion parameter phi is estimated),
    ``shape`` (nbinom2's theta; None otherwise / until set).
    """

    name: str = ""
    default_link: str = ""
    allowed_links: tuple[str, ...] = ()
    has_dispersion: bool = False
    #: the canonical link (theta = eta), or None when it is not among the allowed links
    canonical_link: str | None = None
    #: the family's extra parameter: "dispersion" (phi, Var = phi V(mu)), "shape" (nbinom2's
    #: theta) or None (Poisson, binomial: fixed at 1)
    extra_parameter: str | None = None
    #: integer-valued responses (the simulation-based quantile residuals are then randomised)
    discrete: bool = False
    #: what the response is: "count" (Poisson, nbinom2), "proportion" (binomial: 0/1, proportions
    #: with trials as weights, or cbind(successes, failures)) or "continuous"
    response_kind: str = "continuous"
    #: links with closed forms of the exact curvature -d2 log f/deta2 and its eta-derivative
    #: (`curvature`): canonical links, and those of glmmTMB's observed-curvature Laplace fits
    closed_curvature_links: tuple[str, ...] = ()
    #: link -> the compiled kernels' family code (fit/_glmm.pyx)
    kernel_codes: dict = {}
    #: the log density's name in pyglmm.bayes.jaxfam
    jax_name: str = ""
    #: the Bayesian auxiliary parameter sampled by bglmer ("sigma", "shape" or None)
    aux_name: str | None = None

    __slots__ = ("link", "shape", "canonical", "closed_curvature", "kernel_code")

    def __init__(self, link: "str | Link | None" = None):
        if link is None:
            link = self.default_link
        lk = _link_for_family(self.name, self.allowed_links, link)
        object.__setattr__(self, "link", lk)
        object.__setattr__(self, "shape", None)
        # resolved once: the fitting code asks these on every PIRLS iteration
        object.__setattr__(self, "canonical", lk.name == self.canonical_link)
        object.__setattr__(self, "closed_curvature", lk.name in self.closed_curvature_links)
        object.__setattr__(self, "kernel_code", self.kernel_codes.get(lk.name))

    # immutability ---------------------------------------------------------
    def __setattr__(self, key, value):
        raise AttributeError(f"{type(self).__name__} objects are immutable")

    def __delattr__(self, key):
        raise AttributeError(f"{type(self).__name__} objects are immutable")

    def __eq__(self, other) -> bool:
        return (
            type(other) is type(self)
            and other.link == self.link
            and other.shape == self.shape
        )

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.link.name, self.shape))

    def __reduce__(self):
        # immutable instances are rebuilt through the public constructor (pickle, multiprocessing)
        return (_rebuild_family, (self.name, self.link.name, self.shape))

    def __repr__(self) -> str:
        return f"Family({self.name}, link={self.link.name})"

    def describe(self) -> tuple[str, str]:
        """(family, link) strings as printed by lme4's summary."""
        return (self.name, self.link.name)

    @property
    def is_linear_model(self) -> bool:
        """True for gaussian with the identity link: an LMM, which lmer fits exactly."""
        return False

    @property
    def default_laplace(self) -> str:
        """The Laplace curvature glmer uses by default: lme4's expected (Fisher) weights where
        there is no extra parameter (Poisson, binomial), glmmTMB's observed curvature otherwise."""
        return "expected" if self.extra_parameter is None else "observed"

    # link delegation (R-style names) --------------------------------------
    def linkfun(self, mu):
        return self.link.link(mu)

    def linkinv(self, eta):
        return self.link.inverse(eta)

    def mu_eta(self, eta):
        return self.link.mu_eta(eta)

    # family-specific -----------------------------------------------------
    def variance(self, mu):
        raise NotImplementedError

    def dev_resids(self, y, mu, wt=None):
        raise NotImplementedError

    def loglik(self, y, mu, wt=None, dispersion=1.0):
        raise NotImplementedError

    def initialize(self, y, wt=None):
        return _f(y).copy()

    def valid_mu(self, mu) -> bool:
        return True

    def valid_eta(self, eta) -> bool:
        return self.link.valid_eta(eta)

    def deviance(self, y, mu, wt=None) -> float:
        return float(np.sum(self.dev_resids(y, mu, wt)))

    # Likelihood from the linear predictor --------------------------------
    # R's links clamp mu (away from 0 and 1, dmu/deta away from 0); a likelihood computed from
    # a clamped mu caps what a badly fitted row can cost and an optimiser exploits the cap (a
    # cloglog row with y = 0 at eta = 10 costs exp(10) = 22026, not -log(eps) = 36). The fits
    # therefore evaluate the density, its score and curvature from eta with these methods.
    def loglik_eta(self, y, eta, wt=None, dispersion=1.0):
        """Per-row log f(y | eta), computed from eta without the links' clamps."""
        return self.loglik(y, self.link.inverse_exact(eta), wt, dispersion)

    def dev_resids_eta(self, y, eta, wt=None):
        """Deviance residuals at mu = g^{-1}(eta), computed from eta without the links' clamps."""
        return self.dev_resids(y, self.link.inverse_exact(eta), wt)

    def eta_moments(self, y, eta, wt, phi=1.0, cache=None):
        """(mu, score, Fisher weight) per row: score = d log f / d eta = wt (y - mu) mu'/(V phi),
        weight = wt mu'^2 / (V phi), both without clamps."""
        mu = self.link.inverse_exact(eta)
        d = self.link.mu_eta_exact(eta)
        wv = _f(wt) * d / (self.variance(mu) * phi)
        return mu, wv * (_f(y) - mu), wv * d

    def observed_curvature(self, y, eta, wt, phi=1.0):
        """-d^2 log f / d eta^2 per row (the exact Laplace curvature, glmmTMB's choice); here by
        central differences of the score, which families override with closed forms."""
        eta = _f(eta)
        h = 1e-5 * np.maximum(1.0, np.abs(eta))
        return -(self.eta_moments(y, eta + h, wt, phi)[1]
                 - self.eta_moments(y, eta - h, wt, phi)[1]) / (2.0 * h)

    def curvature(self, mu, y, wt, phi=1.0):
        """(w, dw/deta, score) per row in closed form, with w = -d2 log f/deta2 the exact
        Laplace curvature and score = d log f/deta (all times the prior weights ``wt``), for
        the links in `closed_curvature_links` (the exact Laplace gradient needs dw/deta)."""
        raise ValueError(f"no closed-form curvature for the {self.name} family with link "
                         f"{self.link.name!r}")

    # the deviance split for PIRLS ------------------------------------------
    def deviance_constant(self, y, wt, cache=None):
        """The y-only part C(y) of sum(dev_resids) when the family splits it off (Poisson,
        binomial: then -2 log f = dev - 2 log f_saturated exactly), else None. ``cache``: a
        dict kept with the data (the problem) for the pieces that depend on y and wt only."""
        return None

    def deviance_sum(self, y, eta, wt, mu=None, cache=None) -> float:
        """sum(dev_resids) at eta without the links' clamps on mu (they would cap what a row
        can cost); families override with cheaper forms (a cached y-only constant)."""
        return float(self.dev_resids_eta(y, eta, wt).sum())

    def saturated_m2ll(self, y, wt) -> float:
        """-2 log-likelihood of the saturated model (mu = y)."""
        return float(-2.0 * self.loglik(y, y, wt).sum())

    # the extra parameter (dispersion phi / nbinom2 shape theta) --------------
    @staticmethod
    def extra_to_natural(x) -> float:
        """The extra parameter from its optimisation scale (log)."""
        return float(np.exp(x))

    @staticmethod
    def extra_to_working(v) -> float:
        """The extra parameter on its optimisation scale (log)."""
        return float(np.log(v))

    def with_extra(self, value) -> "tuple[Family, float]":
        """(family, dispersion phi) at a value of the extra parameter (natural scale): the shape
        lives on the family, the dispersion is passed beside it; no extra parameter: phi = 1."""
        return self, 1.0

    @property
    def start_family(self) -> "Family":
        """The family whose GLM fit gives the starting fixed effects (nbinom2: the Poisson)."""
        return self

    def extra_start(self, y, mu, wt, df_resid: int):
        """Start of the extra parameter on the optimisation scale from a GLM fit's means
        ``mu`` (None when the family has none)."""
        return None

    # simulation and quantile residuals -------------------------------------
    def simulate(self, mu, wt, phi, rng, shape=None):
        """One response per row given the means (on the fit's scale: proportions for the
        binomial), prior weights ``wt``, dispersion ``phi`` and, for nbinom2, ``shape`` (the
        family's own when None); arrays broadcast (posterior draws x rows)."""
        raise ValueError(f"simulation is not available for family {self.name!r}")

    def response_counts(self, y, wt):
        """Responses on the count scale of the simulation-based residuals (binomial: successes
        when the trials are whole numbers, as DHARMa); others unchanged."""
        return y

    def cdf(self, q, mu, wt=None, phi=1.0):
        """P(Y <= q) per row (binomial: q a proportion of ``wt`` trials), for quantile
        residuals (Dunn & Smyth 1996): u ~ U(cdf(y-), cdf(y)) for discrete families."""
        raise ValueError(f"no cdf for family {self.name!r}")

    # interpretation ----------------------------------------------------------
    @property
    def ratio_label(self) -> str | None:
        """What exp(coefficient) is on this link ("odds ratio", "rate ratio", ...), or None."""
        return {"log": "ratio", "logit": "odds ratio", "cloglog": "hazard ratio"}.get(self.link.name)

    def latent_variance(self, mean=None, dispersion=1.0, approximation="lognormal"):
        """(sigma_d^2, description): the observation-level variance on the latent (link) scale
        of Nakagawa, Johnson & Schielzeth (2017) for R2 and the ICC, given the expected mean
        (``mean``, lambda of count families) and the dispersion; ValueError where undefined."""
        raise ValueError(f"no latent-scale observation variance for family {self.name!r} "
                         f"with link {self.link.name!r}")

    @property
    def needs_latent_mean(self) -> bool:
        """Whether `latent_variance` depends on the expected mean (count families, log link)."""
        return False

    # Bayesian pieces (numpy-free arithmetic: works on JAX arrays) ------------
    def aux_to_parameter(self, a):
        """The family's extra parameter (dispersion phi, or nbinom2's theta) from bglmer's
        auxiliary parameter ``aux_name`` (sigma: phi = sigma^2; Gamma's shape: phi = 1/shape)."""
        return a

    def default_aux_prior(self, s_y: float = 1.0):
        """bglmer's default prior of the auxiliary parameter (None without one)."""
        return None

    def prior_scale(self, y) -> tuple[float, float]:
        """(location, scale) of the response for bglmer's default priors: (0, 1) unless the
        linear predictor is on the response's scale (Gaussian identity: mean and sd of y)."""
        return 0.0, 1.0

    # validation ------------------------------------------------------------
    def validate(self, y, wt=None, response_name: str = "y") -> None:
        """Check a response (and prior weights) for this family.

        Raises ValueError (message names ``response_name``) for invalid data,
        and emits ``warnings.warn`` for suspicious but accepted data.
        """
        y = _f(y)
        if y.ndim != 1:
            y = y.reshape(-1)
        what = f"response {response_name!r} ({self.name} family)"
        kern = compiled.frame_kernels()
        if not (kern.all_finite(y) if kern is not None else np.isfinite(y).all()):
            _raise_rows(what, ~np.isfinite(y), y, "non-finite (NaN/Inf) values")
        if wt is not None:
            w = _f(wt).reshape(-1)
            if w.shape != y.shape:
                raise ValueError(
                    f"weights for {what} have length {w.size}, expected {y.size}"
                )
            if kern is None or not kern.all_finite(w, True):   # finite and >= 0: one pass
                if not np.isfinite(w).all():
                    _raise_rows(f"weights for {what}", ~np.isfinite(w), w,
                                "non-finite (NaN/Inf) values")
                if w.size and w.min() < 0:
                    _raise_rows(f"weights for {what}", w < 0, w, "negative weights")
        else:
            w = np.ones_like(y)
        self._validate(y, w, what)

    def _validate(self, y, w, what) -> None:
        pass


def _rows_msg(mask, values) -> str:
    idx = np.flatnonzero(mask)
    first = int(idx[0])
    return f"{idx.size} row(s); first at row index {first} (0-based), value {_fmt_value(values[first])}"


def _raise_rows(what, mask, values, problem):
    raise ValueError(f"{what} has {problem}: {_rows_msg(mask, values)}")


def _warn_rows(what, mask, values, problem):
    warnings.warn(f"{what} has {problem}: {_rows_msg(mask, values)}", UserWarning, stacklevel=user_stacklevel())


def _check_counts(y, what, family_label):
    neg = y < 0
    if neg.any():
        _raise_rows(what, neg, y, f"negative values (not allowed for the {family_label} family)")
    nonint = y != np.floor(y)
    if nonint.any():
        _warn_rows(what, nonint, y, "non-integer values (treated as continuous counts)")


def _link_for_family(fam_name, allowed, link) -> Link:
    lk = make_link(link)
    if lk.name not in allowed:
        raise ValueError(
            f"link {lk.name!r} is not available for the {fam_name} family; "
            f"allowed links are: {', '.join(repr(a) for a in allowed)}"
        )
    return lk


# ---------------------------------------------------------------------------
class _CountResponse(Family):
    """Families of non-negative counts (Poisson, negative binomial): shared checks and start."""

    _family_label = ""      # how the initialize error names the family
    discrete = True
    response_kind = "count"
    __slots__ = ()

    @property
    def ratio_label(self):
        return "rate ratio" if self.link.name == "log" else super().ratio_label

    @property
    def needs_latent_mean(self) -> bool:
        return self.link.name == "log"

    def _latent_a(self, mean, dispersion):
        """The squared coefficient of variation of the observation level (1/lambda + ...)."""
        return 1.0 / mean

    def latent_variance(self, mean=None, dispersion=1.0, approximation="lognormal"):
        if self.link.name != "log":
            return super().latent_variance(mean, dispersion, approximation)
        return _log_latent(self._latent_a(mean, dispersion), approximation)

    def initialize(self, y, wt=None):
        y = _f(y)
        if (y < 0).any():
            raise ValueError(f"negative values not allowed for {self._family_label}")
        return y + 0.1

    def _validate(self, y, w, what):
        _check_counts(y, what, self.name)


class Poisson(_CountResponse):
    name = "poisson"
    _family_label = "the 'Poisson' family"
    default_link = "log"
    allowed_links = ("log", "identity", "sqrt")
    has_dispersion = False
    canonical_link = "log"
    closed_curvature_links = ("log",)
    kernel_codes = {"log": 0}
    jax_name = "poisson"
    _saturated_code = 0            # the compiled kernels' code of the y-only pieces
    __slots__ = ()

    def curvature(self, mu, y, wt, phi=1.0):
        if not self.closed_curvature:
            return super().curvature(mu, y, wt, phi)
        w = wt * mu / phi                  # canonical: w = V(mu) = mu, dw/deta = w
        return w, w, wt * (y - mu) / phi

    def cumulant(self, eta, mu=None):
        """b(eta) = exp(eta) at the canonical parameter (``mu`` when given: log mu = eta)."""
        return np.exp(eta) if mu is None else mu

    def deviance_constant(self, y, wt, cache=None):
        return _dev_constant(0, y, wt, cache)

    def deviance_sum(self, y, eta, wt, mu=None, cache=None) -> float:
        if not self.canonical:
            return super().deviance_sum(y, eta, wt, mu, cache)
        if mu is None:
            mu = self.link.inverse(eta)
        # log mu = eta: no logarithm needed (mu's floor at eps changes the sum by < n eps)
        with np.errstate(invalid="ignore"):
            return self.deviance_constant(y, wt, cache) + 2.0 * float(
                wt @ mu - _weighted_y(y, wt, cache)[0] @ eta)

    def saturated_m2ll(self, y, wt) -> float:
        return _saturated_m2ll(self, y, wt)

    def simulate(self, mu, wt, phi, rng, shape=None):
        return rng.poisson(np.maximum(mu, 0)).astype(float)

    def cdf(self, q, mu, wt=None, phi=1.0):
        from scipy import stats
        return stats.poisson.cdf(q, mu)

    def variance(self, mu):
        return _f(mu).copy()

    def valid_mu(self, mu) -> bool:
        mu = _f(mu)
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def dev_resids(self, y, mu, wt=None):
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            pos = wt * (y * np.log(y / mu) - (y - mu))
        r = np.where(y > 0, pos, mu * wt)
        return 2.0 * r

    def loglik(self, y, mu, wt=None, dispersion=1.0):
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        ll = sp.xlogy(y, mu) - mu - sp.gammaln(y + 1.0)
        return _times_wt(ll, wt)

    def loglik_eta(self, y, eta, wt=None, dispersion=1.0):
        if self.link.name != "log":
            return super().loglik_eta(y, eta, wt, dispersion)
        y, eta = _f(y), _f(eta)
        with np.errstate(over="ignore", invalid="ignore"):
            ll = np.where(y > 0, y * eta, 0.0) - np.exp(eta) - sp.gammaln(y + 1.0)
        return _times_wt(ll, _wt(wt, y))

    def dev_resids_eta(self, y, eta, wt=None):
        if self.link.name != "log":
            return super().dev_resids_eta(y, eta, wt)
        y, eta = _f(y), _f(eta)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            r = np.where(y > 0, y * (np.log(np.where(y > 0, y, 1.0)) - eta) - y, 0.0) + np.exp(eta)
        return 2.0 * _wt(wt, y) * r

    def eta_moments(self, y, eta, wt, phi=1.0, cache=None):
        if self.link.name != "log":
            return super().eta_moments(y, eta, wt, phi, cache)
        with np.errstate(over="ignore"):
            mu = np.exp(_f(eta))
        w = _f(wt) / phi
        return mu, w * (_f(y) - mu), w * mu

    def observed_curvature(self, y, eta, wt, phi=1.0):
        if self.link.name != "log":
            return super().observed_curvature(y, eta, wt, phi)
        return self.eta_moments(y, eta, wt, phi)[2]



def _stirl_corr(z):
    """lgamma(z) - ((z-0.5)*log(z) - z + log(sqrt(2*pi))) for z >= 15 (R's stirlerr series)."""
    zz = z * z
    return (1 / 12 - (1 / 360 - (1 / 1260 - (1 / 1680 - 1 / (1188 * zz)) / zz) / zz) / zz) / z


def _lgamma_ratio(theta, y):
    """D(theta, y) = lgamma(theta + y) - lgamma(theta) - y*log(theta), accurate for large theta."""
    y = _f(y)
    theta = float(theta)
    if theta >= 15.0:
        return (theta + y - 0.5) * np.log1p(y / theta) - y + _stirl_corr(theta + y) - _stirl_corr(theta)
    return sp.gammaln(theta + y) - sp.gammaln(theta) - y * np.log(theta)


def _times_wt(ll, wt):
    """ll * wt, with rows of zero weight contributing exactly 0."""
    with np.errstate(invalid="ignore"):
        return np.where(wt == 0, 0.0, ll * wt)


def _log_latent(a, approximation):
    """Latent variance of a log link from the observation level's squared CV ``a``."""
    if approximation == "lognormal":
        return math.log1p(a), "lognormal approximation"
    if approximation == "delta":
        return a, "delta approximation"
    return float(sp.polygamma(1, 1.0 / a)), "trigamma approximation"


def _dev_constant(code, y, wt, cache):
    """2 sum w y log y (- y) (Poisson, code 0) or 2 sum w (y log y + (1-y) log(1-y))
    (binomial, code 1), with 0 log 0 = 0: the y-only part of sum(dev_resids), cached."""
    if cache is not None and code in cache.setdefault("dconst", {}):
        return cache["dconst"][code]
    kern = compiled.glmm_kernels()
    if kern is not None:                          # one compiled pass
        out = float(kern.deviance_constant(
            code, np.ascontiguousarray(y, dtype=float), np.ascontiguousarray(wt, dtype=float)))
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
            if code == 0:
                out = float(2.0 * (wt * (a - y)).sum())
            else:
                b = np.where(y < 1, (1 - y) * np.log(np.where(y < 1, 1 - y, 1.0)), 0.0)
                out = float(2.0 * (wt * (a + b)).sum())
    if cache is not None:
        cache["dconst"][code] = out
    return out


def _weighted_y(y, wt, cache):
    """w y and w (1 - y), the weights of the log terms of sum(dev_resids) (cached)."""
    got = None if cache is None else cache.get("wy")
    if got is None:
        got = (wt * y, wt * (1 - y))
        if cache is not None:
            cache["wy"] = got
    return got


def _saturated_m2ll(fam, y, wt) -> float:
    """Poisson / binomial saturated -2 log L: one compiled pass when the kernels cover the link."""
    kern = compiled.glmm_kernels()
    if kern is not None and fam.kernel_code is not None:
        return float(kern.saturated_m2ll(fam._saturated_code, np.ascontiguousarray(y, dtype=float),
                                         np.ascontiguousarray(wt, dtype=float)))
    return float(-2.0 * fam.loglik(y, y, wt).sum())


class Binomial(Family):
    name = "binomial"
    default_link = "logit"
    allowed_links = ("logit", "probit", "cauchit", "log", "cloglog")
    has_dispersion = False
    canonical_link = "logit"
    discrete = True
    response_kind = "proportion"
    closed_curvature_links = ("logit",)
    kernel_codes = {"logit": 1}
    jax_name = "binomial"
    _saturated_code = 1
    #: the logistic, normal and Gumbel latent variances of the binomial links (Nakagawa 2017)
    _LATENT = {"logit": (math.pi ** 2 / 3, "pi^2/3"), "probit": (1.0, "1"),
               "cloglog": (math.pi ** 2 / 6, "pi^2/6")}
    __slots__ = ()

    def curvature(self, mu, y, wt, phi=1.0):
        if not self.closed_curvature:
            return super().curvature(mu, y, wt, phi)
        v = mu * (1.0 - mu)                # canonical: w = V(mu), dw/deta = w (1 - 2 mu)
        w = wt * v / phi
        return w, w * (1.0 - 2.0 * mu), wt * (y - mu) / phi

    def cumulant(self, eta, mu=None):
        """b(eta) = log(1 + e^eta) at the canonical parameter, exact for every eta, as
        max(eta, 0) + log(1 + e^-|eta|) (np.logaddexp is 10x slower)."""
        t = np.abs(eta)
        np.negative(t, out=t)
        np.exp(t, out=t)
        np.log1p(t, out=t)
        t += np.maximum(eta, 0.0)
        return t

    def deviance_constant(self, y, wt, cache=None):
        return _dev_constant(1, y, wt, cache)

    def deviance_sum(self, y, eta, wt, mu=None, cache=None) -> float:
        dconst = self.deviance_constant(y, wt, cache)
        wy, w1y = _weighted_y(y, wt, cache)
        if self.canonical:
            # y log mu + (1 - y) log(1 - mu) = y eta - log(1 + e^eta)
            return dconst + 2.0 * float(wt @ self.cumulant(eta) - wy @ eta)
        lp, lq = self.link.bernoulli_logs(eta, order=0)
        if cache is not None:
            cache["logs"] = (eta, lp, lq)      # the moments at this eta reuse them (PIRLS)
        with np.errstate(invalid="ignore"):
            s = float(wy @ lp + w1y @ lq)
            if np.isnan(s):          # 0 * -inf where a row's weight of that outcome is 0
                s = float(wy[wy != 0] @ lp[wy != 0] + w1y[w1y != 0] @ lq[w1y != 0])
        return dconst - 2.0 * s

    def saturated_m2ll(self, y, wt) -> float:
        return _saturated_m2ll(self, y, wt)

    def simulate(self, mu, wt, phi, rng, shape=None):
        n = np.round(wt).astype(np.int64) * np.ones_like(mu, dtype=np.int64)
        s = rng.binomial(np.maximum(n, 0), np.clip(mu, 0.0, 1.0))
        return np.where(n > 0, s / np.maximum(n, 1), 0.0)

    def response_counts(self, y, wt):
        k = y * wt[:, None] if y.ndim == 2 else y * wt
        kr = np.round(k)
        if np.all(np.abs(k - kr) < 1e-6) and np.all(np.abs(wt - np.round(wt)) < 1e-6):
            return kr
        return y

    def cdf(self, q, mu, wt=None, phi=1.0):
        from scipy import stats
        q = _f(q)
        n = np.round(_wt(wt, q))
        return stats.binom.cdf(np.round(q * n), n, mu)

    def latent_variance(self, mean=None, dispersion=1.0, approximation="lognormal"):
        got = self._LATENT.get(self.link.name)
        if got is None:
            return super().latent_variance(mean, dispersion, approximation)
        return got[0], got[1]

    def variance(self, mu):
        mu = _f(mu)
        return mu * (1.0 - mu)

    def valid_mu(self, mu) -> bool:
        mu = _f(mu)
        return bool(np.all(np.isfinite(mu)) and np.all((mu > 0) & (mu < 1)))

    def dev_resids(self, y, mu, wt=None):
        # R's C binomial_dev_resids: 2 * wt * (y_log_y(y, mu) + y_log_y(1 - y, 1 - mu))
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(y != 0, y * np.log(y / mu), 0.0)
            omy = 1.0 - y
            b = np.where(omy != 0, omy * np.log(omy / (1.0 - mu)), 0.0)
        return 2.0 * wt * (a + b)

    def loglik(self, y, mu, wt=None, dispersion=1.0, *, noninteger: str = "continuous"):
        """Per-row binomial log-likelihood; ``y`` proportions, ``wt`` trials.

        ``noninteger``: "continuous" (default; lgamma-based, = glmmTMB) or
        "round" (R's ``binomial()$aic`` / lme4: ``dbinom(round(wt*y), round(wt))``).
        Both agree whenever ``wt*y`` and ``wt`` are whole numbers.
        """
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        k, n = self._counts(y, wt, noninteger)
        with np.errstate(divide="ignore", invalid="ignore"):
            lchoose = sp.gammaln(n + 1.0) - sp.gammaln(k + 1.0) - sp.gammaln(n - k + 1.0)
            ll = lchoose + sp.xlogy(k, mu) + sp.xlog1py(n - k, -mu)
        return np.where(wt > 0, ll, 0.0)

    def loglik_eta(self, y, eta, wt=None, dispersion=1.0, *, noninteger: str = "continuous"):
        """`loglik` with log mu and log(1 - mu) computed from eta by the link (no clamps)."""
        y = _f(y)
        wt = _wt(wt, y)
        k, n = self._counts(y, wt, noninteger)
        lp, lq = self.link.bernoulli_logs(eta, order=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            lchoose = sp.gammaln(n + 1.0) - sp.gammaln(k + 1.0) - sp.gammaln(n - k + 1.0)
            ll = lchoose + np.where(k > 0, k * lp, 0.0) + np.where(n - k > 0, (n - k) * lq, 0.0)
        return np.where(wt > 0, ll, 0.0)

    def dev_resids_eta(self, y, eta, wt=None):
        y = _f(y)
        wt = _wt(wt, y)
        lp, lq = self.link.bernoulli_logs(eta, order=0)
        omy = 1.0 - y
        with np.errstate(divide="ignore", invalid="ignore"):
            a = np.where(y != 0, y * (np.log(np.where(y != 0, y, 1.0)) - lp), 0.0)
            b = np.where(omy != 0, omy * (np.log(np.where(omy != 0, omy, 1.0)) - lq), 0.0)
        return 2.0 * wt * (a + b)

    def eta_moments(self, y, eta, wt, phi=1.0, cache=None):
        # score = wt (y dlog mu + (1 - y) dlog(1 - mu)); Fisher weight mu'^2 / (mu (1 - mu))
        # = (dlog mu)(-dlog(1 - mu)): both stay finite where mu rounds to 0 or 1
        y = _f(y)
        known = cache.get("logs") if cache is not None else None
        logs = known[1:] if known is not None and known[0] is eta else None
        lp, lq, dp, dq = self.link.bernoulli_logs(eta, order=1, logs=logs)
        w = _f(wt) / phi
        # the weights are floored at eps (as R's clamps floor them): they only set the Newton
        # metric, and separated rows must not make the penalized system singular; fmax also
        # maps 0 * inf (cloglog where 1 - mu underflows) to the floor
        with np.errstate(invalid="ignore"):      # dq = -inf where 1 - mu underflows (cloglog)
            score = w * (y * dp + np.where(y < 1.0, (1.0 - y) * dq, 0.0))
            return np.exp(lp), score, w * np.fmax(-dp * dq, _EPS)

    def observed_curvature(self, y, eta, wt, phi=1.0):
        y = _f(y)
        d2p, d2q = self.link.bernoulli_logs(eta, order=2)[4:]
        w = _f(wt) / phi
        return -w * (np.where(y > 0, y * d2p, 0.0) + np.where(y < 1, (1.0 - y) * d2q, 0.0))

    @staticmethod
    def _counts(y, wt, noninteger):
        """(successes, trials) from proportions and weights, as `loglik` forms them."""
        k = wt * y
        n = wt
        if noninteger == "round":
            k = np.round(k)
            n = np.round(n)
        elif noninteger != "continuous":
            raise ValueError("noninteger must be 'continuous' or 'round'")
        # snap near-integers (floating error in wt*y) so integer cases are exact
        kr = np.round(k)
        return np.where(np.abs(k - kr) < 1e-8 * np.maximum(1.0, np.abs(k)), kr, k), n

    def initialize(self, y, wt=None):
        y = _f(y)
        wt = _wt(wt, y)
        y = np.where(wt == 0, 0.0, y)
        return (wt * y + 0.5) / (wt + 1.0)

    def _validate(self, y, w, what):
        kern = compiled.frame_kernels()
        if kern is not None and y.flags.c_contiguous and w.flags.c_contiguous:
            bad, nonint = kern.binomial_counts(y, w, _BINOM_INT_TOL)   # both checks in one pass
            if not bad and not nonint:
                return
        out = (y < 0) | (y > 1)
        if out.any():
            _raise_rows(
                what, out, y,
                "values outside [0, 1] (binomial responses must be 0/1, proportions "
                "with trials as weights, or given as cbind(successes, failures))",
            )
        m = w * y
        nonint = np.abs(m - np.round(m)) > _BINOM_INT_TOL
        if nonint.any():
            _warn_rows(
                what, nonint, m,
                "non-integer #successes (weights * y) in a binomial model",
            )


class _DispersionFamily(Family):
    """Families with a dispersion phi (Var = phi V(mu)), estimated on the log scale."""

    has_dispersion = True
    extra_parameter = "dispersion"
    __slots__ = ()

    def with_extra(self, value):
        return self, value

    def extra_start(self, y, mu, wt, df_resid: int):
        # the Pearson estimate of phi from the GLM fit
        pear = float((wt * (y - mu) ** 2 / self.variance(mu)).sum())
        return np.log(max(pear / max(df_resid, 1), 1e-8))


class Gaussian(_DispersionFamily):
    name = "gaussian"
    default_link = "identity"
    allowed_links = ("identity", "log", "inverse")
    canonical_link = "identity"
    closed_curvature_links = ("identity",)
    jax_name = "gaussian"
    aux_name = "sigma"
    __slots__ = ()

    @property
    def is_linear_model(self) -> bool:
        return self.link.name == "identity"

    def curvature(self, mu, y, wt, phi=1.0):
        if not self.closed_curvature:
            return super().curvature(mu, y, wt, phi)
        return wt / phi, np.zeros_like(mu), wt * (y - mu) / phi

    def simulate(self, mu, wt, phi, rng, shape=None):
        # variance phi / wt (lme4's weighted convention); rows of weight 0 draw with weight 1
        return mu + rng.normal(size=np.shape(mu)) * np.sqrt(phi) / np.sqrt(np.where(wt > 0, wt, 1.0))

    def cdf(self, q, mu, wt=None, phi=1.0):
        from scipy import stats
        return stats.norm.cdf(q, mu, np.sqrt(phi / _wt(wt, q)))

    def latent_variance(self, mean=None, dispersion=1.0, approximation="lognormal"):
        if self.link.name != "identity":
            return super().latent_variance(mean, dispersion, approximation)
        return float(dispersion), "residual variance"

    def aux_to_parameter(self, a):
        return a * a                       # phi = sigma^2

    def default_aux_prior(self, s_y: float = 1.0):
        return ("exponential", 1.0 / s_y)

    def prior_scale(self, y):
        if self.link.name != "identity":
            return super().prior_scale(y)
        s_y = float(np.std(y, ddof=1)) if y.size > 1 else 1.0
        if not np.isfinite(s_y) or s_y <= 0:
            s_y = 1.0
        return float(np.mean(y)), s_y

    def variance(self, mu):
        return np.ones_like(_f(mu))

    def dev_resids(self, y, mu, wt=None):
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        r = y - mu
        return wt * (r * r)

    def loglik(self, y, mu, wt=None, dispersion=1.0):
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        phi = _f(dispersion)
        r = y - mu
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = -0.5 * (_LOG_2PI + np.log(phi) - np.log(wt) + wt * r * r / phi)
        return np.where(wt == 0, 0.0, ll)

    def initialize(self, y, wt=None):
        y = _f(y)
        if self.link.name == "inverse" and np.any(y == 0):
            raise ValueError("cannot find valid starting values: please specify some")
        if self.link.name == "log" and np.any(y <= 0):
            raise ValueError("cannot find valid starting values: please specify some")
        return y.copy()


class _PositiveResponse(_DispersionFamily):
    """Families of strictly positive responses (Gamma, inverse Gaussian): shared checks."""

    __slots__ = ()

    def initialize(self, y, wt=None):
        y = _f(y)
        if np.any(y <= 0):
            raise ValueError(f"non-positive values not allowed for the '{self.name}' family")
        return y.copy()

    def _validate(self, y, w, what):
        bad = y <= 0
        if bad.any():
            _raise_rows(what, bad, y, f"non-positive values ({self.name} responses must be > 0)")


class Gamma(_PositiveResponse):
    name = "Gamma"
    default_link = "inverse"
    allowed_links = ("inverse", "identity", "log")
    canonical_link = "inverse"
    closed_curvature_links = ("log",)
    kernel_codes = {"log": 3}
    jax_name = "Gamma"
    aux_name = "shape"
    __slots__ = ()

    def curvature(self, mu, y, wt, phi=1.0):
        if not self.closed_curvature:
            return super().curvature(mu, y, wt, phi)
        # log link, shape 1/phi: score = (y/mu - 1)/phi, w = y/(mu phi), dw/deta = -w
        w = wt * y / (mu * phi)
        return w, -w, wt * (y / mu - 1.0) / phi

    def simulate(self, mu, wt, phi, rng, shape=None):
        return rng.gamma(1.0 / phi, mu * phi)

    def cdf(self, q, mu, wt=None, phi=1.0):
        from scipy import stats
        return stats.gamma.cdf(q, 1.0 / phi, scale=mu * phi)

    def latent_variance(self, mean=None, dispersion=1.0, approximation="lognormal"):
        if self.link.name != "log":
            return super().latent_variance(mean, dispersion, approximation)
        # the squared CV phi = 1/shape plays the role of 1/lambda
        return _log_latent(float(dispersion), approximation)

    def aux_to_parameter(self, a):
        return 1.0 / a                     # phi = 1 / shape

    def default_aux_prior(self, s_y: float = 1.0):
        return ("exponential", 1.0)

    def variance(self, mu):
        mu = _f(mu)
        return mu * mu

    def valid_mu(self, mu) -> bool:
        mu = _f(mu)
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def dev_resids(self, y, mu, wt=None):
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(y == 0, 1.0, y / mu)
            return -2.0 * wt * (np.log(ratio) - (y - mu) / mu)

    def loglik(self, y, mu, wt=None, dispersion=1.0):
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        phi = _f(dispersion)
        shape = 1.0 / phi
        scale = mu * phi
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = sp.xlogy(shape - 1.0, y) - y / scale - sp.gammaln(shape) - shape * np.log(scale)
        return _times_wt(ll, wt)

    def loglik_eta(self, y, eta, wt=None, dispersion=1.0):
        if self.link.name != "log":
            return super().loglik_eta(y, eta, wt, dispersion)
        y, eta = _f(y), _f(eta)
        phi = _f(dispersion)
        shape = 1.0 / phi
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ll = (sp.xlogy(shape - 1.0, y) - y * np.exp(-eta) / phi - sp.gammaln(shape)
                  - shape * (eta + np.log(phi)))
        return _times_wt(ll, _wt(wt, y))

    def dev_resids_eta(self, y, eta, wt=None):
        if self.link.name != "log":
            return super().dev_resids_eta(y, eta, wt)
        y, eta = _f(y), _f(eta)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return -2.0 * _wt(wt, y) * (np.log(y) - eta - (y * np.exp(-eta) - 1.0))



class InverseGaussian(_PositiveResponse):
    name = "inverse.gaussian"
    default_link = "1/mu^2"
    allowed_links = ("1/mu^2", "inverse", "identity", "log")
    canonical_link = "1/mu^2"
    jax_name = "inverse.gaussian"
    aux_name = "sigma"
    __slots__ = ()

    def simulate(self, mu, wt, phi, rng, shape=None):
        return rng.wald(mu, 1.0 / phi)

    def cdf(self, q, mu, wt=None, phi=1.0):
        from scipy import stats
        # IG(mean mu, shape lambda = 1/phi) is scipy's invgauss(mu phi) with scale 1/phi
        return stats.invgauss.cdf(q, mu * phi, scale=1.0 / phi)

    def aux_to_parameter(self, a):
        return a * a                       # phi = sigma^2

    def default_aux_prior(self, s_y: float = 1.0):
        return ("exponential", 1.0)

    def variance(self, mu):
        mu = _f(mu)
        return mu * mu * mu

    def dev_resids(self, y, mu, wt=None):
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        r = y - mu
        with np.errstate(divide="ignore", invalid="ignore"):
            return wt * (r * r / (y * mu * mu))

    def loglik(self, y, mu, wt=None, dispersion=1.0):
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        phi = _f(dispersion)
        r = y - mu
        with np.errstate(divide="ignore", invalid="ignore"):
            ll = -0.5 * (_LOG_2PI + np.log(phi) + 3.0 * np.log(y)) - r * r / (2.0 * phi * mu * mu * y)
        return _times_wt(ll, wt)



class NegativeBinomial2(_CountResponse):
    """NB2 (glmmTMB ``nbinom2``, MASS/lme4 ``negative.binomial``): Var = mu + mu^2/theta.

    The shape ``theta`` lives on the (immutable) instance; use
    :meth:`with_shape` to obtain a family with a given theta.  ``theta=inf``
    gives the Poisson limit.
    """

    name = "nbinom2"
    _family_label = "the negative binomial family"
    default_link = "log"
    allowed_links = ("log", "identity", "sqrt")
    has_dispersion = False
    extra_parameter = "shape"
    closed_curvature_links = ("log",)
    kernel_codes = {"log": 2}
    jax_name = "nbinom2"
    aux_name = "shape"
    __slots__ = ()

    def with_extra(self, value):
        return self.with_shape(value), 1.0

    @property
    def start_family(self):
        return Poisson(self.link)

    def extra_start(self, y, mu, wt, df_resid: int):
        # moment estimate of theta from the Poisson GLM fit: Var = m + m^2/theta
        m, v = float(np.mean(mu)), float(np.mean((y - mu) ** 2))
        shape0 = m * m / (v - m) if v > m * 1.05 else 10.0
        return np.log(np.clip(shape0, 0.05, 1e3))

    def curvature(self, mu, y, wt, phi=1.0):
        if not self.closed_curvature:
            return super().curvature(mu, y, wt, phi)
        # log link, shape k: score = y - (y + k) mu/(mu + k), w = (y + k) mu k/(mu + k)^2,
        # dw/deta = (y + k) k mu (k - mu)/(mu + k)^3
        k = self.shape
        mk = mu + k
        s = wt * (y - (y + k) * mu / mk)
        w = wt * (y + k) * mu * k / (mk * mk)
        wp = wt * (y + k) * k * mu * (k - mu) / (mk * mk * mk)
        return w, wp, s

    def simulate(self, mu, wt, phi, rng, shape=None):
        k = self._theta() if shape is None else shape
        return rng.negative_binomial(k, k / (k + mu)).astype(float)

    def cdf(self, q, mu, wt=None, phi=1.0):
        from scipy import stats
        k = self._theta()
        return stats.nbinom.cdf(q, k, k / (k + _f(mu)))

    def _latent_a(self, mean, dispersion):
        return 1.0 / mean + 1.0 / self._theta()

    def default_aux_prior(self, s_y: float = 1.0):
        return ("gamma", 0.01, 0.01)

    def __init__(self, link=None, shape=None):
        super().__init__(link)
        if shape is not None:
            shape = float(shape)
            if not (shape > 0):  # also rejects NaN
                raise ValueError(f"nbinom2 shape (theta) must be > 0, got {shape!r}")
            object.__setattr__(self, "shape", shape)

    def with_shape(self, theta) -> "NegativeBinomial2":
        return NegativeBinomial2(self.link, theta)

    def _theta(self):
        if self.shape is None:
            raise ValueError(
                "nbinom2 shape (theta) is not set; use family.with_shape(theta)"
            )
        return self.shape

    def __repr__(self) -> str:
        if self.shape is None:
            return f"Family({self.name}, link={self.link.name})"
        return f"Family({self.name}, link={self.link.name}, shape={self.shape:.6g})"

    def describe(self) -> tuple[str, str]:
        if self.shape is None:
            return ("Negative Binomial", self.link.name)
        # MASS::negative.binomial: paste0("Negative Binomial(", format(round(theta, 4)), ")")
        return (f"Negative Binomial({_r_format(round(self.shape, 4))})", self.link.name)

    def variance(self, mu):
        mu = _f(mu)
        theta = self._theta()
        return mu + mu * mu / theta

    def valid_mu(self, mu) -> bool:
        mu = _f(mu)
        return bool(np.all(np.isfinite(mu)) and np.all(mu > 0))

    def dev_resids(self, y, mu, wt=None):
        theta = self._theta()
        if np.isinf(theta):
            return Poisson(self.link).dev_resids(y, mu, wt)
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            return 2.0 * wt * (
                y * np.log(np.maximum(1.0, y) / mu)
                - (y + theta) * np.log((y + theta) / (mu + theta))
            )

    def loglik(self, y, mu, wt=None, dispersion=1.0):
        theta = self._theta()
        if np.isinf(theta):
            return Poisson(self.link).loglik(y, mu, wt)
        y, mu = _f(y), _f(mu)
        wt = _wt(wt, y)
        with np.errstate(divide="ignore", invalid="ignore"):
            # dnbinom(y, size=theta, mu) =
            #   D(theta, y) - lgamma(y+1) + y*log(mu/(1+mu/theta)) - theta*log1p(mu/theta)
            # with D = lgamma(theta+y) - lgamma(theta) - y*log(theta) (no cancellation for
            # large theta; cf. the "x < 1e-10*size" branch of R's dnbinom_mu).
            ll = (
                _lgamma_ratio(theta, y)
                - sp.gammaln(y + 1.0)
                + sp.xlogy(y, mu / (1.0 + mu / theta))
                - theta * np.log1p(mu / theta)
            )
        return _times_wt(ll, wt)

    def loglik_eta(self, y, eta, wt=None, dispersion=1.0):
        theta = self._theta()
        if self.link.name != "log" or np.isinf(theta):
            return super().loglik_eta(y, eta, wt, dispersion)
        y, eta = _f(y), _f(eta)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            l1 = np.log1p(np.exp(eta) / theta)           # log(1 + mu / theta)
            ll = (_lgamma_ratio(theta, y) - sp.gammaln(y + 1.0)
                  + np.where(y > 0, y * (eta - l1), 0.0) - theta * l1)
        return _times_wt(ll, _wt(wt, y))

    def dev_resids_eta(self, y, eta, wt=None):
        theta = self._theta()
        if self.link.name != "log" or np.isinf(theta):
            return super().dev_resids_eta(y, eta, wt)
        y, eta = _f(y), _f(eta)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            mu = np.exp(eta)
            return 2.0 * _wt(wt, y) * (
                np.where(y > 0, y * (np.log(np.maximum(1.0, y)) - eta), 0.0)
                - (y + theta) * np.log((y + theta) / (mu + theta)))



# ---------------------------------------------------------------------------
FAMILIES: dict[str, type[Family]] = {
    "poisson": Poisson,
    "binomial": Binomial,
    "gaussian": Gaussian,
    "Gamma": Gamma,
    "inverse.gaussian": InverseGaussian,
    "nbinom2": NegativeBinomial2,
}

ALLOWED_LINKS: dict[str, tuple[str, ...]] = {k: v.allowed_links for k, v in FAMILIES.items()}

_FAMILY_ALIASES = {
    "poisson": "poisson",
    "binomial": "binomial",
    "gaussian": "gaussian",
    "normal": "gaussian",
    "gamma": "Gamma",
    "inverse.gaussian": "inverse.gaussian",
    "inverse_gaussian": "inverse.gaussian",
    "inversegaussian": "inverse.gaussian",
    "nbinom2": "nbinom2",
    "negative.binomial": "nbinom2",
    "negative_binomial": "nbinom2",
    "negativebinomial": "nbinom2",
    "negbin": "nbinom2",
    "nb2": "nbinom2",
}

_CALL_RE = re.compile(r"^\s*([A-Za-z_.][A-Za-z0-9_.]*)\s*(?:\((.*)\))?\s*$", re.S)


def _unquote(s: str) -> str:
    s = s.strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    return s


def _parse_family_string(spec: str):
    m = _CALL_RE.match(spec)
    if not m:
        raise ValueError(f"cannot parse family specification {spec!r}")
    fname, argstr = m.group(1), m.group(2)
    args, kwargs = [], {}
    if argstr is not None and argstr.strip():
        for part in argstr.split(","):
            part = part.strip()
            if not part:
                raise ValueError(f"cannot parse family specification {spec!r}")
            if "=" in part and not part.startswith(("'", '"')):
                k, v = part.split("=", 1)
                kwargs[k.strip()] = _unquote(v)
            else:
                args.append(_unquote(part))
    return fname, args, kwargs


def _resolve_family_name(name: str) -> str:
    key = _FAMILY_ALIASES.get(name, _FAMILY_ALIASES.get(name.lower()))
    if key is None:
        close = difflib.get_close_matches(name.lower(), list(_FAMILY_ALIASES), n=1, cutoff=0.6)
        raise ValueError(
            f"unknown family {name!r}"
            + (f" (did you mean {_FAMILY_ALIASES[close[0]]!r}?)" if close else "")
            + "; valid families are: "
            + ", ".join(repr(k) for k in FAMILIES)
            + " (aliases: 'gamma', 'inverse_gaussian', 'negative.binomial', 'negbin')"
        )
    return key


def make_family(family: "str | Family", link: "str | Link | None" = None, *, shape=None) -> Family:
    """Build a :class:`Family`.

    ``family``: a Family instance, a name ("poisson", "binomial", "gaussian",
    "Gamma"/"gamma", "inverse.gaussian"/"inverse_gaussian",
    "nbinom2"/"negative.binomial"/"negbin"), or an R-style call string such as
    ``"binomial(link='probit')"``, ``'poisson(link = "sqrt")'``,
    ``"binomial(probit)"`` or ``"negative.binomial(theta = 2.5)"``.
    ``link`` overrides the link; ``shape`` sets nbinom2's theta.
    """
    if isinstance(family, Family):
        if link is None and shape is None:
            return family
        cls = type(family)
        lk = family.link if link is None else link
        if cls is NegativeBinomial2:
            return NegativeBinomial2(lk, family.shape if shape is None else shape)
        if shape is not None:
            raise ValueError(f"shape is only used by the nbinom2 family, not {family.name}")
        return cls(lk)
    if isinstance(family, type) and issubclass(family, Family):
        family = family.name
    if not isinstance(family, str):
        raise TypeError(f"family must be a string or Family, not {type(family).__name__}")
    if link is None and shape is None:
        # families are immutable: one object per specification string (every fit asks)
        fam = _BY_STRING.get(family)
        if fam is None:
            fam = _family_from_string(family, None, None)
            if len(_BY_STRING) < 64:          # bounded: strings such as theta = x may vary
                _BY_STRING[family] = fam
        return fam
    return _family_from_string(family, link, shape)


_BY_STRING: dict[str, Family] = {}


def _family_from_string(family: str, link, shape) -> Family:
    """`make_family` for a specification string."""

    fname, args, kwargs = _parse_family_string(family)
    key = _resolve_family_name(fname)
    cls = FAMILIES[key]
    str_link = kwargs.pop("link", None)
    str_shape = None
    for k in ("theta", "shape", "size"):
        if k in kwargs:
            str_shape = kwargs.pop(k)
    if key == "nbinom2":
        # MASS::negative.binomial(theta, link = "log"): first positional is theta
        pos = list(args)
        if pos:
            try:
                float(pos[0])
                str_shape = pos.pop(0) if str_shape is None else str_shape
            except ValueError:
                pass
        if pos and str_link is None:
            str_link = pos.pop(0)
        args = pos
    elif args and str_link is None:
        str_link = args.pop(0)
    if args or kwargs:
        raise ValueError(
            f"unexpected arguments in family specification {family!r}: "
            + ", ".join([*args, *kwargs])
        )
    if key != "nbinom2" and (str_shape is not None or shape is not None):
        raise ValueError(f"the {key} family has no shape parameter")

    lk = link if link is not None else str_link
    if key == "nbinom2":
        th = shape if shape is not None else str_shape
        if isinstance(th, str):
            try:
                th = float(th)
            except ValueError:
                raise ValueError(f"invalid theta {th!r} in {family!r}") from None
        return NegativeBinomial2(lk, th)
    return cls(lk)


def _rebuild_family(name: str, link: str, shape):
    fam = make_family(name, link)
    return fam.with_shape(shape) if shape is not None else fam
