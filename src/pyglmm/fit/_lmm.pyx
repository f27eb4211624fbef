# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled profiled deviance of linear mixed models from cross-products (fit/lmm_blocks.py's and
fit/lmm_dense.py's formulas): one call per evaluation gives the deviance pieces and the
gradient, for one-term models with few levels (per-level blocks) and for small models of any
structure (one dense block). The tests compare it with the numpy paths.
"""
import numpy as np
from libc.math cimport log, sqrt

include "_dense.pxi"


cdef void _a_times_t(Py_ssize_t k, const double* A, const double* T, double* out) noexcept nogil:
    """out = A T for a symmetric k x k A and a lower-triangular T (row-major), T's zeros skipped."""
    cdef Py_ssize_t a, b, c
    cdef double t
    for a in range(k * k):
        out[a] = 0.0
    for c in range(k):
        for b in range(c + 1):
            t = T[c * k + b]
            if t != 0.0:
                for a in range(k):
                    out[a * k + b] += A[a * k + c] * t


def single_term_lmm(const double[:, ::1] T, const double[:, :, ::1] A, const double[:, :, ::1] C,
                    const double[:, ::1] d, const double[:, ::1] XtWX, const double[::1] XtWy,
                    double yWy, const unsigned char[:, ::1] need):
    """The one-term LMM from per-level cross-products at T (lmm_blocks.py's formulas).

    A (levels, p1, p1), C (levels, p1, p), d (levels, p1): sums of w x x', w x X', w x y.
    Returns (logdet M, M^{-1} (l, p1, p1), B (l, p1, p), R_X, beta, u (l, p1), pwrss, G1, G2, G3)
    with the gradient pieces G1 = d log|M|/dT, G2 = sum zr_j u_j' and G3 = d log|S|/dT (p1 x p1).
    Raises LinAlgError when M or S is not positive definite.
    """
    cdef Py_ssize_t l = A.shape[0], p1 = A.shape[1], p = C.shape[2], j, a, b, c, e
    Minv_a = np.empty((l, p1, p1))
    B_a = np.empty((l, p1, p))
    u_a = np.empty((l, p1))
    S_a = np.array(XtWX, dtype=np.float64)
    rhs_a = np.array(XtWy, dtype=np.float64)
    beta_a = np.empty(p)
    G1_a, G2_a, G3_a = np.zeros((p1, p1)), np.zeros((p1, p1)), np.zeros((p1, p1))
    Sinv_a = np.empty((p, p))
    cdef double[:, :, ::1] Minv = Minv_a, B = B_a
    cdef double[:, ::1] u = u_a, S = S_a, G1 = G1_a, G2 = G2_a, G3 = G3_a, Sinv = Sinv_a
    cdef double[::1] rhs = rhs_a, beta = beta_a
    work_a = np.empty(2 * p1 * p1 + 2 * p1 * p + 3 * p1 + p * p + 1)   # M, AT, K, BS, ev, zr, col, Swork
    cdef double[::1] work = work_a
    cdef double* M = &work[0]
    cdef double* AT = M + p1 * p1
    cdef double* K = AT + p1 * p1
    cdef double* BS = K + p1 * p
    cdef double* ev = BS + p1 * p
    cdef double* zr = ev + p1
    cdef double* col = zr + p1
    cdef double* Swork = col + p1
    need_col_a = np.asarray(need).any(axis=0).astype(np.uint8)
    cdef const unsigned char[::1] need_col = need_col_a
    cdef double logdet = 0.0, t, pwrss
    cdef int bad = 0
    with nogil:
        for j in range(l):
            # M = T'(A_j T) + I (T lower triangular; its zeros skipped: diagonal for scalar terms)
            _a_times_t(p1, &A[j, 0, 0], &T[0, 0], AT)
            for a in range(p1):
                for b in range(a + 1):
                    t = 0.0
                    for c in range(a, p1):
                        if T[c, a] != 0.0:
                            t = t + T[c, a] * AT[c * p1 + b]
                    M[a * p1 + b] = t + (1.0 if a == b else 0.0)
            if _chol(p1, M) != 0:
                bad = 1
                break
            for a in range(p1):
                logdet += 2.0 * log(M[a * p1 + a])
            _chol_inverse(p1, M, &Minv[j, 0, 0], AT)
            # e = T'd_j, K = T'C_j, B = Minv K, cu = Minv e (kept in u)
            for a in range(p1):
                t = 0.0
                for c in range(p1):
                    t = t + T[c, a] * d[j, c]
                ev[a] = t
                for b in range(p):
                    t = 0.0
                    for c in range(p1):
                        t = t + T[c, a] * C[j, c, b]
                    K[a * p + b] = t
            for a in range(p1):
                t = 0.0
                for c in range(p1):
                    t = t + Minv[j, a, c] * ev[c]
                u[j, a] = t
                for b in range(p):
                    t = 0.0
                    for c in range(p1):
                        t = t + Minv[j, a, c] * K[c * p + b]
                    B[j, a, b] = t
            # S -= K'B, rhs -= K'cu
            for a in range(p):
                for b in range(p):
                    t = 0.0
                    for c in range(p1):
                        t = t + K[c * p + a] * B[j, c, b]
                    S[a, b] -= t
                t = 0.0
                for c in range(p1):
                    t = t + K[c * p + a] * u[j, c]
                rhs[a] -= t
    if bad:
        raise np.linalg.LinAlgError("penalized system not positive definite")
    with nogil:
        if p > 0 and _chol(p, &S[0, 0]) != 0:
            bad = 1
    if bad:
        raise np.linalg.LinAlgError("fixed-effects system not positive definite")
    with nogil:
        if p > 0:
            for a in range(p):
                beta[a] = rhs[a]
            _block_solve(p, &S[0, 0], &beta[0])
            _chol_inverse(p, &S[0, 0], &Sinv[0, 0], Swork)
        pwrss = yWy
        for a in range(p):
            pwrss -= beta[a] * XtWy[a]
        for j in range(l):
            for a in range(p1):
                t = u[j, a]
                for b in range(p):
                    t = t - B[j, a, b] * beta[b]
                u[j, a] = t
            for a in range(p1):
                t = 0.0
                for c in range(p1):
                    t = t + T[c, a] * d[j, c]
                pwrss -= u[j, a] * t
            # gradient pieces, at the entries of T that carry a parameter (need):
            # AT = A_j T; G1 += 2 AT Minv; zr = d - C beta - AT u; G2 += zr u'
            _a_times_t(p1, &A[j, 0, 0], &T[0, 0], AT)
            for a in range(p1):
                t = d[j, a]
                for b in range(p):
                    t = t - C[j, a, b] * beta[b]
                for b in range(p1):
                    t = t - AT[a * p1 + b] * u[j, b]
                zr[a] = t
            for a in range(p1):
                for b in range(p1):
                    if need[a, b]:
                        t = 0.0
                        for c in range(p1):
                            t = t + AT[a * p1 + c] * Minv[j, c, b]
                        G1[a, b] += 2.0 * t
                        G2[a, b] += zr[a] * u[j, b]
            if p > 0:
                # BS = B_j S^{-1}; G3 += 2 AT (BS B_j') - 2 C_j BS', column by column of BS B_j'
                for a in range(p1):
                    for b in range(p):
                        t = 0.0
                        for c in range(p):
                            t = t + B[j, a, c] * Sinv[c, b]
                        BS[a * p + b] = t
                for b in range(p1):
                    if not need_col[b]:
                        continue
                    for c in range(p1):
                        t = 0.0
                        for e in range(p):
                            t = t + BS[c * p + e] * B[j, b, e]
                        col[c] = t
                    for a in range(p1):
                        if need[a, b]:
                            t = 0.0
                            for c in range(p1):
                                t = t + AT[a * p1 + c] * col[c]
                            for c in range(p):
                                t = t - C[j, a, c] * BS[b * p + c]
                            G3[a, b] += 2.0 * t
    for a in range(p):
        for b in range(a + 1, p):
            S[a, b] = 0.0
    RX_a = S_a                                   # lower Cholesky factor of S
    return logdet, Minv_a, B_a, RX_a, beta_a, u_a, pwrss, G1_a, G2_a, G3_a
