"""Checks of a model frame and of a fit, with lme4's messages: constant responses, identifiability,
predictor scales, rank deficiency, separation, singular fits, convergence (gradient and Hessian),
and the size of the dense Schur complement of crossed designs."""
from __future__ import annotations

import math
import warnings

import numpy as np

from ._warn import user_stacklevel
from .errors import ArgumentError, DataError
from .linalg.blocked import BlockPattern, physical_memory
from .linalg.restructure import ReStructure
from .fit import compiled
from .linalg.small import cholesky_lower, eigvalsh, solve_lower
from .results.varcorr import TermInfo

SINGULAR_TOL = 1e-4      # lme4's isSingular tolerance on theta
GRAD_TOL = 2e-3          # lme4's check.conv.grad tolerance on the scaled gradient
DENSE_SLOW_Q = 8_000     # above this many dense Schur columns each factorisation takes minutes


def check_response_varies(frame, fam) -> None:
    """A response that is the same in every row (all 0 counts, all failures) has no finite MLE."""
    kern = compiled.frame_kernels()
    y, w = frame.y, frame.weights
    if kern is not None and y.dtype == w.dtype == np.float64 and y.ndim == w.ndim == 1 and \
            y.flags.c_contiguous and w.flags.c_contiguous:
        constant, value = kern.constant_response(y, w)
    else:
        pos = w > 0
        y = y if pos.all() else y[pos] if pos.any() else y
        constant = bool(y.size and (y == y[0]).all())
        value = float(y[0]) if constant else 0.0
    if constant:
        what = {("poisson", 0.0): "0 in every row (no events)", ("nbinom2", 0.0): "0 in every row (no events)",
                ("binomial", 0.0): "a failure in every row", ("binomial", 1.0): "a success in every row"}
        desc = what.get((fam.name, value), f"equal to {value:g} in every row")
        raise ValueError(f"response '{frame.response_name}' is {desc}: the intercept has no finite "
                         "estimate and there is no variation for the random effects to explain")


def check_identifiable(frame) -> None:
    """A factor with a level per observation is confounded with the residual (LMMs, dispersion families)."""
    for rt in frame.reterms:
        n_lev = len(rt.levels)
        if n_lev >= frame.y.shape[0] and n_lev > 1:
            raise ValueError(
                f"grouping factor '{rt.group_name}' has as many levels ({n_lev}) as observations "
                f"({frame.y.shape[0]}): its variance cannot be told apart from the residual "
                "variance; remove the term or check the grouping column")


def scales_surely_fine(X: np.ndarray) -> bool:
    """True when the ranges of X's columns already rule out checkScaleX's message: a column
    with range R has a (population) sd between R / sqrt(2n) and R / 2, so the sd ratio is at
    most (R_max / R_min) sqrt(n / 2). Two reductions instead of the sd's full pass on most fits."""
    kern = compiled.frame_kernels()
    if kern is not None and X.dtype == np.float64 and X.ndim == 2:
        rmin, rmax, big = kern.column_ranges(X)          # one pass over the rows
        if rmax == 0.0:
            return True
        return big <= 1e6 and rmax / rmin * math.sqrt(X.shape[0] / 2.0) <= 1e3
    rmin, rmax, big = math.inf, 0.0, 0.0
    # column reductions of a C-ordered X run strided (14 us for 180 x 2); on a column-major
    # copy they take 4 (small data only: a copy of a million rows would cost more)
    Xc = np.asfortranarray(X) if X.shape[0] <= 20_000 else X
    for lo, hi in zip(Xc.min(axis=0).tolist(), Xc.max(axis=0).tolist()):   # X is finite here
        r = hi - lo
        if r > 0:
            rmin, rmax, big = min(rmin, r), max(rmax, r), max(big, abs(lo), abs(hi))
    if rmax == 0.0:
        return True
    return big <= 1e6 and rmax / rmin * math.sqrt(X.shape[0] / 2.0) <= 1e3


def note_frame(frame) -> None:
    """lme4's messages about the model frame: rank-deficient columns, predictors on very
    different scales (lme4's checkScaleX)."""
    X = frame.X
    if X.shape[1] > 1 and not scales_surely_fine(X):
        Xc = X - X.mean(axis=0)
        sd = np.sqrt(np.einsum("ij,ij->j", Xc, Xc) / X.shape[0])     # X.std(axis=0), faster
        nonconst = sd > 0
        if nonconst.sum() >= 1:
            big = np.abs(X[:, nonconst]).max(axis=0)
            ratio = sd[nonconst].max() / sd[nonconst].min() if nonconst.sum() > 1 else 1.0
            if ratio > 1e3 or big.max() > 1e6:
                names = [n for n, k in zip(frame.fixef_names, nonconst) if k]
                worst = names[int(np.argmax(sd[nonconst]))]
                warnings.warn("Some predictor variables are on very different scales (largest "
                              f"spread: '{worst}'): consider rescaling, e.g. scale({worst}); "
                              "estimates on the original scale follow by back-transforming",
                              UserWarning, stacklevel=user_stacklevel())
    if frame.dropped_fixef:
        k = len(frame.dropped_fixef)
        warnings.warn(f"fixed-effect model matrix is rank deficient so dropping {k} column"
                      f"{'s' if k > 1 else ''} / coefficient{'s' if k > 1 else ''}: "
                      + ", ".join(frame.dropped_fixef), UserWarning, stacklevel=user_stacklevel())


def check_dense_size(rs: ReStructure, infos: list[TermInfo]) -> None:
    """Refuse a crossed design whose dense Schur complement cannot fit in memory, and warn when
    it will be slow, naming the terms (instead of a MemoryError deep inside numpy)."""
    if len(rs.terms) < 2:
        return
    mem = physical_memory()
    if rs.qr <= DENSE_SLOW_Q and (not mem or 24 * rs.qr * rs.qr <= mem // 2):
        return              # even a dense Schur complement fits and is fast: no pattern needed yet
    pat = rs._block_pattern = BlockPattern(rs)
    need = pat.dense_schur_bytes()
    if not need:
        return
    rest = ", ".join(f"(... | {i.group}) with {len(i.levels):,} levels" for i in infos[1:])
    if mem and need > mem // 2:
        raise MemoryError(
            f"the crossed random effects {rest} need a dense {pat.qr:,} x {pat.qr:,} matrix "
            f"({need / 1e9:.1f} GB, more than half of this machine's {mem / 1e9:.0f} GB): pyglmm "
            f"factors every term after the one with most levels ('{infos[0].group}') densely. "
            "Merge rare levels, fit a random subset of the levels, or model the factor with the "
            "fewer levels as fixed effects")
    if pat.qr > DENSE_SLOW_Q:
        warnings.warn(
            f"the crossed random effects {rest} give a dense {pat.qr:,} x {pat.qr:,} system "
            f"({need / 1e9:.1f} GB); each deviance evaluation factors it (O(q^3)), so this fit "
            "may take many minutes", UserWarning, stacklevel=user_stacklevel())


def separation_messages(fam, mu, beta, names) -> list[str]:
    """glm's 'fitted probabilities numerically 0 or 1' and the coefficients that diverge with it."""
    if fam.name != "binomial":
        return []
    eps = 1e-8
    extreme = int(np.count_nonzero((mu < eps) | (mu > 1 - eps)))
    big = [n for n, b in zip(names, beta) if n != "(Intercept)" and abs(b) > 10]
    if not extreme and not big:
        return []
    msg = f"fitted probabilities numerically 0 or 1 occurred ({extreme} rows)" if extreme else \
        "very large fixed effects on the link scale"
    if big:
        msg += ("; (quasi-)complete separation is likely in " + ", ".join(f"'{n}'" for n in big)
                + ": its estimate and standard error are not meaningful. Consider removing or "
                  "merging categories, or a penalised / Bayesian fit with a weakly informative prior")
    return [msg]


def is_singular(rs: ReStructure, theta: np.ndarray) -> bool:
    """lme4's isSingular: a diagonal element of a T block (a variance) below SINGULAR_TOL."""
    return any(t < SINGULAR_TOL for t, l in zip(np.asarray(theta).tolist(), rs._lb.tolist())
               if l == 0.0)


def hessian_checks(H: np.ndarray, g: np.ndarray) -> tuple[bool, float, float]:
    """(H positive definite, max |L^{-1} g| for H = LL', smallest / largest eigenvalue of H):
    in one compiled call where the kernels are built, else by LAPACK."""
    kern = compiled.optim_kernels()
    if kern is not None:
        return kern.convergence_check(H, g)
    try:
        C = cholesky_lower(H)
    except np.linalg.LinAlgError:
        return False, float("nan"), float("nan")
    ev = eigvalsh(H)
    return True, float(np.max(np.abs(solve_lower(C, g)))), float(ev.min() / ev.max())


def conv_messages(grad, hess, free, singular) -> tuple[bool, list[str]]:
    """lme4's convergence checks: scaled gradient and positive definiteness of the Hessian."""
    msgs = []
    ok = True
    if grad is None or hess is None:
        return True, msgs
    if not free.any():
        return True, msgs
    g, H = (grad, hess) if free.all() else (grad[free], hess[np.ix_(free, free)])
    pos_def, max_sg, ratio = hessian_checks(H, g)
    if not pos_def:
        if not singular:
            ok = False
            msgs.append("Model failed to converge: the Hessian of the deviance is not positive "
                        "definite. Check for collinear predictors, rescale, or simplify the "
                        "random-effects structure.")
        return ok, msgs
    if max_sg > GRAD_TOL:
        ok = False
        msgs.append(f"Model failed to converge with max|grad| = {max_sg:.4g} "
                    f"(tol = {GRAD_TOL}). Try rescaling predictors (e.g. scale()) or a simpler "
                    "random-effects structure.")
    if ratio < 1e-10:
        msgs.append("Model is nearly unidentifiable: very large eigenvalue ratio. "
                    "Rescale variables?")
    return ok, msgs


def check_start_lengths(start: dict, ntheta: int, lb: np.ndarray, fixef_names: list[str],
                        fn: str, theta_names=None) -> None:
    """The start vectors match the model: one theta per variance parameter (within its bounds)
    and one beta per fixed-effect column."""
    th = start.get("theta")
    if th is not None:
        if th.size != ntheta:
            raise ArgumentError(f"{fn}(): start['theta'] has {th.size} values; this model has "
                                f"{ntheta} variance-component parameters (theta)")
        low = np.flatnonzero(th < lb)
        if low.size:
            i = int(low[0])
            raise ArgumentError(f"{fn}(): start['theta'][{i}] = {th[i]:g} is below its lower bound "
                                f"{lb[i]:g} (the diagonal elements of theta are standard "
                                "deviations relative to the residual: >= 0)")
    be = start.get("beta")
    if be is not None and be.size != len(fixef_names):
        raise ArgumentError(f"{fn}(): start['beta'] has {be.size} values; the model has "
                            f"{len(fixef_names)} fixed effects ({', '.join(fixef_names)})")


def check_nobs_vs_nre(frame, allow_n: bool) -> None:
    """lme4's check.nobs.vs.nRE (default "stop" for lmer and glmer): a term with at least as many
    random effects (levels x columns) as observations (lmer; more than, for glmer, which has no
    residual variance: lme4's allow.n) cannot be identified. With a residual variance (lmer,
    glmmPQL: not ``allow_n``) the fixed effects must also leave a residual degree of freedom:
    with as many coefficients as observations (of positive weight) the fit interpolates y and
    the profiled deviance has no minimum (was a ZeroDivisionError)."""
    n = int(frame.y.shape[0])
    p = int(frame.X.shape[1])
    if not allow_n and p:
        n_pos = int(np.count_nonzero(frame.weights > 0))
        if n_pos <= p:
            shown = ", ".join(frame.fixef_names[:6]) + (", ..." if p > 6 else "")
            raise DataError(
                f"number of observations (={n_pos}{' with positive weights' if n_pos < n else ''}) "
                f"<= number of fixed effects (={p}: {shown}); the residual variance cannot be "
                "estimated (no residual degrees of freedom): use fewer fixed-effect terms or more data")
    for rt in frame.reterms:
        nre = len(rt.levels) * rt.X.shape[1]
        if (nre > n) if allow_n else (nre >= n):
            lhs = " + ".join("1" if c == "(Intercept)" else c for c in rt.colnames)
            if rt.colnames and rt.colnames[0] != "(Intercept)":
                lhs = "0 + " + lhs
            cmp, rest = ("<", "") if allow_n else ("<=", " and the residual variance (or scale "
                                                         "parameter)")
            raise DataError(
                f"number of observations (={n}) {cmp} number of random effects (={nre}) for term "
                f"({lhs} | {rt.group_name}); the random-effects parameters{rest} are probably "
                "unidentifiable: use fewer random-effect columns or a grouping factor with fewer "
                "levels")
