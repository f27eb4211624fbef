"""`pyglmm.load`: a fitted model from a model file. The file format and its checks are in
`pyglmm.io`; this module builds the model (frame, record, terms, estimation method) from what
`io.read_model_file` returns."""
from __future__ import annotations

from .design.frame import ModelFrame, ReTermDesign
from .errors import ModelFileError
from .families import make_family
from .io import REFIT_KEYS, read_model_file, show_value
from .method import from_spec
from .results.model import FitRecord, MixedModel
from .results.varcorr import TermInfo

__all__ = ["load"]


def load(path, *, max_bytes: int | None = None) -> MixedModel:
    """Read a model written by `save` (any supported format version; `pyglmm.io.model_path`
    gives the file name). ``max_bytes``: the most array memory the file may make this allocate
    (default `pyglmm.io.array_budget` of the file's size); raise it only for a file you trust."""
    meta, arrays, _ = read_model_file(path, max_bytes)
    return _model_from_file(meta, arrays)


def _model_from_file(meta: dict, arrays: dict):
    """The fitted model a checked header and its arrays describe (format versions 1 and 2
    share these fields; version 2 adds the manifest and the optimiser's information)."""
    f = meta["family"]
    try:
        fam = make_family(f["name"], f["link"])
        if f.get("shape") is not None:
            fam = fam.with_shape(f["shape"])
    except (ValueError, TypeError, KeyError) as e:
        raise ModelFileError(f"the model file names an unknown family or link "
                             f"({show_value(f['name'])}, {show_value(f['link'])}): {show_value(str(e))}") from None
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
    optinfo = {k: rc[k] for k in ("iterations", "niter", "pirls_iterations") if rc.get(k) is not None}
    for k in ("gradient", "hessian"):
        if f"opt_{k}" in arrays:
            optinfo[k] = arrays[f"opt_{k}"]
    record = FitRecord(
        kind=rc["kind"], method=rc["method"], theta=arrays["theta"], beta=arrays["beta"], u=arrays["u"],
        b=[arrays[f"b{k}"] for k in range(nt)], T=[arrays[f"T{k}"] for k in range(nt)],
        vcov=arrays["vcov"], loglik=rc["loglik"], sigma=rc["sigma"], dispersion=rc["dispersion"],
        shape=rc["shape"], n_params=rc["n_params"], eta=arrays["eta"], mu=arrays["mu"],
        condvar=[arrays[f"condvar{k}"] for k in range(nt)] if rc["has_condvar"] else None,
        converged=rc["converged"], singular=rc["singular"], messages=rc["messages"],
        reml_criterion=rc["reml_criterion"], ml_deviance=rc["ml_deviance"], optinfo=optinfo)
    terms = [TermInfo(group=t["group"], colnames=t["colnames"], levels=t["levels"],
                      correlated=t["correlated"]) for t in meta["terms"]]
    m = MixedModel(formula=meta["formula"], data_name=meta["data_name"], frame=frame, family=fam,
                   terms=terms, record=record, quiet=True)
    spec = {k: v for k, v in (meta.get("refit") or {}).items() if k in REFIT_KEYS}
    if spec:
        if spec.get("kind") in ("glmm", "pql"):
            spec["family"] = fam
        m._refit_spec = spec
        m.fit_method = from_spec(spec)
    return m
