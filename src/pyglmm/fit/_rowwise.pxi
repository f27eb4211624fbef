# Row-wise pieces shared by the GLMM kernels (_onegroup.pyx, _multigroup.pyx): R's inverse links
# with their clamps, the deviance forms of pirls.py, and the Fisher weights. Long vectors take
# numpy's SIMD exp and log1p (several times faster than scalar libm calls, which dominate the
# kernels' time from a few thousand rows on); short ones stay in scalar code, where a numpy
# call's overhead would dominate instead.
from cpython.object cimport PyObject
from libc.math cimport exp, log, log1p, fabs, sqrt, isfinite

cdef double EPS = 2.220446049250313e-16
cdef Py_ssize_t VEC_MIN = 256


cdef void _vexp(double* x, PyObject* arr, Py_ssize_t n) noexcept nogil:
    """x[:n] <- exp(x[:n]) in place (arr: the float64 array of length n behind x)."""
    cdef Py_ssize_t i
    if n >= VEC_MIN:
        with gil:
            np.exp(<object> arr, out=<object> arr)
    else:
        for i in range(n):
            x[i] = exp(x[i])


cdef void _vlog1p(const double* x, double* out, PyObject* xarr, PyObject* oarr,
                  Py_ssize_t n) noexcept nogil:
    """out[:n] <- log1p(x[:n])."""
    cdef Py_ssize_t i
    if n >= VEC_MIN:
        with gil:
            np.log1p(<object> xarr, out=<object> oarr)
    else:
        for i in range(n):
            out[i] = log1p(x[i])


cdef struct Scratch:
    double* e            # two float64 arrays of length n and their numpy objects
    double* l
    PyObject* earr
    PyObject* larr


cdef Scratch _scratch(object ebuf, object lbuf) except *:
    """Pointers to two scratch arrays (kept alive by the caller)."""
    cdef Scratch sc
    sc.e, sc.l, sc.earr, sc.larr = _dp(ebuf), _dp(lbuf), <PyObject*> ebuf, <PyObject*> lbuf
    return sc


# Families (codes of pyglmm.fit.compiled.FAMILY_CODES): 0 Poisson-log, 1 binomial-logit,
# 2 negative binomial (nbinom2, shape k) with log link, 3 Gamma with log link (dispersion phi).


cdef double _mu_dev(int fam, Py_ssize_t n, const double* eta, const double* y, const double* wt,
                    double* mu, Scratch sc, double shape) noexcept nogil:
    """mu = linkinv(eta) for every row and half the sum of the rows' deviance residuals, minus
    its y-only part for Poisson and binomial (pirls.py's forms). The deviance is computed from
    eta, never from a clamped mu (a clamp would cap what a badly fitted row costs):
    log link (fam 0, 2, 3): log mu = eta, mu = exp(eta) (floored at eps only for the weights);
    binomial (fam 1): log(1 + e^eta) = max(eta, 0) + log1p(e), e = exp(-|eta|), for every eta
    (mu clamped as R's logit_linkinv, for the weights).
    nbinom2 and Gamma: their full deviance residuals, as families/family.py's `dev_resids_eta`."""
    cdef double* e = sc.e
    cdef double* l = sc.l
    cdef Py_ssize_t i
    cdef double s = 0.0, et, m, yi
    if fam != 1:
        for i in range(n):
            e[i] = eta[i]
        _vexp(e, sc.earr, n)
        for i in range(n):
            et = eta[i]
            yi = y[i]
            if fam == 0:
                s += wt[i] * (e[i] - yi * et)
            elif fam == 2:
                if yi > 0.0:
                    s += wt[i] * yi * (log(yi if yi > 1.0 else 1.0) - et)
                s -= wt[i] * (yi + shape) * log((yi + shape) / (e[i] + shape))
            else:
                s -= wt[i] * (log(yi) - et - yi / e[i] + 1.0)
            mu[i] = e[i] if e[i] > EPS else EPS
        return s
    for i in range(n):
        e[i] = -fabs(eta[i])
    _vexp(e, sc.earr, n)
    _vlog1p(e, l, sc.earr, sc.larr, n)
    for i in range(n):
        et = eta[i]
        # mu keeps R's clamp (eta beyond +-30): it feeds only the weights and the score, where
        # it keeps the Fisher weights >= eps (separated data stay solvable); the deviance is exact
        if et < -30.0:
            m = EPS / (1.0 + EPS)
        elif et > 30.0:
            m = 1.0 / (1.0 + EPS)
        elif et >= 0.0:
            m = 1.0 / (1.0 + e[i])
        else:
            m = e[i] / (1.0 + e[i])
        mu[i] = m
        s += wt[i] * ((et if et > 0.0 else 0.0) + l[i] - y[i] * et)
    return s


cdef inline void _weights(int fam, Py_ssize_t n, const double* mu, const double* wt, double phi,
                          double shape, double* w) noexcept nogil:
    """Fisher weights w = wt (dmu/deta)^2 / V(mu) / phi (for canonical links also the observed
    curvature)."""
    cdef Py_ssize_t i
    cdef double iphi = 1.0 / phi
    for i in range(n):
        if fam == 0:
            w[i] = wt[i] * mu[i] * iphi
        elif fam == 1:
            w[i] = wt[i] * mu[i] * (1.0 - mu[i]) * iphi
        elif fam == 2:
            w[i] = wt[i] * mu[i] / (1.0 + mu[i] / shape) * iphi
        else:
            w[i] = wt[i] * iphi


cdef inline double _score(int fam, double y, double mu, double wt, double iphi,
                          double shape) noexcept nogil:
    """The working score w (y - mu) / (dmu/deta) of a row: d(-dev/2)/d eta under Fisher scoring."""
    if fam == 0 or fam == 1:
        return wt * (y - mu) * iphi
    if fam == 2:
        return wt * (y - mu) / (1.0 + mu / shape) * iphi
    return wt * (y - mu) / mu * iphi


cdef inline void _curvature(int fam, Py_ssize_t n, const double* mu, const double* y,
                            const double* wt, double phi, double shape, double* w, double* wp,
                            double* s) noexcept nogil:
    """The exact curvature w = -d2 log f / d eta2, dw/deta and the score s = d log f / d eta of
    every row (gradient.py's `curvature`): Poisson-log w = wp = mu; binomial-logit
    w = mu(1 - mu), wp = w(1 - 2mu); nbinom2-log (shape k) w = (y + k) mu k / (mu + k)^2,
    wp = (y + k) k mu (k - mu) / (mu + k)^3, s = y - (y + k) mu / (mu + k); Gamma-log
    w = y / (mu phi), wp = -w, s = (y / mu - 1) / phi; all times the prior weights (and / phi)."""
    cdef Py_ssize_t i
    cdef double iphi = 1.0 / phi, m, mk
    for i in range(n):
        m = mu[i]
        if fam == 0:
            w[i] = wt[i] * m * iphi
            wp[i] = w[i]
            s[i] = wt[i] * (y[i] - m) * iphi
        elif fam == 1:
            w[i] = wt[i] * m * (1.0 - m) * iphi
            wp[i] = w[i] * (1.0 - 2.0 * m)
            s[i] = wt[i] * (y[i] - m) * iphi
        elif fam == 2:
            mk = m + shape
            s[i] = wt[i] * (y[i] - (y[i] + shape) * m / mk)
            w[i] = wt[i] * (y[i] + shape) * m * shape / (mk * mk)
            wp[i] = wt[i] * (y[i] + shape) * shape * m * (shape - m) / (mk * mk * mk)
        else:
            w[i] = wt[i] * y[i] / (m * phi)
            wp[i] = -w[i]
            s[i] = wt[i] * (y[i] / m - 1.0) * iphi
