"""Saving and loading fitted models: round trip, every model method after load, the tamper-evident
format (whole-file digest, member set, limits before allocation, header schema, labels), escaped
control characters, concurrent saves, the file-name rule, older versions, determinism."""
import io
import json
import multiprocessing
import threading
import tracemalloc
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest

import pyglmm
import pyglmm.io as pio
from pyglmm import diagnostics
from pyglmm.errors import ArgumentTypeError, PyglmmError
from pyglmm.io import ModelFileError

CBPP = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def fits():
    cb = pyglmm.datasets.load_cbpp()
    return [pyglmm.glmer(CBPP, cb, family="binomial"),
            pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy()),
            pyglmm.glmer("TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)", pyglmm.datasets.load_grouseticks(),
                         family="nbinom2")]


@pytest.fixture(scope="module")
def saved(fits, tmp_path_factory):
    """The cbpp glmer fit saved once: the bytes of a valid version-2 file."""
    p = fits[0].save(tmp_path_factory.mktemp("saved") / "m.npz")
    return p.read_bytes()


# --- helpers: take a file apart and put it back together ----------------------------------

def _members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return {i.filename: z.read(i) for i in z.infolist()}


def _npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.lib.format.write_array(b, np.asarray(a), allow_pickle=False)
    return b.getvalue()


def _array(raw: bytes) -> np.ndarray:
    return np.lib.format.read_array(io.BytesIO(raw), allow_pickle=False)


def _meta(members) -> dict:
    return json.loads(_array(members["meta.npy"]).tobytes().decode())


def _set_meta(members, meta) -> None:
    members["meta.npy"] = _npy(np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def _zip(members: dict[str, bytes], comment: bytes | None = None, sign: bool = True) -> bytes:
    """A ZIP of ``members``; ``sign``: with a correct whole-file digest (as a forger who
    recomputes it would write), else with ``comment`` as given."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in members.items():
            z.writestr(k, v)
        if sign:
            z.comment = pio._DIGEST_TAG + b"0" * 64
        elif comment is not None:
            z.comment = comment
    return pio._sign(b.getvalue()) if sign else b.getvalue()


def _comment(data: bytes) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        return z.comment


def _repack(data: bytes, edit_meta=None, edit_arrays=None) -> bytes:
    """The file re-written with consistent digests after editing its header or arrays (what a
    careful forger would produce): only the semantic checks can catch it."""
    mem = _members(data)
    meta = _meta(mem)
    arrays = {k[:-4]: _array(v) for k, v in mem.items() if k != "meta.npy"}
    if edit_arrays:
        edit_arrays(arrays)
    meta.pop("arrays")
    if edit_meta:
        edit_meta(meta)
    return pio._pack(meta, arrays)


def _write(tmp_path, data: bytes, name="x.npz"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- round trip -----------------------------------------------------------------------------

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
        np.testing.assert_array_equal(m2.optinfo["gradient"], m.optinfo["gradient"])


def test_loaded_model_refits(fits, tmp_path):
    m = fits[0]
    m2 = pyglmm.load(m.save(tmp_path / "m.npz"))
    # refit starts from the fitted parameters (as lme4's refit), so it lands on the same optimum
    # to the optimiser's tolerance rather than bit for bit
    np.testing.assert_allclose(m2.refit(m.frame.y).fixef.values, m.fixef.values, rtol=1e-6)


# --- every method of a fitted model after load (Task 1) --------------------------------------

def _fit(kind):
    cb, ss = pyglmm.datasets.load_cbpp(), pyglmm.datasets.load_sleepstudy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "glmer":
            return pyglmm.glmer(CBPP, cb, family="binomial")
        if kind == "agq":
            return pyglmm.glmer(CBPP, cb, family="binomial", nAGQ=3)
        if kind == "lmer":
            return pyglmm.lmer("Reaction ~ Days + (1 | Subject)", ss, REML=False)
        if kind == "lmer_reml":
            return pyglmm.lmer("Reaction ~ Days + (Days | Subject)", ss)
        return pyglmm.glmmPQL(CBPP, cb, family="binomial")


KINDS = ["glmer", "agq", "lmer", "lmer_reml", "pql"]


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """kind -> (fresh fit, the same fit after save + load, a second fresh fit, its data)."""
    d = tmp_path_factory.mktemp("pairs")
    out = {}
    for kind in KINDS:
        m = _fit(kind)
        out[kind] = (m, pyglmm.load(m.save(d / kind)), _fit(kind))
    return out


def _newdata(m):
    return (pyglmm.datasets.load_cbpp() if m.frame.response_name.startswith("cbind")
            else pyglmm.datasets.load_sleepstudy()).iloc[:12]


METHODS = {
    "summary": lambda m, o: str(m.summary()),
    "repr": lambda m, o: repr(m),
    "fixef_vcov_theta": lambda m, o: (m.fixef, m.vcov, m.theta, m.se, m.sigma),
    "ranef": lambda m, o: m.ranef_frames(condvar=True),
    "VarCorr": lambda m, o: m.varcorr,
    "coef": lambda m, o: m.coef,
    "stats": lambda m, o: (m.loglik, m.aic, m.bic, m.deviance, m.nobs, m.df_resid, m.iterations,
                           m.converged, m.singular, m.messages),
    "residuals": lambda m, o: [m.residuals(t) for t in ("deviance", "pearson", "response", "working")],
    "predict": lambda m, o: m.predict(),
    "predict_newdata": lambda m, o: m.predict(_newdata(m), type="response", se_fit=True),
    "predict_marginal": lambda m, o: m.predict(_newdata(m), type="response", marginal=True),
    "simulate": lambda m, o: (m.simulate(2, seed=1), m.simulate(2, seed=1, re_form=None)),
    "confint_wald": lambda m, o: m.confint(method="wald"),
    "confint_profile": lambda m, o: m.confint(method="profile", parm=[len(m.theta) + 2]),
    "confint_boot": lambda m, o: m.confint(method="boot", nsim=3, seed=1),
    "anova_loaded_fresh": lambda m, o: str(pyglmm.anova(m, o, quiet=True)),
    "wald_tests": lambda m, o: str(m.wald_tests()),
    "exp_fixef": lambda m, o: m.exp_fixef(),
    "refit": lambda m, o: m.refit(m.frame.y).fixef,
    "quantile_residuals": lambda m, o: diagnostics.quantile_residuals(m, nsim=10, seed=1).residuals,
    "overdispersion": lambda m, o: diagnostics.overdispersion(m).ratio,
    "icc": lambda m, o: str(diagnostics.icc(m)),
    "ranef_table": lambda m, o: m.ranef_table(),
    "plots": lambda m, o: [type(f).__name__ for f in (m.plot_caterpillar(), m.plot_qq(),
                                                      m.plot_residuals(nsim=10, seed=1))],
    "save_again": lambda m, o: str(pyglmm.load(m.save(m._tmp_path / "again")).summary()),
}


def _same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, rtol=1e-6)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, rtol=1e-6)
    elif isinstance(a, np.ndarray):
        np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)
    elif isinstance(a, float):
        assert a == b or np.isclose(a, b, rtol=1e-9, equal_nan=True)
    else:
        assert a == b


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("kind", KINDS)
def test_every_method_works_after_load_or_fails_as_on_the_fit(pairs, kind, method, tmp_path):
    """A loaded model answers every method as the fit it came from: the same result, or the
    same (deliberate) error for methods the fit type does not support; never AttributeError."""
    import matplotlib
    matplotlib.use("Agg")
    m, loaded, other = pairs[kind]
    fn = METHODS[method]
    m._tmp_path = loaded._tmp_path = tmp_path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            want = fn(m, other)
        except AttributeError:
            raise
        except Exception as e:                 # the fit type does not support it
            with pytest.raises(type(e)) as got:
                fn(loaded, other)
            assert not isinstance(got.value, AttributeError)
            assert str(got.value) == str(e)
            return
        got = fn(loaded, other)
    _same(got, want)


def test_profile_on_loaded_model_matches_the_fit(pairs, tmp_path):
    """Was AttributeError ('_problem'): the numerics are rebuilt from the stored frame."""
    m = pairs["glmer"][0]
    loaded = pyglmm.load(m.save(tmp_path / "m"))
    assert not hasattr(loaded, "_problem")
    pd.testing.assert_frame_equal(loaded.confint(method="profile", parm="period2"),
                                  m.confint(method="profile", parm="period2"), rtol=1e-7)


def test_save_refuses_what_is_not_a_fitted_model(tmp_path):
    with pytest.raises(ArgumentTypeError, match="glmer, lmer or glmmPQL"):
        pio.save(object(), tmp_path / "x")


# --- integrity: the whole-file digest ---------------------------------------------------------

def test_any_edited_byte_is_refused(saved, tmp_path):
    rng = np.random.default_rng(3)
    for pos in [0, 10, len(saved) // 2, len(saved) - 70, len(saved) - 1, *rng.integers(0, len(saved), 20)]:
        bad = bytearray(saved)
        bad[pos] ^= 0x20
        with pytest.raises(ModelFileError):
            pyglmm.load(_write(tmp_path, bytes(bad)))


def test_edited_header_is_refused(saved, tmp_path):
    """One byte of the JSON header changed (a re-zipped file keeping the old digest)."""
    mem = _members(saved)
    raw = _array(mem["meta.npy"]).tobytes()
    i = raw.index(b'"loglik":') + len(b'"loglik":')
    edited = raw[:i] + (b"1" if raw[i:i + 1] != b"1" else b"2") + raw[i + 1:]
    mem["meta.npy"] = _npy(np.frombuffer(edited, np.uint8))
    with pytest.raises(ModelFileError, match="whole-file checksum"):
        pyglmm.load(_write(tmp_path, _zip(mem, comment=_comment(saved), sign=False)))
    # and without the digest at all: a version-2 file must carry it
    with pytest.raises(ModelFileError, match="whole-file checksum, which is missing"):
        pyglmm.load(_write(tmp_path, _zip(mem, sign=False)))


def test_edited_member_is_refused(saved, tmp_path):
    mem = _members(saved)
    beta = _array(mem["beta.npy"])
    beta[0] += 0.1
    mem["beta.npy"] = _npy(beta)
    with pytest.raises(ModelFileError, match="whole-file checksum"):
        pyglmm.load(_write(tmp_path, _zip(mem, comment=_comment(saved), sign=False)))
    # a forger who recomputes the whole-file digest still meets the header's array digest
    with pytest.raises(ModelFileError, match="'beta' does not match its checksum"):
        pyglmm.load(_write(tmp_path, _zip(mem)))


def test_added_member_is_refused(saved, tmp_path):
    mem = _members(saved)
    mem["extra.npy"] = _npy(np.arange(3.0))
    with pytest.raises(ModelFileError, match="does not list: 'extra.npy'"):
        pyglmm.load(_write(tmp_path, _zip(mem)))


def test_removed_member_is_refused(saved, tmp_path):
    mem = _members(saved)
    del mem["beta.npy"]
    with pytest.raises(ModelFileError, match="'beta' is missing"):
        pyglmm.load(_write(tmp_path, _zip(mem)))
    # removed together with its manifest entry: the header's model still needs it
    data = _repack(saved, edit_arrays=lambda a: a.pop("condvar0"))
    with pytest.raises(ModelFileError, match="do not match the model the header describes"):
        pyglmm.load(_write(tmp_path, data))


def test_truncated_file_is_refused(saved, tmp_path):
    with pytest.raises(ModelFileError, match="truncated or corrupted"):
        pyglmm.load(_write(tmp_path, saved[: len(saved) // 2]))


def test_newer_version_and_foreign_files_are_refused(saved, tmp_path):
    def newer(meta):
        meta["version"] = 99
    with pytest.raises(ModelFileError, match="upgrade pyglmm"):
        pyglmm.load(_write(tmp_path, _repack(saved, edit_meta=newer)))
    with pytest.raises(ModelFileError, match="upgrade pyglmm"):
        pyglmm.load(_write(tmp_path, _repack(saved, edit_meta=_set(("version",), [2]))))
    other = tmp_path / "other.npz"
    np.savez(other, a=np.arange(3))
    with pytest.raises(ModelFileError, match="not a pyglmm model file"):
        pyglmm.load(other)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ModelFileError, match="could not be read"):
        pyglmm.load(tmp_path / "text.npz")


# --- limits before allocation ------------------------------------------------------------------

def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_crafted_huge_shape_allocates_nothing(saved, tmp_path):
    """A .npy header (and manifest) claiming 200 million rows in a 10 kB file."""
    mem = _members(saved)
    meta = _meta(mem)
    huge = 200_000_000
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False, "shape": (huge,)})
    mem["y.npy"] = hdr.getvalue() + b"\0" * 64
    meta["arrays"]["y"]["shape"] = [huge]
    _set_meta(mem, meta)
    p = _write(tmp_path, _zip(mem))

    def load():
        with pytest.raises(ModelFileError, match="shape"):
            pyglmm.load(p)
    assert _peak(load) < 8 << 20


def _zeros_member(z, name, shape, descr):
    """A .npy member of zeros written in chunks (never held in memory whole)."""
    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": descr, "fortran_order": False, "shape": shape})
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with z.open(info, "w") as f:
        f.write(hdr.getvalue())
        left = int(np.prod(shape)) * 8
        chunk = bytes(1 << 20)
        while left:
            f.write(chunk[:min(left, len(chunk))])
            left -= min(left, len(chunk))


def test_zip_bomb_is_refused_before_inflating(saved, tmp_path):
    """Consistent shapes for a million rows of zeros: about 100 MB of arrays in a file of a
    hundred kB (a zip bomb): refused from the declared sizes, before inflating anything."""
    n = 1 << 20
    meta = _meta(_members(saved))
    p_fix = len(meta["frame"]["fixef_names"])
    shapes = {k: tuple(v["shape"]) for k, v in meta["arrays"].items()}
    for k in ("y", "offset", "weights", "rows", "eta", "mu", "re0_codes"):
        shapes[k] = (n,)
    shapes["X"], shapes["re0_X"] = (n, p_fix), (n, 1)
    for k, s in shapes.items():
        meta["arrays"][k] = {"dtype": meta["arrays"][k]["dtype"], "shape": list(s), "sha256": "0" * 64}
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.npy", _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8)))
        for k, s in shapes.items():
            _zeros_member(z, k + ".npy", s, meta["arrays"][k]["dtype"])
        z.comment = pio._DIGEST_TAG + b"0" * 64
    data = pio._sign(b.getvalue())
    assert len(data) < 1 << 20
    p = _write(tmp_path, data)

    def load():
        with pytest.raises(ModelFileError, match=r"bytes of arrays.*max_bytes="):
            pyglmm.load(p)
    assert _peak(load) < 8 << 20


def test_header_bomb_is_refused(saved, tmp_path):
    """A header member inflating to 64 MB."""
    b = io.BytesIO()
    n = 64 << 20
    with zipfile.ZipFile(b, "w", zipfile.ZIP_DEFLATED) as z:
        hdr = io.BytesIO()
        np.lib.format.write_array_header_1_0(hdr, {"descr": "|u1", "fortran_order": False, "shape": (n,)})
        with z.open("meta.npy", "w") as f:
            f.write(hdr.getvalue())
            for _ in range(n >> 20):
                f.write(b" " * (1 << 20))
        z.comment = pio._DIGEST_TAG + b"0" * 64
    p = _write(tmp_path, pio._sign(b.getvalue()))

    def load():
        with pytest.raises(ModelFileError, match="header member declares"):
            pyglmm.load(p)
    assert _peak(load) < 8 << 20


# --- the header's schema ----------------------------------------------------------------------

def test_deeply_nested_header_is_refused(saved, tmp_path):
    mem = _members(saved)
    raw = _array(mem["meta.npy"]).tobytes()
    deep = raw[:-1] + b',"deep":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    mem["meta.npy"] = _npy(np.frombuffer(deep, np.uint8))
    with pytest.raises(ModelFileError, match="nested more than"):
        pyglmm.load(_write(tmp_path, _zip(mem)))


def _set(path, value):
    def edit(meta):
        d = meta
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


@pytest.mark.parametrize("path, value, match", [
    (("record", "loglik"), "high", r"record\.loglik must be num"),
    (("record", "converged"), 1, r"record\.converged must be bool"),
    (("frame", "fixef_names"), "(Intercept)", r"frame\.fixef_names must be a list"),
    (("family", "name"), 3, r"family\.name must be str"),
    (("frame", "reterms"), [{"group_name": "herd"}], r"lacks the key 'levels'"),
    (("terms",), {"a": 1}, r"terms must be a list"),
    (("frame", "xref"), {"period": 1.5}, r"frame\.xref\['period'\] must be int"),
    (("record", "surprise"), 1, r"unexpected key\(s\) 'surprise'"),
    (("record", "n_params"), 10 ** 30, r"out of range"),
])
def test_wrong_types_in_header_are_refused(saved, tmp_path, path, value, match):
    with pytest.raises(ModelFileError, match=match):
        pyglmm.load(_write(tmp_path, _repack(saved, edit_meta=_set(path, value))))


def test_duplicate_header_keys_are_refused(saved, tmp_path):
    mem = _members(saved)
    raw = _array(mem["meta.npy"]).tobytes()
    mem["meta.npy"] = _npy(np.frombuffer(raw[:-1] + b',"version":2}', np.uint8))
    with pytest.raises(ModelFileError, match="repeats the key 'version'"):
        pyglmm.load(_write(tmp_path, _zip(mem)))


# --- labels against codes -------------------------------------------------------------------------

def test_codes_out_of_range_are_refused(saved, tmp_path):
    def edit(a):
        a["re0_codes"][3] = 15                 # cbpp has 15 herds: codes 0..14
    with pytest.raises(ModelFileError, match="outside its 15 levels"):
        pyglmm.load(_write(tmp_path, _repack(saved, edit_arrays=edit)))

    def negative(a):
        a["re0_codes"][0] = -1
    with pytest.raises(ModelFileError, match="outside"):
        pyglmm.load(_write(tmp_path, _repack(saved, edit_arrays=negative)))


@pytest.mark.parametrize("edit, match", [
    (lambda m: m["frame"]["reterms"][0]["levels"].pop(), "terms and the random-effects designs disagree"),
    (lambda m: [t["levels"].pop() for t in (m["frame"]["reterms"][0], m["terms"][0])], "shape"),
    (lambda m: m["frame"]["xref"].update(period=7), "reference level"),
    (lambda m: m["frame"]["reterms"][0]["levels"].__setitem__(1, "1") or
     m["terms"][0]["levels"].__setitem__(1, "1"), "not unique"),
    (lambda m: m["refit"].update(kind="lmm"), "refit kind"),
    (lambda m: m["record"].update(method="Magic"), "unknown fitting method"),
    (lambda m: m["family"].update(name="\x1b[31mevil"), "unknown family"),
])
def test_inconsistent_labels_are_refused(saved, tmp_path, edit, match):
    with pytest.raises(ModelFileError, match=match) as e:
        pyglmm.load(_write(tmp_path, _repack(saved, edit_meta=edit)))
    assert "\x1b" not in str(e.value)


# --- control characters -----------------------------------------------------------------------------

def test_control_characters_from_a_file_are_printed_escaped(tmp_path):
    cb = pyglmm.datasets.load_cbpp()
    cb["period"] = cb["period"].astype(str).replace({"2": "2\x1b[2J"})
    cb["herd"] = cb["herd"].astype(str).replace({"1": "h\x07\u202e"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = pyglmm.glmer(CBPP, cb, family="binomial")
    m2 = pyglmm.load(m.save(tmp_path / "ctl"))
    text = str(m2.summary()) + repr(m2) + str(m2.ranef) + str(m2.coef_table())
    for bad in ("\x1b", "\x07", "\u202e"):
        assert bad not in text
        assert bad not in "".join(m2.ranef["herd"].index)
    assert "period2\\x1b[2J" in text
    assert "h\\x07\\u202e" in list(m2.ranef["herd"].index)
    np.testing.assert_array_equal(m2.fixef.values, m.fixef.values)
    # the loaded model still predicts (levels in their escaped spelling)
    nd = pyglmm.datasets.load_cbpp().iloc[:5].copy()
    nd["period"] = nd["period"].astype(str).replace({"2": "2\\x1b[2J"})
    np.testing.assert_allclose(m2.predict(nd, re_form="~0"),
                               m.predict(nd.assign(period=nd["period"].str.replace("\\x1b", "\x1b")),
                                         re_form="~0"))
    assert pio.escape_controls("caf\u00e9 [1]\\n") == "caf\u00e9 [1]\\n"     # printable kept


# --- concurrency and names ----------------------------------------------------------------------

def test_concurrent_saves_and_loads_of_one_path(fits, tmp_path):
    a, b = fits[0], fits[2]
    p = tmp_path / "shared.npz"
    a.save(p)
    want = {tuple(a.fixef.values), tuple(b.fixef.values)}
    errors = []

    def writer(m):
        try:
            for _ in range(15):
                m.save(p)
        except Exception as e:                                   # pragma: no cover
            errors.append(e)

    def reader():
        try:
            for _ in range(15):
                assert tuple(pyglmm.load(p).fixef.values) in want
        except Exception as e:                                   # pragma: no cover
            errors.append(e)
    threads = [threading.Thread(target=writer, args=(m,)) for m in (a, b, a)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [f.name for f in tmp_path.iterdir()] == ["shared.npz"]      # no temporary left


def _save_loop(model, path, n):
    for _ in range(n):
        model.save(path)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_concurrent_saves_from_processes(fits, tmp_path):
    ctx = multiprocessing.get_context("fork")
    p = tmp_path / "shared.npz"
    fits[0].save(p)
    procs = [ctx.Process(target=_save_loop, args=(m, p, 10)) for m in (fits[0], fits[2])]
    for q in procs:
        q.start()
    seen = 0
    while any(q.is_alive() for q in procs) or not seen:
        pyglmm.load(p)                      # never a torn file
        seen += 1
    for q in procs:
        q.join(timeout=120)
        assert q.exitcode == 0
    assert [f.name for f in tmp_path.iterdir()] == ["shared.npz"]


def test_save_and_load_use_the_same_name_rule(fits, tmp_path):
    m = fits[0]
    for given, written in [("m", "m.npz"), ("m.v1", "m.v1.npz"), ("m.npz", "m.npz"),
                           ("M.NPZ", "M.NPZ"), ("dir.x/model", "dir.x/model.npz")]:
        (tmp_path / given).parent.mkdir(exist_ok=True)
        assert m.save(tmp_path / given) == tmp_path / written
        assert pio.model_path(tmp_path / given) == tmp_path / written
        np.testing.assert_array_equal(pyglmm.load(tmp_path / given).fixef.values, m.fixef.values)
        np.testing.assert_array_equal(pyglmm.load(str(tmp_path / written)).fixef.values, m.fixef.values)
    (tmp_path / "m.npz").rename(tmp_path / "bare")
    with pytest.raises(ModelFileError, match="rename the file to bare.npz") as e:
        pyglmm.load(tmp_path / "bare")
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, PyglmmError)


# --- older versions -------------------------------------------------------------------------------

def _as_version_1(data: bytes, int32: bool = False) -> bytes:
    """The file in format version 1 (np.savez_compressed; digests of the arrays only;
    ``int32``: integer arrays as a platform with 32-bit default integers wrote them)."""
    mem = _members(data)
    meta = _meta(mem)
    arrays = {k[:-4]: _array(v) for k, v in mem.items() if k != "meta.npy" and not k.startswith("opt_")}
    if int32:
        arrays = {k: v.astype(np.int32) if v.dtype.kind == "i" else v for k, v in arrays.items()}
    meta.pop("arrays")
    meta["version"] = 1
    for k in ("niter", "pirls_iterations"):
        meta["record"].pop(k)
    meta["digests"] = {k: pio._digest(v) for k, v in arrays.items()}
    b = io.BytesIO()
    np.savez_compressed(b, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    return b.getvalue()


def test_version_1_files_stay_readable_with_a_warning(fits, saved, tmp_path):
    p = _write(tmp_path, _as_version_1(saved))
    with pytest.warns(UserWarning, match="version-1 model file"):
        m1 = pyglmm.load(p)
    assert str(m1.summary()) == str(fits[0].summary())
    with pytest.warns(UserWarning, match="version-1 model file"):
        m32 = pyglmm.load(_write(tmp_path, _as_version_1(saved, int32=True), "i32.npz"))
    assert m32.frame.reterms[0].codes.dtype == np.int64
    np.testing.assert_array_equal(m32.predict(), fits[0].predict())
    # still checked: array digests, unlisted members, codes
    mem = _members(p.read_bytes())
    beta = _array(mem["beta.npy"])
    beta[0] += 1
    mem["beta.npy"] = _npy(beta)
    with pytest.raises(ModelFileError, match="checksum"):
        pyglmm.load(_write(tmp_path, _zip(mem, sign=False)))
    mem = _members(p.read_bytes())
    mem["extra.npy"] = _npy(np.zeros(2))
    with pytest.raises(ModelFileError, match="does not list"):
        pyglmm.load(_write(tmp_path, _zip(mem, sign=False)))


# --- format properties -------------------------------------------------------------------------------

def test_file_holds_no_pickled_objects(fits, tmp_path):
    p = fits[2].save(tmp_path / "m.npz")
    with zipfile.ZipFile(p) as z:
        for name in z.namelist():
            head = z.read(name)[:10]
            assert head.startswith(b"\x93NUMPY")
        assert z.comment.startswith(b"pyglmm-model sha256:")
    with np.load(p, allow_pickle=False) as z:
        for k in z.files:
            assert z[k].dtype != object


def test_saved_bytes_are_deterministic(fits, tmp_path):
    assert fits[0].save(tmp_path / "a").read_bytes() == fits[0].save(tmp_path / "b").read_bytes()


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
    monkeypatch.setattr(pio.os, "replace", lambda src, dst: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        before.save(tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []
