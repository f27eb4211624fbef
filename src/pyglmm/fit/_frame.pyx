# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""One-pass checks and codes of the model frame (the numpy paths in `pyglmm.design` give the
same answers): on data of a few hundred rows each of them replaces three to eight numpy calls
of about a microsecond each, which add up to a large part of a small fit."""
import numpy as np
from libc.math cimport isfinite, fabs, sqrt, nearbyint
from libc.stdint cimport int64_t


def factor_counts(const int64_t[::1] codes, Py_ssize_t nlevels):
    """(missing codes, levels used) of a factor's codes: one pass instead of a mask, a count
    and a bincount."""
    cdef Py_ssize_t n = codes.shape[0], i, na = 0, used = 0
    cdef int64_t c
    seen_a = np.zeros(nlevels + 1, dtype=np.uint8)
    cdef unsigned char[::1] seen = seen_a
    for i in range(n):
        c = codes[i]
        if c < 0:
            na += 1
        elif c < nlevels and not seen[c]:
            seen[c] = 1
            used += 1
    return na, used


def all_finite(const double[:] v, bint nonneg=False):
    """Whether every value is finite (NaN and infinities are not), and with ``nonneg`` >= 0."""
    cdef Py_ssize_t i
    for i in range(v.shape[0]):
        if not isfinite(v[i]) or (nonneg and v[i] < 0.0):
            return False
    return True


def interaction(list codes, list nlevels, Py_ssize_t max_keys):
    """Dense codes of the combinations present of several factors (no missing codes), numbered
    in the order of their combined key (first factor slowest), and for each factor the level of
    every combination: (codes, (k, combinations) array of levels). None where the key space exceeds
    ``max_keys`` (the caller then sorts)."""
    cdef Py_ssize_t k = len(codes), n, i, j, m = 0
    cdef Py_ssize_t space = 1
    for j in range(k):
        space *= <Py_ssize_t>nlevels[j]
        if space > max_keys:
            return None
    cdef const int64_t[::1] c0 = codes[0]
    n = c0.shape[0]
    key_a = np.empty(n, dtype=np.int64)
    cdef int64_t[::1] key = key_a
    cdef const int64_t[::1] cj
    cdef int64_t nl
    for i in range(n):
        key[i] = c0[i]
    for j in range(1, k):
        cj = codes[j]
        nl = nlevels[j]
        for i in range(n):
            key[i] = key[i] * nl + cj[i]
    remap_a = np.full(space, -1, dtype=np.int64)
    cdef int64_t[::1] remap = remap_a
    for i in range(n):
        remap[key[i]] = 1
    uk_a = np.empty(space, dtype=np.int64)
    cdef int64_t[::1] uk = uk_a
    for i in range(space):
        if remap[i] >= 0:
            remap[i] = m
            uk[m] = i
            m += 1
    for i in range(n):
        key[i] = remap[key[i]]
    levels_a = np.empty((k, m), dtype=np.int64)
    cdef int64_t[:, ::1] lv = levels_a
    cdef int64_t rest
    for i in range(m):
        rest = uk[i]
        for j in range(k - 1, -1, -1):
            nl = nlevels[j]
            lv[j, i] = rest % nl
            rest //= nl
    return key_a, levels_a


def binomial_counts(const double[::1] y, const double[::1] w, double tol):
    """(values outside [0, 1], non-integer successes w y) of a binomial response: the checks of
    `Binomial._validate` in one pass."""
    cdef Py_ssize_t i, bad = 0, nonint = 0
    cdef double m
    for i in range(y.shape[0]):
        if y[i] < 0.0 or y[i] > 1.0:
            bad += 1
        m = w[i] * y[i]
        if fabs(m - nearbyint(m)) > tol:
            nonint += 1
    return bad, nonint


def unit_gram_min_diag(const double[:, ::1] X):
    """The smallest Cholesky diagonal of the Gram matrix of X's unit-norm columns (0 where the
    factorisation breaks down, or a column is zero): the full-rank test of
    `rank_deficient_columns`, for a few columns."""
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1], i, a, b, c
    G_a = np.zeros((p, p))
    cdef double[:, ::1] G = G_a
    cdef double t, mn = 1e300
    for i in range(n):
        for a in range(p):
            t = X[i, a]
            for b in range(a + 1):
                G[a, b] += t * X[i, b]
    cdef double[::1] s = np.empty(p)
    for a in range(p):
        if not G[a, a] > 0.0:
            return 0.0
        s[a] = 1.0 / sqrt(G[a, a])
    for a in range(p):
        for b in range(a + 1):
            G[a, b] *= s[a] * s[b]
    for b in range(p):                      # Cholesky, column by column, in place (lower)
        t = G[b, b]
        for c in range(b):
            t -= G[b, c] * G[b, c]
        if not t > 0.0:
            return 0.0
        t = sqrt(t)
        G[b, b] = t
        if t < mn:
            mn = t
        for a in range(b + 1, p):
            for c in range(b):
                G[a, b] -= G[a, c] * G[b, c]
            G[a, b] /= t
    return mn


def column_ranges(const double[:, :] X):
    """(smallest nonzero range, largest range, largest |value| among columns with a range) of
    X's columns in one pass over the rows: the inputs of checks._scales_surely_fine."""
    cdef Py_ssize_t n = X.shape[0], p = X.shape[1], i, j
    lo_a, hi_a = np.empty(p), np.empty(p)
    cdef double[::1] lo = lo_a, hi = hi_a
    cdef double v, r, rmin = float("inf"), rmax = 0.0, big = 0.0
    if n == 0:
        return rmin, rmax, big
    for j in range(p):
        lo[j] = X[0, j]
        hi[j] = X[0, j]
    for i in range(1, n):
        for j in range(p):
            v = X[i, j]
            if v < lo[j]:
                lo[j] = v
            elif v > hi[j]:
                hi[j] = v
    for j in range(p):
        r = hi[j] - lo[j]
        if r > 0.0:
            rmin = r if r < rmin else rmin
            rmax = r if r > rmax else rmax
            big = fabs(lo[j]) if fabs(lo[j]) > big else big
            big = fabs(hi[j]) if fabs(hi[j]) > big else big
    return rmin, rmax, big


def constant_response(const double[::1] y, const double[::1] w):
    """Whether y takes one value over the rows of positive weight (over all rows when none
    has), and that value: checks._check_response_varies in one pass."""
    cdef Py_ssize_t n = y.shape[0], i, first = -1
    if n == 0:
        return False, 0.0
    for i in range(n):
        if w[i] > 0.0:
            first = i
            break
    cdef bint anypos = first >= 0
    if not anypos:
        first = 0
    cdef double v = y[first]
    for i in range(first + 1, n):
        if (not anypos or w[i] > 0.0) and y[i] != v:
            return False, v
    return True, v
