# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""A projected quasi-Newton method (dense BFGS) for smooth functions of a few variables with lower
bounds, driving a compiled `Objective` or a Python callable that returns (f, gradient).

On the small problems of a mixed-model fit (theta, or theta and beta: 1-50 variables) scipy's
L-BFGS-B costs about 4 us a call of its compiled step plus a Python loop around it, more than
the deviance itself; this loop costs well under 1 us an iteration. The method (Bertsekas 1982,
"Projected Newton methods for optimization problems with simple constraints"; Kim, Sra and
Dhillon 2010): variables at or next to their bound with a positive slope are sent onto it, the
others take the Newton step of the Hessian approximation's free block (L-BFGS-B's model: theta I
updated by the stored curvature pairs; a Cholesky solve), and a backtracking Armijo search runs
along the projection arc. The stopping rules are L-BFGS-B's
(projected gradient <= gtol, relative reduction of f <= ftol), plus its rounding-floor rule of
`pyglmm.fit.optimize` (a projected gradient at the noise level of a large deviance).
"""
import numpy as np
from libc.math cimport fabs, sqrt, isfinite

include "_dense.pxi"

cdef enum:
    NSMALL = 2               # relative reductions under ftol in a row that stop the search
cdef enum:                   # status codes, in the order of MESSAGES
    ST_PGTOL = 0
    ST_FTOL = 1
    ST_FLOOR = 2
    ST_MAXITER = 3
    ST_MAXFUN = 4
    ST_LINESEARCH = 5
    ST_START = 6

cdef class Objective:
    """Base of the compiled objectives: ``fg`` writes f and the gradient at x and returns 0, or 1
    where the objective is not defined there (a system not positive definite: +inf to the
    search). Called from Python it returns (f, g), f = inf where undefined."""

    cdef int fg(self, const double* x, double* f, double* g) except -1:
        raise NotImplementedError

    def __call__(self, x):
        xa = np.ascontiguousarray(x, dtype=np.float64)
        if xa.shape[0] != self.nx:
            raise ValueError(f"expected {self.nx} parameters, got {xa.shape[0]}")
        g = np.zeros(self.nx)
        cdef double[::1] xv = xa, gv = g
        cdef double f = 0.0
        if self.nx == 0 or self.fg(&xv[0], &f, &gv[0]) != 0 or not isfinite(f):
            g[:] = 0.0
            return float("inf"), g
        return f, g


MESSAGES = ("CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
            "CONVERGENCE: REL_REDUCTION_OF_F <= FACTR*EPSMCH",
            "CONVERGENCE: projected gradient at its rounding floor",
            "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT",
            "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT",
            "ABNORMAL: LINE SEARCH FOUND NO DECREASE",
            "ABNORMAL: NO FINITE VALUE AT THE START")


cdef double _pgnorm(double[::1] x, double[::1] g, double[::1] lb, Py_ssize_t n) noexcept nogil:
    """L-BFGS-B's projected-gradient norm (max over i of |x_i - P(x_i - g_i)|), lower bounds."""
    cdef double m = 0.0, gi, v
    cdef Py_ssize_t i
    for i in range(n):
        gi = g[i]
        if gi > 0.0 and isfinite(lb[i]):
            v = x[i] - lb[i]
            if gi < v:
                v = gi
        else:
            v = fabs(gi)
        if v > m:
            m = v
    return m


cdef int _call(object fg, Objective cfg, double[::1] xt, double[::1] gout, double* fout,
               Py_ssize_t n) except -1:
    """f and g at xt from the compiled objective or else the Python callable (given a copy of
    xt); a non-finite f is +inf."""
    cdef Py_ssize_t i
    if cfg is not None:
        if cfg.fg(&xt[0], fout, &gout[0]) != 0 or not isfinite(fout[0]):
            fout[0] = float("inf")
        return 0
    res = fg(np.asarray(xt).copy())
    f = float(res[0])
    cdef double[::1] gv = np.asarray(res[1], dtype=np.float64).reshape(-1)
    if gv.shape[0] != n:
        raise ValueError("gradient of the wrong length")
    fout[0] = f if isfinite(f) else float("inf")
    for i in range(n):
        gout[i] = gv[i]
    return 0


def bfgs_bounded(fg, x0, lb, int maxiter=15000, double ftol=1e-13, double gtol=1e-7,
                 int maxls=20, int maxfun=15000, double floor_abs=1e-4, double floor_rel=1e-8,
                 int patience=3, int maxcor=20):
    """Minimise f over x >= lb (entries of lb may be -inf). ``fg(x)`` returns (f, g); an
    `Objective` is called in C.

    Returns (x, f, g, nfev, nit, status, message); x is the best point evaluated. ``floor_abs``,
    ``floor_rel``: a projected gradient below max(floor_abs, floor_rel |f|) counts as converged
    once ``patience`` line-search trials in a row fail to lower f (rounding noise). ``maxcor``:
    curvature pairs kept (as L-BFGS-B's)."""
    cdef Py_ssize_t n = len(x0), i, j, k
    xa = np.maximum(np.asarray(x0, dtype=np.float64), np.asarray(lb, dtype=np.float64))
    cdef double[::1] x = xa
    cdef double[::1] l = np.ascontiguousarray(lb, dtype=np.float64)
    cdef double[::1] g = np.empty(n), gt = np.empty(n), xt = np.empty(n), d = np.empty(n)
    cdef double[::1] s = np.empty(n), y = np.empty(n), Bs = np.empty(n)
    cdef double[:, ::1] B = np.eye(n), L = np.empty((n, n))
    cdef int m = maxcor if maxcor > 0 else 1, npair = 0
    cdef double[:, ::1] S = np.empty((m, n)), Y = np.empty((m, n))
    cdef char[::1] active = np.zeros(n, dtype=np.int8)
    cdef double f, ft, pg, gd, gdt, alpha, aq, floor, sy, yy, sBs, nd, eps, t, c
    cdef int nfev = 0, nit = 0, status = -1, ls, fails, small = 0
    cdef bint identity = True, ok, stop

    cdef Objective cfg = fg if isinstance(fg, Objective) and (<Objective>fg).nx == n else None
    _call(fg, cfg, x, g, &f, n)
    nfev = 1
    if not isfinite(f):
        return xa, f, np.asarray(g).copy(), nfev, nit, ST_START, MESSAGES[ST_START]
    while True:
        pg = _pgnorm(x, g, l, n)
        if pg <= gtol:
            status = ST_PGTOL
            break
        if nit >= maxiter:
            status = ST_MAXITER
            break
        if nfev >= maxfun:
            status = ST_MAXFUN
            break
        floor = floor_rel * fabs(f)
        if floor < floor_abs:
            floor = floor_abs
        # the epsilon-active set: near the bound with a positive slope -> sent onto the bound
        eps = pg if pg < 1e-3 else 1e-3
        for i in range(n):
            active[i] = isfinite(l[i]) and g[i] > 0.0 and x[i] - l[i] <= eps
        while True:                                  # direction (retried once after a reset)
            if not _free_step(B, L, g, x, l, active, d, n):  # B_FF not positive definite
                _reset(B, n)
                identity = True
                npair = 0
                continue
            gd = 0.0
            nd = 0.0
            for i in range(n):
                if not active[i]:
                    gd += g[i] * d[i]
                nd += d[i] * d[i]
            if gd >= 0.0 and not identity:            # not a descent direction: forget B
                _reset(B, n)
                identity = True
                npair = 0
                continue
            # first step of a fresh approximation: unit length, as L-BFGS-B
            alpha = 1.0
            if identity and nd > 1.0:
                alpha = 1.0 / sqrt(nd)
            # backtracking Armijo search along the projection arc
            ok = stop = False
            fails = 0
            for ls in range(maxls):
                for i in range(n):
                    t = x[i] + alpha * d[i]
                    xt[i] = t if t > l[i] else l[i]
                _call(fg, cfg, xt, gt, &ft, n)
                nfev += 1
                gdt = 0.0
                for i in range(n):
                    gdt += g[i] * (xt[i] - x[i])
                if ft <= f + 1e-4 * gdt and ft < f:
                    ok = True
                    break
                if ft >= f:
                    fails += 1
                    if pg < floor and fails >= patience:
                        stop = True                   # only rounding noise left to search
                        break
                if nfev >= maxfun:
                    stop = True
                    break
                if isfinite(ft) and gd < 0.0:            # minimiser of the quadratic fit
                    c = ft - f - alpha * gd
                    aq = -gd * alpha * alpha / (2.0 * c) if c > 0.0 else 0.5 * alpha
                    if aq < 0.1 * alpha:
                        aq = 0.1 * alpha
                    elif aq > 0.5 * alpha:
                        aq = 0.5 * alpha
                    alpha = aq
                else:
                    alpha *= 0.1
            if ok or stop or identity:
                break
            _reset(B, n)                               # failed with curvature: steepest descent
            identity = True
            npair = 0
        if not ok:
            if pg < floor:
                status = ST_FLOOR
            elif nfev >= maxfun:
                status = ST_MAXFUN
            else:
                status = ST_LINESEARCH
            break
        nit += 1
        sy = 0.0
        for i in range(n):
            s[i] = xt[i] - x[i]
            y[i] = gt[i] - g[i]
            sy += s[i] * y[i]
        t = f - ft
        for i in range(n):
            x[i] = xt[i]
            g[i] = gt[i]
        c = fabs(f)
        if fabs(ft) > c:
            c = fabs(ft)
        if c < 1.0:
            c = 1.0
        f = ft
        if t <= ftol * c:                 # two small reductions in a row: one can be a short step
            small += 1
            if small >= NSMALL:
                status = ST_FTOL
                break
        else:
            small = 0
        # the curvature pairs (s, y) with s'y > 0 (at most m, the oldest dropped) and B rebuilt
        # from theta I, theta = y'y / s'y of the newest pair, by their BFGS updates: the matrix
        # of L-BFGS-B's compact form. s = 0 on the bound, so the secant condition holds on the
        # free block.
        yy = _dot(y, y, n)
        if sy > 1e-10 * sqrt(yy) * sqrt(_dot(s, s, n)):
            if npair == m:
                for k in range(m - 1):
                    for i in range(n):
                        S[k, i] = S[k + 1, i]
                        Y[k, i] = Y[k + 1, i]
                npair -= 1
            for i in range(n):
                S[npair, i] = s[i]
                Y[npair, i] = y[i]
            npair += 1
            _rebuild(B, S, Y, Bs, npair, yy / sy, n)
            identity = False
    return xa, f, np.asarray(g).copy(), nfev, nit, status, MESSAGES[status]


cdef double _dot(double[::1] a, double[::1] b, Py_ssize_t n) noexcept nogil:
    cdef double t = 0.0
    cdef Py_ssize_t i
    for i in range(n):
        t += a[i] * b[i]
    return t


cdef void _reset(double[:, ::1] B, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i, j
    for i in range(n):
        for j in range(n):
            B[i, j] = 1.0 if i == j else 0.0


cdef bint _free_step(double[:, ::1] B, double[:, ::1] L, double[::1] g, double[::1] x,
                     double[::1] l, char[::1] active, double[::1] d, Py_ssize_t n) noexcept nogil:
    """d: onto the bound for the active variables, -B_FF^{-1} g_F for the free ones (Cholesky of
    B_FF in L, in place of the free rows and columns); False when B_FF is not positive definite."""
    cdef Py_ssize_t i, j, k
    cdef double t
    for i in range(n):
        if active[i]:
            continue
        for j in range(i + 1):
            if active[j]:
                continue
            t = B[i, j]
            for k in range(j):
                if not active[k]:
                    t -= L[i, k] * L[j, k]
            if i == j:
                if t <= 0.0:
                    return False
                L[i, i] = sqrt(t)
            else:
                L[i, j] = t / L[j, j]
    for i in range(n):                     # forward: L z = -g_F
        if active[i]:
            d[i] = l[i] - x[i]
            continue
        t = -g[i]
        for k in range(i):
            if not active[k]:
                t -= L[i, k] * d[k]
        d[i] = t / L[i, i]
    for i in range(n - 1, -1, -1):         # back: L' d = z
        if active[i]:
            continue
        t = d[i]
        for k in range(i + 1, n):
            if not active[k]:
                t -= L[k, i] * d[k]
        d[i] = t / L[i, i]
    return True


cdef void _rebuild(double[:, ::1] B, double[:, ::1] S, double[:, ::1] Y, double[::1] Bs,
                   int npair, double theta, Py_ssize_t n) noexcept nogil:
    """B = theta I updated by BFGS with the stored pairs, oldest first."""
    cdef Py_ssize_t i, j, k
    cdef double t, sy, sBs
    for i in range(n):
        for j in range(n):
            B[i, j] = theta if i == j else 0.0
    for k in range(npair):
        sy = 0.0
        for i in range(n):
            t = 0.0
            for j in range(n):
                t += B[i, j] * S[k, j]
            Bs[i] = t
            sy += S[k, i] * Y[k, i]
        sBs = 0.0
        for i in range(n):
            sBs += S[k, i] * Bs[i]
        if sBs <= 0.0 or sy <= 0.0:
            continue
        for i in range(n):
            for j in range(n):
                B[i, j] += Y[k, i] * Y[k, j] / sy - Bs[i] * Bs[j] / sBs


def gradient_jacobian(Objective obj, x, double h):
    """(g, H): the gradient at x and the symmetrised Jacobian of the gradient there by forward
    differences, column i from a step h max(1, |x_i|) (optimize.fd_jacobian's rule with g0),
    in C calls of ``obj``: the Hessian of the convergence checks and standard errors. Where
    ``obj`` is undefined the gradient counts as zero, as the Python gradients return it."""
    xa = np.array(x, dtype=np.float64)
    cdef Py_ssize_t n = xa.shape[0], i, j
    g_a, H_a = np.zeros(n), np.empty((n, n))
    cdef double[::1] xv = xa, g0 = g_a, gi = np.zeros(n + 1)
    cdef double[:, ::1] H = H_a
    cdef double f = 0.0, hi, xi, t
    if n == 0:
        return g_a, H_a
    if obj.fg(&xv[0], &f, &g0[0]) != 0 or not isfinite(f):
        for j in range(n):
            g0[j] = 0.0
    for i in range(n):
        xi = xv[i]
        hi = h * (fabs(xi) if fabs(xi) > 1.0 else 1.0)
        xv[i] = xi + hi
        if obj.fg(&xv[0], &f, &gi[0]) != 0 or not isfinite(f):
            for j in range(n):
                gi[j] = 0.0
        for j in range(n):
            H[j, i] = (gi[j] - g0[j]) / hi
        xv[i] = xi
    for i in range(n):
        for j in range(i):
            t = 0.5 * (H[i, j] + H[j, i])
            H[i, j] = t
            H[j, i] = t
    return g_a, H_a


cdef void _jacobi_eigenvalues(Py_ssize_t k, double* A, double* ev) noexcept nogil:
    """Eigenvalues of a symmetric k x k row-major A (overwritten) by cyclic Jacobi rotations,
    to full accuracy in a few sweeps for the small Hessians of a fit."""
    cdef Py_ssize_t sweep, p, q, r
    cdef double off, tot, apq, theta, t, c, s, app, aqq, arp, arq
    for sweep in range(100):
        off = 0.0
        tot = 0.0
        for p in range(k):
            tot += A[p * k + p] * A[p * k + p]
            for q in range(p + 1, k):
                off += A[p * k + q] * A[p * k + q]
        if not off > 1e-30 * (tot + off):           # also stops on NaN
            break
        for p in range(k):
            for q in range(p + 1, k):
                apq = A[p * k + q]
                if apq == 0.0:
                    continue
                app, aqq = A[p * k + p], A[q * k + q]
                theta = (aqq - app) / (2.0 * apq)
                t = 1.0 / (fabs(theta) + sqrt(theta * theta + 1.0))
                if theta < 0.0:
                    t = -t
                c = 1.0 / sqrt(t * t + 1.0)
                s = t * c
                for r in range(k):
                    arp, arq = A[r * k + p], A[r * k + q]
                    A[r * k + p] = c * arp - s * arq
                    A[r * k + q] = s * arp + c * arq
                for r in range(k):
                    arp, arq = A[p * k + r], A[q * k + r]
                    A[p * k + r] = c * arp - s * arq
                    A[q * k + r] = s * arp + c * arq
                A[p * k + q] = 0.0
                A[q * k + p] = 0.0
    for p in range(k):
        ev[p] = A[p * k + p]


def convergence_check(H, g):
    """lme4's checks of an optimum in one call: (positive definite, max |L^{-1} g| with L the
    Cholesky factor of the Hessian H, smallest / largest eigenvalue of H). The last two are NaN
    where H is not positive definite."""
    Ha = np.array(H, dtype=np.float64, order="C")
    ga = np.array(g, dtype=np.float64)
    cdef Py_ssize_t k = Ha.shape[0], a
    if k == 0:
        return True, 0.0, 1.0
    La, Ea = Ha.copy(), np.empty(k)
    cdef double[:, ::1] L = La, E2 = Ha
    cdef double[::1] gv = ga, ev = Ea
    cdef double m = 0.0, lo, hi
    if _chol(k, &L[0, 0]) != 0:
        return False, float("nan"), float("nan")
    _fwd(k, &L[0, 0], &gv[0])
    for a in range(k):
        if fabs(gv[a]) > m or gv[a] != gv[a]:
            m = fabs(gv[a])
    _jacobi_eigenvalues(k, &E2[0, 0], &ev[0])
    lo, hi = ev[0], ev[0]
    for a in range(k):
        lo = ev[a] if ev[a] < lo else lo
        hi = ev[a] if ev[a] > hi else hi
    return True, m, lo / hi


def small_cholesky(A):
    """Lower Cholesky factor (upper triangle zero) of a small symmetric positive definite A, or
    None where A is not positive definite (linalg.small's LAPACK wrappers cost more here)."""
    La = np.array(A, dtype=np.float64, order="C")
    cdef Py_ssize_t k = La.shape[0], a, b
    if k == 0:
        return La
    cdef double[:, ::1] L = La
    if _chol(k, &L[0, 0]) != 0:
        return None
    for a in range(k):
        if not isfinite(L[a, a]):
            return None
        for b in range(a + 1, k):
            L[a, b] = 0.0
    return La


def small_spd_inverse(A, bint factored=False):
    """Inverse (both triangles) of a small symmetric positive definite A, or None where A is
    not positive definite. ``factored``: A is already its lower Cholesky factor L (the inverse
    of L L')."""
    La = np.array(A, dtype=np.float64, order="C")
    cdef Py_ssize_t k = La.shape[0], a
    if k == 0:
        return La
    out_a = np.empty((2, k, k))
    cdef double[:, :, ::1] ow = out_a
    cdef double[:, ::1] L = La
    if not factored and _chol(k, &L[0, 0]) != 0:
        return None
    for a in range(k):
        if not (isfinite(L[a, a]) and L[a, a] != 0.0):
            return None
    _chol_inverse(k, &L[0, 0], &ow[0, 0, 0], &ow[1, 0, 0])
    out = out_a[0]
    for a in range(k * k):
        if not isfinite(ow[0, a // k, a % k]):
            return None
    return out


def small_lower_inverse(L):
    """Inverse of a small lower-triangular L (upper triangle ignored, zero in the result), or
    None where a diagonal entry is zero or not finite."""
    La = np.ascontiguousarray(L, dtype=np.float64)
    cdef Py_ssize_t k = La.shape[0], a, b, m
    out_a = np.zeros((k, k))
    if k == 0:
        return out_a
    cdef const double[:, ::1] Lm = La
    cdef double[:, ::1] Li = out_a
    cdef double t
    for b in range(k):
        if not (isfinite(Lm[b, b]) and Lm[b, b] != 0.0):
            return None
        Li[b, b] = 1.0 / Lm[b, b]
        for a in range(b + 1, k):
            t = 0.0
            for m in range(b, a):
                t = t + Lm[a, m] * Li[m, b]
            Li[a, b] = -t / Lm[a, a]
    return out_a
