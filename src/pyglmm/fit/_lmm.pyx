# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled profiled deviance of linear mixed models from cross-products (fit/lmm_blocks.py's and
fit/lmm_dense.py's formulas): one call per evaluation gives the deviance pieces and the
gradient, for one-term models with few levels (per-level blocks) and for small models of any
structure (one dense block). The tests compare it with the numpy paths.
"""
import numpy as np
from libc.math cimport fabs, log, sqrt
from libc.stdint cimport int64_t

from pyglmm.fit._optim cimport Objective

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
    on entry, G1-G3 zeros; work: 2 p1^2 + 2 p1 p + 3 p1 + p^2 + 4 p + 1 doubles); out <- (log|M|,
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
    if p1 <= 2:
        return _core_small(T, A, C, d, XtWy, yWy, need, need_col, Minv, B, u, S, rhs, beta,
                           G1, G2, G3, Sinv, work, out)
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


cdef int _core_small(const double[:, ::1] T, const double[:, :, ::1] A, const double[:, :, ::1] C,
                     const double[:, ::1] d, const double[::1] XtWy, double yWy,
                     const unsigned char[:, ::1] need, const unsigned char[::1] need_col,
                     double[:, :, ::1] Minv, double[:, :, ::1] B, double[:, ::1] u,
                     double[:, ::1] S, double[::1] rhs, double[::1] beta, double[:, ::1] G1,
                     double[:, ::1] G2, double[:, ::1] G3, double[:, ::1] Sinv, double* work,
                     double* out) noexcept:
    """`_core` for terms of one or two columns ((1 | g), (1 + x | g)), the usual case: the
    per-level 1 x 1 and 2 x 2 algebra written out in closed form (log det, inverse), on raw
    pointers: about a fifth of the generic loops' instructions per level."""
    cdef Py_ssize_t l = A.shape[0], p1 = A.shape[1], p = C.shape[2], j, a, b, c
    cdef const double* Ap = &A[0, 0, 0]
    cdef const double* Cp
    cdef const double* dp = &d[0, 0]
    cdef double* Mp = &Minv[0, 0, 0]
    cdef double* Bp
    cdef double* up = &u[0, 0]
    cdef double* Sp
    cdef double* rp
    cdef double* K = work                     # p1 x p
    cdef double* BS = work + 2 * p            # p1 x p
    cdef double* Si
    cdef double t00 = T[0, 0], t10 = 0.0, t11 = 0.0
    cdef double a00, a01, a11, m00, m01, m11, det, e0, e1, u0, u1, z0, z1
    cdef double at00, at01, at10, at11, c0, c1, t, pwrss, logdet = 0.0
    cdef double g1[4]
    cdef double g2[4]
    cdef double g3[4]
    cdef const double* Cj
    cdef double* Bj
    cdef int n00 = need[0, 0], n10 = 0, n11 = 0
    if p1 == 2:
        t10, t11 = T[1, 0], T[1, 1]
        n10, n11 = need[1, 0], need[1, 1]
    if p > 0:
        Cp, Bp, Sp, rp = &C[0, 0, 0], &B[0, 0, 0], &S[0, 0], &rhs[0]
    for a in range(4):
        g1[a] = g2[a] = g3[a] = 0.0
    with nogil:
        for j in range(l):
            if p1 == 1:
                a00 = Ap[j]
                m00 = a00 * t00 * t00 + 1.0
                if not m00 > 0.0:
                    return 1
                logdet += log(m00)
                m00 = 1.0 / m00
                Mp[j] = m00
                e0 = t00 * dp[j]
                up[j] = m00 * e0
                if p > 0:
                    Cj = Cp + j * p
                    Bj = Bp + j * p
                    for b in range(p):
                        K[b] = t00 * Cj[b]
                        Bj[b] = m00 * K[b]
                    for a in range(p):
                        for b in range(p):
                            Sp[a * p + b] -= K[a] * Bj[b]
                        rp[a] -= K[a] * up[j]
            else:
                a00, a01, a11 = Ap[4 * j], Ap[4 * j + 1], Ap[4 * j + 3]
                at00 = a00 * t00 + a01 * t10
                at10 = a01 * t00 + a11 * t10
                a00 = t00 * at00 + t10 * at10 + 1.0        # M = T'AT + I
                a01 = t11 * at10
                a11 = t11 * a11 * t11 + 1.0
                det = a00 * a11 - a01 * a01
                if not (a00 > 0.0 and det > 0.0):
                    return 1
                logdet += log(det)
                m00, m01, m11 = a11 / det, -a01 / det, a00 / det
                Mp[4 * j], Mp[4 * j + 1], Mp[4 * j + 2], Mp[4 * j + 3] = m00, m01, m01, m11
                e0 = t00 * dp[2 * j] + t10 * dp[2 * j + 1]
                e1 = t11 * dp[2 * j + 1]
                u0 = m00 * e0 + m01 * e1
                u1 = m01 * e0 + m11 * e1
                up[2 * j], up[2 * j + 1] = u0, u1
                if p > 0:
                    Cj = Cp + 2 * p * j
                    Bj = Bp + 2 * p * j
                    for b in range(p):
                        c0, c1 = Cj[b], Cj[p + b]
                        K[b] = t00 * c0 + t10 * c1
                        K[p + b] = t11 * c1
                        Bj[b] = m00 * K[b] + m01 * K[p + b]
                        Bj[p + b] = m01 * K[b] + m11 * K[p + b]
                    for a in range(p):
                        for b in range(p):
                            Sp[a * p + b] -= K[a] * Bj[b] + K[p + a] * Bj[p + b]
                        rp[a] -= K[a] * u0 + K[p + a] * u1
        if p > 0:
            if _chol(p, Sp) != 0:
                return 2
            for a in range(p):
                beta[a] = rhs[a]
            _block_solve(p, Sp, &beta[0])
            Si = &Sinv[0, 0]
            _chol_inverse(p, Sp, Si, work + 4 * p)
        pwrss = yWy
        for a in range(p):
            pwrss -= beta[a] * XtWy[a]
        for j in range(l):
            if p1 == 1:
                u0 = up[j]
                if p > 0:
                    Cj = Cp + j * p
                    Bj = Bp + j * p
                    c0 = 0.0
                    for b in range(p):
                        u0 -= Bj[b] * beta[b]
                        c0 += Cj[b] * beta[b]
                else:
                    c0 = 0.0
                up[j] = u0
                pwrss -= u0 * t00 * dp[j]
                at00 = Ap[j] * t00
                z0 = dp[j] - c0 - at00 * u0
                g1[0] += 2.0 * at00 * Mp[j]
                g2[0] += z0 * u0
                if p > 0:
                    t = 0.0                            # B S^-1 B' and C S^-1 B'
                    c1 = 0.0
                    for a in range(p):
                        e0 = 0.0
                        for b in range(p):
                            e0 += Bj[b] * Si[b * p + a]
                        t += e0 * Bj[a]
                        c1 += Cj[a] * e0
                    g3[0] += 2.0 * (at00 * t - c1)
            else:
                u0, u1 = up[2 * j], up[2 * j + 1]
                c0 = c1 = 0.0
                if p > 0:
                    Cj = Cp + 2 * p * j
                    Bj = Bp + 2 * p * j
                    for b in range(p):
                        u0 -= Bj[b] * beta[b]
                        u1 -= Bj[p + b] * beta[b]
                        c0 += Cj[b] * beta[b]
                        c1 += Cj[p + b] * beta[b]
                up[2 * j], up[2 * j + 1] = u0, u1
                e0 = t00 * dp[2 * j] + t10 * dp[2 * j + 1]
                e1 = t11 * dp[2 * j + 1]
                pwrss -= u0 * e0 + u1 * e1
                a00, a01, a11 = Ap[4 * j], Ap[4 * j + 1], Ap[4 * j + 3]
                at00 = a00 * t00 + a01 * t10
                at01 = a01 * t11
                at10 = a01 * t00 + a11 * t10
                at11 = a11 * t11
                z0 = dp[2 * j] - c0 - (at00 * u0 + at01 * u1)
                z1 = dp[2 * j + 1] - c1 - (at10 * u0 + at11 * u1)
                m00, m01, m11 = Mp[4 * j], Mp[4 * j + 1], Mp[4 * j + 3]
                g1[0] += 2.0 * (at00 * m00 + at01 * m01)
                g1[2] += 2.0 * (at10 * m00 + at11 * m01)
                g1[3] += 2.0 * (at10 * m01 + at11 * m11)
                g2[0] += z0 * u0
                g2[2] += z1 * u0
                g2[3] += z1 * u1
                if p > 0:
                    for a in range(p):                 # BS = B_j S^-1 (2 x p)
                        e0 = 0.0
                        e1 = 0.0
                        for b in range(p):
                            e0 += Bj[b] * Si[b * p + a]
                            e1 += Bj[p + b] * Si[b * p + a]
                        BS[a], BS[p + a] = e0, e1
                    # col b of BS B' : (BS_0 . B_b, BS_1 . B_b), b = 0, 1
                    for b in range(2):
                        c0 = 0.0
                        c1 = 0.0
                        t = 0.0
                        e1 = 0.0
                        for a in range(p):
                            c0 += BS[a] * Bj[b * p + a]
                            c1 += BS[p + a] * Bj[b * p + a]
                            t += Cj[a] * BS[b * p + a]          # (C S^-1 B')[0, b]
                            e1 += Cj[p + a] * BS[b * p + a]     # (C S^-1 B')[1, b]
                        if b == 0:
                            g3[0] += 2.0 * (at00 * c0 + at01 * c1 - t)
                        g3[2 + b] += 2.0 * (at10 * c0 + at11 * c1 - e1)
    if p1 == 1:
        if n00:
            G1[0, 0] += g1[0]
            G2[0, 0] += g2[0]
            G3[0, 0] += g3[0]
    else:
        if n00:
            G1[0, 0] += g1[0]
            G2[0, 0] += g2[0]
            G3[0, 0] += g3[0]
        if n10:
            G1[1, 0] += g1[2]
            G2[1, 0] += g2[2]
            G3[1, 0] += g3[2]
        if n11:
            G1[1, 1] += g1[3]
            G2[1, 1] += g2[3]
            G3[1, 1] += g3[3]
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
    work_a = np.empty(2 * p1 * p1 + 2 * p1 * p + 3 * p1 + p * p + 4 * p + 1)
    need_col_a = np.zeros(p1, dtype=np.uint8)
    cdef double[:, ::1] S = S_a
    cdef double[::1] rhs = rhs_a, work = work_a
    S[:, :] = XtWX
    rhs[:] = XtWy
    _need_columns(need, need_col_a)
    cdef double out[2]
    cdef int st = _core(T, A, C, d, XtWy, yWy, need, need_col_a, Minv_a, B_a, u_a, S_a, rhs_a,
                        beta_a, G1_a, G2_a, G3_a, Sinv_a, &work[0], out)
    _raise_status(st)
    return out[0], Minv_a, B_a, S_a, beta_a, u_a, out[1], G1_a, G2_a, G3_a


cdef void _raise_status(int st) except *:
    """The LinAlgError of a kernel's status: 1 when M, 2 when S is not positive definite."""
    if st == 1:
        raise np.linalg.LinAlgError("penalized system not positive definite")
    if st == 2:
        raise np.linalg.LinAlgError("fixed-effects system not positive definite")

cdef int _finish_c(double logdet, double pwrss, const double[:, ::1] S, bint REML, double n_eff,
                   double sum_log_w, const double[:, ::1] G1, const double[:, ::1] G2,
                   const double[:, ::1] G3, const int64_t[::1] flat, const int64_t[::1] which,
                   Py_ssize_t ntheta, double* f, double* g) noexcept:
    """f <- the deviance, g <- its gradient in theta from log|M|, pwrss, the factor of S and the
    derivatives in T's entries (fit/lmm.py's formulas); 1 (nothing written) where pwrss is not
    positive."""
    if not pwrss > 0:
        return 1
    cdef Py_ssize_t i, a, p = S.shape[0]
    cdef double nn = n_eff - p if REML else n_eff
    cdef double dev = logdet + nn * (1.0 + log(2.0 * 3.141592653589793 * pwrss / nn)) - sum_log_w
    if REML:
        for a in range(p):
            dev += 2.0 * log(S[a, a])
    cdef const double* G1p = &G1[0, 0]
    cdef const double* G2p = &G2[0, 0]
    cdef const double* G3p = &G3[0, 0]
    cdef double c2 = 2.0 * nn / pwrss, gv
    cdef int64_t k
    for i in range(ntheta):
        g[i] = 0.0
    for i in range(flat.shape[0]):
        k = flat[i]
        gv = G1p[k] - c2 * G2p[k]
        if REML and p:
            gv += G3p[k]
        g[which[i]] += gv
    f[0] = dev
    return 0


cdef tuple _finish(double logdet, double pwrss, const double[:, ::1] S, bint REML, double n_eff,
                   double sum_log_w, const double[:, ::1] G1, const double[:, ::1] G2,
                   const double[:, ::1] G3, const int64_t[::1] flat, const int64_t[::1] which,
                   Py_ssize_t ntheta):
    """(deviance, gradient in theta) as `_finish_c`; LinAlgError where pwrss is not positive."""
    g_a = np.zeros(ntheta)
    cdef double[::1] g = g_a
    cdef double f = 0.0
    if _finish_c(logdet, pwrss, S, REML, n_eff, sum_log_w, G1, G2, G3, flat, which, ntheta, &f,
                 &g[0] if ntheta else NULL) != 0:
        raise np.linalg.LinAlgError("penalized residual sum of squares not positive")
    return f, g_a


cdef class _LmmKernel(Objective):
    """What the two LMM kernels share as compiled `Objective`s: the criterion (REML or ML, n,
    sum of log weights), the map from T's entries to theta (flat, which) and the deviance and
    gradient from a solve at theta (`_solve_at`, given by each kernel)."""
    cdef const int64_t[::1] flat, which
    cdef Py_ssize_t ntheta
    cdef double[:, ::1] S, G1, G2, G3
    cdef bint REML
    cdef double n_eff, sum_log_w

    def set_criterion(self, bint REML, double n_eff, double sum_log_w):
        """The criterion that calls as an `Objective` (f, g) evaluate: REML or ML, with the
        number of observations and the sum of log weights."""
        self.REML, self.n_eff, self.sum_log_w = REML, n_eff, sum_log_w
        return self

    cdef int _solve_at(self, const double* theta, double* out) noexcept:
        return 3

    cdef int fg(self, const double* x, double* f, double* g) except -1:
        cdef double out[2]
        if self._solve_at(x, out) != 0:
            return 1
        return _finish_c(out[0], out[1], self.S, self.REML, self.n_eff, self.sum_log_w, self.G1,
                         self.G2, self.G3, self.flat, self.which, self.ntheta, f, g)


cdef class LmmObjective(_LmmKernel):
    """The profiled ML / REML deviance and its exact gradient in theta from one call, on a
    model's fixed cross-products and working arrays kept between calls (the optimiser's
    evaluations: on small data the arrays and Python objects of `single_term_lmm` cost several
    times its numerics). T is filled from theta by T.flat[flat] = theta[which], and the
    gradient in theta sums the derivatives in T over the same entries."""
    cdef const double[:, :, ::1] A, C
    cdef const double[:, ::1] d, XtWX
    cdef const double[::1] XtWy
    cdef const unsigned char[:, ::1] need
    cdef double yWy
    cdef Py_ssize_t q
    cdef double[:, ::1] T, Sinv, u
    cdef double[:, :, ::1] Minv, B
    cdef double[::1] rhs, beta, work
    cdef unsigned char[::1] need_col

    def __init__(self, A, C, d, XtWX, XtWy, double yWy, need, flat, which, Py_ssize_t ntheta):
        self.A, self.C, self.d, self.XtWX, self.XtWy, self.yWy = A, C, d, XtWX, XtWy, yWy
        self.need, self.flat, self.which, self.ntheta = need, flat, which, ntheta
        self.nx, self.REML, self.n_eff, self.sum_log_w = ntheta, True, 1.0, 0.0
        cdef Py_ssize_t l = A.shape[0], p1 = A.shape[1], p = C.shape[2]
        self.q = p1
        # small arrays carved from blocks: a typed memoryview per numpy array costs about a
        # microsecond to acquire, a slice of one nothing
        cdef double[:, :, ::1] tg = np.zeros((4, p1, p1))
        cdef double[:, :, ::1] pp = np.empty((2, p, p))
        cdef Py_ssize_t nw = 2 * p1 * p1 + 2 * p1 * p + 3 * p1 + p * p + 4 * p + 1
        cdef double[::1] fl = np.empty(nw + 2 * p)
        self.T, self.G1, self.G2, self.G3 = tg[0], tg[1], tg[2], tg[3]
        self.S, self.Sinv = pp[0], pp[1]
        self.work, self.rhs, self.beta = fl[:nw], fl[nw:nw + p], fl[nw + p:nw + 2 * p]
        self.Minv, self.B, self.u = np.empty((l, p1, p1)), np.empty((l, p1, p)), np.empty((l, p1))
        self.need_col = np.zeros(p1, dtype=np.uint8)
        _need_columns(self.need, self.need_col)

    cdef int _solve_at(self, const double* theta, double* out) noexcept:
        """T filled from theta and the system solved (out <- log|M|, pwrss); `_core`'s status."""
        cdef Py_ssize_t i, a, b, q = self.q, p = self.C.shape[2]
        cdef double* Tp = &self.T[0, 0]
        for i in range(self.flat.shape[0]):
            Tp[self.flat[i]] = theta[self.which[i]]
        for a in range(p):
            for b in range(p):
                self.S[a, b] = self.XtWX[a, b]
            self.rhs[a] = self.XtWy[a]
        for a in range(q):
            for b in range(q):
                self.G1[a, b] = 0.0
                self.G2[a, b] = 0.0
                self.G3[a, b] = 0.0
        return _core(self.T, self.A, self.C, self.d, self.XtWy, self.yWy, self.need,
                     self.need_col, self.Minv, self.B, self.u, self.S, self.rhs,
                     self.beta, self.G1, self.G2, self.G3, self.Sinv, &self.work[0], out)

    def deviance_gradient(self, const double[::1] theta, bint REML, double n_eff,
                          double sum_log_w):
        """(deviance, gradient) at theta; LinAlgError where the system is not positive
        definite or the penalized residual sum of squares is not positive."""
        cdef double out[2]
        _raise_status(self._solve_at(&theta[0], out))
        return _finish(out[0], out[1], self.S, REML, n_eff, sum_log_w, self.G1, self.G2, self.G3,
                       self.flat, self.which, self.ntheta)

    def solution(self, const double[::1] theta):
        """The solved system at theta, as copies: (log|M|, R_X, beta, u (levels, p1), pwrss,
        M^{-1} blocks (levels, p1, p1)); LinAlgError where it is not positive definite."""
        cdef double out[2]
        _raise_status(self._solve_at(&theta[0], out))
        return (out[0], np.array(self.S), np.array(self.beta), np.array(self.u), out[1],
                np.array(self.Minv))


cdef class PatternLmmObjective(_LmmKernel):
    """`LmmObjective` for one dense block (lmm_dense.py: small models of any term structure)
    that follows the block's sparsity: M = T'AT + I is factored on its symbolic pattern (the
    first term's levels are a diagonal block, as MixedModels.jl's L[1,1]) and the gradient's
    d log|M| / dT = 2 A T M^{-1} needs M^{-1} only on that pattern, which the Takahashi
    recurrences give without the full inverse. Pattern (with fill), index lists and working
    arrays are set once per model; an evaluation costs O(fill) instead of O(q^3)."""
    cdef const double[:, ::1] A, C, XtWX
    cdef const double[::1] d, XtWy
    cdef const unsigned char[:, ::1] need
    cdef double yWy
    cdef Py_ssize_t q
    cdef int64_t[::1] tptr, tidx, rptr, ridx, cptr, cidx
    cdef int64_t[::1] aptr, aidx, ptc, pic, ptr_r, pir       # A by column; A T's pattern
    cdef double[::1] aval
    cdef double[:, ::1] T, AT, L, Z, K, B, BS, Sinv
    cdef double[::1] ev, u, zr, rhs, beta, vec, Swork
    cdef int64_t[::1] pa, pb                                  # T's entries with a parameter

    def __init__(self, A, C, d, XtWX, XtWy, double yWy, need, flat, which, Py_ssize_t ntheta):
        self.nx, self.REML, self.n_eff, self.sum_log_w = ntheta, True, 1.0, 0.0
        self.A, self.C, self.d, self.XtWX, self.XtWy, self.yWy = A, C, d, XtWX, XtWy, yWy
        self.need, self.flat, self.which, self.ntheta = need, flat, which, ntheta
        cdef Py_ssize_t q = A.shape[0], p = C.shape[1], a, b, c, i, k, n
        self.q = q
        cdef const unsigned char[:, ::1] nd = need
        cdef const double[:, ::1] Am = A
        # index arrays carved from two blocks (a typed memoryview per numpy array costs about
        # a microsecond to acquire; slices of a typed memoryview cost nothing)
        cdef int64_t[:, ::1] ptrs = np.zeros((6, q + 1), np.int64)
        cdef int64_t[:, ::1] idxs = np.empty((6, q * q + 1), np.int64)
        self.tptr, self.aptr, self.ptc, self.ptr_r, self.rptr, self.cptr = \
            ptrs[0], ptrs[1], ptrs[2], ptrs[3], ptrs[4], ptrs[5]
        self.tidx, self.aidx, self.pic, self.pir, self.ridx, self.cidx = \
            idxs[0], idxs[1], idxs[2], idxs[3], idxs[4], idxs[5]
        # T's structural nonzeros by column (rows c >= a)
        cdef int64_t[::1] tptr = self.tptr, tidx = self.tidx
        n = 0
        for a in range(q):
            for c in range(a, q):
                if nd[c, a]:
                    tidx[n] = c
                    n += 1
            tptr[a + 1] = n
        self.tidx = self.tidx[:n]
        # pattern of M = T'AT + I: P1 = pattern of A T, then of T'(A T); then the fill of its
        # Cholesky factor (column j's rows below it become a clique)
        P1_a = np.zeros((q, q), np.uint8)
        pat_a = np.zeros((q, q), np.uint8)
        cdef unsigned char[:, ::1] P1 = P1_a, pat = pat_a
        for b in range(q):
            for k in range(tptr[b], tptr[b + 1]):
                c = tidx[k]
                for a in range(q):
                    if Am[a, c] != 0.0:
                        P1[a, b] = 1
        # A's nonzeros by column, and A T's pattern by column and by row: the products with A
        # and A T then cost their nonzeros, not q^2
        cdef Py_ssize_t na = 0, n1 = 0
        cdef double[::1] fl = np.empty(q * q + 1 + 4 * q + 2 * p + p * p + 1)   # aval, vectors
        self.aval = fl[:q * q + 1]
        for c in range(q):
            for a in range(q):
                if Am[a, c] != 0.0:
                    self.aidx[na] = a
                    self.aval[na] = Am[a, c]
                    na += 1
            self.aptr[c + 1] = na
            for a in range(q):
                if P1[a, c]:
                    self.pic[n1] = a
                    n1 += 1
            self.ptc[c + 1] = n1
        n1 = 0
        for a in range(q):
            for b in range(q):
                if P1[a, b]:
                    self.pir[n1] = b
                    n1 += 1
            self.ptr_r[a + 1] = n1
        for a in range(q):
            pat[a, a] = 1
            for k in range(tptr[a], tptr[a + 1]):
                c = tidx[k]
                for b in range(q):
                    if P1[c, b]:
                        pat[a, b] = 1
                        pat[b, a] = 1
        for c in range(q):
            for i in range(c + 1, q):
                if pat[i, c]:
                    for k in range(i + 1, q):
                        if pat[k, c]:
                            pat[k, i] = 1
        # rows of the factor by row (below the diagonal) and by column, as index lists
        cdef int64_t[::1] rptr = self.rptr, cptr = self.cptr, ridx = self.ridx, cidx = self.cidx
        cdef Py_ssize_t nr = 0, nc = 0
        for a in range(q):
            for b in range(a):
                if pat[a, b]:
                    ridx[nr] = b
                    nr += 1
            rptr[a + 1] = nr
            for i in range(a + 1, q):
                if pat[i, a]:
                    cidx[nc] = i
                    nc += 1
            cptr[a + 1] = nc
        self.ridx, self.cidx = self.ridx[:nr], self.cidx[:nc]
        cdef double[:, :, ::1] qq = np.zeros((7, q, q))          # T, AT, L, Z zero off the pattern
        cdef double[:, :, ::1] qp = np.empty((3, q, p))
        cdef double[:, :, ::1] pp = np.empty((2, p, p))
        self.T, self.AT, self.L, self.Z = qq[0], qq[1], qq[2], qq[3]
        self.G1, self.G2, self.G3 = qq[4], qq[5], qq[6]
        self.K, self.B, self.BS = qp[0], qp[1], qp[2]
        self.S, self.Sinv = pp[0], pp[1]
        n = q * q + 1
        self.ev, self.u, self.zr, self.vec = fl[n:n + q], fl[n + q:n + 2 * q], \
            fl[n + 2 * q:n + 3 * q], fl[n + 3 * q:n + 4 * q]
        n += 4 * q
        self.rhs, self.beta, self.Swork = fl[n:n + p], fl[n + p:n + 2 * p], \
            fl[n + 2 * p:n + 2 * p + p * p + 1]
        cdef const int64_t[::1] fv = self.flat                  # distinct entries of T
        cdef int64_t[:, ::1] pab = np.empty((2, fv.shape[0]), np.int64)
        for i in range(fv.shape[0]):
            pab[0, i], pab[1, i] = fv[i] // q, fv[i] % q
        self.pa, self.pb = pab[0], pab[1]

    cdef int _solve_at(self, const double* theta, double* out) noexcept:
        """T filled from theta, the system solved there (out <- log|M|, pwrss); `_core`'s
        status."""
        cdef Py_ssize_t i
        cdef double* Tp = &self.T[0, 0]
        for i in range(self.flat.shape[0]):
            Tp[self.flat[i]] = theta[self.which[i]]
        return self._core(out)

    cdef void _at(self, const double[::1] theta, double* out) except *:
        """`_solve_at`, with a LinAlgError where M or S is not positive definite."""
        _raise_status(self._solve_at(&theta[0], out))

    def solution(self, const double[::1] theta):
        """(log|M|, R_X, beta, u, pwrss, M^{-1} on the pattern) at theta: the solved system for
        the fit's summaries (copies; M^{-1} is zero off the factor's pattern, which holds every
        level's diagonal block). LinAlgError as `deviance_gradient`."""
        cdef Py_ssize_t a, b, p = self.C.shape[1]
        cdef double out[2]
        self._at(theta, out)
        RX = np.array(self.S)
        for a in range(p):
            for b in range(a + 1, p):
                RX[a, b] = 0.0
        return (out[0], RX, np.array(self.beta), np.array(self.u), out[1], np.array(self.Z))

    def pattern_size(self) -> int:
        """Entries of the factor's lower triangle (diagonal included): the work per evaluation."""
        return int(self.q + self.ridx.shape[0])

    cdef void _solve(self, double* x) noexcept nogil:
        """x <- M^{-1} x with the factor on its pattern."""
        cdef Py_ssize_t a, k, q = self.q
        cdef double s
        cdef double* L = &self.L[0, 0]
        for a in range(q):
            s = x[a]
            for k in range(self.rptr[a], self.rptr[a + 1]):
                s -= L[a * q + self.ridx[k]] * x[self.ridx[k]]
            x[a] = s / L[a * q + a]
        for a in range(q - 1, -1, -1):
            s = x[a]
            for k in range(self.cptr[a], self.cptr[a + 1]):
                s -= L[self.cidx[k] * q + a] * x[self.cidx[k]]
            x[a] = s / L[a * q + a]

    cdef int _core(self, double* out) noexcept:
        """Factor, solve and gradient pieces at the T in self.T; out <- (log|M|, pwrss).
        0, or 1 when M and 2 when S is not positive definite."""
        cdef Py_ssize_t q = self.q, p = self.C.shape[1], a, b, c, e, k, m, i, j
        cdef double t, s, logdet = 0.0, pwrss
        cdef double* T = &self.T[0, 0]
        cdef double* AT = &self.AT[0, 0]
        cdef double* L = &self.L[0, 0]
        cdef double* Z = &self.Z[0, 0]
        cdef int64_t* tptr = &self.tptr[0]
        cdef int64_t* tidx = &self.tidx[0]
        cdef int64_t* rptr = &self.rptr[0]
        cdef int64_t* ridx = &self.ridx[0]
        cdef int64_t* cptr = &self.cptr[0]
        cdef int64_t* cidx = &self.cidx[0]
        # A by column, and A T's pattern by column (ptc, pic) and by row (ptr_r, pir)
        cdef int64_t *aptr = &self.aptr[0], *aidx = &self.aidx[0], *ptc = &self.ptc[0]
        cdef int64_t *pic = &self.pic[0], *ptr_r = &self.ptr_r[0], *pir = &self.pir[0]
        cdef double* aval = &self.aval[0]
        cdef double *G1 = &self.G1[0, 0], *G2 = &self.G2[0, 0], *G3 = &self.G3[0, 0]
        cdef Py_ssize_t h
        with nogil:
            # AT = A T on its pattern (T's nonzeros by column, A's by column; AT is zero off it)
            for b in range(q):
                for k in range(ptc[b], ptc[b + 1]):
                    AT[pic[k] * q + b] = 0.0
                for k in range(tptr[b], tptr[b + 1]):
                    c = tidx[k]
                    t = T[c * q + b]
                    for h in range(aptr[c], aptr[c + 1]):
                        AT[aidx[h] * q + b] += aval[h] * t
            # M = T'(AT) + I on the pattern's lower triangle, factored in place (by rows)
            for a in range(q):
                for m in range(rptr[a], rptr[a + 1] + 1):
                    b = ridx[m] if m < rptr[a + 1] else a
                    t = 1.0 if a == b else 0.0
                    for k in range(tptr[a], tptr[a + 1]):
                        c = tidx[k]
                        t = t + T[c * q + a] * AT[c * q + b]
                    L[a * q + b] = t
            for a in range(q):
                for m in range(rptr[a], rptr[a + 1]):
                    b = ridx[m]
                    t = L[a * q + b]
                    for k in range(rptr[b], rptr[b + 1]):
                        t -= L[a * q + ridx[k]] * L[b * q + ridx[k]]
                    L[a * q + b] = t / L[b * q + b]
                s = L[a * q + a]
                for k in range(rptr[a], rptr[a + 1]):
                    s -= L[a * q + ridx[k]] * L[a * q + ridx[k]]
                if not s > 0.0:
                    break
                L[a * q + a] = sqrt(s)
                logdet += log(s)
        if not s > 0.0:
            return 1
        with nogil:
            # ev = T'd, K = T'C; u = M^{-1} ev, B = M^{-1} K; S = X'WX - K'B, rhs = X'Wy - K'u
            for a in range(q):
                t = 0.0
                for k in range(tptr[a], tptr[a + 1]):
                    t = t + T[tidx[k] * q + a] * self.d[tidx[k]]
                self.ev[a] = t
                self.u[a] = t
                for b in range(p):
                    t = 0.0
                    for k in range(tptr[a], tptr[a + 1]):
                        t = t + T[tidx[k] * q + a] * self.C[tidx[k], b]
                    self.K[a, b] = t
            self._solve(&self.u[0])
            for b in range(p):
                for a in range(q):
                    self.vec[a] = self.K[a, b]
                self._solve(&self.vec[0])
                for a in range(q):
                    self.B[a, b] = self.vec[a]
            for a in range(p):
                for b in range(p):
                    t = self.XtWX[a, b]
                    for c in range(q):
                        t = t - self.K[c, a] * self.B[c, b]
                    self.S[a, b] = t
                t = self.XtWy[a]
                for c in range(q):
                    t = t - self.K[c, a] * self.u[c]
                self.rhs[a] = t
            if p > 0 and _chol(p, &self.S[0, 0]) != 0:
                s = -1.0
        if not s > 0.0:
            return 2
        with nogil:
            if p > 0:
                for a in range(p):
                    self.beta[a] = self.rhs[a]
                _block_solve(p, &self.S[0, 0], &self.beta[0])
                _chol_inverse(p, &self.S[0, 0], &self.Sinv[0, 0], &self.Swork[0])
            pwrss = self.yWy
            for a in range(p):
                pwrss -= self.beta[a] * self.XtWy[a]
            for a in range(q):
                t = self.u[a]
                for b in range(p):
                    t = t - self.B[a, b] * self.beta[b]
                self.u[a] = t
                pwrss -= t * self.ev[a]
            # Z = M^{-1} on the pattern (Takahashi: Z L = L^{-T}, columns right to left)
            for j in range(q - 1, -1, -1):
                for m in range(cptr[j], cptr[j + 1]):
                    i = cidx[m]
                    t = 0.0
                    for k in range(cptr[j], cptr[j + 1]):
                        t = t + Z[i * q + cidx[k]] * L[cidx[k] * q + j]
                    t = -t / L[j * q + j]
                    Z[i * q + j] = t
                    Z[j * q + i] = t
                t = 0.0
                for k in range(cptr[j], cptr[j + 1]):
                    t = t + Z[cidx[k] * q + j] * L[cidx[k] * q + j]
                Z[j * q + j] = (1.0 / L[j * q + j] - t) / L[j * q + j]
            # gradient pieces at the entries of T that carry a parameter (need):
            # G1 = 2 AT Z; zr = d - C beta - AT u, G2 = zr u'; G3 = 2 AT (BS B') - 2 C BS'
            for a in range(q):
                t = self.d[a]
                for b in range(p):
                    t = t - self.C[a, b] * self.beta[b]
                for k in range(ptr_r[a], ptr_r[a + 1]):
                    t = t - AT[a * q + pir[k]] * self.u[pir[k]]
                self.zr[a] = t
            # only at T's entries that carry a parameter (pa, pb): a pair costs row a's
            # nonzeros of A T (times p for G3), not q
            if p > 0:
                for a in range(q):
                    for b in range(p):
                        t = 0.0
                        for c in range(p):
                            t = t + self.B[a, c] * self.Sinv[c, b]
                        self.BS[a, b] = t
            for m in range(self.pa.shape[0]):
                a, b = self.pa[m], self.pb[m]
                t = 0.0
                for k in range(ptr_r[a], ptr_r[a + 1]):
                    c = pir[k]
                    t = t + AT[a * q + c] * Z[c * q + b]
                G1[a * q + b] = 2.0 * t
                G2[a * q + b] = self.zr[a] * self.u[b]
                if p > 0:
                    t = 0.0
                    for k in range(ptr_r[a], ptr_r[a + 1]):
                        c = pir[k]
                        s = 0.0
                        for e in range(p):
                            s = s + self.BS[c, e] * self.B[b, e]
                        t = t + AT[a * q + c] * s
                    for c in range(p):
                        t = t - self.C[a, c] * self.BS[b, c]
                    G3[a * q + b] = 2.0 * t
                else:
                    G3[a * q + b] = 0.0
        out[0], out[1] = logdet, pwrss
        return 0

    def deviance_gradient(self, const double[::1] theta, bint REML, double n_eff,
                          double sum_log_w):
        """(deviance, gradient) at theta, as `LmmObjective.deviance_gradient`."""
        cdef double out[2]
        self._at(theta, out)
        return _finish(out[0], out[1], self.S, REML, n_eff, sum_log_w, self.G1, self.G2, self.G3,
                       self.flat, self.which, self.ntheta)



cdef inline void _kadd(double* s, double* c, double x) noexcept nogil:
    """s += x with Neumaier's compensation kept in c (the sum is s + c): sums over all rows
    then lose no more digits than numpy's pairwise ones."""
    cdef double t = s[0] + x
    if fabs(s[0]) >= fabs(x):
        c[0] += (s[0] - t) + x
    else:
        c[0] += (x - t) + s[0]
    s[0] = t


def lmm_crossprods(const double[::1] y, const double[:, :] X, const double[::1] w, bint unit,
                   const int64_t[:, ::1] codes, const double[:, :] Z, const int64_t[::1] pk,
                   const int64_t[::1] qoff, Py_ssize_t nlev):
    """The cross-products of an LMM in two passes over the rows (the set-up of lmm_blocks.py
    and lmm_dense.py without a numpy call per pair of columns): X'WX and b0, the weighted least
    squares fit of y on X; then, with r = y - X b0, X'Wr, r'Wr and the random-effects sums
    Z'WZ, Z'WX, Z'Wr. ``codes`` (terms, n) are the rows' levels, ``Z`` (n, sum p_k) the terms'
    model matrices side by side, ``pk`` their widths, ``qoff`` the terms' first columns in
the q random effects (q = qoff[-1]). With ``nlev`` > 0 (one term) the sums are
    per-level blocks A (nlev, p1, p1), C (nlev, p1, p), d (nlev, p1); with nlev = 0 dense
    A (q, q), C (q, p), d (q), the column of term k's level l and column a being
    qoff[k] + l p_k + a. Returns (XtWX, XtWr, b0, r'Wr, A, C, d), or None where X'WX is not
    positive definite (the caller then solves by least squares)."""
    cdef Py_ssize_t n = y.shape[0], p = X.shape[1], nt = codes.shape[0], m = Z.shape[1]
    cdef Py_ssize_t i, a, b, k, s, t, c, j, p1 = pk[0], q = qoff[nt]
    XtWX_a = np.zeros((p, p))
    cdef double[:, ::1] XtWX = XtWX_a
    cdef double[::1] L = np.empty(p * p + 1), rhs = np.zeros(p + 1)
    cdef double[::1] comp = np.zeros(p * p + 2 * p + 2)     # compensations of the row sums
    cdef double wi, r, v
    with nogil:
        for i in range(n):
            wi = 1.0 if unit else w[i]
            for a in range(p):
                v = wi * X[i, a]
                for b in range(a + 1):
                    _kadd(&XtWX[a, b], &comp[a * p + b], v * X[i, b])
                _kadd(&rhs[a], &comp[p * p + a], v * y[i])
        for a in range(p):
            rhs[a] += comp[p * p + a]
            comp[p * p + a] = 0.0
            for b in range(a + 1):
                XtWX[a, b] += comp[a * p + b]
            for b in range(a):
                XtWX[b, a] = XtWX[a, b]
            for b in range(p):
                L[a * p + b] = XtWX[a, b]
    if p and _chol(p, &L[0]) != 0:
        return None
    b0_a = np.zeros(p)
    cdef double[::1] b0 = b0_a
    for a in range(p):
        b0[a] = rhs[a]
    if p:
        _block_solve(p, &L[0], &b0[0])
    if nlev > 0:
        A_a, C_a, d_a = np.zeros((nlev, p1, p1)), np.zeros((nlev, p1, p)), np.zeros((nlev, p1))
    else:
        A_a, C_a, d_a = np.zeros((q, q)), np.zeros((q, p)), np.zeros(q)
    cdef double[::1] A = A_a.reshape(-1), C = C_a.reshape(-1), d = d_a.reshape(-1)
    XtWr_a = np.zeros(p)
    cdef double[::1] XtWr = XtWr_a
    cdef Py_ssize_t[::1] col = np.empty(m + 1, dtype=np.intp), off = np.empty(nt + 1, dtype=np.intp)
    cdef double[::1] val = np.empty(m + 1)
    cdef double rWr = 0.0, vs
    cdef Py_ssize_t base
    off[0] = 0
    for k in range(nt):
        off[k + 1] = off[k] + pk[k]
    with nogil:
        for i in range(n):
            wi = 1.0 if unit else w[i]
            r = y[i]
            for a in range(p):
                r = r - X[i, a] * b0[a]
            for a in range(p):
                _kadd(&XtWr[a], &comp[p * p + a], wi * X[i, a] * r)
            _kadd(&rWr, &comp[p * p + 2 * p], wi * r * r)
            if nlev > 0:
                j = codes[0, i]
                for a in range(p1):
                    vs = wi * Z[i, a]
                    base = (j * p1 + a) * p1
                    for b in range(p1):
                        A[base + b] += vs * Z[i, b]
                    base = (j * p1 + a) * p
                    for c in range(p):
                        C[base + c] += vs * X[i, c]
                    d[j * p1 + a] += vs * r
            else:
                # the row's nonzero columns of Z: term k, level codes[k, i], column a
                s = 0
                for k in range(nt):
                    for a in range(pk[k]):
                        col[s] = qoff[k] + codes[k, i] * pk[k] + a
                        val[s] = Z[i, off[k] + a]
                        s += 1
                for s in range(m):
                    vs = wi * val[s]
                    base = col[s] * q
                    for t in range(m):
                        A[base + col[t]] += vs * val[t]
                    base = col[s] * p
                    for c in range(p):
                        C[base + c] += vs * X[i, c]
                    d[col[s]] += vs * r
    for a in range(p):
        XtWr[a] += comp[p * p + a]
    rWr += comp[p * p + 2 * p]
    return XtWX_a, XtWr_a, b0_a, rWr, A_a, C_a, d_a
