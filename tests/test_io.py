"""Saving and loading fitted models: round trip, tampering, truncation, versions, determinism."""
import json
import zipfile

import numpy as np
import pytest

import pyglmm
from pyglmm.io import ModelFileError

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def fits():
    cb = pyglmm.datasets.load_cbpp()
    return [pyglmm.glmer(CBPP, cb, family="binomial"),
            pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy()),
            pyglmm.glmer("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", pyglmm.datasets.load_grouseticks(),
                         family="nbinom2")]


def test_round_trip_prints_and_compares_the_same(fits, tmp_path):
    for k, m in enumerate(fits):
        p = m.save(tmp_path / f"m{k}.npz")
        m2 = pyglmm.load(p)
        assert str(m2.summary()) == str(m.summary())
        np.testing.assert_array_equal(m2.fixef.values, m.fixef.values)
        np.testing.assert_array_equal(m2.vcov.values, m.vcov.values)
        assert m2.loglik == m.loglik and m2.aic == m.aic
        np.testing.assert_array_equal(m2.fitted, m.fitted)
        for g in m.ranef:
            np.testing.assert_array_equal(m2.ranef[g].values, m.ranef[g].values)
        np.testing.assert_array_equal(m2.simulate(2, seed=1), m.simulate(2, seed=1))


def test_loaded_model_refits(fits, tmp_path):
    m = fits[0]
    m2 = pyglmm.load(m.save(tmp_path / "m.npz"))
    # refit starts from the fitted parameters (as lme4's refit), so it lands on the same optimum
    # to the optimiser's tolerance rather than bit for bit
    np.testing.assert_allclose(m2.refit(m.frame.y).fixef.values, m.fixef.values, rtol=1e-6)


def test_tampered_file_is_refused(fits, tmp_path):
    p = fits[0].save(tmp_path / "m.npz")
    with np.load(p, allow_pickle=False) as z:
        parts = {k: z[k] for k in z.files}
    parts["beta"] = parts["beta"] + 0.1
    bad = tmp_path / "bad.npz"
    np.savez(bad, **parts)
    with pytest.raises(ModelFileError, match="checksum"):
        pyglmm.load(bad)


def test_truncated_file_is_refused(fits, tmp_path):
    p = fits[0].save(tmp_path / "m.npz")
    data = p.read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        pyglmm.load(cut)


def test_newer_version_and_foreign_files_are_refused(fits, tmp_path):
    p = fits[0].save(tmp_path / "m.npz")
    with np.load(p, allow_pickle=False) as z:
        parts = {k: z[k] for k in z.files}
    meta = json.loads(bytes(parts["meta"]).decode())
    meta["version"] = 99
    parts["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    newer = tmp_path / "newer.npz"
    np.savez(newer, **parts)
    with pytest.raises(ModelFileError, match="upgrade pyglmm"):
        pyglmm.load(newer)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(ModelFileError, match="not a pyglmm model file"):
        pyglmm.load(other)


def test_file_holds_no_pickled_objects(fits, tmp_path):
    p = fits[2].save(tmp_path / "m.npz")
    with zipfile.ZipFile(p) as z:
        for name in z.namelist():
            head = z.read(name)[:10]
            assert head.startswith(b"\x93NUMPY")
    with np.load(p, allow_pickle=False) as z:
        for k in z.files:
            assert z[k].dtype != object


def test_deterministic_and_row_order_invariant():
    cb = pyglmm.datasets.load_cbpp()
    a = pyglmm.glmer(CBPP, cb, family="binomial")
    b = pyglmm.glmer(CBPP, cb, family="binomial")
    np.testing.assert_array_equal(a.fixef.values, b.fixef.values)      # bit-identical
    np.testing.assert_array_equal(a.theta.values, b.theta.values)
    shuffled = cb.sample(frac=1.0, random_state=7).reset_index(drop=True)
    c = pyglmm.glmer(CBPP, shuffled, family="binomial")
    np.testing.assert_allclose(c.fixef.values, a.fixef.values, atol=1e-8)
    np.testing.assert_allclose(c.theta.values, a.theta.values, atol=1e-8)


def test_loaded_model_predicts_newdata_like_the_original(tmp_path):
    import pandas as pd
    d = pyglmm.datasets.load_rehab()
    m = pyglmm.glmer('incidents ~ C(treatment, ref = "new") + gender + scale(hours) + (1 | rehab)', d,
                     family="poisson")
    m2 = pyglmm.load(m.save(tmp_path / "m.npz"))
    nd = d.iloc[:25].copy()
    np.testing.assert_allclose(m2.predict(nd, type="response"), m.predict(nd, type="response"), rtol=1e-12)
    np.testing.assert_allclose(m2.predict(nd, re_form="~0"), m.predict(nd, re_form="~0"), rtol=1e-12)


def test_interrupted_fit_leaves_no_partial_state(monkeypatch, tmp_path):
    """A KeyboardInterrupt mid-fit propagates; nothing global is left half-updated."""
    from pyglmm.fit import glmm as G
    cb = pyglmm.datasets.load_cbpp()
    before = pyglmm.glmer(CBPP, cb, family="binomial")
    calls = {"n": 0}
    orig = G.minimize_bounded

    def interrupting(f, *a, **k):          # the 7th deviance evaluation of the optimiser
        def counting(fn):
            def counted(x):
                calls["n"] += 1
                if calls["n"] == 7:
                    raise KeyboardInterrupt
                return fn(x)
            return counted
        if k.get("fg") is not None:        # value and gradient from one call
            k["fg"] = counting(k["fg"])
        return orig(counting(f), *a, **k)

    monkeypatch.setattr(G, "minimize_bounded", interrupting)
    with pytest.raises(KeyboardInterrupt):
        pyglmm.glmer(CBPP, cb, family="binomial")
    assert calls["n"] == 7
    monkeypatch.setattr(G, "minimize_bounded", orig)
    after = pyglmm.glmer(CBPP, cb, family="binomial")
    np.testing.assert_array_equal(after.fixef.values, before.fixef.values)
    # an interrupted save leaves no file behind (written to a temporary name, then renamed)
    import pyglmm.io as pio
    monkeypatch.setattr(pio.Path, "replace", lambda self, target: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        before.save(tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()
