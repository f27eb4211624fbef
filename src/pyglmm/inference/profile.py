"""Profile-likelihood confidence intervals (lme4's ``confint(profile(m))``).

For a parameter psi the profile deviance D_p(v) = min D over all other parameters with psi = v;
the signed root zeta(v) = sign(v - psi_hat) sqrt(D_p(v) - D_min) is approximately standard
normal, and the interval is {v : |zeta(v)| <= z_(1+level)/2}. Each end is found by bracketing
outwards in steps of the standard error and then root-finding on zeta (lme4 interpolates a
spline through a grid of profile points instead; the roots agree to the accuracy of the grid).

Covered: fixed effects of GLMMs (Laplace) and of ML-fitted LMMs; the sds and correlations of
every random-effect term (for vector terms through an sd/correlation parametrisation, as
lme4's profile); sigma of LMMs. A bound (sd 0, correlation +/-1) inside the interval is
reported as the limit, as lme4 does. Not covered: the dispersion/shape of Gamma and negative
binomial fits, and REML fits (refit with REML=False).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import optimize as so
from scipy import stats

from .confint import select_parameters, percent_labels, register_method, variance_parameter_names
from .._warn import user_stacklevel


class _Profiler:
    """Deviance minimised over all parameters but one, for a fitted model."""

    def __init__(self, model):
        self.m = model
        r = model._r
        if model.is_pql:
            raise ValueError("PQL fits have no likelihood to profile; use method='wald' or 'boot'")
        if model.is_lmm:
            if model.REML:
                raise NotImplementedError(
                    "profile intervals are computed for ML fits: refit with lmer(..., REML=False)")
            self.kind = "lmm"
        else:
            if r.shape is not None or r.dispersion is not None:
                raise NotImplementedError("profile intervals are not available yet for families "
                                          "with a dispersion or shape parameter; use method='boot'")
            if model.method != "Laplace":
                raise NotImplementedError("profile intervals use the Laplace deviance; the model was "
                                          f"fitted by {model.method}")
            self.kind = "glmm"
        if not hasattr(model, "_problem"):   # read by pyglmm.load: rebuild from the stored frame
            model.fit_method.attach_numerics(model)
        self.problem = model._problem
        self.rs = model._rs
        self.nth = self.rs.ntheta
        self.p = len(model.fixef)
        self.x_hat = np.concatenate([r.theta, r.beta])
        self.lb = np.concatenate([self.rs.lower_bounds(), np.full(self.p, -np.inf)])
        self.d_min = self.deviance(self.x_hat)
        if self.kind == "glmm":
            from ..fit.gradient import supports_analytic
            self._analytic = supports_analytic(self.problem.family, self.problem.laplace_weights)

    def deviance(self, x: np.ndarray) -> float:
        th, be = x[:self.nth], x[self.nth:]
        try:
            if self.kind == "glmm":
                return self.problem.pirls(th, be).deviance
            return self._lmm_deviance(th, be)
        except (np.linalg.LinAlgError, RuntimeError, FloatingPointError):
            return np.inf

    def _lmm_deviance(self, th, be):
        """ML deviance of an LMM at (theta, beta) with sigma profiled out."""
        pr = self.problem
        rs = self.rs
        from ..linalg.blocked import BlockedFactor
        zvals = rs.scaled_values(th)
        F = BlockedFactor(rs, zvals, pr.w, None)
        r = pr.y - pr.X @ be
        u = F.solve(rs.Ztr(zvals, pr.w * r))
        res = r - rs.Zu(zvals, u)
        pwrss = float(pr.w @ res ** 2 + u @ u)
        n = pr.n_eff
        return F.logdet_Z() + n * (1.0 + np.log(2 * np.pi * pwrss / n)) - pr.sum_log_w

    def minimize_with(self, i: int, value: float, x_start: np.ndarray) -> tuple[float, np.ndarray]:
        from ..fit.optimize import minimize_bounded
        keep = np.arange(self.x_hat.size) != i
        x = x_start.copy()
        x[i] = value

        def f(y):
            xx = x.copy()
            xx[keep] = y
            return self.deviance(xx)

        grad = None
        if self.kind == "glmm" and self._analytic:
            from ..fit.gradient import laplace_gradient

            def grad(y):
                xx = x.copy()
                xx[keep] = y
                th, be = xx[:self.nth], xx[self.nth:]
                try:
                    r = self.problem.pirls(th, be)
                except (np.linalg.LinAlgError, RuntimeError, FloatingPointError):
                    return np.zeros(y.size)
                g = laplace_gradient(self.rs, self.problem.X, self.problem.y, self.problem.w_prior,
                                     self.problem.family, th, r.u, r.eta, factor=r._factor)
                return g[keep]

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = minimize_bounded(f, x[keep], self.lb[keep], method="lbfgsb", grad=grad,
                                   **(dict(ftol=0.0, gtol=1e-7) if grad is not None else {}))
        x[keep] = opt.x
        return float(opt.fmin), x

    def zeta(self, i: int, value: float, x_start: np.ndarray) -> tuple[float, np.ndarray]:
        d, x = self.minimize_with(i, value, x_start)
        diff = max(d - self.d_min, 0.0)
        return float(np.sign(value - self.x_hat[i]) * np.sqrt(diff)), x


def _limit(pf: _Profiler, i: int, scale: float, z: float, direction: int) -> float:
    """The value where zeta crosses direction * z, bracketing outwards from the estimate."""
    v0 = pf.x_hat[i]
    lb = pf.lb[i]
    prev_v, x = v0, pf.x_hat.copy()
    step = scale
    for _ in range(12):
        v = v0 + direction * step
        if v < lb:
            v = lb
        zt, x = pf.zeta(i, v, x)
        if direction * zt >= z:
            f = lambda vv: pf.zeta(i, vv, x)[0] - direction * z
            return so.brentq(f, min(prev_v, v), max(prev_v, v), xtol=1e-5 * scale, rtol=1e-8)
        if v == lb:
            return lb                      # the bound is inside the interval (lme4 reports 0)
        prev_v = v
        step *= 2.0
    return np.nan


def _lmm_scale_interval(pf: _Profiler, k: int | None, z: float) -> tuple[float, float]:
    """Profile interval of an LMM scale parameter: sd_k = sigma * theta_k (scalar term k), or sigma
    itself (k None). The ML deviance with beta profiled is
    D(theta, sigma) = log|M(theta)| + n log(2 pi sigma^2) + r2(theta) / sigma^2 - sum(log w)."""
    from ..fit.optimize import minimize_bounded
    pr = pf.problem
    n = pr.n_eff
    th_hat = pf.x_hat[:pf.nth]
    lb = pf.rs.lower_bounds()

    def dev(theta, sigma):
        try:
            st = pr.evaluate(theta)
        except (np.linalg.LinAlgError, RuntimeError):
            return np.inf
        return (st.factor.logdet_Z() + n * np.log(2 * np.pi * sigma ** 2) + st.pwrss / sigma ** 2
                - pr.sum_log_w)

    sig_hat = pf.m.sigma
    d_min = dev(th_hat, sig_hat)
    est = sig_hat if k is None else sig_hat * th_hat[k]
    free = np.ones(pf.nth, bool)
    if k is not None:
        free[k] = False

    def zeta(v, start):
        # minimise over log sigma and the other thetas with the parameter fixed at v
        def f(y):
            ls, rest = y[0], y[1:]
            sigma = float(np.exp(ls)) if k is not None else v
            th = th_hat.copy()
            th[free] = rest
            if k is not None:
                th[k] = v / sigma
            return dev(th, sigma)
        lby = np.concatenate([[-np.inf], lb[free]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            opt = minimize_bounded(f, start, lby, method="lbfgsb")
        return float(np.sign(v - est) * np.sqrt(max(opt.fmin - d_min, 0.0))), opt.x

    start0 = np.concatenate([[np.log(sig_hat)], th_hat[free]])
    scale = max(0.25 * est, 1e-3 * max(sig_hat, 1e-12))
    ends = []
    for direction in (-1, +1):
        prev_v, x, step = est, start0, scale
        found = np.nan
        for _ in range(12):
            v = est + direction * step
            if v <= 0:
                v = 0.0
            if v == 0.0 and k is None:
                break
            zt, x = zeta(v, x)
            if direction * zt >= z:
                xx = x
                found = so.brentq(lambda vv: zeta(vv, xx)[0] - direction * z, min(prev_v, v),
                                  max(prev_v, v), xtol=1e-6 * max(est, 1e-8), rtol=1e-9)
                break
            if v == 0.0:
                found = 0.0
                break
            prev_v, step = v, step * 2.0
        ends.append(found)
    return tuple(ends)


class _SdCorProfiler:
    """Deviance as a function of lme4's profile parameters: sds and correlations of every term
    (and sigma for LMMs) plus beta. Correlations not being profiled are optimised on the
    atanh scale, sds on the log scale, so only the profiled value itself is constrained."""

    def __init__(self, pf: _Profiler):
        from .bootstrap import sd_cor_values
        self.pf = pf
        m = pf.m
        self.kinds = []          # per sd/cor slot: ("sd"| "cor", term index, r, c)
        for k, t in enumerate(m.terms):
            p = len(t.colnames)
            for c in range(p):
                for r in range(c, p):
                    self.kinds.append(("sd" if r == c else "cor", k, r, c))
        self.lmm = pf.kind == "lmm"
        self.nv = len(self.kinds) + (1 if self.lmm else 0)
        self.psi_hat = np.concatenate([sd_cor_values(m)[:self.nv], m.fixef.values])

    def to_theta(self, psi):
        """(theta, sigma) from sds/cors (None when the implied covariance is not valid)."""
        pf = self.pf
        sigma = psi[len(self.kinds)] if self.lmm else 1.0
        if sigma <= 0:
            return None, None
        theta = np.empty(pf.nth)
        idx = 0
        for t in pf.m.terms:
            p = len(t.colnames)
            sd = np.zeros(p)
            R = np.eye(p)
            slots = []
            for c in range(p):
                for r in range(c, p):
                    slots.append((r, c))
            for j, (r, c) in enumerate(slots):
                v = psi[idx + j]
                if r == c:
                    sd[r] = v
                else:
                    R[r, c] = R[c, r] = v
            if np.any(sd < 0) or np.any(np.abs(R) > 1):
                return None, None
            S = (R * np.outer(sd, sd)) / sigma ** 2
            try:
                T = np.linalg.cholesky(S + 1e-14 * np.eye(p))
            except np.linalg.LinAlgError:
                return None, None
            for j, (r, c) in enumerate(slots):
                theta[idx + j] = T[r, c]
            idx += len(slots)
        return theta, sigma

    def deviance(self, psi):
        pf = self.pf
        theta, sigma = self.to_theta(psi[:self.nv])
        if theta is None:
            return np.inf
        beta = psi[self.nv:]
        if not self.lmm:
            return pf.deviance(np.concatenate([theta, beta]))
        pr, rs = pf.problem, pf.rs
        from ..linalg.blocked import BlockedFactor
        try:
            zvals = rs.scaled_values(theta)
            F = BlockedFactor(rs, zvals, pr.w, None)
        except np.linalg.LinAlgError:
            return np.inf
        r = pr.y - pr.X @ beta
        u = F.solve(rs.Ztr(zvals, pr.w * r))
        res = r - rs.Zu(zvals, u)
        pwrss = float(pr.w @ res ** 2 + u @ u)
        return F.logdet_Z() + pr.n_eff * np.log(2 * np.pi * sigma ** 2) + pwrss / sigma ** 2 - pr.sum_log_w

    def interval(self, i: int, z: float) -> tuple[float, float]:
        from ..fit.optimize import minimize_bounded
        est = self.psi_hat[i]
        d_min = self.deviance(self.psi_hat)
        keep = np.arange(self.psi_hat.size) != i
        kinds = [("cor" if j < len(self.kinds) and self.kinds[j][0] == "cor" else
                  "pos" if j < self.nv else "free") for j in range(self.psi_hat.size)]

        def to_y(psi):
            y = []
            for j in np.flatnonzero(keep):
                v = psi[j]
                y.append(np.arctanh(np.clip(v, -0.999999, 0.999999)) if kinds[j] == "cor" else
                         np.log(max(v, 1e-10)) if kinds[j] == "pos" else v)
            return np.array(y)

        def from_y(y, value):
            psi = self.psi_hat.copy()
            psi[i] = value
            for yy, j in zip(y, np.flatnonzero(keep)):
                psi[j] = np.tanh(yy) if kinds[j] == "cor" else np.exp(yy) if kinds[j] == "pos" else yy
            return psi

        def zeta(value, y0):
            f = lambda y: self.deviance(from_y(y, value))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                opt = minimize_bounded(f, y0, np.full(y0.size, -np.inf), method="lbfgsb")
            return float(np.sign(value - est) * np.sqrt(max(opt.fmin - d_min, 0.0))), opt.x

        lo_b, hi_b = (-1.0, 1.0) if kinds[i] == "cor" else (0.0, np.inf)
        scale = 0.25 if kinds[i] == "cor" else max(0.25 * abs(est), 1e-3)
        y0 = to_y(self.psi_hat)
        ends = []
        for direction in (-1, +1):
            prev, y, step, found = est, y0, scale, np.nan
            for _ in range(12):
                v = float(np.clip(est + direction * step, lo_b, hi_b))
                zt, y = zeta(v, y)
                if direction * zt >= z:
                    yy = y
                    found = so.brentq(lambda vv: zeta(vv, yy)[0] - direction * z, min(prev, v),
                                      max(prev, v), xtol=1e-5 * scale, rtol=1e-8)
                    break
                if v in (lo_b, hi_b):
                    found = v               # the bound lies inside the interval
                    break
                prev, step = v, step * 2.0
            ends.append(found)
        return tuple(ends)


def confint_profile(model, parm=None, level: float = 0.95) -> pd.DataFrame:
    """Profile-likelihood intervals, rows and columns as lme4's ``confint(m)``."""
    rows = select_parameters(model, parm)
    pf = _Profiler(model)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    lo_lab, hi_lab = percent_labels(level)
    vnames = variance_parameter_names(model)
    se = model.se
    out, notes = [], []
    sdc = None
    # which .sig rows map to a scalar-term theta (sd = theta for GLMMs)
    sig_to_theta = {}
    k = 0
    for t in model.terms:
        p = len(t.colnames)
        if p == 1:
            sig_to_theta[vnames[k]] = k
        k += p * (p + 1) // 2
    for name in rows:
        if name in model.fixef.index:
            i = pf.nth + list(model.fixef.index).index(name)
            s = float(se[name])
            out.append((_limit(pf, i, s, z, -1), _limit(pf, i, s, z, +1)))
        elif pf.kind == "lmm" and (name in sig_to_theta or name == ".sigma"):
            out.append(_lmm_scale_interval(pf, sig_to_theta.get(name), z))
        elif pf.kind == "glmm" and name in sig_to_theta:
            i = sig_to_theta[name]
            th = pf.x_hat[i]
            s = max(0.25 * th, 0.05)
            out.append((_limit(pf, i, s, z, -1), _limit(pf, i, s, z, +1)))
        elif name in vnames:
            # correlations and sds of vector terms: the general sd/cor parametrisation
            if sdc is None:
                sdc = _SdCorProfiler(pf)
            out.append(sdc.interval(vnames.index(name), z))
        else:
            out.append((np.nan, np.nan))
            notes.append(name)
    res = pd.DataFrame(out, index=rows, columns=[lo_lab, hi_lab])
    if notes:
        res.attrs["not_profiled"] = notes
        warnings.warn("profile intervals are not computed for " + ", ".join(notes) +
                      "; use method='boot' for those", UserWarning, stacklevel=user_stacklevel())
    return res


register_method("profile", confint_profile)
