# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Compiled PIRLS and Laplace gradient for GLMMs (one or several random-effects terms).

M = Lambda'Z'WZLambda + I in the blocked form of linalg/blocked.py: the first term's levels
give k x k diagonal blocks D_j; the other terms' q_r columns ("rest") meet them in sparse blocks
B (one k-vector per pair of a rest column and a first-term level that share rows), and among
themselves in R. The factor is L11 = chol(D_j), L21 = L11^{-1} B', and L22 = chol(S) for the
Schur complement S = R - L21'L21, stored densely but factored on its symbolic pattern (fixed per
model: `linalg/kernel_pattern.py`), so nested designs cost what their few nonzeros cost and
crossed ones a dense q_r^3/3. The gradient needs M^{-1} on the pattern of Z'Z: S^{-1} on L22's
pattern by the Takahashi recurrences, then the first-term blocks from it. With one term there is
no rest (q_r = 0), and beta can be updated jointly with u (the nAGQ = 0 stage and the start),
by block elimination of the fixed effects. Same algorithms and formulas as pirls.py and
gradient.py; the tests compare the two paths.
Families: see _rowwise.pxi (Poisson, binomial, nbinom2 and Gamma with their log/logit links).
"""
from pyglmm.fit._optim cimport Objective
import numpy as np
cimport numpy as cnp
from libc.stdint cimport int64_t
from libc.math cimport lgamma, round as c_round

cnp.import_array()


cdef inline double* _dp(object a) except NULL:
    """The data of a C-contiguous float64 array made here (np.empty): a pointer without the
    typed memoryview a conversion would build, which costs more than a small kernel's loop."""
    cdef cnp.ndarray arr = <cnp.ndarray?> a
    if cnp.PyArray_TYPE(arr) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise TypeError("expected a C-contiguous float64 array")
    return <double*> cnp.PyArray_DATA(arr)

include "_rowwise.pxi"
include "_dense.pxi"

cdef struct Design:
    # pointers to one model's fixed arrays and the per-theta values of Z Lambda; passed by
    # value, so that the hot loops keep them in registers (Python builds with
    # -fno-strict-aliasing: fields read through a pointer would be reloaded after every store)
    Py_ssize_t n, k, nlev, m, qr, nblk
    const double* Z1          # n x k: first term's rows of Z Lambda
    const int64_t* codes      # n: first-term level
    const double* V           # n x m: rest values of Z Lambda
    const int64_t* cols       # n x m: rest column of each slot
    const int64_t* blk_ptr    # nlev + 1: blocks of each level (sorted by column)
    const int64_t* blk_col    # nblk: rest column of each block
    const int64_t* blk_of     # n x m: block of each (row, slot)
    const int64_t* nzp        # qr + 1: symbolic pattern of L22 below the diagonal
    const int64_t* nzi
    const int64_t* seg        # nlev + 1: each level's rows when they are contiguous, or NULL


cdef Design _design(object Z1, const int64_t[::1] codes, Py_ssize_t nlev,
                    object V, const int64_t[:, ::1] cols, Py_ssize_t qr,
                    const int64_t[::1] blk_ptr, const int64_t[::1] blk_col,
                    const int64_t[:, ::1] blk_of, const int64_t[::1] nzp, const int64_t[::1] nzi,
                    const int64_t[::1] seg) except *:
    """The design's pointers; Z1 (n x k) and V (n x m) the arrays of `scaled_design` (the
    caller keeps the arrays alive while it is used)."""
    cdef Design d
    cdef cnp.ndarray z1 = <cnp.ndarray?> Z1, v = <cnp.ndarray?> V
    d.n, d.k, d.nlev, d.m = cnp.PyArray_DIM(z1, 0), cnp.PyArray_DIM(z1, 1), nlev, \
        cnp.PyArray_DIM(v, 1)
    d.qr, d.nblk = qr, blk_col.shape[0]
    d.Z1, d.codes, d.blk_ptr, d.nzp = _dp(z1), &codes[0], &blk_ptr[0], &nzp[0]
    d.V = _dp(v) if d.m > 0 else NULL                  # one term: no rest columns
    d.cols = &cols[0, 0] if d.m > 0 else NULL
    d.blk_of = &blk_of[0, 0] if d.m > 0 else NULL
    d.blk_col = &blk_col[0] if d.nblk > 0 else NULL
    d.nzi = &nzi[0] if nzi.shape[0] > 0 else NULL
    d.seg = &seg[0] if seg.shape[0] == nlev + 1 else NULL
    return d


cdef int _factor(Design d, const double* w, double* L11, double* L21, double* L22) noexcept nogil:
    """The blocked Cholesky factor of M at weights w; -1 if not positive definite."""
    cdef Py_ssize_t n = d.n, k = d.k, m = d.m, qr = d.qr, kk = d.k * d.k
    cdef Py_ssize_t i, j, a, b, s, t, c, c2, b2, ia, ib, e
    cdef double wi, vs, dot, piv
    cdef double* Lj
    for a in range(d.nlev * kk):
        L11[a] = 0.0
    for j in range(d.nlev):
        for a in range(k):
            L11[j * kk + a * k + a] = 1.0
    for a in range(d.nblk * k):
        L21[a] = 0.0
    for a in range(qr * qr):
        L22[a] = 0.0
    for c in range(qr):
        L22[c * qr + c] = 1.0
    cdef const double* Z1 = d.Z1
    if d.seg != NULL:
        # rows grouped by level: each block entry a sum in a register (a += into the block
        # would chain the level's rows through memory)
        for j in range(d.nlev):
            Lj = L11 + j * kk
            for a in range(k):
                for b in range(a + 1):
                    dot = 0.0
                    for i in range(d.seg[j], d.seg[j + 1]):
                        dot += w[i] * Z1[i * k + a] * Z1[i * k + b]
                    Lj[a * k + b] += dot
    for i in range(n):
        j = d.codes[i]
        wi = w[i]
        if d.seg == NULL:
            Lj = L11 + j * kk
            for a in range(k):
                vs = wi * Z1[i * k + a]
                for b in range(a + 1):
                    Lj[a * k + b] += vs * Z1[i * k + b]
        for s in range(m):
            c = d.cols[i * m + s]
            vs = wi * d.V[i * m + s]
            e = d.blk_of[i * m + s] * k
            for a in range(k):
                L21[e + a] += vs * d.Z1[i * k + a]
            for t in range(m):
                c2 = d.cols[i * m + t]
                if c2 <= c:
                    L22[c * qr + c2] += vs * d.V[i * m + t]
    # L11_j = chol(D_j); L21 blocks <- L11_j^{-1} B; S -= L21'L21 within each level
    for j in range(d.nlev):
        Lj = L11 + j * kk
        if _chol(k, Lj) != 0:
            return -1
        for b in range(d.blk_ptr[j], d.blk_ptr[j + 1]):
            _fwd(k, Lj, &L21[b * k])
        for b in range(d.blk_ptr[j], d.blk_ptr[j + 1]):
            c = d.blk_col[b]
            for b2 in range(d.blk_ptr[j], b + 1):
                dot = 0.0
                for a in range(k):
                    dot += L21[b * k + a] * L21[b2 * k + a]
                L22[c * qr + d.blk_col[b2]] -= dot
    # L22 = chol(S) on the symbolic pattern (columns' nonzeros below the diagonal in nzi)
    for c in range(qr):
        piv = L22[c * qr + c]
        if not piv > 0.0:
            return -1
        piv = sqrt(piv)
        L22[c * qr + c] = piv
        for ia in range(d.nzp[c], d.nzp[c + 1]):
            L22[d.nzi[ia] * qr + c] /= piv
        for ia in range(d.nzp[c], d.nzp[c + 1]):
            a = d.nzi[ia]
            vs = L22[a * qr + c]
            for ib in range(d.nzp[c], ia + 1):
                b = d.nzi[ib]
                L22[a * qr + b] -= vs * L22[b * qr + c]
    return 0


cdef double _logdet(Design d, const double* L11, const double* L22) noexcept nogil:
    cdef Py_ssize_t j, a
    cdef double s = 0.0
    for j in range(d.nlev):
        for a in range(d.k):
            s += log(L11[j * d.k * d.k + a * d.k + a])
    for a in range(d.qr):
        s += log(L22[a * d.qr + a])
    return 2.0 * s


cdef void _solve(Design d, const double* L11, const double* L21, const double* L22,
                 double* x) noexcept nogil:
    """x <- M^{-1} x, x = (first-term levels' k-vectors, then the q_r rest columns)."""
    cdef Py_ssize_t k = d.k, kk = d.k * d.k, qr = d.qr, j, b, a, c, ia
    cdef double* x2 = x + d.nlev * k
    cdef double t
    for j in range(d.nlev):
        _fwd(k, L11 + j * kk, x + j * k)
        for b in range(d.blk_ptr[j], d.blk_ptr[j + 1]):
            t = 0.0
            for a in range(k):
                t += L21[b * k + a] * x[j * k + a]
            x2[d.blk_col[b]] -= t
    for c in range(qr):
        x2[c] /= L22[c * qr + c]
        for ia in range(d.nzp[c], d.nzp[c + 1]):
            x2[d.nzi[ia]] -= L22[d.nzi[ia] * qr + c] * x2[c]
    for c in range(qr - 1, -1, -1):
        t = x2[c]
        for ia in range(d.nzp[c], d.nzp[c + 1]):
            t -= L22[d.nzi[ia] * qr + c] * x2[d.nzi[ia]]
        x2[c] = t / L22[c * qr + c]
    for j in range(d.nlev):
        for b in range(d.blk_ptr[j], d.blk_ptr[j + 1]):
            t = x2[d.blk_col[b]]
            for a in range(k):
                x[j * k + a] -= L21[b * k + a] * t
        _bwd(k, L11 + j * kk, x + j * k)


cdef double _pdev(Design d, int fam, const double* base, const double* y, const double* wt,
                  const double* u, double dconst, double phi, double* eta, double* mu,
                  Scratch sc, double shape) noexcept nogil:
    """eta = base + Z Lambda u, mu, and sum(dev)/phi + |u|^2."""
    cdef Py_ssize_t i, a, j, s, k = d.k, m = d.m
    cdef Py_ssize_t nu = d.nlev * k + d.qr
    cdef const double* u2 = u + d.nlev * k
    cdef double tot, e, su = 0.0
    cdef const double* Z1 = d.Z1
    cdef const int64_t* codes = d.codes
    for i in range(d.n):
        j = codes[i] * k
        e = base[i]
        for a in range(k):
            e += Z1[i * k + a] * u[j + a]
        if m:
            for s in range(m):
                e += d.V[i * m + s] * u2[d.cols[i * m + s]]
        eta[i] = e
    tot = _mu_dev(fam, d.n, eta, y, wt, mu, sc, shape)
    for a in range(nu):
        su += u[a] * u[a]
    return (dconst + 2.0 * tot) / phi + su


cdef void _zt(Design d, double* r, double* out, int fam, const double* y, const double* mu,
              const double* wt, double iphi, double shape) noexcept nogil:
    """out += (Z Lambda)' r; with fam >= 0, r is first set to the rows' working scores (in the
    same pass: PIRLS's gradient), else r is given (the Laplace gradient's h w')."""
    cdef Py_ssize_t i, a, s, j, k = d.k, m = d.m
    cdef double* o2 = out + d.nlev * k
    cdef const double* Z1 = d.Z1
    cdef const int64_t* codes = d.codes
    cdef double ri, t
    if d.seg != NULL:
        # rows grouped by level: the level's sums in registers
        if fam >= 0:
            for i in range(d.n):
                r[i] = _score(fam, y[i], mu[i], wt[i], iphi, shape)
        for j in range(d.nlev):
            for a in range(k):
                t = 0.0
                for i in range(d.seg[j], d.seg[j + 1]):
                    t += Z1[i * k + a] * r[i]
                out[j * k + a] += t
        if m:
            for i in range(d.n):
                for s in range(m):
                    o2[d.cols[i * m + s]] += d.V[i * m + s] * r[i]
        return
    for i in range(d.n):
        if fam >= 0:
            r[i] = _score(fam, y[i], mu[i], wt[i], iphi, shape)
        ri = r[i]
        j = codes[i] * k
        for a in range(k):
            out[j + a] += Z1[i * k + a] * ri
        if m:
            for s in range(m):
                o2[d.cols[i * m + s]] += d.V[i * m + s] * ri


cdef tuple _workspace(Py_ssize_t* sizes, int count, double** pieces, Py_ssize_t extra,
                      list keep):
    """One float64 array carved into ``count`` pieces of the given sizes (their starts written to
    ``pieces``) and ``extra`` doubles after them; returns (the array, where the extra starts).
    A kernel call's working arrays come from this one allocation instead of one each, and
    ``keep`` (the model's [array, size, scratch views]) holds it for the next call of the same
    size: on small data the allocations cost as much as the numerics."""
    cdef Py_ssize_t i, o = 0, total = extra
    for i in range(count):
        total += sizes[i]
    if keep[0] is not None and keep[1] == total:
        arr = keep[0]
    else:
        arr = np.empty(total)
        keep[0], keep[1], keep[2] = arr, total, None
    cdef double* wk = _dp(arr)
    for i in range(count):
        pieces[i] = wk + o
        o += sizes[i]
    return arr, o


cdef double _dot(Py_ssize_t n, const double* x, Py_ssize_t sx, const double* y,
                 Py_ssize_t sy) noexcept nogil:
    """sum_i x[i sx] y[i sy], with four partial sums (a row-wise += into one place would chain
    every row's addition on the previous one through memory)."""
    cdef Py_ssize_t i, n4 = n - n % 4
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
    for i in range(0, n4, 4):
        s0 += x[i * sx] * y[i * sy]
        s1 += x[(i + 1) * sx] * y[(i + 1) * sy]
        s2 += x[(i + 2) * sx] * y[(i + 2) * sy]
        s3 += x[(i + 3) * sx] * y[(i + 3) * sy]
    for i in range(n4, n):
        s0 += x[i * sx] * y[i * sy]
    return (s0 + s1) + (s2 + s3)


cdef void _times_tril(Py_ssize_t n, Py_ssize_t ld, Py_ssize_t off, Py_ssize_t k,
                      const double* X, const double* theta, double* out) noexcept nogil:
    """out[i, off + b] = sum_{a >= b} X[i, off + a] T[a, b] (row stride ld) for the k x k lower
    factor T filled from theta column by column (lme4's order)."""
    cdef Py_ssize_t i, a, b, idx
    cdef double t
    for i in range(n):
        idx = 0
        for b in range(k):
            t = 0.0
            for a in range(b, k):
                t = t + X[i * ld + off + a] * theta[idx + a - b]
            out[i * ld + off + b] = t
            idx += k - b


cpdef tuple scaled_design(const double[:, ::1] X1, const double[:, ::1] Xr,
                          const int64_t[::1] slot_off, const double[::1] theta, list keep=None):
    """The rows of Z Lambda from the terms' model matrices and theta: the first term's (n x k)
    and the rest terms' by slot (n x m), as ReStructure.scaled_values gives them; written into
    ``keep``'s arrays ([Z1, V] of an earlier call) when given."""
    cdef Py_ssize_t n = X1.shape[0], k = X1.shape[1], m = Xr.shape[1], t, pt, th = k * (k + 1) // 2
    if keep is not None and keep[0] is not None:
        Z1_a, V_a = keep[0], keep[1]
    else:
        Z1_a, V_a = np.empty((n, k)), np.empty((n, m))
        if keep is not None:
            keep[0], keep[1] = Z1_a, V_a
    cdef double* Z1 = _dp(Z1_a)
    cdef double* V = _dp(V_a)
    with nogil:
        _times_tril(n, k, 0, k, &X1[0, 0], &theta[0], Z1)
        for t in range(slot_off.shape[0] - 1):
            pt = slot_off[t + 1] - slot_off[t]
            _times_tril(n, m, slot_off[t], pt, &Xr[0, 0], &theta[th], V)
            th += pt * (pt + 1) // 2
    return Z1_a, V_a


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


cdef tuple _pirls(int fam, const double[:, ::1] X1, const double[:, ::1] Xr,
                  const int64_t[::1] slot_off, const double[::1] theta, const int64_t[::1] codes,
                  Py_ssize_t nlev, const int64_t[:, ::1] cols, Py_ssize_t qr,
                  const int64_t[::1] blk_ptr, const int64_t[::1] blk_col,
                  const int64_t[:, ::1] blk_of, const int64_t[::1] nzp, const int64_t[::1] nzi,
                  const int64_t[::1] seg,
                  const double[:, ::1] X, const double[::1] offset, const double[::1] beta0,
                  const double[::1] y, const double[::1] wt, double phi, double dconst,
                  const double[::1] u0, bint try_zero, bint joint, double tol, int max_iter,
                  double shape, bint observed, list keep_z, list keep_w, list keep_out=None):
    """Conditional modes u at fixed (theta, beta) by PIRLS with step halving (pirls.py's rules);
    with ``joint`` (one term only) beta is updated with u (lme4's nAGQ = 0 stage).

    X1 / Xr: the unscaled model matrices of the first term (n x k) and of the rest terms by slot
    (n x m, term t's slots from slot_off[t]), theta the relative covariance factors (lme4's
    order); seg: each first-term level's rows when contiguous (else empty); X the fixed effects
    (n x p, row-major). Returns (status, u, beta, eta, mu, w, pdev, logdet, R_X, iterations):
    status 0 ok, 1 not positive definite, 2 diverged, 3 the joint fixed-effects block not
    positive definite; R_X (joint only) the lower Cholesky factor of the fixed effects' Schur
    complement at the mode.
    """
    Z1, V = scaled_design(X1, Xr, slot_off, theta, keep_z)
    cdef Design d = _design(Z1, codes, nlev, V, cols, qr, blk_ptr, blk_col, blk_of, nzp, nzi, seg)
    if joint and qr > 0:
        raise ValueError("the compiled joint PIRLS takes one random-effects term")
    cdef Py_ssize_t n = d.n, k = d.k, nu = nlev * d.k + qr, p = X.shape[1], i, a, it, h
    cdef Py_ssize_t nd = nu + (p if joint else 0)
    # the results: fresh arrays
    # (copies by memoryview: np.array of a typed memoryview first wraps it in a Python object)
    # (``keep_out``: the arrays of the caller's previous call, reused when it has read them)
    if keep_out is not None and keep_out[0] is not None:
        u_a, beta_a, eta_a, mu_a, w_a, S_a = keep_out
    else:
        u_a, beta_a = np.empty(nu), np.empty(p)
        eta_a, mu_a, w_a, S_a = np.empty(n), np.empty(n), np.empty(n), np.empty(max(p * p, 1))
        if keep_out is not None:
            keep_out[:] = [u_a, beta_a, eta_a, mu_a, w_a, S_a]
    if u0.shape[0] != nu or beta0.shape[0] != p:
        raise ValueError(f"PIRLS start of {u0.shape[0]} modes and {beta0.shape[0]} fixed effects; "
                         f"the model has {nu} and {p}")
    cdef double* u = _dp(u_a)
    cdef double* beta = _dp(beta_a)
    cdef double* eta = _dp(eta_a)
    cdef double* mu = _dp(mu_a)
    cdef double* w = _dp(w_a)
    cdef double* S = _dp(S_a)
    for a in range(max(p * p, 1)):
        S[a] = 0.0
    for a in range(nu):
        u[a] = u0[a]
    for a in range(p):
        beta[a] = beta0[a]
    # the working arrays: one allocation, carved into pieces (this runs in every evaluation)
    cdef Py_ssize_t sizes[14]
    sizes[:] = [nu, p, nd, nd, n, n, n, n, n, nlev * k * k, d.nblk * k, qr * qr, nlev * k * p,
                k * p + k + 1]
    cdef double* pieces[14]
    work_a, o = _workspace(sizes, 14, pieces, 2 * n, keep_w)
    cdef double* un = pieces[0]
    cdef double* bn = pieces[1]
    cdef double* delta = pieces[2]
    cdef double* g = pieces[3]
    cdef double* etan = pieces[4]
    cdef double* mun = pieces[5]
    cdef double* r = pieces[6]
    cdef double* base = pieces[7]
    cdef double* basen = pieces[8]
    cdef double* L11 = pieces[9]
    cdef double* L21 = pieces[10]
    cdef double* L22 = pieces[11]
    cdef double* K = pieces[12]
    cdef double* work = pieces[13]
    if keep_w[2] is None:                     # numpy's exp/log1p write here
        keep_w[2] = (work_a[o:o + n], work_a[o + n:o + 2 * n])
    ebuf, lbuf = keep_w[2]
    cdef Scratch sc = _scratch(ebuf, lbuf)
    cdef double pdev, p0, pn, dec, dmax, step, change, iphi = 1.0 / phi
    cdef bint converged = False, have_factor = False
    cdef int status = 0, iters = 0
    cdef const double* Xp = &X[0, 0] if p > 0 else NULL
    with nogil:
        _base(n, p, Xp, &offset[0], &beta[0] if p > 0 else NULL, &base[0])
        pdev = _pdev(d, fam, &base[0], &y[0], &wt[0], &u[0], dconst, phi, &eta[0], &mu[0], sc, shape)
        if try_zero or not isfinite(pdev):
            # the mode of the penalty alone, u = 0, when the warm start is worse (or not finite)
            for a in range(nu):
                un[a] = 0.0
            p0 = _pdev(d, fam, &base[0], &y[0], &wt[0], &un[0], dconst, phi, &etan[0], &mun[0], sc,
                       shape)
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
            if _factor(d, &w[0], &L11[0], &L21[0], &L22[0]) != 0:
                status = 1
                break
            have_factor = True
            # gradient: g_u = (Z Lambda)' score - u  [, g_beta = X' score]
            for a in range(nd):
                g[a] = 0.0
            for a in range(nu):
                g[a] = -u[a]
            _zt(d, &r[0], &g[0], fam, &y[0], &mu[0], &wt[0], iphi, shape)
            if joint:
                for i in range(n):
                    for a in range(p):
                        g[nu + a] += Xp[i * p + a] * r[i]
            for a in range(nd):
                delta[a] = g[a]
            if joint:
                if _joint_step(n, k, nlev, p, d.Z1, Xp, d.codes, &w[0], &L11[0], &K[0], &S[0],
                               &delta[0], &work[0]) != 0:
                    status = 3
                    break
            else:
                _solve(d, &L11[0], &L21[0], &L22[0], &delta[0])
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
                pn = _pdev(d, fam, &basen[0] if joint else &base[0], &y[0], &wt[0], &un[0], dconst,
                           phi, &etan[0], &mun[0], sc, shape)
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
            if _factor(d, &w[0], &L11[0], &L21[0], &L22[0]) != 0:
                status = 1
            elif joint:
                # R_X at the final mode: the fixed effects' Schur complement there
                for a in range(nd):
                    delta[a] = 0.0
                if _joint_step(n, k, nlev, p, d.Z1, Xp, d.codes, &w[0], &L11[0], &K[0], &S[0],
                               &delta[0], &work[0]) != 0:
                    status = 3
    logdet = _logdet(d, &L11[0], &L22[0]) if status == 0 else float("nan")
    RX = None
    if joint:
        for a in range(p):
            for h in range(a + 1, p):
                S[a * p + h] = 0.0
        RX = S_a[:p * p].reshape(p, p)
    return status, u_a, beta_a, eta_a, mu_a, w_a, pdev, logdet, RX, iters


cdef tuple _laplace_gradient(int fam, const double[:, ::1] X1, const double[:, ::1] Xr,
                             const int64_t[::1] slot_off, const double[::1] theta,
                             const int64_t[::1] codes, Py_ssize_t nlev,
                             const int64_t[::1] slot_term, const int64_t[:, ::1] cols,
                             Py_ssize_t qr, const int64_t[::1] blk_ptr,
                             const int64_t[::1] blk_col, const int64_t[:, ::1] blk_of,
                             const int64_t[::1] nzp, const int64_t[::1] nzi,
                             const int64_t[::1] seg, const double[::1] y,
                             const double[::1] wt, double phi, const double[::1] eta,
                             const double[::1] u, const double[:, ::1] X, bint joint,
                             double shape, list keep_z, list keep_w, list keep_out=None):
    """Gradient pieces of the Laplace deviance at the mode u (gradient.py's formulas).

    X1 / Xr / slot_off / theta / seg as for `_pirls`; slot_term: the rest term of each slot.
    Returns (g_theta, v): the gradient in theta (lme4's order) and v with g_beta = X'v. With
    ``joint`` (one term only) beta is at its PIRLS optimum too (the nAGQ = 0 objective): the
    implicit derivative runs through the joint (u, beta) system with X (n x p, row-major), and
    only the theta parts are meant.
    """
    Z1, V = scaled_design(X1, Xr, slot_off, theta, keep_z)
    cdef Design d = _design(Z1, codes, nlev, V, cols, qr, blk_ptr, blk_col, blk_of, nzp, nzi, seg)
    if joint and qr > 0:
        raise ValueError("the compiled joint gradient takes one random-effects term")
    cdef Py_ssize_t n = d.n, k = d.k, kk = d.k * d.k, m = d.m, nu = nlev * d.k + qr
    cdef Py_ssize_t p = X.shape[1] if joint else 0
    cdef Py_ssize_t i, j, a, b, c, e, s, t, b2, ia, ib, jj
    if keep_out is not None and keep_out[0] is not None:   # as in `_pirls`
        v_a, gth_a = keep_out
    else:
        v_a, gth_a = np.empty(n), np.empty(theta.shape[0])     # returned
        if keep_out is not None:
            keep_out[:] = [v_a, gth_a]
    cdef double* v = _dp(v_a)
    # the working arrays: one allocation, carved into pieces (this runs in every evaluation);
    # Zs, cc and the G blocks start at zero
    cdef Py_ssize_t sizes[20]
    sizes[:] = [n, n, n, n, n, nlev * kk, d.nblk * k, qr * qr, qr * qr, d.nblk * k, d.nblk * k,
                nlev * kk, n * k, n * m, nu + p, k * k, m * m, kk + k + k * p + 1, nlev * k * p,
                p * p]
    cdef double* pieces[20]
    work_a, o = _workspace(sizes, 20, pieces, 2 * n, keep_w)
    cdef double* mu = pieces[0]
    cdef double* w = pieces[1]
    cdef double* wp = pieces[2]
    cdef double* sc = pieces[3]
    cdef double* hh = pieces[4]
    cdef double* L11 = pieces[5]
    cdef double* L21 = pieces[6]
    cdef double* L22 = pieces[7]
    cdef double* Zs = pieces[8]
    cdef double* BW = pieces[9]
    cdef double* Q = pieces[10]
    cdef double* G11 = pieces[11]
    cdef double* R1 = pieces[12]
    cdef double* Rr = pieces[13]
    cdef double* cc = pieces[14]
    cdef double* G1p = pieces[15]
    cdef double* Grp = pieces[16]
    cdef double* work = pieces[17]
    cdef double* K = pieces[18]
    cdef double* S = pieces[19]
    for i in range(qr * qr):
        Zs[i] = 0.0
    for i in range(nu + p):
        cc[i] = 0.0
    for i in range(k * k):
        G1p[i] = 0.0
    for i in range(m * m):
        Grp[i] = 0.0
    cdef const double* Xp = &X[0, 0] if p > 0 else NULL
    cdef const double* Z1p = d.Z1
    cdef const int64_t* codesp = d.codes
    cdef const double* X1p = &X1[0, 0]
    cdef const double* Xrp = &Xr[0, 0] if m > 0 else NULL
    cdef double mm, t1, t2, piv, zc
    cdef double* zrow
    cdef double* c2 = cc + nlev * k
    cdef int bad = 0
    if keep_w[2] is None:                     # numpy's exp/log1p write here
        keep_w[2] = (work_a[o:o + n], work_a[o + n:o + 2 * n])
    ebuf, lbuf = keep_w[2]
    cdef Scratch scr = _scratch(ebuf, lbuf)
    with nogil:
        _mu_dev(fam, n, &eta[0], &y[0], &wt[0], &mu[0], scr, shape)
        _curvature(fam, n, &mu[0], &y[0], &wt[0], phi, shape, &w[0], &wp[0], &sc[0])
        if _factor(d, &w[0], &L11[0], &L21[0], &L22[0]) != 0:
            bad = 1
        else:
            # S^{-1} on L22's pattern (Takahashi): columns from the last, both triangles kept
            for c in range(qr - 1, -1, -1):
                piv = L22[c * qr + c]
                for ia in range(d.nzp[c], d.nzp[c + 1]):
                    a = d.nzi[ia]
                    t1 = 0.0
                    for ib in range(d.nzp[c], d.nzp[c + 1]):
                        b = d.nzi[ib]
                        t1 += Zs[a * qr + b] * L22[b * qr + c]
                    Zs[a * qr + c] = -t1 / piv
                    Zs[c * qr + a] = Zs[a * qr + c]
                t1 = 0.0
                for ib in range(d.nzp[c], d.nzp[c + 1]):
                    b = d.nzi[ib]
                    t1 += Zs[b * qr + c] * L22[b * qr + c]
                Zs[c * qr + c] = 1.0 / (piv * piv) - t1 / piv
            # first-term blocks: BW_b = L11_j^{-T} L21_b (= W_j B_b'), Q_b = -sum S^{-1} BW,
            # G11_j = W_j - sum_b BW_b Q_b'
            for j in range(nlev):
                for b in range(d.blk_ptr[j], d.blk_ptr[j + 1]):
                    for a in range(k):
                        BW[b * k + a] = L21[b * k + a]
                    _bwd(k, &L11[j * kk], &BW[b * k])
                for b in range(d.blk_ptr[j], d.blk_ptr[j + 1]):
                    zrow = &Zs[d.blk_col[b] * qr]
                    for a in range(k):
                        t1 = 0.0                     # a register sum, not a += in memory
                        for b2 in range(d.blk_ptr[j], d.blk_ptr[j + 1]):
                            t1 -= zrow[d.blk_col[b2]] * BW[b2 * k + a]
                        Q[b * k + a] = t1
                # W_j = (L11_j L11_j')^{-1}, column by column
                for b in range(k):
                    for a in range(k):
                        work[kk + a] = 1.0 if a == b else 0.0
                    _fwd(k, &L11[j * kk], &work[kk])
                    _bwd(k, &L11[j * kk], &work[kk])
                    for a in range(k):
                        G11[j * kk + a * k + b] = work[kk + a]
                for b in range(d.blk_ptr[j], d.blk_ptr[j + 1]):
                    for a in range(k):
                        for e in range(k):
                            G11[j * kk + a * k + e] -= BW[b * k + a] * Q[b * k + e]
            # per row: R1 = (M^{-1} z_i) on the level's columns, Rr on the row's rest columns,
            # h = z_i' M^{-1} z_i; then a = (Z Lambda)'(h w') into cc
            for i in range(n):
                j = codesp[i]
                for a in range(k):
                    t1 = 0.0
                    for e in range(k):
                        t1 += G11[j * kk + a * k + e] * Z1p[i * k + e]
                    if m:
                        for s in range(m):
                            t1 += d.V[i * m + s] * Q[d.blk_of[i * m + s] * k + a]
                    R1[i * k + a] = t1
                t2 = 0.0
                for a in range(k):
                    t2 += Z1p[i * k + a] * R1[i * k + a]
                for s in range(m):
                    c = d.cols[i * m + s]
                    t1 = 0.0
                    for a in range(k):
                        t1 += Q[d.blk_of[i * m + s] * k + a] * Z1p[i * k + a]
                    for t in range(m):
                        e = d.cols[i * m + t]
                        t1 += Zs[c * qr + e] * d.V[i * m + t]
                    Rr[i * m + s] = t1
                    t2 += d.V[i * m + s] * t1
                hh[i] = t2 * wp[i]
            _zt(d, &hh[0], &cc[0], -1, NULL, NULL, NULL, 1.0, 0.0)
            if joint:
                # (c, c_beta) = H^{-1} (a, X'hw) through the joint system
                for i in range(n):
                    for a in range(p):
                        cc[nu + a] += Xp[i * p + a] * hh[i]
                if _joint_step(n, k, nlev, p, d.Z1, Xp, d.codes, &w[0], &L11[0], &K[0], &S[0],
                               &cc[0], &work[0]) != 0:
                    bad = 1
            else:
                _solve(d, &L11[0], &L21[0], &L22[0], &cc[0])
            for i in range(n):
                j = codesp[i]
                zc = 0.0
                for a in range(k):
                    zc += Z1p[i * k + a] * cc[j * k + a]
                if m:
                    for s in range(m):
                        zc += d.V[i * m + s] * c2[d.cols[i * m + s]]
                if p:
                    for a in range(p):
                        zc += Xp[i * p + a] * cc[nu + a]
                v[i] = -2.0 * sc[i] + hh[i] - w[i] * zc
                # the rows' factors F[i, a] = v u_j[a] + s c_j[a] + 2 w R1[a] (first term) and
                # likewise per rest slot, in R1 / Rr's place: G = X' F below
                for a in range(k):
                    R1[i * k + a] = (v[i] * u[j * k + a] + sc[i] * cc[j * k + a]
                                     + 2.0 * w[i] * R1[i * k + a])
                if m:
                    for s in range(m):
                        c = d.cols[i * m + s]
                        Rr[i * m + s] = (v[i] * u[nlev * k + c] + sc[i] * c2[c]
                                         + 2.0 * w[i] * Rr[i * m + s])
            # G1[r, a] = sum_i X1[i, r] F[i, a]; rest: within each term's slots
            for e in range(k):
                for a in range(k):
                    G1p[e * k + a] = _dot(n, X1p + e, k, &R1[a], k)
            for t in range(m):
                for s in range(m):
                    if slot_term[t] == slot_term[s]:
                        Grp[t * m + s] = _dot(n, Xrp + t, m, &Rr[s], m)
    if bad:
        raise np.linalg.LinAlgError("penalized system not positive definite")
    # the entries of each term's T that carry a parameter, column by column (lme4's order)
    cdef double* gth = _dp(gth_a)
    cdef Py_ssize_t slot = 0, pt, so
    for c in range(k):
        for a in range(c, k):
            gth[slot] = G1p[a * k + c]
            slot += 1
    for t in range(slot_off.shape[0] - 1):
        so, pt = slot_off[t], slot_off[t + 1] - slot_off[t]
        for c in range(pt):
            for a in range(c, pt):
                gth[slot] = Grp[(so + a) * m + so + c]
                slot += 1
    return gth_a, v_a


_NO_X = np.zeros((0, 0))


cdef class GlmmData:
    """One model's fixed arrays for the kernels: the design pattern (linalg/kernel_pattern.py),
    the fixed effects (row-major), offset, response and prior weights. Bound once per model, so
    that a call passes only what changes (theta, beta, the modes): the arguments of a kernel call
    cost microseconds each, as much as the numerics on a small data set."""
    cdef const double[:, ::1] X1, Xr, X
    cdef const int64_t[::1] slot_off, slot_term, codes, blk_ptr, blk_col, nzp, nzi, seg
    cdef const int64_t[:, ::1] cols, blk_of
    cdef const double[::1] offset, y, wt
    cdef Py_ssize_t nlev, qr
    cdef list pz, pw, gz, gw          # working arrays kept between calls (`_workspace`)

    def __init__(self, pat, X, offset, y, wt):
        self.pz, self.pw, self.gz, self.gw = [None, None], [None, 0, None], [None, None], \
            [None, 0, None]
        self.X1, self.Xr, self.slot_off, self.slot_term = pat.X1, pat.Xr, pat.slot_off, pat.slot_term
        self.codes, self.nlev, self.cols, self.qr = pat.codes, pat.l1, pat.cols, pat.qr
        self.blk_ptr, self.blk_col, self.blk_of = pat.blk_ptr, pat.blk_col, pat.blk_of
        self.nzp, self.nzi, self.seg = pat.nzp, pat.nzi, pat.seg
        self.X, self.offset, self.y, self.wt = X, offset, y, wt

    def pirls(self, int fam, const double[::1] theta, const double[::1] beta0,
              const double[::1] u0, double phi, double dconst, bint try_zero, bint joint,
              double tol, int max_iter, double shape=0.0, bint observed=False):
        """Conditional modes at (theta, beta) by PIRLS; see `_pirls` for the returned tuple."""
        return _pirls(fam, self.X1, self.Xr, self.slot_off, theta, self.codes, self.nlev,
                      self.cols, self.qr, self.blk_ptr, self.blk_col, self.blk_of, self.nzp,
                      self.nzi, self.seg, self.X, self.offset, beta0, self.y, self.wt, phi,
                      dconst, u0, try_zero, joint, tol, max_iter, shape, observed, self.pz,
                      self.pw)

    def laplace_gradient(self, int fam, const double[::1] theta, const double[::1] eta,
                         const double[::1] u, double phi, bint joint, double shape=0.0):
        """(g_theta, v) at the mode u; see `_laplace_gradient`."""
        return _laplace_gradient(fam, self.X1, self.Xr, self.slot_off, theta, self.codes,
                                 self.nlev, self.slot_term, self.cols, self.qr, self.blk_ptr,
                                 self.blk_col, self.blk_of, self.nzp, self.nzi, self.seg, self.y,
                                 self.wt, phi, eta, u, self.X if joint else _NO_X, joint, shape,
                                 self.gz, self.gw)


cdef class LaplaceObjective(Objective):
    """The Laplace deviance and its exact gradient in the optimiser's coordinates z (theta =
    sc * z_theta, beta = beta1 + C z_beta) by one compiled PIRLS and one gradient per point, on
    output arrays kept between calls: the stage-2 objective of fit/glmm.py for Poisson and
    binomial fits, whose Python layers would cost more than the numerics on small data. Same
    rules as `GlmmProblem.pirls`: the warm start is the problem's last mode (``_u_warm``,
    ``_theta_warm``, updated at every point), restarted from u = 0 after a long step in theta."""
    cdef GlmmData kd
    cdef object problem
    cdef int fam, max_iter
    cdef double dconst, shape, tol, sat, f
    cdef bint observed, have, have_g, ok
    cdef Py_ssize_t nth, p
    cdef double[::1] sc, beta1, th, be, g, th_new, be_new
    cdef const double[:, ::1] C
    cdef object th_a, be_a, g_a, u_a, eta_a, th_new_a, be_new_a
    cdef list out_p, out_g
    cdef double[::1] zbuf

    def __init__(self, GlmmData kd, problem, int fam, double dconst, double shape, bint observed,
                 double sat, double tol, int max_iter, sc, beta1, C):
        self.kd, self.problem, self.fam, self.dconst, self.shape = kd, problem, fam, dconst, shape
        self.observed, self.sat, self.tol, self.max_iter = observed, sat, tol, max_iter
        self.sc, self.beta1, self.C = sc, beta1, np.ascontiguousarray(C, dtype=np.float64)
        self.nth, self.p = self.sc.shape[0], self.beta1.shape[0]
        self.have = False
        self.out_p, self.out_g = [None] * 6, [None, None]
        self.g_a = np.empty(self.nth + self.p)
        self.g = self.g_a
        self.th_new_a, self.be_new_a = np.empty(self.nth), np.empty(self.p)
        self.th_new, self.be_new = self.th_new_a, self.be_new_a
        self.nx = self.nth + self.p
        self.zbuf = np.empty(self.nx)

    cdef int fg(self, const double* x, double* f, double* g) except -1:
        """The compiled optimiser's call: deviance and gradient at z = x; 1 where PIRLS fails."""
        cdef Py_ssize_t a
        for a in range(self.nx):
            self.zbuf[a] = x[a]
        self._set_point(self.zbuf)
        if not self.ok:
            return 1
        self._grad()
        f[0] = self.f
        for a in range(self.nx):
            g[a] = self.g[a]
        return 0

    cdef void _set_point(self, const double[::1] z) except *:
        """theta and beta at z; keeps the current mode when they are those of the last point."""
        cdef Py_ssize_t nth = self.nth, p = self.p, a, b
        cdef double t
        cdef double[::1] th = self.th_new, be = self.be_new     # scratch: no allocation on a repeat
        for a in range(nth):
            th[a] = self.sc[a] * z[a]
        for a in range(p):
            t = self.beta1[a]
            for b in range(p):
                t += self.C[a, b] * z[nth + b]
            be[a] = t
        if self.have:
            for a in range(nth):
                if th[a] != self.th[a]:
                    break
            else:
                for a in range(p):
                    if be[a] != self.be[a]:
                        break
                else:
                    return
        self.th_a, self.be_a = self.th_new_a.copy(), self.be_new_a.copy()   # kept by the problem
        self.th, self.be = self.th_a, self.be_a
        self.have, self.have_g = True, False
        self._pirls()

    cdef void _pirls(self) except *:
        pb = self.problem
        tw_o = pb._theta_warm
        cdef Py_ssize_t a, nth = self.nth
        cdef double dmax = 0.0, tmax = 0.0
        cdef bint near = False
        cdef const double[::1] tw
        if tw_o is not None and tw_o.shape[0] == nth:
            tw = tw_o
            for a in range(nth):
                dmax = max(dmax, fabs(self.th[a] - tw[a]))
                tmax = max(tmax, fabs(tw[a]))
            near = dmax < 0.05 * max(1.0, tmax)
        u0_o = pb._u_warm
        cdef const double[::1] u0 = u0_o
        cdef bint try_zero = False
        if not near:
            for a in range(u0.shape[0]):
                if u0[a] != 0.0:
                    try_zero = True
                    break
        cdef GlmmData kd = self.kd
        st, u_a, _, eta_a, _, _, pdev, logdet, _, _ = _pirls(
            self.fam, kd.X1, kd.Xr, kd.slot_off, self.th, kd.codes, kd.nlev, kd.cols, kd.qr,
            kd.blk_ptr, kd.blk_col, kd.blk_of, kd.nzp, kd.nzi, kd.seg, kd.X, kd.offset, self.be,
            kd.y, kd.wt, 1.0, self.dconst, u0, try_zero, False, self.tol, self.max_iter,
            self.shape, self.observed, kd.pz, kd.pw, self.out_p)
        self.ok = st == 0
        if not self.ok:
            self.f = float("inf")
            return
        cdef double[::1] u = u_a
        cdef double sqr_u = 0.0
        for a in range(u.shape[0]):
            sqr_u += u[a] * u[a]
        pb._u_warm, pb._theta_warm = u_a.copy(), self.th_a
        self.u_a, self.eta_a = u_a, eta_a
        # -2 log f(y | u) + |u|^2 + log det, with -2 log f = sum(dev_resids) - 2 log f_saturated
        self.f = (pdev - sqr_u) + self.sat + sqr_u + logdet

    def deviance(self, const double[::1] z):
        """The Laplace deviance at z (+inf where PIRLS fails)."""
        self._set_point(z)
        return self.f

    def deviance_gradient(self, const double[::1] z):
        """(deviance, gradient) at z from one call (the optimiser's evaluations)."""
        self._set_point(z)
        return self.f, self.gradient(z)

    def gradient(self, const double[::1] z):
        """Its gradient in z (zeros where PIRLS fails: the line search then backtracks)."""
        self._set_point(z)
        if not self.ok:
            return np.zeros(self.nth + self.p)
        self._grad()
        return self.g_a.copy()

    cdef void _grad(self) except *:
        """self.g <- the gradient in z at the current point (PIRLS converged there)."""
        cdef Py_ssize_t nth = self.nth, p = self.p, i, a, b, n
        cdef double t
        cdef const double* v
        cdef const double* gth
        cdef const double[:, ::1] X
        cdef GlmmData kd = self.kd
        if not self.have_g:
            gth_a, v_a = _laplace_gradient(
                self.fam, kd.X1, kd.Xr, kd.slot_off, self.th, kd.codes, kd.nlev, kd.slot_term,
                kd.cols, kd.qr, kd.blk_ptr, kd.blk_col, kd.blk_of, kd.nzp, kd.nzi, kd.seg, kd.y,
                kd.wt, 1.0, self.eta_a, self.u_a, _NO_X, False, self.shape, kd.gz, kd.gw,
                self.out_g)
            gth, v, X = _dp(gth_a), _dp(v_a), kd.X
            n = X.shape[0]
            for a in range(nth):
                self.g[a] = self.sc[a] * gth[a]
            for a in range(p):                   # C' (X' v)
                self.g[nth + a] = 0.0
            for b in range(p):
                t = _dot(n, &X[0, b], p, &v[0], 1) if n > 0 else 0.0
                for a in range(p):
                    self.g[nth + a] += self.C[b, a] * t
            self.have_g = True



def saturated_m2ll(int fam, const double[::1] y, const double[::1] wt):
    """-2 log-likelihood of the saturated model (mu = y) for Poisson (fam 0) and binomial
    (fam 1, y proportions, wt trials): the forms of families/family.py's loglik (lgamma-based,
    near-integer successes snapped, rows of zero weight contributing 0) in one pass instead of
    a dozen numpy calls."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef double s = 0.0, k, kr, m, ll, yi
    if fam not in (0, 1):
        raise ValueError("saturated_m2ll covers Poisson (0) and binomial (1)")
    for i in range(n):
        yi = y[i]
        if wt[i] == 0.0:
            continue
        if fam == 0:
            ll = (yi * log(yi) if yi != 0.0 else 0.0) - yi - lgamma(yi + 1.0)
            s += ll * wt[i]
            continue
        if wt[i] < 0.0:
            continue                                   # as loglik's where(wt > 0, ll, 0)
        m = wt[i]
        k = m * yi
        kr = c_round(k)
        if fabs(k - kr) < 1e-8 * (fabs(k) if fabs(k) > 1.0 else 1.0):
            k = kr
        ll = lgamma(m + 1.0) - lgamma(k + 1.0) - lgamma(m - k + 1.0)
        if k != 0.0:
            ll += k * log(yi)
        if m - k != 0.0:
            ll += (m - k) * log1p(-yi)
        s += ll
    return -2.0 * s


def deviance_constant(int fam, const double[::1] y, const double[::1] wt):
    """The y-only part of sum(dev_resids) for Poisson (fam 0: 2 sum w (y log y - y)) and
    binomial (fam 1: 2 sum w (y log y + (1 - y) log(1 - y))), with 0 log 0 = 0: pirls.py's
    numpy forms in one pass."""
    cdef Py_ssize_t i, n = y.shape[0]
    cdef double s = 0.0, a, yi
    if fam not in (0, 1):
        raise ValueError("deviance_constant covers Poisson (0) and binomial (1)")
    for i in range(n):
        yi = y[i]
        a = yi * log(yi) if yi > 0.0 else 0.0
        if fam == 0:
            a -= yi
        elif yi < 1.0:
            a += (1.0 - yi) * log(1.0 - yi)
        s += wt[i] * a
    return 2.0 * s
