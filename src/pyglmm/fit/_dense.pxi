# Small dense Cholesky routines shared by the compiled kernels (row-major k x k blocks, lower
# factors): the per-level blocks of the first term, the fixed-effects Schur complement, the
# dense LMM block.


cdef int _chol(Py_ssize_t k, double* M) noexcept nogil:
    """In-place lower Cholesky factor of a k x k row-major SPD matrix (upper part untouched);
    -1 if not positive definite."""
    cdef Py_ssize_t a, b, c
    cdef double s, t
    for a in range(k):
        s = M[a * k + a]
        for c in range(a):
            s -= M[a * k + c] * M[a * k + c]
        if not s > 0.0:
            return -1
        s = sqrt(s)
        M[a * k + a] = s
        for b in range(a + 1, k):
            t = M[b * k + a]
            for c in range(a):
                t -= M[b * k + c] * M[a * k + c]
            M[b * k + a] = t / s
    return 0


cdef inline void _fwd(Py_ssize_t k, const double* L, double* x) noexcept nogil:
    """x <- L^{-1} x (L lower, row-major k x k)."""
    cdef Py_ssize_t a, c
    cdef double s
    for a in range(k):
        s = x[a]
        for c in range(a):
            s -= L[a * k + c] * x[c]
        x[a] = s / L[a * k + a]


cdef inline void _bwd(Py_ssize_t k, const double* L, double* x) noexcept nogil:
    """x <- L^{-T} x."""
    cdef Py_ssize_t a, c
    cdef double s
    for a in range(k - 1, -1, -1):
        s = x[a]
        for c in range(a + 1, k):
            s -= L[c * k + a] * x[c]
        x[a] = s / L[a * k + a]


cdef inline void _block_solve(Py_ssize_t k, const double* Lj, double* x) noexcept nogil:
    """x <- (L_j L_j')^{-1} x in place."""
    _fwd(k, Lj, x)
    _bwd(k, Lj, x)


cdef void _chol_inverse(Py_ssize_t k, const double* L, double* out, double* Li) noexcept nogil:
    """out = (L L')^{-1}, full k x k row-major, from the lower factor L: L^{-1} by columns, then
    L^{-T} L^{-1} on one triangle (k^3/3 flops). Li: k x k doubles of work."""
    cdef Py_ssize_t a, b, m
    cdef double t
    for b in range(k):
        Li[b * k + b] = 1.0 / L[b * k + b]
        for a in range(b + 1, k):
            t = 0.0
            for m in range(b, a):
                t = t + L[a * k + m] * Li[m * k + b]
            Li[a * k + b] = -t / L[a * k + a]
    for a in range(k):
        for b in range(a + 1):
            t = 0.0
            for m in range(a, k):
                t = t + Li[m * k + a] * Li[m * k + b]
            out[a * k + b] = t
            out[b * k + a] = t
