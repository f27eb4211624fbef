"""The blocked Cholesky factor against dense linear algebra on a small crossed design."""
import numpy as np
import scipy.sparse as sp

from pyglmm.linalg.blocked import BlockedFactor
from pyglmm.linalg.restructure import ReStructure, TermStructure


def _setup(seed=1):
    rng = np.random.default_rng(seed)
    n = 300
    g1, g2, x = rng.integers(0, 30, n), rng.integers(0, 7, n), rng.normal(size=n)
    rs = ReStructure([TermStructure(g1, np.column_stack([np.ones(n), x]), 30),
                      TermStructure(g2, np.ones((n, 1)), 7)])
    theta = np.array([0.8, 0.3, 0.5, 1.2])
    zv = rs.scaled_values(theta)
    Z = sp.hstack([rs.first_matrix(zv), rs.rest_matrix(zv)]).toarray()
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    w = rng.uniform(0.5, 2, n)
    A = np.block([[Z.T @ (w[:, None] * Z) + np.eye(Z.shape[1]), Z.T @ (w[:, None] * X)],
                  [X.T @ (w[:, None] * Z), X.T @ (w[:, None] * X)]])
    return rng, rs, theta, zv, Z, X, w, A


def _assert_factor_matches_dense(F, A, q, rng, rtol=1e-10, atol=1e-12):
    """F's solve and both log-determinants (random effects; fixed-effects Schur complement)
    against dense algebra on the full system A."""
    r = rng.normal(size=A.shape[0])
    np.testing.assert_allclose(F.solve(r), np.linalg.solve(A, r), rtol=rtol, atol=atol)
    np.testing.assert_allclose(F.logdet_Z(), np.linalg.slogdet(A[:q, :q])[1], rtol=1e-12)
    S = A[q:, q:] - A[q:, :q] @ np.linalg.solve(A[:q, :q], A[:q, q:])
    np.testing.assert_allclose(F.logdet_X(), np.linalg.slogdet(S)[1], rtol=1e-12)
    return S


def test_solve_and_logdets_match_dense():
    rng, rs, theta, zv, Z, X, w, A = _setup()
    F = BlockedFactor(rs, zv, w, X)
    _assert_factor_matches_dense(F, A, Z.shape[1], rng)


def test_gather_scatter_match_dense():
    rng, rs, theta, zv, Z, X, w, A = _setup(2)
    u = rng.normal(size=Z.shape[1])
    np.testing.assert_allclose(rs.Zu(zv, u), Z @ u, atol=1e-12)
    np.testing.assert_allclose(rs.Ztr(zv, w), Z.T @ w, atol=1e-12)


def test_conditional_variance_blocks():
    rng, rs, theta, zv, Z, X, w, A = _setup(3)
    q = Z.shape[1]
    Ainv = np.linalg.inv(A[:q, :q])
    blks = BlockedFactor(rs, zv, w, None).diag_inverse_blocks()
    np.testing.assert_allclose(blks[0][3], Ainv[6:8, 6:8], atol=1e-12)
    np.testing.assert_allclose(blks[1][2], Ainv[62:63, 62:63], atol=1e-12)


def _dense_system(rs, theta, X, w):
    zv = rs.scaled_values(theta)
    Z = sp.hstack([rs.first_matrix(zv), rs.rest_matrix(zv)]).toarray()
    A = np.block([[Z.T @ (w[:, None] * Z) + np.eye(Z.shape[1]), Z.T @ (w[:, None] * X)],
                  [X.T @ (w[:, None] * Z), X.T @ (w[:, None] * X)]])
    return zv, Z, A


import pytest

from pyglmm.linalg import blocked


@pytest.mark.parametrize("path", ["pairmap", "dense", "sparse"])
def test_vector_terms_in_every_block_nested_and_crossed(path, monkeypatch):
    """p > 1 in the leading and in the rest terms; nested and crossed; all ways of forming L21 L21'."""
    if path != "pairmap":
        monkeypatch.setattr(blocked, "PAIRMAP_EXTRA", -10**9)
    if path == "sparse":
        monkeypatch.setattr(blocked, "DENSE_L21_LIMIT", -1)
        monkeypatch.setattr(blocked, "DEGREE_CHUNK", 20)  # the selected inverse in many batches
    rng = np.random.default_rng(7)
    n = 400
    x = rng.normal(size=n)
    inner = rng.integers(0, 80, n)
    outer_nested = inner // 10                      # nested: each inner level in one outer level
    outer_crossed = rng.integers(0, 6, n)           # crossed
    X = np.column_stack([np.ones(n), x])
    w = rng.uniform(0.3, 3, n)
    for outer in (outer_nested, outer_crossed):
        rs = ReStructure([TermStructure(inner, np.column_stack([np.ones(n), x]), 80),
                          TermStructure(outer, np.column_stack([np.ones(n), x]), int(outer.max()) + 1),
                          TermStructure(rng.integers(0, 3, n), np.ones((n, 1)), 3)])
        theta = np.array([0.9, -0.2, 0.4, 1.1, 0.3, 0.7, 0.5])
        zv, Z, A = _dense_system(rs, theta, X, w)
        F = BlockedFactor(rs, zv, w, X)
        r = rng.normal(size=A.shape[0])
        np.testing.assert_allclose(F.solve(r), np.linalg.solve(A, r), rtol=1e-9, atol=1e-11)
        q = Z.shape[1]
        np.testing.assert_allclose(F.logdet_Z(), np.linalg.slogdet(A[:q, :q])[1], rtol=1e-12)
        Ainv = np.linalg.inv(A[:q, :q])
        blks = BlockedFactor(rs, zv, w, None).diag_inverse_blocks()
        np.testing.assert_allclose(blks[0][5], Ainv[10:12, 10:12], atol=1e-12)
        off = 160
        np.testing.assert_allclose(blks[1][2], Ainv[off + 4:off + 6, off + 4:off + 6], atol=1e-12)


def test_selected_inverse_blocks():
    rng = np.random.default_rng(11)
    n = 300
    x = rng.normal(size=n)
    rs = ReStructure([TermStructure(rng.integers(0, 40, n), np.column_stack([np.ones(n), x]), 40),
                      TermStructure(rng.integers(0, 5, n), np.column_stack([np.ones(n), x]), 5),
                      TermStructure(rng.integers(0, 3, n), np.ones((n, 1)), 3)])
    theta = np.array([0.9, -0.2, 0.4, 1.1, 0.3, 0.7, 0.5])
    w = rng.uniform(0.3, 3, n)
    zv, Z, A = _dense_system(rs, theta, np.zeros((n, 0)), w)
    Minv = np.linalg.inv(A)
    G11, Q, Sinv = BlockedFactor(rs, zv, w, None).selected_inverse()
    np.testing.assert_allclose(G11[7], Minv[14:16, 14:16], atol=1e-12)
    pat = rs._block_pattern
    for a in range(2):     # Q holds M^{-1}[(level, a), rest column] at the blocks of the pattern
        np.testing.assert_allclose(Q[:, a], Minv[pat.blk_level * 2 + a, 80 + pat.blk_row], atol=1e-12)
    np.testing.assert_allclose(Sinv.dense, Minv[80:, 80:], atol=1e-12)


@pytest.mark.parametrize("p2", [1, 2])
def test_block_schur_for_nested_designs(p2, monkeypatch):
    """Nested terms: S_zz is block diagonal and factored blockwise; same numbers as dense algebra."""
    from pyglmm.linalg import schur
    monkeypatch.setattr(schur, "BLOCK_MIN_Q", 1)
    rng = np.random.default_rng(3)
    n = 500
    x = rng.normal(size=n)
    inner = rng.integers(0, 90, n)
    outer = inner // 6                                   # 15 outer levels, each with its inner ones
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    w = rng.uniform(0.3, 3, n)
    Xo = np.column_stack([np.ones(n), x])[:, :p2]
    rs = ReStructure([TermStructure(inner, np.ones((n, 1)), 90), TermStructure(outer, Xo, 15)])
    theta = np.array([0.7, 1.1, -0.3, 0.6][:1 + p2 * (p2 + 1) // 2])
    zv, Z, A = _dense_system(rs, theta, X, w)
    F = BlockedFactor(rs, zv, w, X)
    assert F.schur.__class__.__name__ == "BlockSchur"
    q = Z.shape[1]
    S = _assert_factor_matches_dense(F, A, q, rng, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(F.RX() @ F.RX().T, S, rtol=1e-9, atol=1e-9)
    F0 = BlockedFactor(rs, zv, w, None)
    Minv = np.linalg.inv(A[:q, :q])
    G11, Q, Sinv = F0.selected_inverse()
    np.testing.assert_allclose(G11[:, 0, 0], np.diag(Minv)[:90], atol=1e-12)
    pat = rs._block_pattern
    np.testing.assert_allclose(Q[:, 0], Minv[pat.blk_level, 90 + pat.blk_row], atol=1e-12)
    c = np.arange(15 * p2)
    same = (c[:, None] // p2) == (c[None, :] // p2)
    ca, cb = np.nonzero(same)
    np.testing.assert_allclose(Sinv.at(ca, cb), Minv[90 + ca, 90 + cb], atol=1e-12)
    blks = F0.diag_inverse_blocks()
    np.testing.assert_allclose(blks[1][4], Minv[90 + 4 * p2:90 + 5 * p2, 90 + 4 * p2:90 + 5 * p2], atol=1e-12)


def test_optimizer_restarts_from_a_spurious_boundary_stop():
    """An even deviance has zero slope at theta = 0; a first long step onto the bound must not end there."""
    from pyglmm.fit.optimize import minimize_bounded
    f = lambda x: 100.0 * (x[0] ** 2 - 0.16) ** 2
    for method in ("lbfgsb", "cobyqa"):
        r = minimize_bounded(f, np.array([1.0]), np.array([0.0]), method=method)
        assert abs(r.x[0] - 0.4) < 1e-4, (method, r.x)


def test_block_and_dense_schur_give_the_same_fits(monkeypatch):
    """lmer and glmer on a nested design: the block-diagonal Schur path reproduces the dense one."""
    import pandas as pd

    import pyglmm
    from pyglmm.linalg import schur
    rng = np.random.default_rng(8)
    n, A, B = 3000, 80, 5
    a, b, x = rng.integers(0, A, n), rng.integers(0, B, n), rng.normal(size=n)
    ua, uab = rng.normal(0, 0.6, A)[a], rng.normal(0, 0.4, A * B)[a * B + b]
    df = pd.DataFrame({"y": 1 + 0.5 * x + ua + uab + rng.normal(size=n), "x": x,
                       "c": rng.poisson(np.exp(0.2 + 0.3 * x + ua)),
                       "a": pd.Categorical(a), "b": pd.Categorical(b)})
    out = {}
    for mode, lim in [("block", 1), ("dense", 10**9)]:
        monkeypatch.setattr(schur, "BLOCK_MIN_Q", lim)
        m1 = pyglmm.lmer("y ~ x + (1 + x | a) + (1 | a:b)", df)
        m2 = pyglmm.glmer("c ~ x + (1 | a/b)", df, family="poisson")
        m3 = pyglmm.glmer("c ~ 0 + (1 | a/b)", df, family="poisson")       # no fixed effects
        m4 = pyglmm.glmer("c ~ x + (1 | a/b)", df, family="poisson", nAGQ=0)   # X in the factor
        kinds = {type(m._rs._block_pattern.schur).__name__ for m in (m1, m2, m3, m4)}
        assert kinds == ({"SchurPattern"} if mode == "block" else {"NoneType"})
        out[mode] = np.r_[m1.loglik, m2.loglik, m3.loglik, m4.loglik, m1.se, m2.se, m4.se,
                          m1.theta, m2.theta, m3.theta, m4.theta]
    np.testing.assert_allclose(out["block"], out["dense"], rtol=1e-7)


def test_closed_form_2x2_cholesky_and_inverse():
    from pyglmm.linalg.blocked import NotPositiveDefinite, _chol_inv_2x2
    rng = np.random.default_rng(5)
    A = rng.normal(size=(50, 2, 2))
    B = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(2)
    L, Li = _chol_inv_2x2(B)
    np.testing.assert_allclose(L, np.linalg.cholesky(B), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(Li, np.linalg.inv(np.linalg.cholesky(B)), rtol=1e-10, atol=1e-12)
    B[3] = [[1.0, 2.0], [2.0, 1.0]]                  # indefinite
    with pytest.raises(NotPositiveDefinite):
        _chol_inv_2x2(B)


def test_block_schur_pads_components_of_different_sizes(monkeypatch):
    """Broods nested in locations with 1 to 7 broods each (grouseticks' shape): the components of
    S_zz have sizes 2 to 8 and share one padded batch; solves, log-determinants and the selected
    inverse must equal dense algebra."""
    from pyglmm.linalg import schur
    monkeypatch.setattr(schur, "BLOCK_MIN_Q", 1)
    rng = np.random.default_rng(11)
    nb_per_loc = np.array([1, 2, 3, 4, 5, 6, 7, 2, 3, 1])
    loc_of_brood = np.repeat(np.arange(nb_per_loc.size), nb_per_loc)
    nbrood = loc_of_brood.size
    n = 400
    brood = rng.integers(0, nbrood, n)
    loc = loc_of_brood[brood]
    X = np.column_stack([np.ones(n), rng.normal(size=n)])
    w = rng.uniform(0.3, 3, n)
    rs = ReStructure([TermStructure(np.arange(n), np.ones((n, 1)), n),
                      TermStructure(brood, np.ones((n, 1)), nbrood),
                      TermStructure(loc, np.ones((n, 1)), nb_per_loc.size)])
    theta = np.array([0.7, 1.1, 0.6])
    zv, Z, A = _dense_system(rs, theta, X, w)
    F = BlockedFactor(rs, zv, w, X)
    spat = rs._block_pattern.schur
    assert F.schur.__class__.__name__ == "BlockSchur"
    assert any(not g.full for g in spat.groups)          # padded blocks in use
    assert sorted(set(spat.size.tolist())) == [g.s for g in spat.groups]
    q = Z.shape[1]
    _assert_factor_matches_dense(F, A, q, rng, rtol=1e-9, atol=1e-11)
    F0 = BlockedFactor(rs, zv, w, None)
    Minv = np.linalg.inv(A[:q, :q])
    blks = F0.diag_inverse_blocks()
    np.testing.assert_allclose(blks[1][:, 0, 0], np.diag(Minv)[n:n + nbrood], atol=1e-12)
    np.testing.assert_allclose(blks[2][:, 0, 0], np.diag(Minv)[n + nbrood:], atol=1e-12)


def test_blas_thread_limit_only_where_blas_could_thread(monkeypatch):
    """Fits whose dense products are all tiny skip threadpoolctl (its set-and-restore costs a
    tenth of such a fit); fits with a dense block of some size run on one BLAS thread."""
    from pyglmm.linalg import threads

    class Recorder:
        def __init__(self):
            self.calls = []

        def limit(self, **kw):
            import contextlib
            self.calls.append(kw)
            return contextlib.nullcontext()

    rec = Recorder()
    monkeypatch.setattr(threads, "_get_controller", lambda: rec)
    with threads.fit_blas_threads(6, n_rows=500):
        pass
    assert rec.calls == []
    with threads.fit_blas_threads(6, n_rows=200_000):       # long data: large X'WX products
        pass
    with threads.fit_blas_threads(300, n_rows=500):         # a dense Schur block of 300 columns
        pass
    assert rec.calls == [dict(limits=1, user_api="blas")] * 2
    with threads.fit_blas_threads(threads.THREADED_MIN_DIM, n_rows=500):
        pass
    assert len(rec.calls) == 2


def test_small_dense_helpers_match_numpy():
    """linalg/small.py (direct LAPACK calls) against numpy.linalg, and its errors."""
    from pyglmm.linalg import small
    rng = np.random.default_rng(3)
    for k in (1, 2, 5, 12, 30):              # 30: above COMPILED_MAX_K, LAPACK's path
        B = rng.normal(size=(k, k))
        A = B @ B.T + k * np.eye(k)
        L = small.cholesky_lower(A)
        np.testing.assert_allclose(L, np.linalg.cholesky(A), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(small.spd_inverse(A), np.linalg.inv(A), rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(small.spd_inverse_from_factor(L), np.linalg.inv(A), rtol=1e-10,
                                   atol=1e-13)
        np.testing.assert_allclose(small.lower_inverse(L), np.linalg.inv(L), rtol=1e-10, atol=1e-13)
        b = rng.normal(size=k)
        np.testing.assert_allclose(small.solve_lower(L, b), np.linalg.solve(L, b), rtol=1e-10)
        np.testing.assert_allclose(small.eigvalsh(A), np.linalg.eigvalsh(A), rtol=1e-10)
    with pytest.raises(np.linalg.LinAlgError):
        small.cholesky_lower(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(np.linalg.LinAlgError):
        small.spd_inverse(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    assert small.spd_inverse(np.zeros((0, 0))).shape == (0, 0)
    for k in (2, 30):
        singular = np.tril(np.ones((k, k)))
        singular[1, 1] = 0.0
        with pytest.raises(np.linalg.LinAlgError):
            small.lower_inverse(singular)
        with pytest.raises(np.linalg.LinAlgError):
            small.spd_inverse_from_factor(singular)
