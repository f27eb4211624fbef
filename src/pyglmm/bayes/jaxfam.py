"""Inverse links and per-row log densities in JAX, mirroring :mod:`pyglmm.families` (numpy).

``loglik(y, eta, wt, aux)`` returns the same per-row values as ``family.loglik(y, linkinv(eta),
wt, dispersion)`` of the numpy families (tests/test_bayes.py checks this at random points):

* poisson: ``wt * (y log mu - mu - lgamma(y + 1))``
* binomial: ``y`` proportions, ``wt`` trials: ``lchoose(n, k) + k log mu + (n - k) log(1 - mu)``
  with ``n = wt``, ``k = wt * y`` (0/1 data: ``wt = 1``; cbind(s, f): ``y = s/(s+f)``, ``wt = s+f``);
  with log mu and log(1 - mu) computed from eta for every link (log-sigmoids, log_ndtr,
  log1mexp, the cauchit tails), so that no row's cost is lost to mu rounding to 0 or 1
* gaussian: ``aux`` = residual variance phi; ``wt`` scales the precision (R's gaussian()$aic)
* Gamma: ``aux`` = dispersion phi = 1 / shape; ``wt`` multiplies the row's log density
* inverse.gaussian: ``aux`` = dispersion phi
* nbinom2: ``aux`` = shape theta (Var = mu + mu^2 / theta)

Rows with ``wt == 0`` contribute 0, as in the numpy versions. An invalid mean (e.g. a negative
Poisson mean under the identity link) gives -inf, which NUTS treats as a rejected proposal.
"""
from __future__ import annotations

import math

import jax.numpy as jnp
from jax import nn
from jax.scipy import special as jsp
from jax.scipy.stats import norm

_LOG_2PI = math.log(2.0 * math.pi)


def linkinv(name: str):
    """g^{-1}(eta) as a JAX function, for pyglmm's link names."""
    if name == "identity":
        return lambda eta: eta
    if name == "log":
        return jnp.exp
    if name == "logit":
        return nn.sigmoid
    if name == "probit":
        return norm.cdf
    if name == "cloglog":
        return lambda eta: -jnp.expm1(-jnp.exp(eta))
    if name == "cauchit":
        return lambda eta: 0.5 + jnp.arctan(eta) / jnp.pi
    if name == "sqrt":
        return lambda eta: eta * eta
    if name == "inverse":
        return lambda eta: 1.0 / eta
    if name == "1/mu^2":
        return lambda eta: 1.0 / jnp.sqrt(eta)
    raise ValueError(f"link {name!r} has no JAX inverse in pyglmm.bayes")


def _log1mexp(a):
    """log(1 - exp(-a)) for a >= 0, accurate at both ends (families.links.log1mexp)."""
    return jnp.where(a <= math.log(2.0), jnp.log(-jnp.expm1(-a)), jnp.log1p(-jnp.exp(-a)))


def _cloglog_logs(eta):
    e = jnp.exp(eta)
    return jnp.where(eta < -700.0, eta, _log1mexp(jnp.where(eta < -700.0, 1.0, e))), -e


def _cauchit_logs(eta):
    # the small tail as atan(1/|eta|)/pi, the other by log1p of minus it
    big = jnp.abs(eta) > 1.0
    safe = jnp.where(big, eta, 1.0)
    tail = jnp.arctan(1.0 / jnp.abs(safe)) / jnp.pi
    P = jnp.where(big, jnp.where(eta > 0, 1.0 - tail, tail), 0.5 + jnp.arctan(eta) / jnp.pi)
    Q = jnp.where(big, jnp.where(eta > 0, tail, 1.0 - tail), 0.5 - jnp.arctan(eta) / jnp.pi)
    return (jnp.where(eta > 0, jnp.log1p(-Q), jnp.log(P)),
            jnp.where(eta < 0, jnp.log1p(-P), jnp.log(Q)))


def _log_logs(eta):
    neg = jnp.where(eta < 0, -eta, 1.0)
    return eta, jnp.where(eta < 0, _log1mexp(neg), jnp.nan)


#: log mu and log(1 - mu) from eta for the binomial links, as the numpy links' bernoulli_logs:
#: no rounding of mu to 0 or 1 (which would turn a finite cost such as exp(eta) into -inf)
_BERNOULLI_LOGS = {
    "logit": lambda eta: (nn.log_sigmoid(eta), nn.log_sigmoid(-eta)),
    "probit": lambda eta: (jsp.log_ndtr(eta), jsp.log_ndtr(-eta)),
    "cloglog": _cloglog_logs,
    "cauchit": _cauchit_logs,
    "log": _log_logs,
}


def _masked(ll, wt):
    return jnp.where(wt == 0, 0.0, ll)


def loglik_fn(family, link: str | None = None, with_const: bool = True):
    """Per-row log density ``f(y, eta, wt, aux)`` of a family with a link (see module docstring).

    ``family``: a :class:`pyglmm.families.Family` or a family name (with ``link``); the density
    is the family's `jax_name` entry of ``LOGLIKS``. ``with_const=False`` drops the terms that
    depend on the data only (lgamma(y + 1), the binomial coefficient, log(2 pi) and log(wt) of
    the gaussian): the sampler's target is then cheaper and differs by a constant.
    """
    from ..families import make_family
    fam = make_family(family, link)
    build = LOGLIKS.get(fam.jax_name)
    if build is None:
        raise ValueError(f"family {fam.name!r} is not supported by pyglmm.bayes")
    return build(fam.link.name, linkinv(fam.link.name), with_const)


def _poisson(link, inv, with_const):
    def f(y, eta, wt, aux=None):
        if link == "log":
            logmu, mu = eta, jnp.exp(eta)
        else:
            mu = inv(eta)
            logmu = jnp.log(jnp.where(mu > 0, mu, 1.0))
            logmu = jnp.where(mu > 0, logmu, -jnp.inf)
        ll = jnp.where(y > 0, y * logmu, 0.0) - mu
        if with_const:
            ll = ll - jsp.gammaln(y + 1.0)
        ll = jnp.where((mu < 0) | ((mu == 0) & (y > 0)), -jnp.inf, ll)
        return _masked(ll * wt, wt)
    return f


def _binomial(link, inv, with_const):
    def f(y, eta, wt, aux=None):
        n = wt
        k = wt * y
        if link in _BERNOULLI_LOGS:
            logp, log1mp = _BERNOULLI_LOGS[link](eta)
        else:
            mu = inv(eta)
            ok = (mu > 0) & (mu < 1)
            mus = jnp.where(ok, mu, 0.5)
            logp = jnp.where(ok, jnp.log(mus), jnp.where(mu >= 1, 0.0, -jnp.inf))
            log1mp = jnp.where(ok, jnp.log1p(-mus), jnp.where(mu <= 0, 0.0, -jnp.inf))
        ll = jnp.where(k > 0, k * logp, 0.0) + jnp.where(n - k > 0, (n - k) * log1mp, 0.0)
        if with_const:
            ll = ll + jsp.gammaln(n + 1.0) - jsp.gammaln(k + 1.0) - jsp.gammaln(n - k + 1.0)
        return jnp.where(wt > 0, ll, 0.0)
    return f


def _gaussian(link, inv, with_const):
    c = 1.0 if with_const else 0.0

    def f(y, eta, wt, aux):
        mu = inv(eta)
        r = y - mu
        ws = jnp.where(wt > 0, wt, 1.0)
        ll = -0.5 * (c * (_LOG_2PI - jnp.log(ws)) + jnp.log(aux) + ws * r * r / aux)
        return _masked(ll, wt)
    return f


def _gamma(link, inv, with_const):
    if link == "log":
        def f(y, eta, wt, aux):
            shape = 1.0 / aux
            ll = ((shape - 1.0) * jnp.log(y) - y * jnp.exp(-eta) / aux - jsp.gammaln(shape)
                  - shape * (eta + jnp.log(aux)))
            return _masked(ll * wt, wt)
        return f

    def f(y, eta, wt, aux):
        mu = inv(eta)
        shape = 1.0 / aux
        scale = jnp.where(mu > 0, mu, 1.0) * aux
        ll = (shape - 1.0) * jnp.log(y) - y / scale - jsp.gammaln(shape) - shape * jnp.log(scale)
        ll = jnp.where(mu > 0, ll, -jnp.inf)
        return _masked(ll * wt, wt)
    return f


def _inverse_gaussian(link, inv, with_const):
    c = 1.0 if with_const else 0.0

    def f(y, eta, wt, aux):
        mu = inv(eta)
        r = y - mu
        ll = -0.5 * (c * (_LOG_2PI + 3.0 * jnp.log(y)) + jnp.log(aux)) - r * r / (2.0 * aux * mu * mu * y)
        ll = jnp.where(mu > 0, ll, -jnp.inf)
        return _masked(ll * wt, wt)
    return f


def _nbinom2(link, inv, with_const):
    c = 1.0 if with_const else 0.0

    def f(y, eta, wt, aux):
        theta = aux
        if link == "log":
            logmu, mu = eta, jnp.exp(eta)
        else:
            mu = inv(eta)
            logmu = jnp.where(mu > 0, jnp.log(jnp.where(mu > 0, mu, 1.0)), -jnp.inf)
        # log(theta + mu) computed stably from log mu and log theta
        log_tm = jnp.logaddexp(jnp.log(theta), logmu)
        ll = (jsp.gammaln(theta + y) - jsp.gammaln(theta) - c * jsp.gammaln(y + 1.0)
              + jnp.where(y > 0, y * (logmu - log_tm), 0.0) + theta * (jnp.log(theta) - log_tm))
        ll = jnp.where((mu < 0) | ((mu == 0) & (y > 0)), -jnp.inf, ll)
        return _masked(ll * wt, wt)
    return f


#: `Family.jax_name` -> builder(link name, inverse link, with_const) of the per-row density
LOGLIKS = {"poisson": _poisson, "binomial": _binomial, "gaussian": _gaussian, "Gamma": _gamma,
           "inverse.gaussian": _inverse_gaussian, "nbinom2": _nbinom2}
