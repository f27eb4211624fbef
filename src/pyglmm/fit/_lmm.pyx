# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled profiled deviance of linear mixed models from cross-products (fit/lmm_blocks.py's and
fit/lmm_dense.py's formulas): one call per evaluation gives the deviance pieces and the
gradient, for one-term models with few levels (per-level blocks) and for small models of any
structure (one dense block). The tests compare it with the numpy paths.
"""
import numpy as np
from libc.math cimport log, sqrt
from libc.stdint cimport int64_t

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


cdef int _core(const double[:, ::1] T, const double[:, :, ::1] A, const double[:, :, ::1] C,
               const double[:, ::1] d, const double[::1] XtWy, double yWy,
               const unsigned char[:, ::1] need, const unsigned char[::1] need_col,
               double[:, :, ::1] Minv, double[:, :, ::1] B, double[:, ::1] u, double[:, ::1] S,
               double[::1] rhs, double[::1] beta, double[:, ::1] G1, double[:, ::1] G2,
               double[:, ::1] G3, double[:, ::1] Sinv, double* work, double* out) noexcept:
    """The computations of `single_term_lmm` into the given arrays (S and rhs hold X'WX and X'Wy
    on entry, G1-G3 zeros; work: 2 p1^2 + 2 p1 p + 3 p1 + p^2 + 1 doubles); out <- (log|M|,
    pwrss). Returns 0, or 1 when M and 2 when S is not positive definite."""
    cdef Py_ssize_t l = A.shape[0], p1 = A.shape[1], p = C.shape[2], j, a, b, c, e
    cdef double* M = work
    cdef double* AT = M + p1 * p1
    cdef double* K = AT + p1 * p1
    cdef double* BS = K + p1 * p
    cdef double* ev = BS + p1 * p
    cdef double* zr = ev + p1
    cdef double* col = zr + p1
    cdef double* Swork = col + p1
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
        return 1
    with nogil:
        if p > 0 and _chol(p, &S[0, 0]) != 0:
            bad = 1
    if bad:
        return 2
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
    out[0], out[1] = logdet, pwrss
    return 0


cdef void _need_columns(const unsigned char[:, ::1] need, unsigned char[::1] need_col) noexcept:
    """need_col[a] = 1 where column a of T carries a parameter."""
    cdef Py_ssize_t a, b, p1 = need.shape[0]
    for a in range(p1):
        need_col[a] = 0
        for b in range(p1):
            if need[b, a]:
                need_col[a] = 1


def single_term_lmm(const double[:, ::1] T, const double[:, :, ::1] A, const double[:, :, ::1] C,
                    const double[:, ::1] d, const double[:, ::1] XtWX, const double[::1] XtWy,
                    double yWy, const unsigned char[:, ::1] need):
    """The one-term LMM from per-level cross-products at T (lmm_blocks.py's formulas).

    A (levels, p1, p1), C (levels, p1, p), d (levels, p1): sums of w x x', w x X', w x y.
    Returns (logdet M, M^{-1} (l, p1, p1), B (l, p1, p), R_X, beta, u (l, p1), pwrss, G1, G2, G3)
    with the gradient pieces G1 = d log|M|/dT, G2 = sum zr_j u_j' and G3 = d log|S|/dT (p1 x p1).
    Raises LinAlgError when M or S is not positive definite.
    """
    cdef Py_ssize_t l = A.shape[0], p1 = A.shape[1], p = C.shape[2]
    Minv_a = np.empty((l, p1, p1))
    B_a = np.empty((l, p1, p))
    u_a = np.empty((l, p1))
    S_a = np.empty((p, p))
    rhs_a = np.empty(p)
    beta_a = np.empty(p)
    G1_a, G2_a, G3_a = np.zeros((p1, p1)), np.zeros((p1, p1)), np.zeros((p1, p1))
    Sinv_a = np.empty((p, p))
    work_a = np.empty(2 * p1 * p1 + 2 * p1 * p + 3 * p1 + p * p + 1)
    need_col_a = np.zeros(p1, dtype=np.uint8)
    cdef double[:, ::1] S = S_a
    cdef double[::1] rhs = rhs_a, work = work_a
    S[:, :] = XtWX
    rhs[:] = XtWy
    _need_columns(need, need_col_a)
    cdef double out[2]
    cdef int st = _core(T, A, C, d, XtWy, yWy, need, need_col_a, Minv_a, B_a, u_a, S_a, rhs_a,
                        beta_a, G1_a, G2_a, G3_a, Sinv_a, &work[0], out)
    if st == 1:
        raise np.linalg.LinAlgError("penalized system not positive definite")
    if st == 2:
        raise np.linalg.LinAlgError("fixed-effects system not positive definite")
    return out[0], Minv_a, B_a, S_a, beta_a, u_a, out[1], G1_a, G2_a, G3_a


cdef class LmmObjective:
    """The profiled ML / REML deviance and its exact gradient in theta from one call, on a
    model's fixed cross-products and working arrays kept between calls (the optimiser's
    evaluations: on small data the arrays and Python objects of `single_term_lmm` cost several
    times its numerics). T is filled from theta by T.flat[flat] = theta[which], and the
    gradient in theta sums the derivatives in T over the same entries."""
    cdef const double[:, :, ::1] A, C
    cdef const double[:, ::1] d, XtWX
    cdef const double[::1] XtWy
    cdef const unsigned char[:, ::1] need
    cdef const int64_t[::1] flat, which
    cdef double yWy
    cdef Py_ssize_t ntheta, q
    cdef double[:, ::1] T, S, G1, G2, G3, Sinv, u
    cdef double[:, :, ::1] Minv, B
    cdef double[::1] rhs, beta, work
    cdef unsigned char[::1] need_col

    def __init__(self, A, C, d, XtWX, XtWy, double yWy, need, flat, which, Py_ssize_t ntheta):
        self.A, self.C, self.d, self.XtWX, self.XtWy, self.yWy = A, C, d, XtWX, XtWy, yWy
        self.need, self.flat, self.which, self.ntheta = need, flat, which, ntheta
        cdef Py_ssize_t l = A.shape[0], p1 = A.shape[1], p = C.shape[2]
        self.q = p1
        self.T = np.zeros((p1, p1))
        self.Minv, self.B, self.u = np.empty((l, p1, p1)), np.empty((l, p1, p)), np.empty((l, p1))
        self.S, self.rhs, self.beta = np.empty((p, p)), np.empty(p), np.empty(p)
        self.G1, self.G2, self.G3 = np.empty((p1, p1)), np.empty((p1, p1)), np.empty((p1, p1))
        self.Sinv = np.empty((p, p))
        self.work = np.empty(2 * p1 * p1 + 2 * p1 * p + 3 * p1 + p * p + 1)
        self.need_col = np.zeros(p1, dtype=np.uint8)
        _need_columns(self.need, self.need_col)

    def deviance_gradient(self, const double[::1] theta, bint REML, double n_eff,
                          double sum_log_w):
        """(deviance, gradient) at theta; LinAlgError where the system is not positive
        definite or the penalized residual sum of squares is not positive."""
        cdef Py_ssize_t i, a, b, q = self.q, p = self.C.shape[2]
        cdef double* Tp = &self.T[0, 0]
        for i in range(self.flat.shape[0]):
            Tp[self.flat[i]] = theta[self.which[i]]
        self.S[:, :] = self.XtWX
        self.rhs[:] = self.XtWy
        for a in range(q):
            for b in range(q):
                self.G1[a, b] = 0.0
                self.G2[a, b] = 0.0
                self.G3[a, b] = 0.0
        cdef double out[2]
        cdef int st = _core(self.T, self.A, self.C, self.d, self.XtWy, self.yWy, self.need,
                            self.need_col, self.Minv, self.B, self.u, self.S, self.rhs,
                            self.beta, self.G1, self.G2, self.G3, self.Sinv, &self.work[0], out)
        if st == 1:
            raise np.linalg.LinAlgError("penalized system not positive definite")
        if st == 2:
            raise np.linalg.LinAlgError("fixed-effects system not positive definite")
        cdef double logdet = out[0], pwrss = out[1]
        if not pwrss > 0:
            raise np.linalg.LinAlgError("penalized residual sum of squares not positive")
        cdef double nn = n_eff - p if REML else n_eff
        cdef double dev = logdet + nn * (1.0 + log(2.0 * 3.141592653589793 * pwrss / nn)) - sum_log_w
        if REML:
            for a in range(p):
                dev += 2.0 * log(self.S[a, a])
        g_a = np.zeros(self.ntheta)
        cdef double[::1] g = g_a
        cdef double* G1p = &self.G1[0, 0]
        cdef double* G2p = &self.G2[0, 0]
        cdef double* G3p = &self.G3[0, 0]
        cdef double c2 = 2.0 * nn / pwrss, gv
        cdef int64_t f
        for i in range(self.flat.shape[0]):
            f = self.flat[i]
            gv = G1p[f] - c2 * G2p[f]
            if REML and p:
                gv += G3p[f]
            g[self.which[i]] += gv
        return dev, g_a
