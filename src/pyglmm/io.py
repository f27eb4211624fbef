"""Saving and loading fitted models: a versioned, non-executable .npz file (never pickle).

Layout: numeric arrays under readable keys plus one UTF-8 JSON document (key ``meta``) holding
the format version, scalars, names, levels and a SHA-256 digest of every array. Loading checks
the version and the digests, so a truncated or edited file gives a clear error, and uses
``allow_pickle=False`` so a crafted file cannot run code. Older format versions stay readable:
each version's reader is kept in ``_READERS``.
"""
from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np

from .errors import ModelFileError

FORMAT = "pyglmm-model"
VERSION = 1




def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _opt(v):
    return None if v is None else float(v)


def save(model, path) -> Path:
    """Write a fitted model to ``path`` (.npz): everything needed to print, predict and compare."""
    from . import __version__
    r, fr = model._r, model.frame
    arrays: dict[str, np.ndarray] = {
        "y": fr.y, "X": fr.X, "offset": fr.offset, "weights": fr.weights, "rows": fr.rows,
        "theta": r.theta, "beta": r.beta, "u": r.u, "vcov": r.vcov, "eta": r.eta, "mu": r.mu,
    }
    for k, rt in enumerate(fr.reterms):
        arrays[f"re{k}_codes"] = np.asarray(rt.codes)
        arrays[f"re{k}_X"] = np.asarray(rt.X, float)
    for k in range(len(r.b)):
        arrays[f"b{k}"] = r.b[k]
        arrays[f"T{k}"] = r.T[k]
        if r.condvar is not None:
            arrays[f"condvar{k}"] = r.condvar[k]
    fam = model.family
    meta = {
        "format": FORMAT, "version": VERSION, "pyglmm_version": __version__,
        "formula": model.formula, "data_name": model.data_name,
        "family": {"name": fam.name, "link": fam.link.name, "shape": _opt(getattr(fam, "shape", None))},
        "frame": {"response_name": fr.response_name, "fixef_names": list(fr.fixef_names),
                  "dropped_fixef": list(fr.dropped_fixef), "n_dropped_na": int(fr.n_dropped_na),
                  "binomial_response_kind": fr.binomial_response_kind,
                  "xlevels": {k: [str(x) for x in v] for k, v in fr.xlevels.items()},
                  "xref": {k: int(v) for k, v in getattr(fr, "xref", {}).items()},
                  "scale_params": {k: [float(a), float(b)] for k, (a, b) in
                                   getattr(fr, "scale_params", {}).items()},
                  "reterms": [{"group_name": rt.group_name, "levels": [str(x) for x in rt.levels],
                               "colnames": list(rt.colnames), "correlated": bool(rt.correlated)}
                              for rt in fr.reterms]},
        "terms": [{"group": t.group, "colnames": list(t.colnames), "levels": list(t.levels),
                   "correlated": bool(t.correlated)} for t in model.terms],
        "record": {"kind": r.kind, "method": r.method, "loglik": float(r.loglik),
                   "sigma": _opt(r.sigma), "dispersion": _opt(r.dispersion), "shape": _opt(r.shape),
                   "n_params": int(r.n_params), "converged": bool(r.converged),
                   "singular": bool(r.singular), "messages": list(r.messages),
                   "reml_criterion": _opt(r.reml_criterion), "ml_deviance": _opt(r.ml_deviance),
                   "n_terms": len(r.b), "has_condvar": r.condvar is not None,
                   "iterations": r.optinfo.get("iterations")},
        "refit": {k: (v if isinstance(v, (str, int, float, bool)) or v is None else str(v))
                  for k, v in getattr(model, "_refit_spec", {}).items() if k != "family"},
        "digests": {k: _digest(np.asarray(v)) for k, v in arrays.items()},
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
                        **{k: np.asarray(v) for k, v in arrays.items()})
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)           # atomic: an interrupted save leaves no half-written model file
    return path


def _read_v1(meta: dict, arrays: dict):
    from .design.frame import ModelFrame, ReTermDesign
    from .families import make_family
    from .results.model import FitRecord, MixedModel
    from .results.varcorr import TermInfo
    f = meta["family"]
    fam = make_family(f["name"], f["link"])
    if f.get("shape") is not None:
        fam = fam.with_shape(f["shape"])
    fm = meta["frame"]
    reterms = [ReTermDesign(group_name=t["group_name"], codes=arrays[f"re{k}_codes"], levels=t["levels"],
                            X=arrays[f"re{k}_X"], colnames=t["colnames"], correlated=t["correlated"])
               for k, t in enumerate(fm["reterms"])]
    frame = ModelFrame(y=arrays["y"], response_name=fm["response_name"], X=arrays["X"],
                       fixef_names=fm["fixef_names"], dropped_fixef=fm["dropped_fixef"],
                       offset=arrays["offset"], weights=arrays["weights"], reterms=reterms,
                       n_dropped_na=fm["n_dropped_na"], rows=arrays["rows"],
                       binomial_response_kind=fm["binomial_response_kind"], xlevels=fm["xlevels"],
                       xref={k: int(v) for k, v in fm.get("xref", {}).items()},
                       scale_params={k: (v[0], v[1]) for k, v in fm.get("scale_params", {}).items()})
    rc = meta["record"]
    nt = rc["n_terms"]
    record = FitRecord(
        kind=rc["kind"], method=rc["method"], theta=arrays["theta"], beta=arrays["beta"], u=arrays["u"],
        b=[arrays[f"b{k}"] for k in range(nt)], T=[arrays[f"T{k}"] for k in range(nt)],
        vcov=arrays["vcov"], loglik=rc["loglik"], sigma=rc["sigma"], dispersion=rc["dispersion"],
        shape=rc["shape"], n_params=rc["n_params"], eta=arrays["eta"], mu=arrays["mu"],
        condvar=[arrays[f"condvar{k}"] for k in range(nt)] if rc["has_condvar"] else None,
        converged=rc["converged"], singular=rc["singular"], messages=rc["messages"],
        reml_criterion=rc["reml_criterion"], ml_deviance=rc["ml_deviance"],
        optinfo={"iterations": rc.get("iterations")} if rc.get("iterations") is not None else {})
    terms = [TermInfo(group=t["group"], colnames=t["colnames"], levels=t["levels"],
                      correlated=t["correlated"]) for t in meta["terms"]]
    m = MixedModel(formula=meta["formula"], data_name=meta["data_name"], frame=frame, family=fam,
                   terms=terms, record=record, quiet=True)
    spec = dict(meta.get("refit", {}))
    if spec:
        if spec.get("kind") in ("glmm", "pql"):
            spec["family"] = fam
        m._refit_spec = spec
    return m


_READERS = {1: _read_v1}


def load(path):
    """Read a model written by `save` (any supported format version)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z.files:
                raise ModelFileError(f"{path} is not a pyglmm model file (no 'meta' record)")
            meta = json.loads(bytes(z["meta"]).decode("utf-8"))
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path} could not be read as a pyglmm model file (truncated or "
                             f"corrupted?): {e}") from None
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a pyglmm model file (format {meta.get('format')!r})")
    v = meta.get("version")
    if v not in _READERS:
        raise ModelFileError(f"{path} has model-file version {v}; this pyglmm reads versions "
                             f"{sorted(_READERS)}: upgrade pyglmm to read it")
    for k, d in meta.get("digests", {}).items():
        if k not in arrays:
            raise ModelFileError(f"{path}: array '{k}' is missing (file truncated or edited)")
        if _digest(arrays[k]) != d:
            raise ModelFileError(f"{path}: array '{k}' does not match its checksum (file edited "
                                 "or corrupted); refusing to load it")
    return _READERS[v](meta, arrays)


def attach_numerics(model) -> None:
    """Rebuild the numerics a fit keeps for profiles and refits (``_problem``, ``_rs``,
    ``_sorted``) from the model frame a loaded model holds; a fit does this once, a file does
    not store them (they are derived from the stored y, X, weights, offset and terms)."""
    from .fit.lmm import LmmProblem
    from .fit.pirls import GlmmProblem
    from .models import _structure
    fr, spec = model.frame, getattr(model, "_refit_spec", {}) or {}
    kind = spec.get("kind")
    if kind == "lmm":
        sort = LmmProblem.sorts_rows(len(fr.reterms), fr.y.shape[0],
                                     sum(len(rt.levels) * rt.X.shape[1] for rt in fr.reterms))
        rs, _, sv = _structure(fr, sort=sort)
        problem = LmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, REML=bool(spec.get("REML", True)))
    elif kind == "glmm":
        rs, _, sv = _structure(fr)
        laplace = spec.get("laplace") or ("expected" if model.family.name in ("binomial", "poisson")
                                          else "observed")
        problem = GlmmProblem(sv.y, sv.X, rs, sv.weights, sv.offset, model.family,
                              laplace_weights=laplace)
    else:
        raise ModelFileError(f"this loaded model ({model.method} fit) cannot rebuild its numerics; "
                             "refit the model from its data")
    model._problem, model._rs, model._sorted = problem, rs, sv
