"""Build a model matrix from a FixedSpec with R's model.matrix rules (treatment contrasts, column names)."""
from __future__ import annotations

import math

import numpy as np

from ..fit import compiled
from ..formula import FixedSpec
from scipy.linalg import lapack
from .errors import DataError
from .variables import Variable


def _coding(spec: FixedSpec, variables: dict[str, Variable]) -> list[dict[str, bool]]:
    """For each term and factor: True = contrasts (k-1 columns), False = full indicators (R's TermCode)."""
    sets = [frozenset(t.factors) for t in spec.terms]
    codings: list[dict[str, bool]] = []
    for j, term in enumerate(spec.terms):
        coding = {}
        for f in term.factors:
            if not variables[f].is_factor:
                continue
            rest = sets[j] - {f}
            coding[f] = (not rest) or any(rest <= sets[i] for i in range(j))
        codings.append(coding)
    if not spec.intercept:  # R: first factor of the first term with a factor gets full coding
        for coding, term in zip(codings, spec.terms):
            first = next((f for f in term.factors if f in coding), None)
            if first is not None:
                coding[first] = False
                break
    return codings


def _blocks(var: Variable, contrasts: bool | None, n: int) -> tuple[np.ndarray, list[str]]:
    """The (n, k) columns of one variable in a term and their names: the values of a numeric
    variable (k of a matrix), the indicators of a factor's levels (all, or all but the
    reference level with contrasts), made by one comparison."""
    if not var.is_factor:
        vals = var.values
        if vals.ndim == 1:
            return vals.reshape(n, 1), [var.name]
        names = var.colnames or [str(i + 1) for i in range(vals.shape[1])]
        return vals, [var.name + c for c in names]
    levels = np.arange(len(var.levels))
    if contrasts:
        if len(var.levels) < 2:
            raise DataError(f"factor {var.name!r} has only one level ({var.levels[0] if var.levels else 'none'!r}) "
                            "in the data used; contrasts need at least 2 levels")
        levels = levels[levels != var.ref]
    block = (var.codes[:, None] == levels[None, :]).astype(np.float64)
    return block, [var.name + var.levels[k] for k in levels.tolist()]


def build_model_matrix(spec: FixedSpec, variables: dict[str, Variable], n: int) -> tuple[np.ndarray, list[str]]:
    """Return (X, column names) for ``spec``; interaction columns vary the first factor fastest."""
    blocks: list[np.ndarray] = []
    names: list[str] = []
    if spec.intercept:
        blocks.append(np.ones((n, 1)))
        names.append("(Intercept)")
    for term, coding in zip(spec.terms, _coding(spec, variables)):
        tblock: np.ndarray | None = None            # None: the empty product (ones)
        tnames: list[str] = [""]
        for f in term.factors:
            b, bnames = _blocks(variables[f], coding.get(f), n)
            # column (jb, jt): the new factor's column jb times the term's column jt so far
            tblock = b if tblock is None else \
                (b[:, :, None] * tblock[:, None, :]).reshape(n, -1)
            tnames = [f"{a}:{c}" if a else c for c in bnames for a in tnames]
        blocks.append(np.ones((n, 1)) if tblock is None else tblock)
        names.extend(tnames)
    if not blocks:
        return np.zeros((n, 0)), names
    # a new C-ordered array (never a view of the user's column)
    return np.concatenate(blocks, axis=1, dtype=np.float64), names


def _unit_gram_diag_min(G: list, norms: list) -> float:
    """The smallest Cholesky diagonal of the Gram matrix of unit-norm columns (G / norms norms'),
    or 0 where the factorisation breaks down (for few columns: no LAPACK call's overhead)."""
    p = len(norms)
    L = [[0.0] * p for _ in range(p)]
    m = math.inf
    for j in range(p):
        for i in range(j, p):
            v = G[i][j] / (norms[i] * norms[j]) - sum(L[i][k] * L[j][k] for k in range(j))
            if i == j:
                if not v > 0.0:
                    return 0.0
                L[j][j] = math.sqrt(v)
                m = min(m, L[j][j])
            else:
                L[i][j] = v / L[j][j]
    return m


def rank_deficient_columns(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Indices of columns that are (near) linear combinations of earlier ones, like R's qr(X, tol=1e-7)."""
    n, p = X.shape
    X = np.asarray(X, np.float64)
    if p == 1 and n:                      # one column: dropped only when it is all zero
        return [] if np.any(X) else [0]
    kern = compiled.frame_kernels()
    if kern is not None and n > p and n * p * p <= 1_000_000 and X.flags.c_contiguous:
        # the test below in one compiled pass (the Gram matrix and its Cholesky factor)
        if kern.unit_gram_min_diag(X) > 1e-5:
            return []
    G = X.T @ X
    norms = np.sqrt(G.diagonal())
    if n > p and norms.min() > 0:
        # the usual full-rank case from the p x p Gram matrix of the unit-norm columns: its
        # Cholesky diagonal is R's |R_jj| / ||X_j||, accurate to ~1e-6 where it exceeds 1e-5
        # (rounding enters its square), so above that no column can fall under the tolerance
        if p <= 2:                        # two columns: the factor in Python floats (measured:
            # 2.8 against 4.6 us by LAPACK with its wrapper; from 4 columns on LAPACK is faster)
            if _unit_gram_diag_min(G.tolist(), norms.tolist()) > 1e-5:
                return []
        else:
            s = 1.0 / norms
            L, info = lapack.dpotrf(G * s[:, None] * s[None, :], lower=1, clean=0)
            if info == 0 and L.diagonal().min() > 1e-5:
                return []
    norms = np.linalg.norm(X, axis=0)      # (scaled against overflow) for the decision below
    if n > p:
        # R's diagonal of an unpivoted QR is the norm of each column's part orthogonal to the
        # earlier ones; a dependent column adds nothing to their span, so the later diagonal
        # entries are those of the QR without it (one LAPACK call instead of a loop)
        R = np.linalg.qr(X, mode="r")
        return [j for j in range(p) if norms[j] == 0 or abs(R[j, j]) < tol * norms[j]]
    basis = np.zeros((n, 0))
    dropped: list[int] = []
    for j in range(p):
        col = X[:, j].astype(np.float64)
        norm0 = np.linalg.norm(col)
        v = col.copy()
        for _ in range(2):  # re-orthogonalise for stability
            if basis.shape[1]:
                v -= basis @ (basis.T @ v)
        norm = np.linalg.norm(v)
        if norm0 == 0 or norm < tol * norm0:
            dropped.append(j)
            continue
        basis = np.column_stack([basis, v / norm])
    return dropped
