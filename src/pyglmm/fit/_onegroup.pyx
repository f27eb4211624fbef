# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled PIRLS and Laplace gradient for GLMMs with one random-effects term (canonical links).

One term with k columns makes Lambda'Z'WZLambda + I block diagonal, one k x k block per level.
These loops do per row and per level what fit/pirls.py and fit/gradient.py do with numpy calls,
without the per-call overhead that dominates small and medium data sets; the algorithms (step
halving, stopping rules, deviance forms) are the same, and the tests compare the two paths.
Families: see _rowwise.pxi (Poisson, binomial, nbinom2 and Gamma with their log/logit links).
"""
import numpy as np
from libc.stdint cimport int64_t

include "_rowwise.pxi"
include "_dense.pxi"

from libc.string cimport memset

cdef double _pdev(int fam, Py_ssize_t n, Py_ssize_t k, const double* Z, const int64_t* codes,
                  const double* base, const double* y, const double* wt, const double* u,
                  Py_ssize_t nu, double dconst, double phi, double* eta, double* mu,
                  Scratch sc, double shape) noexcept nogil:
    """eta = base + Z Lambda u, mu, and the penalised deviance sum(dev)/phi + |u|^2."""
    cdef Py_ssize_t i, a, j
    cdef double s, e, su = 0.0
    for i in range(n):
        j = codes[i] * k
        e = base[i]
        for a in range(k):
            e += Z[i * k + a] * u[j + a]
        eta[i] = e
    s = _mu_dev(fam, n, eta, y, wt, mu, sc, shape)
    for a in range(nu):
        su += u[a] * u[a]
    return (dconst + 2.0 * s) / phi + su


cdef int _factor(Py_ssize_t n, Py_ssize_t k, Py_ssize_t nlev, const double* Z, const int64_t* codes,
                 const double* w, double* L) noexcept nogil:
    """L_j = lower Cholesky factor of I + sum_{rows of j} w z z' (rows of Z Lambda); -1 if a
    block is not positive definite."""
    cdef Py_ssize_t i, j, a, b, c, kk = k * k
    cdef double wi, s
    cdef double* Lj
    memset(L, 0, nlev * kk * sizeof(double))
    for j in range(nlev):
        for a in range(k):
            L[j * kk + a * k + a] = 1.0
    for i in range(n):
        Lj = L + codes[i] * kk
        wi = w[i]
        for a in range(k):
            for b in range(a + 1):
                Lj[a * k + b] += wi * Z[i * k + a] * Z[i * k + b]
    for j in range(nlev):
        if _chol(k, L + j * kk) != 0:
            return -1
    return 0


cdef double _logdet(Py_ssize_t k, Py_ssize_t nlev, const double* L) noexcept nogil:
    cdef Py_ssize_t j, a
    cdef double s = 0.0
    for j in range(nlev):
        for a in range(k):
            s += log(L[j * k * k + a * k + a])
    return 2.0 * s


def _scaled_rows(const double[:, ::1] Xt, const double[::1] theta):
    """Rows of Z Lambda for one term: Xt T, with T the lower-triangular factor filled from theta
    column by column (lme4's order)."""
    cdef Py_ssize_t n = Xt.shape[0], k = Xt.shape[1], i, a, b, idx = 0
    T_a = np.zeros((k, k))
    cdef double[:, ::1] T = T_a
    for b in range(k):
        for a in range(b, k):
            T[a, b] = theta[idx]
            idx += 1
    Z_a = np.empty((n, k))
    cdef double[:, ::1] Z = Z_a
    cdef double t
    with nogil:
        for i in range(n):
            for b in range(k):
                t = 0.0
                for a in range(b, k):
                    t = t + Xt[i, a] * T[a, b]
                Z[i, b] = t
    return Z_a


cdef int _joint_step(Py_ssize_t n, Py_ssize_t k, Py_ssize_t nlev, Py_ssize_t p, const double* Z,
                     const double* X, const int64_t* codes, const double* w, const double* L,
                     double* K, double* S, double* delta, double* work) noexcept nogil:
    """The Newton step of the joint (u, beta) system by block elimination: delta holds the
    gradient (g_u, g_beta) on entry and the step on exit; S ends as the lower Cholesky factor of
    the Schur complement X'WX - sum K_j' M_j^{-1} K_j, K_j = sum w z x' (levels x k x p).
    work: k * p + p doubles. -1 if S is not positive definite."""
    cdef Py_ssize_t i, j, a, b, c, kp = k * p
    cdef double t
    cdef double* Bj = work                  # M_j^{-1} K_j, one level at a time (k x p)
    cdef double* db = delta + nlev * k
    for a in range(nlev * kp):
        K[a] = 0.0
    for a in range(p * p):
        S[a] = 0.0
    for i in range(n):
        j = codes[i]
        for a in range(k):
            t = w[i] * Z[i * k + a]
            for b in range(p):
                K[j * kp + a * p + b] += t * X[i * p + b]
        for a in range(p):
            t = w[i] * X[i * p + a]
            for b in range(a + 1):
                S[a * p + b] += t * X[i * p + b]
    for j in range(nlev):
        for b in range(p):                   # column b of B_j = M_j^{-1} K_j
            for a in range(k):
                work[kp + a] = K[j * kp + a * p + b]
            _block_solve(k, &L[j * k * k], &work[kp])
            for a in range(k):
                Bj[a * p + b] = work[kp + a]
        for a in range(p):
            for b in range(a + 1):
                t = 0.0
                for c in range(k):
                    t = t + K[j * kp + c * p + a] * Bj[c * p + b]
                S[a * p + b] -= t
        # g_beta -= K_j' M_j^{-1} g_u_j  (= B_j' g_u_j)
        for a in range(p):
            t = 0.0
            for c in range(k):
                t = t + Bj[c * p + a] * delta[j * k + c]
            db[a] -= t
    if p > 0:
        if _chol(p, S) != 0:
            return -1
        _block_solve(p, S, db)
    # du_j = M_j^{-1} (g_u_j - K_j db)
    for j in range(nlev):
        for a in range(k):
            t = delta[j * k + a]
            for b in range(p):
                t = t - K[j * kp + a * p + b] * db[b]
            delta[j * k + a] = t
        _block_solve(k, &L[j * k * k], &delta[j * k])
    return 0


cdef void _base(Py_ssize_t n, Py_ssize_t p, const double* X, const double* offset, const double* beta,
                double* base) noexcept nogil:
    cdef Py_ssize_t i, b
    cdef double t
    for i in range(n):
        t = offset[i]
        for b in range(p):
            t = t + X[i * p + b] * beta[b]
        base[i] = t


def pirls(int fam, const double[:, ::1] Xt, const double[::1] theta, const int64_t[::1] codes, Py_ssize_t nlev,
          const double[:, ::1] X, const double[::1] offset, const double[::1] beta0,
          const double[::1] y, const double[::1] wt, double phi, double dconst, const double[::1] u0,
          bint try_zero, bint joint, double tol, int max_iter, double shape=0.0,
          bint observed=False):
    """Conditional modes u at fixed (theta, beta) by PIRLS with step halving (pirls.py's rules);
    with ``joint`` beta is updated with u (lme4's nAGQ = 0 stage).

    Xt: the term's model matrix (n x k), theta its relative covariance factor (lme4's order);
    X: the fixed effects (n x p, row-major). Returns
    (status, u, beta, eta, mu, w, pdev, logdet, R_X, iterations): status 0 ok, 1 a block not
    positive definite, 2 diverged, 3 the joint fixed-effects block not positive definite; R_X
    (joint only) the lower Cholesky factor of the Schur complement at the mode.
    """
    cdef double[:, ::1] Z = _scaled_rows(Xt, theta)
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], nu = nlev * k, p = X.shape[1], i, j, a, it, h
    cdef Py_ssize_t nd = nu + (p if joint else 0)
    u_a = np.array(u0, dtype=np.float64)
    beta_a = np.array(beta0, dtype=np.float64)
    un_a, bn_a = np.empty(nu), np.empty(p)
    d_a, g_a = np.empty(nd), np.empty(nd)
    eta_a, mu_a, w_a = np.empty(n), np.empty(n), np.empty(n)
    etan_a, mun_a = np.empty(n), np.empty(n)
    base_a, basen_a = np.empty(n), np.empty(n)
    L_a = np.empty(nlev * k * k)
    K_a = np.empty(max(nlev * k * p, 1))
    S_a = np.zeros(max(p * p, 1))
    work_a = np.empty(k * p + k + 1)
    cdef double[::1] u = u_a, un = un_a, beta = beta_a, bn = bn_a, delta = d_a, g = g_a
    cdef double[::1] eta = eta_a, mu = mu_a, w = w_a, etan = etan_a, mun = mun_a, L = L_a
    cdef double[::1] base = base_a, basen = basen_a, K = K_a, work = work_a, S = S_a
    ebuf, lbuf = np.empty(n), np.empty(n)
    cdef Scratch sc = _scratch(ebuf, lbuf)
    cdef double pdev, p0, pn, dec, dmax, step, change, r, iphi = 1.0 / phi
    cdef bint converged = False, have_factor = False
    cdef int status = 0, iters = 0
    cdef const double* Zp = &Z[0, 0]
    cdef const double* Xp = &X[0, 0] if p > 0 else NULL
    with nogil:
        _base(n, p, Xp, &offset[0], &beta[0] if p > 0 else NULL, &base[0])
        pdev = _pdev(fam, n, k, Zp, &codes[0], &base[0], &y[0], &wt[0], &u[0], nu, dconst,
                     phi, &eta[0], &mu[0], sc, shape)
        if try_zero or not isfinite(pdev):
            # the mode of the penalty alone, u = 0, when the warm start is worse (or not finite)
            for a in range(nu):
                un[a] = 0.0
            p0 = _pdev(fam, n, k, Zp, &codes[0], &base[0], &y[0], &wt[0], &un[0], nu, dconst,
                       phi, &etan[0], &mun[0], sc, shape)
            if not isfinite(pdev) or p0 < pdev:
                for a in range(nu):
                    u[a] = 0.0
                for i in range(n):
                    eta[i] = etan[i]
                    mu[i] = mun[i]
                pdev = p0
        _weights(fam, n, &mu[0], &wt[0], phi, shape, &w[0])
        for it in range(1, max_iter + 1):
            iters = it
            if _factor(n, k, nlev, Zp, &codes[0], &w[0], &L[0]) != 0:
                status = 1
                break
            have_factor = True
            # gradient: g_u = (Z Lambda)' score - u  [, g_beta = X' score]
            for a in range(nd):
                g[a] = 0.0
            for a in range(nu):
                g[a] = -u[a]
            for i in range(n):
                r = _score(fam, y[i], mu[i], wt[i], iphi, shape)
                j = codes[i] * k
                for a in range(k):
                    g[j + a] += Zp[i * k + a] * r
                if joint:
                    for a in range(p):
                        g[nu + a] += Xp[i * p + a] * r
            for a in range(nd):
                delta[a] = g[a]
            if joint:
                if _joint_step(n, k, nlev, p, Zp, Xp, &codes[0], &w[0], &L[0], &K[0], &S[0],
                               &delta[0], &work[0]) != 0:
                    status = 3
                    break
            else:
                for j in range(nlev):
                    _block_solve(k, &L[j * k * k], &delta[j * k])
            dec = 0.0
            dmax = 0.0
            for a in range(nd):
                dec += g[a] * delta[a]
                if fabs(delta[a]) > dmax:
                    dmax = fabs(delta[a])
            if dec < tol * (1.0 + fabs(pdev)) and dmax < 1e-10:
                converged = True
                break
            step = 1.0
            pn = 0.0
            for h in range(30):
                for a in range(nu):
                    un[a] = u[a] + step * delta[a]
                if joint:
                    for a in range(p):
                        bn[a] = beta[a] + step * delta[nu + a]
                    _base(n, p, Xp, &offset[0], &bn[0] if p > 0 else NULL, &basen[0])
                pn = _pdev(fam, n, k, Zp, &codes[0], &basen[0] if joint else &base[0], &y[0],
                           &wt[0], &un[0], nu, dconst, phi, &etan[0], &mun[0], sc, shape)
                if isfinite(pn) and pn <= pdev + 1e-10 * fabs(pdev):
                    break
                step *= 0.5
            else:
                have_factor = False
                break
            for a in range(nu):
                u[a] = un[a]
            if joint:
                for a in range(p):
                    beta[a] = bn[a]
            for i in range(n):
                eta[i] = etan[i]
                mu[i] = mun[i]
            change = pdev - pn
            pdev = pn
            _weights(fam, n, &mu[0], &wt[0], phi, shape, &w[0])
            have_factor = False
            if change <= 1e-15 * (1.0 + fabs(pdev)) and step < 1.0:
                converged = True
                break
        if status == 0 and not converged and not isfinite(pdev):
            status = 2
        if status == 0 and observed and fam >= 2:
            # the Laplace log-determinant with the exact curvature (glmmTMB's convention)
            _curvature(fam, n, &mu[0], &y[0], &wt[0], phi, shape, &w[0], &etan[0], &mun[0])
            have_factor = False
        if status == 0 and not have_factor:
            if _factor(n, k, nlev, Zp, &codes[0], &w[0], &L[0]) != 0:
                status = 1
            elif joint:
                # R_X at the final mode: the Schur complement of the factor there
                for a in range(nd):
                    delta[a] = 0.0
                if _joint_step(n, k, nlev, p, Zp, Xp, &codes[0], &w[0], &L[0], &K[0], &S[0],
                               &delta[0], &work[0]) != 0:
                    status = 3
    logdet = _logdet(k, nlev, &L[0]) if status == 0 else float("nan")
    RX = None
    if joint:
        for a in range(p):
            for h in range(a + 1, p):
                S[a * p + h] = 0.0
        RX = S_a[:p * p].reshape(p, p)
    return status, u_a, beta_a, eta_a, mu_a, w_a, pdev, logdet, RX, iters


def laplace_gradient(int fam, const double[:, ::1] Xt, const double[::1] theta, const int64_t[::1] codes,
                     Py_ssize_t nlev, const double[::1] y, const double[::1] wt, double phi,
                     const double[::1] eta, const double[::1] u, const double[:, ::1] X,
                     bint joint, double shape=0.0):
    """Gradient pieces of the Laplace deviance at the mode u (gradient.py's formulas, one term).

    Returns (g_theta, v): g_theta in lme4's theta order, and v with g_beta = X'v.
    Xt: the term's model matrix (n x k), theta its relative covariance factor. With ``joint``
    beta is at its PIRLS optimum too (lme4's nAGQ = 0 objective): the implicit derivative runs
    through the joint (u, beta) system, with X (n x p, row-major), and only g_theta is meant.
    """
    cdef double[:, ::1] Z = _scaled_rows(Xt, theta)
    cdef Py_ssize_t n = Z.shape[0], k = Z.shape[1], kk = k * k, i, j, a, b, c, slot
    cdef Py_ssize_t p = X.shape[1] if joint else 0, nu = nlev * k
    mu_a, w_a, wp_a, s_a, v_a = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    L_a = np.empty(nlev * kk)
    Gi_a = np.empty(nlev * kk)
    R1_a = np.empty(n * k)
    acc_a = np.zeros(nu + p)
    G_a = np.zeros(kk)
    gth_a = np.empty(k * (k + 1) // 2)
    K_a, S_a, work_a = np.empty(max(nu * p, 1)), np.empty(max(p * p, 1)), np.empty(k * p + k + 1)
    cdef double[::1] mu = mu_a, w = w_a, wp = wp_a, s = s_a, v = v_a, L = L_a, Gi = Gi_a
    cdef double[::1] R1 = R1_a, acc = acc_a, G = G_a, gth = gth_a, K = K_a, S = S_a, work = work_a
    cdef double m, h, t, zc
    cdef double* col
    cdef int bad = 0
    cdef const double* Zp = &Z[0, 0]
    cdef const double* Xp = &X[0, 0] if p > 0 else NULL
    ebuf, lbuf = np.empty(n), np.empty(n)
    cdef Scratch sc = _scratch(ebuf, lbuf)
    with nogil:
        _mu_dev(fam, n, &eta[0], &y[0], &wt[0], &mu[0], sc, shape)
        _curvature(fam, n, &mu[0], &y[0], &wt[0], phi, shape, &w[0], &wp[0], &s[0])
        if _factor(n, k, nlev, &Z[0, 0], &codes[0], &w[0], &L[0]) != 0:
            bad = 1
        else:
            # G_j = M_j^{-1}, column by column
            for j in range(nlev):
                for b in range(k):
                    col = &Gi[j * kk + b * k]
                    for a in range(k):
                        col[a] = 1.0 if a == b else 0.0
                    _block_solve(k, &L[j * kk], col)
            # R1_i = G_j z_i, h_i = z_i' G_j z_i; a_j = sum z_i h_i w'_i
            for i in range(n):
                j = codes[i]
                h = 0.0
                for a in range(k):
                    t = 0.0
                    for b in range(k):
                        t += Gi[j * kk + b * k + a] * Zp[i * k + b]
                    R1[i * k + a] = t
                    h += Zp[i * k + a] * t
                v[i] = h * wp[i]                       # hw, for now
                for a in range(k):
                    acc[j * k + a] += Zp[i * k + a] * v[i]
            if joint:
                # (c, c_beta) = H^{-1} (a, X'hw) through the joint system
                for i in range(n):
                    for a in range(p):
                        acc[nu + a] += Xp[i * p + a] * v[i]
                if _joint_step(n, k, nlev, p, Zp, Xp, &codes[0], &w[0], &L[0], &K[0], &S[0],
                               &acc[0], &work[0]) != 0:
                    bad = 1
            else:
                # c_j = G_j a_j (in place)
                for j in range(nlev):
                    _block_solve(k, &L[j * kk], &acc[j * k])
            for i in range(n):
                j = codes[i]
                zc = 0.0
                for a in range(k):
                    zc += Zp[i * k + a] * acc[j * k + a]
                for a in range(p):
                    zc += Xp[i * p + a] * acc[nu + a]
                v[i] = -2.0 * s[i] + v[i] - w[i] * zc
                # G[r, c] += Xt[i, r] (v_i u_j[c] + s_i c_j[c] + 2 w_i R1_i[c])
                for c in range(k):
                    t = v[i] * u[j * k + c] + s[i] * acc[j * k + c] + 2.0 * w[i] * R1[i * k + c]
                    for a in range(k):
                        G[a * k + c] += Xt[i, a] * t
            slot = 0
            for c in range(k):
                for a in range(c, k):
                    gth[slot] = G[a * k + c]
                    slot += 1
    if bad:
        raise np.linalg.LinAlgError("penalized system not positive definite")
    return gth_a, v_a


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
