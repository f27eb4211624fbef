"""Cholesky, inverse, triangular solve and eigenvalues of small dense matrices by direct LAPACK
calls (scipy.linalg.lapack). For the k x k Hessians and R_X blocks of a fit (k of 2 to 20)
numpy.linalg's checks and wrappers cost 5-7 us a call against 1-3 us of LAPACK (measured on a
6 x 6 matrix), and a small fit makes a dozen such calls after the optimiser."""
from __future__ import annotations

import numpy as np
from scipy.linalg import lapack

from ..fit import compiled

#: up to this size the compiled loops of `pyglmm.fit._optim` replace LAPACK's wrappers
#: (a 5 x 5 inverse: 2.2 against 5.9 us)
COMPILED_MAX_K = 24


def _compiled(A: np.ndarray, routine: str, *args, fail: str = "matrix is not positive definite"):
    """The compiled small-matrix `routine`'s answer for a square A of at most COMPILED_MAX_K rows
    (None where the kernels do not apply; LinAlgError(fail) where the routine rejects A)."""
    if A.ndim != 2 or A.shape[0] > COMPILED_MAX_K or A.shape[0] != A.shape[1]:
        return None
    kern = compiled.optim_kernels()
    if kern is None:
        return None
    out = getattr(kern, routine)(A, *args)
    if out is None:
        raise np.linalg.LinAlgError(fail)
    return out


def cholesky_lower(A: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive definite A; LinAlgError otherwise."""
    A = np.asarray(A, dtype=np.float64)
    if A.size == 0:
        return A.copy()
    small = _compiled(A, "small_cholesky")
    if small is not None:
        return small
    L, info = lapack.dpotrf(A, lower=1, clean=1)
    if info != 0 or not np.isfinite(L.diagonal()).all():
        raise np.linalg.LinAlgError("matrix is not positive definite")
    return L


def spd_inverse(A: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite A from its Cholesky factor; LinAlgError if not PD."""
    A = np.asarray(A, dtype=np.float64)
    if A.size == 0:
        return A.copy()
    small = _compiled(A, "small_spd_inverse")
    if small is not None:
        return small
    return spd_inverse_from_factor(cholesky_lower(A))


def spd_inverse_from_factor(L: np.ndarray) -> np.ndarray:
    """(L L')^{-1}, both triangles, from a lower Cholesky factor L; LinAlgError if L is singular."""
    L = np.asarray(L, dtype=np.float64)
    if L.size == 0:
        return L.copy()
    small = _compiled(L, "small_spd_inverse", True, fail="singular Cholesky factor")
    if small is not None:
        return small
    inv, info = lapack.dpotrs(L, np.eye(L.shape[0]), lower=1)    # both triangles, unlike potri
    if info != 0 or not np.isfinite(inv).all():
        raise np.linalg.LinAlgError("singular Cholesky factor")
    return inv


def lower_inverse(L: np.ndarray) -> np.ndarray:
    """L^{-1} for a lower-triangular L (upper triangle ignored); LinAlgError if L is singular."""
    L = np.asarray(L, dtype=np.float64)
    if L.size == 0:
        return L.copy()
    small = _compiled(L, "small_lower_inverse", fail="singular triangular factor")
    if small is not None:
        return small
    Li, info = lapack.dtrtri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("singular triangular factor")
    return np.tril(Li)


def solve_lower(L: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L^{-1} b for a lower-triangular L."""
    if L.size == 0:
        return np.asarray(b, dtype=np.float64).copy()
    x, info = lapack.dtrtrs(L, np.asarray(b, dtype=np.float64), lower=1)
    if info != 0:
        raise np.linalg.LinAlgError("singular triangular factor")
    return x


def eigvalsh(A: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric A in ascending order."""
    A = np.asarray(A, dtype=np.float64)
    if A.size == 0:
        return np.zeros(0)
    w, _, info = lapack.dsyevd(A, compute_v=0, lower=1)
    if info != 0:
        return np.linalg.eigvalsh(A)
    return w
