"""Bounded minimisation of smooth deviance functions and finite-difference derivatives.

The deviances here come from exact solves (LMM) or fully converged PIRLS (GLMM), so central
differences are accurate to about 1e-7 relative; L-BFGS-B with those gradients reaches the
optimum more tightly than lme4's derivative-free bobyqa stopping rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.optimize as so

from . import compiled

#: The compiled bounded BFGS (`_optim`) serves problems up to this many variables (its dense
#: Hessian approximation costs n^2 an iteration and n^3/3 for the step); larger ones L-BFGS-B.
QN_MAX_DIM = 60
#: The compiled BFGS pays where an evaluation is cheap, i.e. where the objective is itself
#: compiled (the kernels' small-data paths). With a Python objective (large data, the numpy
#: paths) an evaluation costs milliseconds to seconds and only their number counts: there
#: scipy's L-BFGS-B, whose More-Thuente line search extrapolates, needs fewer (measured on a
#: 1M-row crossed binomial: 6 against 9). True: the compiled BFGS for Python objectives too.
QN_PYTHON_OBJECTIVES = False
#: Vectors up to this size are checked in Python floats (_projected_gradient, bounds tests).
_SMALL = 64


@dataclass
class OptSummary:
    """Record of one optimisation: start, end, evaluations and messages (MixedModels.jl style)."""

    x0: np.ndarray
    x: np.ndarray = None
    fmin: float = np.nan
    feval: int = 0
    nit: int = 0
    optimizer: str = "L-BFGS-B (central differences)"
    success: bool = False
    message: str = ""


class _Counted:
    """Counts evaluations, remembers the best point, prints lme4-style verbose lines."""

    def __init__(self, f, verbose, label, progress=None):
        self.f, self.n, self.verbose, self.label = f, 0, verbose, label
        self.best = (np.inf, None)
        # only a progress line that can show costs a call per evaluation
        self.progress = progress if progress is not None and progress.enabled else None

    def __call__(self, x):
        return self.record(x, self.f(x))

    def record(self, x, v):
        """Count an evaluation of value v at x (best point, verbose line, progress)."""
        self.n += 1
        if v < self.best[0]:
            self.best = (v, x.copy() if type(x) is np.ndarray else np.array(x, float))
        if self.verbose:
            xs = " ".join(f"{xi: .6g}" for xi in x)
            print(f"{self.label} iteration: {self.n}\n\tf(x) = {v:.6f}\n\tx = [{xs}]", flush=True)
        if self.progress is not None:
            self.progress.update(self.label, self.n, self.best[0])
        return v


def fd_gradient(f: Callable, x: np.ndarray, lb: np.ndarray, fx: float | None = None,
                rel: float = 1e-5) -> np.ndarray:
    """Central-difference gradient, one-sided forward where x is at its lower bound."""
    g = np.empty_like(x)
    for i in range(x.size):
        h = rel * max(1.0, abs(x[i]))
        xp = x.copy(); xp[i] += h
        if x[i] - h < lb[i]:
            f0 = f(x) if fx is None else fx
            fx = f0
            xpp = x.copy(); xpp[i] += 2 * h
            g[i] = (-3 * f0 + 4 * f(xp) - f(xpp)) / (2 * h)
        else:
            xm = x.copy(); xm[i] -= h
            g[i] = (f(xp) - f(xm)) / (2 * h)
    return g


def fd_hessian(f: Callable, x: np.ndarray, rel: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian (as lme4's deriv12 with delta = 1e-4)."""
    k = x.size
    H = np.empty((k, k))
    h = rel * np.maximum(1.0, np.abs(x))
    f0 = f(x)
    fp = np.empty(k); fm = np.empty(k)
    for i in range(k):
        e = np.zeros(k); e[i] = h[i]
        fp[i] = f(x + e); fm[i] = f(x - e)
        H[i, i] = (fp[i] - 2 * f0 + fm[i]) / h[i] ** 2
    for i in range(k):
        for j in range(i):
            ei = np.zeros(k); ei[i] = h[i]
            ej = np.zeros(k); ej[j] = h[j]
            v = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (4 * h[i] * h[j])
            H[i, j] = H[j, i] = v
    return H


def fd_jacobian(g, z: np.ndarray, h: float, g0: np.ndarray | None = None) -> np.ndarray:
    """Symmetrised Jacobian of an exact gradient function (a Hessian) by differences.

    With ``g0`` (the gradient at z) forward differences: k gradient evaluations instead of 2k.
    On the preconditioned scale of the fits (unit curvature, h = 1e-4) forward and central
    differences give standard errors that agree to about 1e-5 relative (measured on cbpp,
    grouseticks, rehab); central differences are kept for callers without g0.
    """
    k = z.size
    H = np.empty((k, k))
    for i in range(k):
        hi = h * max(1.0, abs(z[i]))
        e = np.zeros(k)
        e[i] = hi
        if g0 is None:
            H[:, i] = (g(z + e) - g(z - e)) / (2 * hi)
        else:
            H[:, i] = (g(z + e) - g0) / hi
    return 0.5 * (H + H.T)


def gradient_hessian(grad: Callable, x: np.ndarray, h: float = 1e-4, fg=None,
                     hessian: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The gradient at x and, with ``hessian``, the Hessian by forward differences of it
    (`fd_jacobian`). With ``fg`` a compiled `Objective` of the same function the k + 1
    evaluations run in C (`_optim.gradient_jacobian`), with the same steps and results."""
    kern = compiled.optim_kernels()
    with np.errstate(all="ignore"):
        if hessian and fg is not None and kern is not None and isinstance(fg, kern.Objective):
            return kern.gradient_jacobian(fg, x, h)
        g = grad(x)
        return g, fd_jacobian(grad, x, h, g0=g) if hessian else None


def max_abs_diff(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """max |a - b| (max |a| without b; 0 for empty vectors; NaN-propagating as numpy's), in
    Python floats for the few parameters of a fit: numpy's reductions cost microseconds each."""
    if a.size > _SMALL:
        return float(np.max(np.abs(a if b is None else a - b), initial=0.0))
    m = 0.0
    for ai, bi in zip(a.tolist(), [0.0] * a.size if b is None else b.tolist()):
        d = abs(ai - bi)
        if d != d:
            return math.nan
        m = d if d > m else m
    return m


def _near_bounds(x: np.ndarray, lb: np.ndarray, tol: float, strict: bool) -> list[int]:
    """Indices of the components within tol above a finite lower bound (``strict``: not on it)."""
    if x.size > _SMALL:
        near = np.isfinite(lb) & (x - lb < tol)
        if strict:
            near &= x > lb
        return np.flatnonzero(near).tolist()
    return [i for i, (xi, li) in enumerate(zip(x.tolist(), lb.tolist()))
            if li > -math.inf and xi - li < tol and (xi > li or not strict)]


def _edge_restart_point(f: Callable, x: np.ndarray, lb: np.ndarray) -> np.ndarray | None:
    """A better interior point next to components sitting on their bounds, if there is one."""
    at = _near_bounds(x, lb, 1e-3, strict=False)
    if not at:
        return None
    f0 = f(x)
    best, bx = f0 - 1e-10 * max(1.0, abs(f0)), None
    for i in at:
        for d in (1e-2, 1e-1, 0.5):
            xi = x.copy()
            xi[i] = lb[i] + d
            fi = f(xi)
            if fi < best:
                best, bx = fi, xi
    return bx


def _snap_to_bounds(f: Callable, x: np.ndarray, lb: np.ndarray, tol: float = 1e-3) -> np.ndarray:
    """Put components that stopped just above their bound onto it when that is no worse.

    A variance at zero is a flat, symmetric optimum, so gradient methods creep towards it and
    stop at ~1e-5; lme4 reports exactly 0 there, and so should we.
    """
    near = _near_bounds(x, lb, tol, strict=True)
    if not near:
        return x
    f0 = f(x)
    xs = x.copy()
    xs[near] = lb[near]
    if f(xs) <= f0 + 1e-10 * max(1.0, abs(f0)):
        return xs
    for i in near:
        xi = x.copy()
        xi[i] = lb[i]
        if f(xi) <= f0 + 1e-10 * max(1.0, abs(f0)):
            x, f0 = xi, f(xi)
    return x


def _gradient_floor(f: float) -> float:
    """Projected-gradient size below which a restart cannot help: 1e-4, or the rounding noise of
    an exact gradient of a large deviance. Measured on lmer fits: gradients stall at 2e-3 at
    |f| = 9e5 (300k rows) and 1e-3 at 3e6 (1M rows), where f no longer changes in its 16th digit;
    restarts there only repeat failed line searches. 1e-8 |f| is above that noise."""
    return max(1e-4, 1e-8 * abs(f)) if math.isfinite(f) else 1e-4


def _projected_gradient(x: np.ndarray, g: np.ndarray, lb: np.ndarray) -> float:
    """max |g| over the components free to move (a positive slope at a lower bound is not);
    NaN where g has one. A few parameters in Python floats (numpy's reductions cost
    microseconds each on the small vectors of a fit), many by numpy."""
    if x.size > _SMALL:
        at_lb = (x <= lb + 1e-12) & (g > 0)
        return float(np.max(np.abs(np.where(at_lb, 0.0, g)), initial=0.0))
    m = 0.0
    for xi, gi, li in zip(x.tolist(), np.asarray(g, dtype=float).tolist(), lb.tolist()):
        if gi != gi:
            return math.nan
        if not (xi <= li + 1e-12 and gi > 0) and abs(gi) > m:
            m = abs(gi)
    return m


class _Stalled(Exception):
    """Raised inside L-BFGS-B's line search once it only evaluates rounding noise."""


class _StallGuard:
    """Stops L-BFGS-B when the best point's projected gradient is at its rounding floor and the
    evaluations since then no longer lower the deviance: on large data the line search can
    otherwise spend tens of evaluations on differences of 1e-16 relative (measured: 28 of 54
    evaluations of a million-row lmer)."""

    def __init__(self, lb: np.ndarray, patience: int = 3):
        self.lb, self.patience = lb, patience
        self.best_f, self.best_key, self.best_g, self.stall = np.inf, None, None, 0

    def on_f(self, x: np.ndarray, v: float) -> None:
        if v < self.best_f - 1e-12 * abs(self.best_f):     # a meaningful decrease
            self.best_f, self.best_key, self.best_g, self.stall = v, x.tobytes(), None, 0
            return
        if v < self.best_f:
            self.best_f, self.best_key, self.best_g = v, x.tobytes(), None
        if self.best_g is not None and self.best_pg() < _gradient_floor(self.best_f):
            self.stall += 1
            if self.stall >= self.patience:
                raise _Stalled

    def on_g(self, x: np.ndarray, g: np.ndarray) -> None:
        if x.tobytes() == self.best_key:
            self.best_g = np.array(g, float)        # its projection only when a step stalls

    def best_pg(self) -> float:
        x = np.frombuffer(self.best_key, dtype=float)
        return _projected_gradient(x, self.best_g, self.lb)


_SETULB: list = []


def _setulb():
    """scipy's compiled L-BFGS-B step, `scipy.optimize._lbfgsb.setulb` (scipy >= 1.15), when it
    answers a test problem correctly; else None and `scipy.optimize.minimize` drives it. Driving
    it directly saves scipy's per-evaluation wrapper layers (about 30 us an evaluation, most of
    the optimiser's time on small data)."""
    if not _SETULB:
        fn = None
        try:
            from scipy.optimize import _lbfgsb as mod
            cand = mod.setulb
            r = _lbfgsb_direct(lambda z: float(((z - [2.0, -1.0]) ** 2).sum()),
                               lambda z: 2.0 * (z - [2.0, -1.0]), np.zeros(2), np.array([0.0, 0.0]),
                               _step=cand)
            if np.allclose(r.x, [2.0, 0.0], atol=1e-6) and r.success:
                fn = cand
        except Exception:        # a changed private API: use the public driver
            fn = None
        _SETULB.append(fn)
    return _SETULB[0]


def _lbfgsb_direct(fun, jac, x0, lb, *, maxiter: int = 15000, ftol: float = 1e-13,
                   gtol: float = 1e-7, maxcor: int = 20, maxls: int = 20, maxfun: int = 15000,
                   _step=None, fg=None) -> so.OptimizeResult:
    """scipy's L-BFGS-B loop (scipy.optimize._lbfgsb_py) for lower bounds only, calling the
    compiled step directly. ``fg``: value and gradient from one call (else fun, then jac)."""
    step = _step if _step is not None else _setulb()
    n, m = x0.size, maxcor
    fin = np.isfinite(lb)
    nbd = fin.astype(np.int32)                        # 1: lower bound only, 0: unbounded
    low, upp = np.where(fin, lb, 0.0), np.zeros(n)
    x = np.array(x0, dtype=np.float64)
    f, g = np.array(0.0), np.zeros(n)
    wa = np.zeros(2 * m * n + 5 * n + 11 * m * m + 8 * m)
    iwa = np.zeros(3 * n, dtype=np.int32)
    task, ln_task = np.zeros(2, dtype=np.int32), np.zeros(2, dtype=np.int32)
    lsave, isave, dsave = np.zeros(4, dtype=np.int32), np.zeros(44, dtype=np.int32), np.zeros(29)
    factr = ftol / np.finfo(float).eps
    nit = nfev = 0
    while True:
        step(m, x, low, upp, nbd, f, g, factr, gtol, wa, iwa, task, lsave, isave, dsave, maxls, ln_task)
        if task[0] == 3:                              # f and g wanted at x
            xc = x.copy()
            if fg is not None:
                f, g = fg(xc)
                if type(g) is not np.ndarray or g.dtype != np.float64:
                    g = np.array(g, dtype=np.float64)
            else:
                f = float(fun(xc))
                g = np.array(jac(xc), dtype=np.float64)
            nfev += 1
        elif task[0] == 1:                            # a new iterate
            nit += 1
            if nit >= maxiter:
                task[0], task[1] = 5, 504
            elif nfev > maxfun:
                task[0], task[1] = 5, 502
        else:
            break
    from scipy.optimize import _lbfgsb_py as py
    try:
        msg = py.status_messages[task[0]] + ": " + py.task_messages[task[1]]
    except (AttributeError, KeyError, IndexError, TypeError):
        msg = f"L-BFGS-B task {int(task[0])}/{int(task[1])}"
    return so.OptimizeResult(x=x, fun=float(f), jac=g, nfev=nfev, nit=nit,
                             success=bool(task[0] == 4), message=msg)


def _lbfgsb(fun, jac, x, lb, bounds, options, fg=None):
    """scipy's L-BFGS-B with the stall guard; the best point so far when the guard stops it.
    ``fg`` (value and gradient in one call) serves the direct driver when given."""
    guard = _StallGuard(lb)

    def f(z):
        v = fun(z)
        guard.on_f(z, v)                  # z: float64 arrays from the L-BFGS-B driver
        return v

    def g(z):
        out = jac(z)
        guard.on_g(z, out)
        return out

    def fg2(z):
        v, out = fg(z)
        guard.on_f(z, v)
        guard.on_g(z, out)
        return v, out

    try:
        if _setulb() is not None:
            return _lbfgsb_direct(f, g, x, lb, fg=None if fg is None else fg2, **options)
        return so.minimize(f, x, jac=g, method="L-BFGS-B", bounds=bounds, options=options)
    except _Stalled:
        xb = np.frombuffer(guard.best_key, dtype=float).copy()
        return so.OptimizeResult(x=xb, fun=guard.best_f, success=True, nit=0,
                                 message="CONVERGENCE: projected gradient at its rounding floor")


def _uses_compiled_bfgs(n: int, fg=None) -> bool:
    """Whether a search over n variables with an exact gradient runs the compiled BFGS: small
    problems whose value and gradient ``fg`` is a compiled `Objective` (see
    QN_PYTHON_OBJECTIVES)."""
    kern = compiled.optim_kernels()
    if kern is None or n > QN_MAX_DIM:
        return False
    return QN_PYTHON_OBJECTIVES or isinstance(fg, kern.Objective)


def _local_search(fun, jac, x, lb, bounds, options, fg=None, direct_fg=None,
                  compiled_qn: bool = False):
    """One run of the bounded quasi-Newton search from x: the compiled BFGS (`_optim`) where
    ``compiled_qn`` (`_uses_compiled_bfgs`), else scipy's L-BFGS-B (`_lbfgsb`). ``direct_fg``:
    value and gradient from one call for the compiled loop, when no per-evaluation bookkeeping
    (verbose, progress) is wanted; the OptimizeResult then carries ``nfev_uncounted``."""
    if not compiled_qn or (fg is None and direct_fg is None):
        if bounds is None:
            bounds = [(v if np.isfinite(v) else None, None) for v in lb]
        return _lbfgsb(fun, jac, x, lb, bounds, options, fg=fg)
    call = direct_fg if direct_fg is not None else fg
    xb, fb, gb, nfev, nit, status, msg = compiled.optim_kernels().bfgs_bounded(
        call, x, lb, maxiter=options["maxiter"], ftol=options["ftol"], gtol=options["gtol"],
        floor_abs=1e-4, floor_rel=1e-8)
    res = so.OptimizeResult(x=xb, fun=fb, jac=gb, nfev=nfev, nit=nit, success=status <= 2,
                            message=msg)
    res.nfev_uncounted = nfev if direct_fg is not None else 0
    return res


def minimize_bounded(f: Callable, x0: np.ndarray, lb: np.ndarray, *, verbose: int = 0,
                     label: str = "iter", maxiter: int = 2000, ftol: float = 1e-13,
                     gtol: float = 1e-7, method: str = "cobyqa", radius0: float = 0.2,
                     radius_final: float = 1e-7, grad: Callable | None = None,
                     progress=None, fg: Callable | None = None) -> OptSummary:
    """Minimise f over x >= lb.

    method "cobyqa": scipy's derivative-free trust-region method (Powell's BOBYQA successor;
    lme4 uses BOBYQA too), which needs far fewer deviance evaluations than a
    finite-difference gradient method in the few dimensions of (theta, beta); a short
    L-BFGS-B polish follows only if the final projected gradient is not small.
    method "lbfgsb": L-BFGS-B with central-difference gradients throughout; with ``grad`` (an
    exact gradient) always L-BFGS-B with it; ``fg`` (optional, with ``grad``): value and
    gradient from one call, for the L-BFGS-B loop (one Python call chain per evaluation).
    """
    cf = _Counted(f, verbose, label, progress)
    x0 = np.maximum(np.asarray(x0, float), lb)
    summ = OptSummary(x0=x0.copy())
    # decided on the caller's fg (not on the verbose wrapper below): verbose output must not
    # change the search
    compiled_qn = grad is not None and _uses_compiled_bfgs(x0.size, fg)
    # scipy's form of the bounds (not needed by the compiled search)
    bounds = None if compiled_qn else [(l if np.isfinite(l) else None, None) for l in lb]

    def fun(x):
        v = cf(x)
        return v if math.isfinite(v) else 1e300

    fgw = direct = None
    if grad is not None:
        if fg is None:
            def fg(x):
                return f(x), grad(x)
        if not verbose and cf.progress is None:
            direct = fg                       # no per-evaluation bookkeeping needed

        def fgw(x):
            v, g = fg(x)
            v = cf.record(x, v)
            return (v if math.isfinite(v) else 1e300), g

    if grad is not None:
        method = "lbfgsb"
        jac = grad
        summ.optimizer = ("BFGS, bounded" if compiled_qn else "L-BFGS-B") + \
            " (analytic gradient)"
    else:
        def jac(x):
            return fd_gradient(fun, x, lb)

    x = x0
    res = None
    if method == "cobyqa":
        sb = so.Bounds(np.where(np.isfinite(lb), lb, -np.inf), np.full(lb.size, np.inf))
        res = so.minimize(fun, x, method="COBYQA", bounds=sb,
                          options={"initial_tr_radius": radius0, "final_tr_radius": radius_final,
                                   "maxfev": min(500 * max(1, x.size), maxiter)})
        x = res.x
        summ.optimizer = "COBYQA"
        attempts = 0   # polish below only when needed
    else:
        if grad is None:
            summ.optimizer = "L-BFGS-B (central differences)"
        attempts = 4
    polish = method != "cobyqa"
    opts = {"maxiter": maxiter, "ftol": ftol, "gtol": gtol, "maxcor": 20}
    if not polish:
        if _projected_gradient(x, jac(x), lb) > 1e-3:
            polish, attempts = True, 3
            summ.optimizer += " + L-BFGS-B polish"
    uncounted = 0
    if polish:
        for attempt in range(attempts):
            res = _local_search(fun, jac, x, lb, bounds, opts, fg=fgw, direct_fg=direct,
                                compiled_qn=compiled_qn)
            uncounted += getattr(res, "nfev_uncounted", 0)
            moved = max_abs_diff(res.x, x)
            x = res.x
            # the search's own gradient at its end point, where it reports one
            g_end = res.get("jac")
            if g_end is None or np.shape(g_end) != x.shape:
                g_end = jac(x)
            # L-BFGS-B can stop on a tiny line-search step far from the optimum: restart (fresh
            # curvature memory) while the projected gradient is not small
            if _projected_gradient(x, g_end, lb) < _gradient_floor(res.fun) or moved < 1e-12:
                break
    best_f, best_x = cf.best
    if best_x is not None and best_f < res.fun:
        x = best_x
    x = np.asarray(x, float)
    # restart from the interior when a component stopped on its bound although the interior is
    # better there: a variance at zero is a stationary point of the (even) deviance, so a gradient
    # method that jumps onto the bound can stop there (lme4's restart_edge)
    for _ in range(2):
        xr = _edge_restart_point(fun, x, lb)
        if xr is None:
            break
        res = _local_search(fun, jac, xr, lb, bounds, opts, fg=fgw, direct_fg=direct,
                            compiled_qn=compiled_qn)
        uncounted += getattr(res, "nfev_uncounted", 0)
        if res.fun < fun(x):
            x = np.asarray(res.x, float)
            summ.optimizer += " + edge restart"
    x = _snap_to_bounds(fun, x, lb)
    summ.x = np.asarray(x, float)
    # the value at the search's end point is known (same function); elsewhere evaluate it
    end_known = res is not None and x is res.x and math.isfinite(res.fun) and res.fun < 1e300
    summ.fmin = float(res.fun) if end_known else float(f(summ.x))
    summ.feval = cf.n + uncounted
    summ.nit = int(getattr(res, "nit", 0))
    summ.success = bool(res.success)
    summ.message = str(res.message)
    return summ


def recheck_boundary(f: Callable, grad: Callable | None, x_start: np.ndarray, lb: np.ndarray,
                     opt: OptSummary, *, candidates: np.ndarray | None = None, verbose: int = 0,
                     scale: float = 0.05, label: str = "boundary check",
                     progress=None) -> OptSummary:
    """A second opinion on an optimum with a variance component on its bound.

    L-BFGS-B's first step has unit length and can land on a corner of the bounds that is a
    local minimum of the boundary only: with (1 + x | g), theta_1 = theta_3 = 0 (a random slope
    alone), while lme4's bobyqa, a trust region growing from its start, reaches a better interior
    optimum (7 of 100 sleepstudy bootstrap refits; tests/test_optimize.py). So a boundary result
    is compared with a run from the start in coordinates shrunk by ``scale`` (a first step of
    0.05 instead of 1 in theta; the curvature pairs take over after it), and the better of the
    two is kept. ``candidates``: the components whose stop on the bound is checked (the diagonal
    of vector-valued terms; a scalar variance at zero is handled by the edge restart)."""
    x = np.asarray(opt.x, dtype=float)
    if x.size <= _SMALL:                  # the usual few thetas: no numpy calls
        cand = [True] * x.size if candidates is None else np.asarray(candidates).tolist()
        if not any(c and li > -math.inf and xi <= li + 1e-10
                   for xi, li, c in zip(x.tolist(), lb.tolist(), cand)):
            return opt
    else:
        at = np.isfinite(lb) & (x <= lb + 1e-10)
        if candidates is not None:
            at &= candidates
        if not at.any():
            return opt
    if np.allclose(x_start, opt.x):
        return opt
    g = None if grad is None else (lambda z: scale * np.asarray(grad(scale * z)))
    alt = minimize_bounded(lambda z: f(scale * z), np.maximum(x_start, lb) / scale, lb / scale,
                           grad=g, verbose=verbose, label=label, progress=progress)
    if alt.fmin < opt.fmin - 1e-10 * max(1.0, abs(opt.fmin)):
        alt.x = scale * alt.x
        alt.x0 = scale * alt.x0
        alt.optimizer += " (after a boundary check from the start)"
        alt.feval += opt.feval
        return alt
    return opt
