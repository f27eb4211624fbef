"""Analytic gradient of the Laplace deviance with respect to theta and beta.

D(theta, beta) = -2 log f(y | u*) + |u*|^2 + log det M,  M = Lambda'Z'WZLambda + I,
with u* the conditional mode. The first two terms are stationary in u at u*, so

  dD/dpsi = dD/dpsi|_u  +  a' du*/dpsi,   a = dlogdet M/du = Lambda'Z'(h * w'),

where h_i = z_i' M^{-1} z_i (z_i the i-th row of Z Lambda) and w' = dW/deta. The implicit
derivative of the mode is du*/dpsi = H^{-1} dg/dpsi with H = M when W is the exact curvature
(canonical links with Fisher weights, or observed weights). Everything needed from M^{-1} is
its selected inverse on the pattern of Z'Z, which the blocked factor provides; one gradient
then costs about one extra factorisation instead of 2 (k) PIRLS runs for finite differences.
Where the compiled kernels cover a model, fit/_glmm.pyx computes the same formulas.
"""
from __future__ import annotations

import numpy as np

from ..linalg.blocked import BlockedFactor
from ..linalg.kernel_pattern import kernel_pattern
from ..linalg.restructure import ReStructure
from . import compiled

def supports_analytic(family, laplace_weights: str) -> bool:
    """True when the curvature W in M is the exact one and dW/deta has a closed form
    (`Family.curvature`): canonical links (Fisher = observed), and the log-link negative
    binomial and Gamma models with the observed curvature (glmmTMB's convention)."""
    return family.closed_curvature and (family.canonical or laplace_weights == "observed")


def laplace_gradient(rs: ReStructure, X: np.ndarray, y: np.ndarray, w_prior: np.ndarray,
                     family, theta: np.ndarray, u: np.ndarray, eta: np.ndarray,
                     phi: float = 1.0, joint: bool = False,
                     factor: BlockedFactor | None = None, kdata=None) -> np.ndarray:
    """Gradient of the Laplace deviance in (theta, beta) at the conditional mode u (for eta).

    With ``joint=True`` beta is itself at its PIRLS optimum (lme4's nAGQ = 0 objective) and
    only the theta gradient is returned; the implicit derivative then runs through the joint
    (u, beta) system. ``kdata``: the problem's arrays bound for the compiled kernels
    (`GlmmProblem.kernel_data`), saving their binding on every call.
    """
    code = family.kernel_code if compiled.glmm_rows_ok(rs.n, len(rs.terms)) else None
    if code is not None and compiled.glmm_kernels() is not None and \
            (len(rs.terms) == 1 or not joint):
        if kdata is None:                             # bind the arrays for this call
            pat = kernel_pattern(rs)                  # None: too many rest columns
            kdata = None if pat is None else compiled.glmm_kernels().GlmmData(
                pat, np.ascontiguousarray(X, dtype=float), np.zeros(rs.n), y, w_prior)
        if kdata is not None:
            g_theta, v = kdata.laplace_gradient(
                code, np.ascontiguousarray(theta, float), eta, u, float(phi), joint,
                float(family.shape) if family.extra_parameter == "shape" else 0.0)
            return g_theta if joint else np.concatenate([g_theta, X.T @ v])
    zvals = rs.scaled_values(theta)
    mu = family.link.inverse(eta)
    w, wp, s = family.curvature(mu, y, w_prior, phi)     # s = d log f / d eta
    # ``factor``: PIRLS's factor at this mode (joint: with X), saving a factorisation
    FJ = factor if (joint and factor is not None) else None
    if factor is not None and not joint:
        F = factor
    elif FJ is not None and rs.qr == 0:
        F = FJ          # the leading block is all the selected inverse needs
    else:
        F = BlockedFactor(rs, zvals, w, None)
    z1 = zvals[0]
    R1, Rr = pattern_rows(rs, zvals, F)
    if Rr is not None:
        v = np.concatenate(zvals[1:], axis=1) if len(zvals) > 2 else zvals[1]
        h = (z1 * R1).sum(axis=1) + np.einsum("ns,ns->n", v, Rr)
    else:
        h = z1[:, 0] * R1[:, 0]
        for a in range(1, z1.shape[1]):
            h += z1[:, a] * R1[:, a]
    hw = h * wp
    a = rs.Ztr(zvals, hw)
    if joint:
        if FJ is None:
            FJ = BlockedFactor(rs, zvals, w, X)
        cj = FJ.solve(np.concatenate([a, X.T @ hw]))
        c = cj[:rs.q]
        Zc = rs.Zu(zvals, c) + X @ cj[rs.q:]
    else:
        c = F.solve(a)                                    # H^{-1} a with H = M
        Zc = rs.Zu(zvals, c)
    # beta
    g_beta = X.T @ (-2.0 * s + hw - w * Zc)
    # theta: per term, F_t[i, comp] combined with the unscaled model matrix X_t
    base_u = -2.0 * s + hw - w * Zc                       # multiplies U (the mode) gathered per row
    g_theta = np.empty(rs.ntheta)
    slot = 0
    for k, t in enumerate(rs.terms):
        Uk = u[rs.q_offsets[k]:rs.q_offsets[k + 1]].reshape(t.nlevels, t.p)
        Ck = c[rs.q_offsets[k]:rs.q_offsets[k + 1]].reshape(t.nlevels, t.p)
        if k == 0 and rs.sorted0:
            # per level: sum_i X[i,r] (base_u_i U[j,c] + s_i C[j,c]) = sum_j (S1[j,r] U[j,c] + S3[j,r] C[j,c])
            S1 = rs.sum_by_first(t.X * base_u[:, None])
            S3 = rs.sum_by_first(t.X * s[:, None])
            G = S1.T @ Uk + S3.T @ Ck + 2.0 * (t.X * w[:, None]).T @ R1
        else:
            uk = _per_row(rs, k, Uk)
            ck = _per_row(rs, k, Ck)
            if k == 0:
                Rk = R1
            else:
                Rk = Rr[:, slot:slot + t.p]
                slot += t.p
            Fk = base_u[:, None] * uk + 2.0 * w[:, None] * Rk + s[:, None] * ck
            G = t.X.T @ Fk                                # [r, comp]
        rows, colsT = _tril(t.p)
        g_theta[rs.theta_slices[k]] = G[rows, colsT]
    return g_theta if joint else np.concatenate([g_theta, g_beta])


def pattern_rows(rs: ReStructure, zvals: list[np.ndarray], F: BlockedFactor):
    """Rows of Z Lambda M^{-1} on the columns each observation touches (M = F's matrix, no X).

    Returns (R1, Rr): R1 (n x p1) at the first term's columns of each row's level, Rr
    (n x m_rest, or None) at the row's columns of the other terms, in the order of the
    block pattern's rest slots. From the selected inverse of M: never a dense n x q matrix.
    """
    G11, Q, Sinv = F.selected_inverse()
    t0 = rs.terms[0]
    z1 = zvals[0]                                         # n x p1
    p1 = t0.p
    R1 = np.zeros((rs.n, p1), order="F")
    for a in range(p1):
        for b in range(p1):
            R1[:, a] += rs.expand_first(np.ascontiguousarray(G11[:, a, b])) * z1[:, b]
    if Q is None:
        return R1, None
    pat = rs._block_pattern
    cols = pat.rest_cols                                  # n x m_r rest columns
    v = np.concatenate(zvals[1:], axis=1) if len(zvals) > 2 else zvals[1]
    Qg = Q[pat.blk_inv]                                   # n x m_r x p1: the block of each (row, slot)
    R1 += np.einsum("nsa,ns->na", Qg, v)
    Rr = np.einsum("nsa,na->ns", Qg, z1) + np.einsum("nst,nt->ns", Sinv.at(cols[:, :, None], cols[:, None, :]), v)
    return R1, Rr


def _per_row(rs: ReStructure, k: int, V: np.ndarray) -> np.ndarray:
    """Per-level values V (nlevels x p) of term k at each observation (n x p, column-major)."""
    t = rs.terms[k]
    out = np.empty((rs.n, t.p), order="F")
    for a in range(t.p):
        col = np.ascontiguousarray(V[:, a])
        out[:, a] = rs.expand_first(col) if k == 0 else np.take(col, t.codes)
    return out


def _tril(p: int):
    rows, cols = [], []
    for c in range(p):
        for r in range(c, p):
            rows.append(r)
            cols.append(c)
    return np.array(rows), np.array(cols)
