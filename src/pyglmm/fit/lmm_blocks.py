"""Single-term linear mixed models from per-level cross-products: evaluations independent of n.

With one random-effects term every matrix of the penalized least-squares problem is block
diagonal over its levels j (MixedModels.jl's Diagonal / UniformBlockDiagonal L[1,1]). The data
enter only through the weighted cross-products, computed once per model:

  A_j = sum w x x',  C_j = sum w x X',  d_j = sum w x y,  X'WX,  X'Wy,  y'Wy

(x the term's p1 columns of a row, X the fixed effects). At theta (T, the p1 x p1 factor)

  M_j = T'A_jT + I,  K_j = T'C_j,  B_j = M_j^{-1}K_j,  S = X'WX - sum K_j'B_j = R_X R_X',
  beta = S^{-1}(X'Wy - sum K_j'M_j^{-1}T'd_j),  u_j = M_j^{-1}(T'd_j - K_j beta),
  pwrss = y'Wy - sum u_j'T'd_j - beta'X'Wy   (the normal equations at their solution),

and the gradient in T (envelope theorem for u and beta; then theta picks T's lower triangle):

  d log|M| / dT    = 2 sum A_j T M_j^{-1}
  d pwrss / dT     = -2 sum (d_j - C_j beta - A_j T u_j) u_j'
  d log|S| / dT    = 2 sum (A_j T B_j S^{-1} B_j' - C_j S^{-1} B_j')       (REML)

An evaluation costs O(levels * p1^2 * p), not O(n): a million-row (1 + x | g) fit evaluates
its deviance over the 100,000 groups only. y is first replaced by its residual from the
weighted least-squares fit on X (the same pwrss and u, beta shifted back at the end), so that
y'Wy is of the size of pwrss and the subtraction above loses no digits.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from ..linalg.restructure import ReStructure
from ..linalg.small import cholesky_lower
from . import compiled


def solve_fixed_effects(XtWX: np.ndarray, KtB: np.ndarray, rhs: np.ndarray):
    """R_X (lower Cholesky factor of S = X'WX - K'M^{-1}K) and beta = S^{-1} rhs; a
    LinAlgError naming the fixed effects when S is not positive definite."""
    try:
        RX = sla.cholesky(XtWX - KtB, lower=True, check_finite=False)
    except (np.linalg.LinAlgError, ValueError) as err:
        raise np.linalg.LinAlgError("fixed-effects system not positive definite") from err
    return RX, sla.cho_solve((RX, True), rhs, check_finite=False)


def _ls_coef(XtWX: np.ndarray, XtWy: np.ndarray) -> np.ndarray:
    """Weighted least-squares coefficients from the normal equations: by Cholesky (X has full
    rank after the model frame's rank check), by lstsq where X'WX is singular (zero weights)."""
    try:
        L = cholesky_lower(XtWX)
        return sla.cho_solve((L, True), XtWy, check_finite=False)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(XtWX, XtWy, rcond=None)[0]


class CrossprodsLmm:
    """What the cross-products LMM paths share: y centred on its weighted least-squares fit on X
    (the same pwrss and u, beta shifted by b0; y'Wy is then of the size of pwrss, so the
    normal-equation form of pwrss loses no digits) and the solve cached at the last theta.
    Subclasses give `_solve`, `parts`, `gradient` and `conditional_u_variances`."""

    def _centre(self, y: np.ndarray, X: np.ndarray, w: np.ndarray, unit: bool):
        """Set XtWX, b0 and XtWy; return (centred y, WX)."""
        wX = X if unit else X * w[:, None]
        self.XtWX = X.T @ wX
        if X.shape[1]:
            self.b0 = _ls_coef(self.XtWX, wX.T @ y)
            y = y - X @ self.b0
        else:
            self.b0 = np.zeros(0)
        self.XtWy = wX.T @ y
        self._last = None
        return y, wX

    def _compiled_crossprods(self, y: np.ndarray, X: np.ndarray, w: np.ndarray, unit: bool,
                             rs: ReStructure, blocks: bool):
        """`_centre` and the random-effects cross-products (A, C, d) in one compiled pass
        (`_lmm.lmm_crossprods`): per-level blocks levels-first (``blocks``, one term) or dense.
        Sets XtWX, b0, XtWy and yWy and returns (A, C, d); None without the kernels or where
        X'WX is singular (the numpy path then solves by least squares)."""
        kern = compiled.lmm_kernels()
        if kern is None:
            return None
        terms = rs.terms
        if len(terms) == 1:
            codes, Z = terms[0].codes.reshape(1, -1), terms[0].X
        else:
            codes = np.concatenate([t.codes for t in terms]).reshape(len(terms), -1)
            Z = np.concatenate([t.X for t in terms], axis=1)
        pk = np.array([t.p for t in terms], dtype=np.int64)
        out = kern.lmm_crossprods(np.ascontiguousarray(y, dtype=float), X,
                                  np.ascontiguousarray(w, dtype=float), unit,
                                  np.ascontiguousarray(codes, dtype=np.int64), Z, pk,
                                  np.asarray(rs.q_offsets, dtype=np.int64),
                                  terms[0].nlevels if blocks else 0)
        if out is None:
            return None
        self.XtWX, self.XtWy, self.b0, self.yWy, A, C, d = out
        self._last = None
        return A, C, d

    def kernel_objective(self):
        """The compiled `LmmObjective` of this model (deviance and gradient in one call, on
        working arrays kept between calls), or None where the kernel does not run."""
        return None

    def solve(self, theta: np.ndarray):
        """The solved system at theta (the last one cached: deviance and gradient share it)."""
        key = np.asarray(theta, float).tobytes()
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        out = self._solve(np.asarray(theta, float))
        self._last = (key, out)
        return out


_TRIL: dict[int, np.ndarray] = {}


def _lower_ones(k: int) -> np.ndarray:
    """The k x k lower-triangular mask of ones (uint8), made once per k: the entries of T that
    carry a parameter in an unstructured term."""
    if k not in _TRIL:
        m = np.tri(k, dtype=np.uint8)
        m.flags.writeable = False
        _TRIL[k] = m
    return _TRIL[k]


class BlockDiagonalFactor:
    """The factor of M = blockdiag(M_j) for one term: what LmmState consumers ask of a factor."""

    def __init__(self, logdet: float):
        self._logdet = logdet

    def logdet_Z(self) -> float:
        """log det(Lambda'Z'WZLambda + I)."""
        return self._logdet


def _chol_inv(M: np.ndarray) -> tuple[float, np.ndarray]:
    """log det and inverses of a batch of SPD blocks stored levels-last (p1, p1, levels); closed
    forms for 1 x 1 and 2 x 2 blocks (vector operations over the levels). LinAlgError if not PD."""
    p1 = M.shape[0]
    if p1 == 1:
        m = M[0, 0]
        if not np.all(m > 0):
            raise np.linalg.LinAlgError("penalized system not positive definite")
        return float(np.log(m).sum()), (1.0 / m)[None, None, :]
    if p1 == 2:
        a2 = M[0, 0]
        if not np.all(a2 > 0):
            raise np.linalg.LinAlgError("penalized system not positive definite")
        b = M[1, 0] / np.sqrt(a2)
        c2 = M[1, 1] - b * b
        if not np.all(c2 > 0):
            raise np.linalg.LinAlgError("penalized system not positive definite")
        det = a2 * c2
        Minv = np.empty_like(M)
        Minv[0, 0] = M[1, 1] / det
        Minv[1, 1] = M[0, 0] / det
        Minv[0, 1] = Minv[1, 0] = -M[1, 0] / det
        return float(np.log(det).sum()), Minv
    Ml = np.moveaxis(M, 2, 0)
    L = np.linalg.cholesky(Ml)               # raises LinAlgError when a block is not PD
    Li = np.linalg.inv(L)
    logdet = 2.0 * float(np.log(np.diagonal(L, axis1=1, axis2=2)).sum())
    return logdet, np.moveaxis(np.matmul(np.swapaxes(Li, 1, 2), Li), 0, 2)


class SingleTermCrossprods(CrossprodsLmm):
    """Cross-products of a one-term LMM and its profiled deviance and gradient from them.

    Blocks are stored levels-last, (p1, p1, levels): every product with T is then a vector
    operation over the levels (10x faster than numpy's stacked small matrix products).
    """

    def __init__(self, y: np.ndarray, X: np.ndarray, rs: ReStructure, w: np.ndarray,
                 unit: bool | None = None):
        t = rs.terms[0]
        self.rs, self.p1, self.p = rs, t.p, X.shape[1]
        p1, p = self.p1, self.p
        # unit: all weights 1, the usual case (no weight multiplications)
        unit = bool((w == 1.0).all()) if unit is None else unit
        self.rows, self.cols = rs._tril[0]
        fast = self._compiled_crossprods(y, X, w, unit, rs, blocks=True)
        if fast is not None:
            # levels-first as the kernel takes them; levels-last for the vector code of many
            # levels (contiguous: numpy's products over strided views are several times slower)
            self._levels_first = fast
            last = [a.transpose(1, 2, 0) if a.ndim == 3 else a.T for a in fast]
            if self._kernel() is None:
                last = [np.ascontiguousarray(a) for a in last]
            self.A, self.C, self.d = last
            return
        y, wX = self._centre(y, X, w, unit)
        xt = [np.ascontiguousarray(t.X[:, a]) for a in range(p1)]
        ones = [bool(np.all(c == 1.0)) for c in xt]   # the intercept column: no products

        def wsum(a, v):
            """Per-level sums of w x_a v."""
            prod = v if ones[a] else xt[a] * v
            return rs.sum_by_first(prod if unit else prod * w)

        self.A = np.empty((p1, p1, t.nlevels))
        for a in range(p1):
            for b in range(a + 1):
                self.A[a, b] = self.A[b, a] = wsum(a, xt[b])
        self.C = np.empty((p1, p, t.nlevels))
        for c in range(p):
            col = np.ascontiguousarray(X[:, c])
            for a in range(p1):
                self.C[a, c] = wsum(a, col)
        self.d = np.stack([wsum(a, y) for a in range(p1)])
        self.yWy = float(y @ y) if unit else float(w @ (y * y))

    def _kernel_solution(self, theta: np.ndarray):
        """The optimiser's kernel's solved system at theta (the last one cached), or None
        before `kernel_objective` made the kernel."""
        kobj = getattr(self, "_kobj", None)
        if kobj is None:
            return None
        theta = np.ascontiguousarray(theta, dtype=float)
        key = theta.tobytes()
        if self._ksol is None or self._ksol[0] != key:
            self._ksol = (key, kobj.solution(theta))
        return self._ksol[1]

    def __getstate__(self):
        """Pickled without the compiled kernel (made again by `kernel_objective`)."""
        state = dict(self.__dict__)
        state["_kobj"] = state["_ksol"] = None
        return state

    def parts(self, theta: np.ndarray):
        """(factor of M, R_X, beta for the centred y, u, pwrss) at theta (from the optimiser's
        kernel once it exists: no second set of output arrays)."""
        sol = self._kernel_solution(theta)
        if sol is not None:
            logdet, RX, beta, u, pwrss, _ = sol
            return BlockDiagonalFactor(logdet), RX, beta, u.ravel(), pwrss
        T, logdet, Minv, B, RX, beta, u, pwrss, _ = self.solve(theta)
        return BlockDiagonalFactor(logdet), RX, beta, u.T.ravel(), pwrss

    def conditional_u_variances(self, theta: np.ndarray) -> list[np.ndarray]:
        """The blocks of M^{-1}, (levels, p1, p1)."""
        sol = self._kernel_solution(theta)
        if sol is not None:
            return [sol[5]]
        return [np.moveaxis(self.solve(theta)[2], 2, 0)]

    def _kernel(self):
        """The compiled kernel when it is the faster path here (few levels), else None."""
        return compiled.lmm_kernels() if self.rs.terms[0].nlevels <= compiled.LMM_MAX_LEVELS \
            else None

    def _layout(self):
        """(A, C, d) levels-first and the mask of T's parameters, as the kernels take them
        (made once)."""
        if getattr(self, "_levels_first", None) is None:
            self._levels_first = tuple(np.ascontiguousarray(np.moveaxis(a, -1, 0))
                                       for a in (self.A, self.C, self.d))
        return self._levels_first, _lower_ones(self.p1)

    def kernel_point(self, theta: np.ndarray):
        """The kernel's outputs at theta: (log|M|, M^{-1}, B, R_X, beta, u, pwrss, G1, G2, G3)."""
        (A, C, d), need = self._layout()
        T = np.zeros((self.p1, self.p1))
        T[self.rows, self.cols] = theta
        return self._kernel().single_term_lmm(T, A, C, d, self.XtWX, self.XtWy, self.yWy, need)

    def _theta_gradient(self, G: np.ndarray) -> np.ndarray:
        return G[self.rows, self.cols]

    def kernel_objective(self):
        if self._kernel() is None:
            return None
        (A, C, d), need = self._layout()
        flat = (self.rows * self.p1 + self.cols).astype(np.int64)
        self._kobj = self._kernel().LmmObjective(
            A, C, d, np.ascontiguousarray(self.XtWX), np.ascontiguousarray(self.XtWy), self.yWy,
            need, flat, np.arange(flat.size, dtype=np.int64), flat.size)
        self._ksol = None
        return self._kobj

    def _solve(self, theta: np.ndarray):
        """(T, log|M|, M^{-1}, B, R_X, beta_centred, u, pwrss, gradient pieces or None) at theta."""
        T = self.rs.T_blocks(theta)[0]
        if self._kernel() is not None:
            logdet, Minv, B, RX, beta, u, pwrss, G1, G2, G3 = self.kernel_point(theta)
            # back to this class's levels-last layout (views)
            return (T, logdet, Minv.transpose(1, 2, 0), B.transpose(1, 2, 0), RX, beta, u.T, pwrss,
                    (G1, G2, G3))
        M = np.einsum("ba,bdl,dc->acl", T, self.A, T)       # T'A_jT
        M[np.arange(self.p1), np.arange(self.p1)] += 1.0
        logdet, Minv = _chol_inv(M)
        e = T.T @ self.d                                      # T'd_j, (p1, l)
        cu = np.einsum("abl,bl->al", Minv, e)
        if self.p:
            K = np.einsum("ba,bpl->apl", T, self.C)          # T'C_j
            B = np.einsum("abl,bpl->apl", Minv, K)
            RX, beta = solve_fixed_effects(self.XtWX, np.einsum("apl,aql->pq", K, B),
                                           self.XtWy - np.einsum("apl,al->p", K, cu))
            u = cu - np.einsum("apl,p->al", B, beta)
        else:
            B, RX, beta, u = None, np.zeros((0, 0)), np.zeros(0), cu
        pwrss = self.yWy - float(np.einsum("al,al->", u, e)) - float(beta @ self.XtWy)
        return T, logdet, Minv, B, RX, beta, u, pwrss, None

    def gradient(self, theta: np.ndarray, REML: bool, n_eff: int) -> np.ndarray:
        """Exact gradient of the profiled ML / REML deviance in theta."""
        T, logdet, Minv, B, RX, beta, u, pwrss, pieces = self.solve(theta)
        nn = n_eff - self.p if REML else n_eff
        if pieces is not None:                     # from the compiled kernel
            G1, G2, G3 = pieces
            G = G1 - (2.0 * nn / pwrss) * G2
            if REML and self.p:
                G += G3
            return G[self.rows, self.cols]
        AT = np.einsum("abl,bc->acl", self.A, T)
        G = 2.0 * np.einsum("abl,bcl->ac", AT, Minv)                   # d log|M| / dT
        zr = self.d - np.einsum("apl,p->al", self.C, beta) - np.einsum("abl,bl->al", AT, u)
        G -= (2.0 * nn / pwrss) * (zr @ u.T)                           # (n'/pwrss) d pwrss / dT
        if REML and self.p:
            Sinv = sla.cho_solve((RX, True), np.eye(self.p), check_finite=False)
            BS = np.einsum("bpl,pq->bql", B, Sinv)                      # B_j S^-1, (p1, p, l)
            BSB = np.einsum("bql,cql->bcl", BS, B)                      # B_j S^-1 B_j'
            G += 2.0 * np.einsum("abl,bcl->ac", AT, BSB)                # A T B S^-1 B'
            G -= 2.0 * np.einsum("apl,cpl->ac", self.C, BS)             # C S^-1 B'
        return G[self.rows, self.cols]
