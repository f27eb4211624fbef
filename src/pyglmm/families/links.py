"""Link functions reproducing R's ``stats::make.link`` (and the C code behind
``binomial()``'s logit link) including all of R's numerical safety clamps.

Every method is vectorised: it accepts scalars or array-likes and returns
float64 numpy arrays (numpy scalars for scalar input).
"""

from __future__ import annotations

import numpy as np
from scipy import special as sp

__all__ = [
    "Link",
    "LogitLink",
    "ProbitLink",
    "CauchitLink",
    "CloglogLink",
    "IdentityLink",
    "LogLink",
    "SqrtLink",
    "InverseLink",
    "InverseSquaredLink",
    "LINKS",
    "LINK_ALIASES",
    "make_link",
    "DBL_EPSILON",
    "log1mexp",
]

#: R's ``.Machine$double.eps``
DBL_EPSILON = float(np.finfo(np.float64).eps)

# Constants of R's src/library/stats/src/family.c
_THRESH = 30.0
_MTHRESH = -30.0
_INVEPS = 1.0 / DBL_EPSILON


def _f(x):
    return np.asarray(x, dtype=np.float64)


_LN2 = float(np.log(2.0))


def log1mexp(a):
    """log(1 - exp(-a)) for a >= 0, accurate for small and large a (Maechler 2012)."""
    a = _f(a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.where(a <= _LN2, np.log(-np.expm1(-a)), np.log1p(-np.exp(-a)))


class Link:
    """Base class of link functions.  Subclasses set ``name`` (R's link name)."""

    name: str = ""

    def link(self, mu):  # eta = g(mu)   (R: linkfun)
        raise NotImplementedError

    def inverse(self, eta):  # mu = g^{-1}(eta)   (R: linkinv)
        raise NotImplementedError

    def mu_eta(self, eta):  # dmu/deta   (R: mu.eta)
        raise NotImplementedError

    def valid_eta(self, eta) -> bool:  # R: valideta
        return True

    # Exact forms, without R's clamps: R bounds mu away from 0 and 1 (and dmu/deta away from 0)
    # so that glm.fit's IRLS never divides by zero, but a likelihood computed from a clamped mu
    # caps what a badly fitted row can cost (log(eps) = -36 instead of -exp(eta)), and an
    # optimiser exploits the cap. The likelihood, its score and its curvature are therefore
    # computed from eta through these methods.
    def inverse_exact(self, eta):
        """mu = g^{-1}(eta) without clamps."""
        return self.inverse(eta)

    def mu_eta_exact(self, eta):
        """dmu/deta without clamps."""
        return self.mu_eta(eta)

    def bernoulli_logs(self, eta, order: int = 1, logs=None):
        """For links onto (0, 1): (log mu, log(1 - mu)) and, up to ``order`` (0, 1 or 2), their
        first and second derivatives in eta, each computed stably from eta. ``logs``: the first
        two at this eta when the caller has them (links with costly logs reuse them)."""
        raise NotImplementedError(f"the {self.name} link does not map onto (0, 1)")

    # R-style aliases
    def linkfun(self, mu):
        return self.link(mu)

    def linkinv(self, eta):
        return self.inverse(eta)

    def __repr__(self) -> str:
        return f"Link({self.name})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Link) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("Link", self.name))


class LogitLink(Link):
    """logit; inverse and mu.eta exactly as R's C ``logit_linkinv``/``logit_mu_eta``."""

    name = "logit"

    def link(self, mu):
        mu = _f(mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(mu / (1.0 - mu))

    def inverse(self, eta):
        eta = _f(eta)
        # exp(eta) clamped as R does, computed in place (this runs in every PIRLS step)
        if eta.ndim == 0:
            return self.inverse(eta.reshape(1))[0]
        tmp = np.clip(eta, _MTHRESH, _THRESH)
        np.exp(tmp, out=tmp)
        lo = eta < _MTHRESH
        if lo.any():
            tmp[lo] = DBL_EPSILON
        hi = eta > _THRESH
        if hi.any():
            tmp[hi] = _INVEPS
        den = tmp + 1.0
        tmp /= den
        return tmp

    def mu_eta(self, eta):
        eta = _f(eta)
        e = np.exp(np.clip(eta, _MTHRESH, _THRESH))
        opexp = 1.0 + e
        out = e / (opexp * opexp)
        return np.where((eta > _THRESH) | (eta < _MTHRESH), DBL_EPSILON, out)

    def inverse_exact(self, eta):
        return sp.expit(_f(eta))

    def mu_eta_exact(self, eta):
        mu = sp.expit(_f(eta))
        return mu * sp.expit(-_f(eta))

    def bernoulli_logs(self, eta, order: int = 1, logs=None):
        eta = _f(eta)
        lp, lq = sp.log_expit(eta), sp.log_expit(-eta)
        if order == 0:
            return lp, lq
        mu, omu = np.exp(lp), np.exp(lq)
        out = (lp, lq, omu, -mu)
        if order > 1:
            v = -mu * omu
            out += (v, v)
        return out


#: -qnorm(.Machine$double.eps)
_PROBIT_THRESH = 8.125890664701906  # R: -qnorm(.Machine$double.eps); scipy ndtri differs by 1 ulp
_SQRT_2PI = np.sqrt(2.0 * np.pi)
_HALF_LOG_2PI = 0.5 * float(np.log(2.0 * np.pi))


class ProbitLink(Link):
    name = "probit"

    def link(self, mu):
        return sp.ndtri(_f(mu))

    def inverse(self, eta):
        eta = np.clip(_f(eta), -_PROBIT_THRESH, _PROBIT_THRESH)
        return sp.ndtr(eta)

    def mu_eta(self, eta):
        eta = _f(eta)
        return np.maximum(np.exp(-0.5 * eta * eta) / _SQRT_2PI, DBL_EPSILON)

    def inverse_exact(self, eta):
        return sp.ndtr(_f(eta))

    def mu_eta_exact(self, eta):
        eta = _f(eta)
        return np.exp(-0.5 * eta * eta) / _SQRT_2PI

    def bernoulli_logs(self, eta, order: int = 1, logs=None):
        eta = _f(eta)
        lp, lq = (sp.log_ndtr(eta), sp.log_ndtr(-eta)) if logs is None else logs
        if order == 0:
            return lp, lq
        logphi = -0.5 * eta * eta - _HALF_LOG_2PI
        r = np.exp(logphi - lp)          # phi / Phi(eta): inverse Mills ratio
        m = np.exp(logphi - lq)          # phi / Phi(-eta)
        out = (lp, lq, r, -m)
        if order > 1:
            out += (-r * (eta + r), -m * (m - eta))
        return out


def _qcauchy(p):
    """R's qcauchy(p) (location 0, scale 1), via 1/tan as in R's nmath."""
    p = _f(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = -1.0 / np.tan(np.pi * p)  # p < 0.5
        hi = 1.0 / np.tan(np.pi * (1.0 - p))  # p > 0.5
        out = np.where(p > 0.5, hi, lo)
        out = np.where(p == 0.5, 0.0, out)
        out = np.where(p == 0.0, -np.inf, out)
        out = np.where(p == 1.0, np.inf, out)
        out = np.where((p < 0) | (p > 1) | np.isnan(p), np.nan, out)
    return out


def _pcauchy(x):
    """R's pcauchy(x) (lower tail), accurate in both tails."""
    x = _f(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        big = np.abs(x) > 1.0
        y = np.arctan(1.0 / x) / np.pi
        tail = np.where(x > 0, 1.0 - y, -y)
        return np.where(big, tail, 0.5 + np.arctan(x) / np.pi)


#: -qcauchy(.Machine$double.eps)
_CAUCHIT_THRESH = float(-_qcauchy(DBL_EPSILON))


class CauchitLink(Link):
    name = "cauchit"

    def link(self, mu):
        return _qcauchy(mu)

    def inverse(self, eta):
        eta = np.clip(_f(eta), -_CAUCHIT_THRESH, _CAUCHIT_THRESH)
        return _pcauchy(eta)

    def mu_eta(self, eta):
        eta = _f(eta)
        return np.maximum(1.0 / (np.pi * (1.0 + eta * eta)), DBL_EPSILON)

    def inverse_exact(self, eta):
        return _pcauchy(eta)

    def mu_eta_exact(self, eta):
        eta = _f(eta)
        return 1.0 / (np.pi * (1.0 + eta * eta))

    def bernoulli_logs(self, eta, order: int = 1, logs=None):
        eta = _f(eta)
        P, Q = _pcauchy(eta), _pcauchy(-eta)        # both tails accurate
        with np.errstate(divide="ignore"):      # log of the small tail, log1p of minus it
            lp = np.where(eta > 0, np.log1p(-Q), np.log(P))
            lq = np.where(eta < 0, np.log1p(-P), np.log(Q))
        if order == 0:
            return lp, lq
        f = 1.0 / (np.pi * (1.0 + eta * eta))
        a, m = f / P, f / Q
        out = (lp, lq, a, -m)
        if order > 1:
            c = 2.0 * eta / (1.0 + eta * eta)       # -f'/f
            out += (-a * c - a * a, m * c - m * m)
        return out


class CloglogLink(Link):
    name = "cloglog"

    def link(self, mu):
        mu = _f(mu)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(-np.log(1.0 - mu))

    def inverse(self, eta):
        eta = _f(eta)
        with np.errstate(over="ignore"):
            mu = -np.expm1(-np.exp(eta))
        return np.maximum(np.minimum(mu, 1.0 - DBL_EPSILON), DBL_EPSILON)

    def mu_eta(self, eta):
        eta = np.minimum(_f(eta), 700.0)
        with np.errstate(over="ignore", under="ignore"):
            e = np.exp(eta)
            return np.maximum(e * np.exp(-e), DBL_EPSILON)

    def inverse_exact(self, eta):
        with np.errstate(over="ignore"):
            return -np.expm1(-np.exp(_f(eta)))

    def mu_eta_exact(self, eta):
        eta = _f(eta)
        with np.errstate(over="ignore", under="ignore"):
            return np.where(eta > 700.0, 0.0, np.exp(eta - np.exp(np.minimum(eta, 700.0))))

    def bernoulli_logs(self, eta, order: int = 1, logs=None):
        # 1 - mu = exp(-e^eta): log(1 - mu) = -e^eta exactly; log mu = log(-expm1(-e^eta)),
        # which is eta itself once e^eta underflows.
        eta = _f(eta)
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            e = np.exp(eta)
            lp = np.where(eta < -700.0, eta, log1mexp(e))
            if order == 0:
                return lp, -e
            g = np.where(eta < -700.0, 1.0, e / np.expm1(e))     # d log mu / d eta
            g = np.where(np.isnan(g), 0.0, g)                    # e = inf: inf / inf
        out = (lp, -e, g, -e)
        if order > 1:
            with np.errstate(invalid="ignore"):
                d2 = np.where(g == 0.0, 0.0, g * (1.0 - e - g))
            out += (d2, -e)
        return out


class IdentityLink(Link):
    name = "identity"

    def link(self, mu):
        return _f(mu).copy()

    def inverse(self, eta):
        return _f(eta).copy()

    def mu_eta(self, eta):
        return np.ones_like(_f(eta))


class LogLink(Link):
    name = "log"

    def link(self, mu):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.log(_f(mu))

    def inverse(self, eta):
        with np.errstate(over="ignore"):
            return np.maximum(np.exp(_f(eta)), DBL_EPSILON)

    def mu_eta(self, eta):
        with np.errstate(over="ignore"):
            return np.maximum(np.exp(_f(eta)), DBL_EPSILON)

    def inverse_exact(self, eta):
        with np.errstate(over="ignore"):
            return np.exp(_f(eta))

    def mu_eta_exact(self, eta):
        return self.inverse_exact(eta)

    def bernoulli_logs(self, eta, order: int = 1, logs=None):
        # binomial(link = "log"): mu = e^eta < 1 needs eta < 0; log(1 - mu) = log(-expm1(eta))
        eta = _f(eta)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            lq = np.where(eta < 0.0, log1mexp(-eta), np.nan)
            if order == 0:
                return eta.copy(), lq
            e = np.exp(eta)
            em1 = np.expm1(eta)
            dq = e / em1
        ones = np.ones_like(eta)
        out = (eta.copy(), lq, ones, dq)
        if order > 1:
            with np.errstate(divide="ignore", invalid="ignore"):
                out += (np.zeros_like(eta), -e / (em1 * em1))
        return out


class SqrtLink(Link):
    name = "sqrt"

    def link(self, mu):
        with np.errstate(invalid="ignore"):
            return np.sqrt(_f(mu))

    def inverse(self, eta):
        eta = _f(eta)
        return eta * eta

    def mu_eta(self, eta):
        return 2.0 * _f(eta)

    def valid_eta(self, eta) -> bool:
        eta = _f(eta)
        return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))


class InverseLink(Link):
    name = "inverse"

    def link(self, mu):
        with np.errstate(divide="ignore"):
            return 1.0 / _f(mu)

    def inverse(self, eta):
        with np.errstate(divide="ignore"):
            return 1.0 / _f(eta)

    def mu_eta(self, eta):
        eta = _f(eta)
        with np.errstate(divide="ignore"):
            return -1.0 / (eta * eta)

    def valid_eta(self, eta) -> bool:
        eta = _f(eta)
        return bool(np.all(np.isfinite(eta)) and np.all(eta != 0))


class InverseSquaredLink(Link):
    """R's ``"1/mu^2"`` link (canonical for inverse.gaussian)."""

    name = "1/mu^2"

    def link(self, mu):
        mu = _f(mu)
        with np.errstate(divide="ignore"):
            return 1.0 / (mu * mu)

    def inverse(self, eta):
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1.0 / np.sqrt(_f(eta))

    def mu_eta(self, eta):
        with np.errstate(divide="ignore", invalid="ignore"):
            return -1.0 / (2.0 * _f(eta) ** 1.5)

    def valid_eta(self, eta) -> bool:
        eta = _f(eta)
        return bool(np.all(np.isfinite(eta)) and np.all(eta > 0))


#: canonical (R) link name -> Link instance
LINKS: dict[str, Link] = {
    lk.name: lk
    for lk in (
        LogitLink(),
        ProbitLink(),
        CauchitLink(),
        CloglogLink(),
        IdentityLink(),
        LogLink(),
        SqrtLink(),
        InverseLink(),
        InverseSquaredLink(),
    )
}

#: accepted spellings -> R link name
LINK_ALIASES: dict[str, str] = {name: name for name in LINKS}
LINK_ALIASES.update(
    {
        "inverse_squared": "1/mu^2",
        "inverse.squared": "1/mu^2",
        "inverse_square": "1/mu^2",
        "1/mu**2": "1/mu^2",
        "reciprocal": "inverse",
        "1/mu": "inverse",
    }
)


def make_link(link: "str | Link") -> Link:
    """Return the :class:`Link` for an R link name (or alias) or a Link instance."""
    if isinstance(link, Link):
        return link
    if not isinstance(link, str):
        raise TypeError(f"link must be a string or Link, not {type(link).__name__}")
    key = link.strip().strip("'\"").strip()
    name = LINK_ALIASES.get(key, LINK_ALIASES.get(key.lower()))
    if name is None:
        raise ValueError(
            f"unknown link {link!r}; valid links are: " + ", ".join(repr(k) for k in LINKS)
            + " (also 'inverse_squared' for '1/mu^2')"
        )
    return LINKS[name]
