"""Saving and loading fitted models: a versioned, non-executable, tamper-evident .npz file.

Format version 2 (written by `save`)
------------------------------------
A ZIP archive (deflate) of NumPy ``.npy`` members, never pickle:

* ``meta.npy``: the header, a 1-D uint8 array holding one UTF-8 JSON document: format name and
  version, scalars, names, levels, and the manifest ``arrays``: for every array member its key,
  dtype, shape and the SHA-256 of its dtype, shape and bytes;
* ``<key>.npy`` for every array of the manifest (y, X, ..., b0, T0, ...), nothing else;
* the archive comment ``pyglmm-model sha256:<64 hex digits>``: the SHA-256 of every byte of the
  file before those 64 digits (all members, the header, the ZIP directories). Editing any byte
  of the file changes it. It detects corruption and edits, not a forger who recomputes it: the
  digest has no secret key.

`load` checks, in this order and before allocating anything sized by the file: the whole-file
digest (streamed); the ZIP directory (member count, no encryption, deflate or stored only, no
duplicate names); the header's size (`HEADER_EXPANSION` times its compressed size, at least
4 MiB, at most `MAX_HEADER_BYTES`), its JSON nesting depth (at most `MAX_DEPTH`), duplicate
keys, and its schema (every field's type, no unknown or missing keys); the member set (exactly
the header's manifest plus ``meta.npy``: unlisted or missing members are refused); every
member's ``.npy`` header against the manifest and against the shapes the model implies (rows,
fixed effects, levels, ...), the ZIP directory's sizes against them, and the total against the
memory budget (`array_budget`: by default at most `MAX_EXPANSION` times the file size, at least
`MIN_ARRAY_BUDGET`; ``load(path, max_bytes=...)`` raises it for a trusted file). Then it reads
each member with bounded reads (a member that inflates past its declared size is refused),
checks each array's digest, and the stored labels against the codes (codes within the number of
levels, unique levels and names, reference levels within their factor, rows increasing,
parameters finite). Names and levels read from a file have control characters (terminal escape
sequences, bidirectional overrides) replaced by ``\\xNN`` / ``\\uNNNN`` escapes, so printing a
loaded model cannot drive the terminal; new data for `predict` must then spell such a level in
its escaped form.

Older versions stay readable (``READABLE_VERSIONS``; `pyglmm.loading` builds the model). A version-1 file
has no whole-file digest and no manifest of shapes: it is accepted with the checks version 1
had (the digest of every array it lists) plus all the structural checks above (limits, schema,
member set, shapes, labels), and a ``UserWarning`` that its header is not covered by a digest
(save it again to write version 2).

File names: `save` and `load` apply one rule, `model_path`: a name ending in ``.npz`` is used
as given, any other name gets ``.npz`` appended (``"m"`` -> ``"m.npz"``, ``"m.v1"`` ->
``"m.v1.npz"``). Saves are atomic and safe to run concurrently on one path: each writes a
uniquely named temporary file in the target directory, fsyncs it and renames it into place
(``os.replace``), so a reader sees the old file or the new one, never a mixture.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .errors import ArgumentTypeError, ModelFileError

FORMAT = "pyglmm-model"
VERSION = 2
READABLE_VERSIONS = (1, 2)     # format versions this pyglmm reads (pyglmm.loading builds them)
SUFFIX = ".npz"
HEADER = "meta.npy"

#: limits applied before anything sized by the file is allocated
MAX_MEMBERS = 4096                 # ZIP members (a model has 12 + 5 per random-effects term)
MAX_HEADER_BYTES = 64 << 20        # JSON header, absolute ...
HEADER_EXPANSION = 16              # ... and at most this times its compressed size (or 4 MiB)
MAX_DEPTH = 8                      # nesting of the JSON header (version 2 uses 5)
MAX_STRING = 1 << 20               # characters in one header string
MIN_ARRAY_BUDGET = 64 << 20        # array bytes any file may declare ...
MAX_EXPANSION = 100                # ... else at most this times the file's size
_NPY_HEADER_MAX = 10000            # numpy's own limit on a .npy header

_DIGEST_TAG = b"pyglmm-model sha256:"
_ARRAY_DTYPES = ("<f8", "<i8")
_CHUNK = 1 << 20


class ModelFileNotFoundError(ModelFileError, FileNotFoundError):
    """No model file at the path (`load` applies the same naming rule as `save`)."""


# --- names, digests, escaping ---------------------------------------------------------------

def model_path(path) -> Path:
    """The file `save(path)` writes and `load(path)` reads: ``path`` if its name ends in .npz
    (any case), else ``path`` with ".npz" appended."""
    path = Path(path)
    return path if path.name.lower().endswith(SUFFIX) else path.with_name(path.name + SUFFIX)


def _digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def escape_controls(s: str) -> str:
    """``s`` with control characters (C0, DEL, C1, bidirectional controls, line separators)
    written as \\xNN / \\uNNNN, so it cannot carry terminal escape sequences."""
    return _CONTROL.sub(lambda m: (f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                   else f"\\u{ord(m.group()):04x}"), s)


def show_value(v) -> str:
    """A value from a file, for an error message: repr, escaped, shortened."""
    s = escape_controls(repr(v))
    return s if len(s) <= 80 else s[:77] + "..."


def _escape_all(v):
    if isinstance(v, str):
        return escape_controls(v)
    if isinstance(v, list):
        return [_escape_all(x) for x in v]
    if isinstance(v, dict):
        return {escape_controls(k): _escape_all(x) for k, x in v.items()}
    return v


def _opt(v):
    return None if v is None else float(v)


def _opt_int(v):
    return None if v is None else int(v)


# --- writing ---------------------------------------------------------------------------------

def _write_npy(zf: zipfile.ZipFile, name: str, a: np.ndarray) -> None:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    with zf.open(info, "w", force_zip64=a.nbytes > (1 << 30)) as f:
        np.lib.format.write_array(f, a, allow_pickle=False)


def _pack(meta: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of a version-2 file: ``meta`` plus the manifest of ``arrays``, the members,
    and the whole-file digest in the archive comment."""
    arrays = {k: np.ascontiguousarray(v).astype(np.asarray(v).dtype.newbyteorder("<"), copy=False)
              for k, v in arrays.items()}          # little-endian on every platform
    meta = dict(meta)
    meta["arrays"] = {k: {"dtype": a.dtype.str, "shape": [int(s) for s in a.shape],
                          "sha256": _digest(a)} for k, a in arrays.items()}
    header = json.dumps(meta, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        _write_npy(zf, HEADER, np.frombuffer(header, dtype=np.uint8))
        for k, a in arrays.items():
            _write_npy(zf, k + ".npy", a)
        zf.comment = _DIGEST_TAG + b"0" * 64
    return _sign(buf.getvalue())


def _sign(data: bytes) -> bytes:
    """A ZIP archive whose comment is the digest placeholder, with the placeholder replaced by
    the SHA-256 of every byte before it."""
    data = bytearray(data)
    data[-64:] = hashlib.sha256(memoryview(data)[:-64]).hexdigest().encode("ascii")
    return bytes(data)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a unique temporary file in the same directory,
    flushed and fsynced, then renamed over ``path`` (concurrent saves never collide)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                   # make the rename durable (best effort)
        dfd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def save(model, path) -> Path:
    """Write a fitted model to ``path`` (see `model_path` for the name): everything needed to
    print, predict, simulate, compare, profile and refit. Returns the path written."""
    from .version import __version__
    if not (hasattr(model, "_r") and hasattr(model, "frame") and hasattr(model, "terms")):
        raise ArgumentTypeError(f"save() writes models fitted by glmer, lmer or glmmPQL; got "
                                f"{type(model).__name__}")
    r, fr = model._r, model.frame
    arrays: dict[str, np.ndarray] = {
        "y": np.asarray(fr.y, float), "X": np.asarray(fr.X, float),
        "offset": np.asarray(fr.offset, float), "weights": np.asarray(fr.weights, float),
        "rows": np.asarray(fr.rows, np.int64), "theta": np.asarray(r.theta, float),
        "beta": np.asarray(r.beta, float), "u": np.asarray(r.u, float),
        "vcov": np.asarray(r.vcov, float), "eta": np.asarray(r.eta, float),
        "mu": np.asarray(r.mu, float),
    }
    for k, rt in enumerate(fr.reterms):
        arrays[f"re{k}_codes"] = np.asarray(rt.codes, np.int64)
        arrays[f"re{k}_X"] = np.asarray(rt.X, float)
    for k in range(len(r.b)):
        arrays[f"b{k}"] = np.asarray(r.b[k], float)
        arrays[f"T{k}"] = np.asarray(r.T[k], float)
        if r.condvar is not None:
            arrays[f"condvar{k}"] = np.asarray(r.condvar[k], float)
    oi = r.optinfo
    for key in ("gradient", "hessian"):    # the optimiser's diagnostics (not its result objects)
        v = oi.get(key)
        if isinstance(v, np.ndarray) and v.dtype.kind in "fi" and v.ndim == (1 if key == "gradient" else 2):
            arrays[f"opt_{key}"] = np.asarray(v, float)
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
                   "singular": bool(r.singular), "messages": [str(s) for s in r.messages],
                   "reml_criterion": _opt(r.reml_criterion), "ml_deviance": _opt(r.ml_deviance),
                   "n_terms": len(r.b), "has_condvar": r.condvar is not None,
                   "iterations": _opt_int(oi.get("iterations")),
                   "niter": _opt_int(oi.get("niter")),
                   "pirls_iterations": _opt_int(oi.get("pirls_iterations"))},
        "refit": {k: v for k, v in getattr(model, "_refit_spec", {}).items()
                  if k in REFIT_KEYS and (isinstance(v, (str, int, float, bool)) or v is None)},
    }
    path = model_path(path)
    _write_atomic(path, _pack(meta, arrays))
    return path


# --- header schema ---------------------------------------------------------------------------

class _Opt:
    """A record field that may be absent."""

    def __init__(self, spec):
        self.spec = spec


def _check(v, spec, where: str, depth: int = 0) -> None:
    """Validate a parsed JSON value against ``spec``: "str", "int", "num", "bool", a tuple of
    alternatives, ("list", spec), ("map", spec) (string keys) or a dict (a record: exactly these
    keys; `_Opt` marks optional ones)."""
    if depth > MAX_DEPTH:
        raise ModelFileError(f"{where}: nested more than {MAX_DEPTH} levels deep")
    if isinstance(spec, dict):
        if not isinstance(v, dict):
            raise ModelFileError(f"{where} must be an object, not {type(v).__name__}")
        unknown = [k for k in v if k not in spec]
        if unknown:
            raise ModelFileError(f"{where} has unexpected key(s) {', '.join(show_value(k) for k in unknown[:5])}")
        for k, s in spec.items():
            if k not in v:
                if isinstance(s, _Opt):
                    continue
                raise ModelFileError(f"{where} lacks the key {k!r}")
            _check(v[k], s.spec if isinstance(s, _Opt) else s, f"{where}.{k}", depth + 1)
        return
    if isinstance(spec, tuple) and spec and spec[0] in ("list", "map"):
        kind, inner = spec
        if kind == "list":
            if not isinstance(v, list):
                raise ModelFileError(f"{where} must be a list, not {type(v).__name__}")
            for i, x in enumerate(v):
                _check(x, inner, f"{where}[{i}]", depth + 1)
        else:
            if not isinstance(v, dict):
                raise ModelFileError(f"{where} must be an object, not {type(v).__name__}")
            for k, x in v.items():
                _check(k, "str", f"{where} key", depth + 1)
                _check(x, inner, f"{where}[{show_value(k)}]", depth + 1)
        return
    alts = spec if isinstance(spec, tuple) else (spec,)
    for s in alts:
        if s is None and v is None:
            return
        if s == "str" and isinstance(v, str):
            if len(v) > MAX_STRING:
                raise ModelFileError(f"{where}: string of {len(v)} characters (limit {MAX_STRING})")
            return
        if s == "bool" and isinstance(v, bool):
            return
        if s == "int" and isinstance(v, int) and not isinstance(v, bool):
            if abs(v) > 2 ** 62:
                raise ModelFileError(f"{where}: integer {show_value(v)} out of range")
            return
        if s == "num" and isinstance(v, (int, float)) and not isinstance(v, bool):
            if isinstance(v, int) and abs(v) > 2 ** 62:
                raise ModelFileError(f"{where}: number {show_value(v)} out of range")
            return
    want = " or ".join("null" if s is None else s for s in alts)
    raise ModelFileError(f"{where} must be {want}, not {show_value(v)} ({type(v).__name__})")


_STRS = ("list", "str")
_RETERM = {"group_name": "str", "levels": _STRS, "colnames": _STRS, "correlated": "bool"}
_TERM = {"group": "str", "colnames": _STRS, "levels": _STRS, "correlated": "bool"}
REFIT_KEYS = ("kind", "REML", "nAGQ", "laplace", "niter")
_REFIT = {"kind": _Opt("str"), "REML": _Opt("bool"), "nAGQ": _Opt("int"), "laplace": _Opt("str"),
          "niter": _Opt("int")}
_RECORD_V1 = {"kind": "str", "method": "str", "loglik": "num", "sigma": ("num", None),
              "dispersion": ("num", None), "shape": ("num", None), "n_params": "int",
              "converged": "bool", "singular": "bool", "messages": _STRS,
              "reml_criterion": ("num", None), "ml_deviance": ("num", None), "n_terms": "int",
              "has_condvar": "bool", "iterations": _Opt(("int", None))}
_FRAME_V1 = {"response_name": "str", "fixef_names": _STRS, "dropped_fixef": _STRS,
             "n_dropped_na": "int", "binomial_response_kind": ("str", None),
             "xlevels": ("map", _STRS), "xref": _Opt(("map", "int")),
             "scale_params": _Opt(("map", ("list", "num"))), "reterms": ("list", _RETERM)}
_COMMON = {"format": "str", "version": "int", "pyglmm_version": "str", "formula": "str",
           "data_name": "str", "family": {"name": "str", "link": "str", "shape": ("num", None)},
           "terms": ("list", _TERM)}
SCHEMA_V1 = {**_COMMON, "frame": _FRAME_V1, "record": _RECORD_V1,
             "refit": _Opt(("map", ("str", "int", "num", "bool", None))), "digests": ("map", "str")}
SCHEMA_V2 = {**_COMMON,
             "frame": {**_FRAME_V1, "xref": ("map", "int"), "scale_params": ("map", ("list", "num"))},
             "record": {**_RECORD_V1, "iterations": ("int", None), "niter": ("int", None),
                        "pirls_iterations": ("int", None)},
             "refit": _REFIT,
             "arrays": ("map", {"dtype": "str", "shape": ("list", "int"), "sha256": "str"})}


# --- reading: bounded, checked ---------------------------------------------------------------

def array_budget(file_size: int) -> int:
    """Bytes of arrays a file of ``file_size`` bytes may make `load` allocate by default."""
    return max(MIN_ARRAY_BUDGET, MAX_EXPANSION * int(file_size))


def _verify_file_digest(f, size: int, where: str) -> bool:
    """True if the file ends with the version-2 digest comment and it matches (streamed);
    False if it has no such comment; ModelFileError if it does not match."""
    tail_len = 22 + len(_DIGEST_TAG) + 64
    if size < tail_len:
        return False
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    if (tail[:4] != b"PK\x05\x06" or struct.unpack("<H", tail[20:22])[0] != len(_DIGEST_TAG) + 64
            or not tail[22:].startswith(_DIGEST_TAG)):
        return False
    want = tail[-64:]
    h = hashlib.sha256()
    f.seek(0)
    left = size - 64
    while left:
        chunk = f.read(min(_CHUNK, left))
        if not chunk:
            raise ModelFileError(f"{where}: file shorter than its directory says (truncated?)")
        h.update(chunk)
        left -= len(chunk)
    if h.hexdigest().encode("ascii") != want:
        raise ModelFileError(f"{where} does not match its whole-file checksum (file edited or "
                             "corrupted); refusing to load it")
    return True


def _npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, where: str):
    """(shape, fortran_order, dtype, data offset) from a member's .npy header; bounded reads."""
    with zf.open(info) as s:
        magic = s.read(8)
        if len(magic) < 8 or magic[:6] != b"\x93NUMPY":
            raise ModelFileError(f"{where}: member {show_value(info.filename)} is not a .npy array")
        major = magic[6]
        if major not in (1, 2) or magic[7] != 0:
            raise ModelFileError(f"{where}: member {show_value(info.filename)} has .npy version "
                                 f"{magic[6]}.{magic[7]}; expected 1.0 or 2.0")
        nlen = 2 if major == 1 else 4
        raw = s.read(nlen)
        hlen = struct.unpack("<H" if major == 1 else "<I", raw)[0] if len(raw) == nlen else -1
        if not 0 < hlen <= _NPY_HEADER_MAX:
            raise ModelFileError(f"{where}: member {show_value(info.filename)} has a .npy header of "
                                 f"{hlen} bytes (limit {_NPY_HEADER_MAX})")
        s2 = io.BytesIO(raw + s.read(hlen))
        try:
            read = (np.lib.format.read_array_header_1_0 if major == 1
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(s2, max_header_size=_NPY_HEADER_MAX)
        except (ValueError, SyntaxError, TypeError) as e:
            raise ModelFileError(f"{where}: member {show_value(info.filename)} has a malformed .npy "
                                 f"header ({show_value(str(e))})") from None
    return shape, fortran, dtype, 8 + nlen + hlen


def _read_data(zf: zipfile.ZipFile, info: zipfile.ZipInfo, shape, fortran, dtype, offset: int,
               where: str) -> np.ndarray:
    """The array of a member whose header was checked: exactly its declared bytes are read."""
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    buf = bytearray(nbytes)
    mv = memoryview(buf)
    with zf.open(info) as s:
        s.read(offset)
        pos = 0
        while pos < nbytes:
            chunk = s.read(min(_CHUNK, nbytes - pos))
            if not chunk:
                raise ModelFileError(f"{where}: member {show_value(info.filename)} is shorter than its "
                                     "header says (truncated?)")
            mv[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        if s.read(1):
            raise ModelFileError(f"{where}: member {show_value(info.filename)} holds more data than its "
                                 "header declares")
    if nbytes == 0:
        return np.empty(shape, dtype)
    return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _check_json_depth(raw: bytes, where: str) -> None:
    """Refuse a header nested deeper than MAX_DEPTH before parsing it (strings removed first)."""
    bare = re.sub(rb'"(?:[^"\\]++|\\.)*+"', b"", raw)
    b = np.frombuffer(bare, dtype=np.uint8)
    step = (np.isin(b, (ord("["), ord("{"))).astype(np.int8)
            - np.isin(b, (ord("]"), ord("}"))).astype(np.int8))
    if step.size and int(np.cumsum(step, dtype=np.int64).max()) > MAX_DEPTH:
        raise ModelFileError(f"{where}: the header is nested more than {MAX_DEPTH} levels deep")


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ModelFileError(f"the header repeats the key {show_value(k)}")
        out[k] = v
    return out


def _parse_header(raw: bytes, where: str) -> dict:
    _check_json_depth(raw, where)
    try:
        meta = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ModelFileError as e:
        raise ModelFileError(f"{where}: {e}") from None
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{where}: the header is not valid JSON ({show_value(str(e))})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{where}: the header is not a JSON object")
    return meta


def _expected_shapes(meta: dict, n: int, where: str) -> dict[str, tuple]:
    """Shape and dtype of every array the header implies (n: the number of rows)."""
    fm, rc, terms = meta["frame"], meta["record"], meta["terms"]
    p = len(fm["fixef_names"])
    if rc["n_terms"] != len(terms) or len(fm["reterms"]) != len(terms):
        raise ModelFileError(f"{where}: the header lists {len(terms)} terms, {len(fm['reterms'])} "
                             f"random-effects designs and n_terms = {rc['n_terms']}")
    key = lambda t, g: (t[g], tuple(t["colnames"]), tuple(t["levels"]), t["correlated"])
    if sorted(key(t, "group") for t in terms) != sorted(key(t, "group_name") for t in fm["reterms"]):
        raise ModelFileError(f"{where}: the terms and the random-effects designs disagree "
                             "(groups, columns or levels)")
    pk = [len(t["colnames"]) for t in terms]
    lk = [len(t["levels"]) for t in terms]
    nth = sum(q * (q + 1) // 2 for q in pk)
    f8, i8 = "<f8", "<i8"
    exp = {"y": ((n,), f8), "X": ((n, p), f8), "offset": ((n,), f8), "weights": ((n,), f8),
           "rows": ((n,), i8), "theta": ((nth,), f8), "beta": ((p,), f8),
           "u": ((sum(a * b for a, b in zip(pk, lk)),), f8), "vcov": ((p, p), f8),
           "eta": ((n,), f8), "mu": ((n,), f8)}
    for k, t in enumerate(fm["reterms"]):
        exp[f"re{k}_codes"] = ((n,), i8)
        exp[f"re{k}_X"] = ((n, len(t["colnames"])), f8)
    for k in range(len(terms)):
        exp[f"b{k}"] = ((lk[k], pk[k]), f8)
        exp[f"T{k}"] = ((pk[k], pk[k]), f8)
        if rc["has_condvar"]:
            exp[f"condvar{k}"] = ((lk[k], pk[k], pk[k]), f8)
    return exp


def _check_labels(meta: dict, arrays: dict, where: str) -> None:
    """Stored labels consistent with the codes and with each other; parameters finite."""
    fm = meta["frame"]
    n = arrays["y"].shape[0]

    def unique(names, what):
        if len(set(names)) != len(names):
            raise ModelFileError(f"{where}: {what} are not unique")
    unique(fm["fixef_names"], "the fixed-effect names")
    for k, t in enumerate(fm["reterms"]):
        unique(t["levels"], f"the levels of {show_value(t['group_name'])}")
        unique(t["colnames"], f"the columns of term {k}")
        codes = arrays[f"re{k}_codes"]
        if codes.size and (codes.min() < 0 or codes.max() >= len(t["levels"])):
            raise ModelFileError(f"{where}: codes of grouping factor {show_value(t['group_name'])} lie "
                                 f"outside its {len(t['levels'])} levels (file edited or corrupted)")
    for name, lev in fm["xlevels"].items():
        unique(lev, f"the levels of factor {show_value(name)}")
    for name, ref in fm.get("xref", {}).items():
        if name not in fm["xlevels"] or not 0 <= ref < len(fm["xlevels"][name]):
            raise ModelFileError(f"{where}: the reference level of {show_value(name)} is not one of its levels")
    for name, v in fm.get("scale_params", {}).items():
        if len(v) != 2:
            raise ModelFileError(f"{where}: scale parameters of {show_value(name)} must be (centre, scale)")
    rows = arrays["rows"]
    if rows.size and (rows[0] < 0 or np.any(np.diff(rows) <= 0) or rows[-1] >= n + fm["n_dropped_na"]):
        raise ModelFileError(f"{where}: the stored row numbers are not increasing within the data's "
                             f"{n + fm['n_dropped_na']} rows")
    if fm["n_dropped_na"] < 0:
        raise ModelFileError(f"{where}: negative count of dropped rows")
    for k in ("theta", "beta", "y", "X", "weights", "offset"):
        if not np.all(np.isfinite(arrays[k])):
            raise ModelFileError(f"{where}: array {k!r} holds non-finite values")
    if np.any(arrays["weights"] < 0):
        raise ModelFileError(f"{where}: negative prior weights")
    rc, spec = meta["record"], meta.get("refit", {}) or {}
    if rc["kind"] not in ("glmm", "lmm"):
        raise ModelFileError(f"{where}: unknown model kind {show_value(rc['kind'])}")
    if not (rc["method"] in ("Laplace", "REML", "ML", "PQL") or re.fullmatch(r"nAGQ=\d{1,3}", rc["method"])):
        raise ModelFileError(f"{where}: unknown fitting method {show_value(rc['method'])}")
    if rc["n_params"] < 0:
        raise ModelFileError(f"{where}: negative number of parameters")
    kind = spec.get("kind")
    if kind is not None:
        ok = {"lmm": rc["kind"] == "lmm", "glmm": rc["kind"] == "glmm" and rc["method"] != "PQL",
              "pql": rc["method"] == "PQL"}.get(kind, False)
        if not ok:
            raise ModelFileError(f"{where}: refit kind {show_value(kind)} does not fit a "
                                 f"{show_value(rc['method'])} fit")
        if kind == "glmm" and (not isinstance(spec.get("nAGQ"), int) or not 0 <= spec["nAGQ"] <= 100
                               or spec.get("laplace") not in ("expected", "observed")):
            raise ModelFileError(f"{where}: refit settings nAGQ/laplace out of range")
        if kind == "lmm" and not isinstance(spec.get("REML"), bool):
            raise ModelFileError(f"{where}: refit setting REML missing")
        if kind == "pql" and (not isinstance(spec.get("niter"), int) or not 1 <= spec["niter"] <= 10 ** 6):
            raise ModelFileError(f"{where}: refit setting niter out of range")


def _read_file(path: Path, max_bytes: int | None):
    """(meta, arrays, version) of a model file, every check applied (see the module docstring)."""
    where = escape_controls(str(path))
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        signed = _verify_file_digest(f, size, where)
        f.seek(0)
        try:
            zf = zipfile.ZipFile(f)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as e:
            raise ModelFileError(f"{where} could not be read as a pyglmm model file (truncated or "
                                 f"corrupted?): {show_value(str(e))}") from None
        with zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ModelFileError(f"{where} has {len(infos)} members (limit {MAX_MEMBERS}): not "
                                     "a pyglmm model file")
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise ModelFileError(f"{where} holds two members of the same name (file edited)")
            for i in infos:
                if i.flag_bits & 0x1 or i.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                    raise ModelFileError(f"{where}: member {show_value(i.filename)} is encrypted or uses "
                                         "an unsupported compression")
            by_name = dict(zip(names, infos))
            if HEADER not in by_name:
                raise ModelFileError(f"{where} is not a pyglmm model file (no 'meta' record)")
            try:
                return _read_members(zf, by_name, size, signed, max_bytes, where)
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error) as e:
                raise ModelFileError(f"{where} could not be read as a pyglmm model file (truncated "
                                     f"or corrupted?): {show_value(str(e))}") from None


def _read_members(zf, by_name, size, signed, max_bytes, where):
    hinfo = by_name[HEADER]
    hlimit = min(MAX_HEADER_BYTES, max(4 << 20, HEADER_EXPANSION * hinfo.compress_size))
    if hinfo.file_size > hlimit + _NPY_HEADER_MAX:
        raise ModelFileError(f"{where}: the header member declares {hinfo.file_size} bytes "
                             f"(limit {hlimit})")
    shape, fortran, dtype, off = _npy_header(zf, hinfo, where)
    if dtype != np.uint8 or len(shape) != 1 or shape[0] > hlimit or hinfo.file_size != off + shape[0]:
        raise ModelFileError(f"{where}: the header member is not a byte string within "
                             f"{hlimit} bytes")
    raw = _read_data(zf, hinfo, shape, fortran, dtype, off, where).tobytes()
    meta = _parse_header(raw, where)
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{where} is not a pyglmm model file (format {show_value(meta.get('format'))})")
    v = meta.get("version")
    if not isinstance(v, int) or isinstance(v, bool) or v not in READABLE_VERSIONS:
        raise ModelFileError(f"{where} has model-file version {show_value(v)}; this pyglmm reads versions "
                             f"{list(READABLE_VERSIONS)}: upgrade pyglmm to read it")
    if v >= 2 and not signed:
        raise ModelFileError(f"{where}: a version-{v} model file must end with its whole-file "
                             "checksum, which is missing (file edited or re-packed); refusing to load it")
    _check(meta, SCHEMA_V1 if v == 1 else SCHEMA_V2, "header")
    listed = meta["digests"] if v == 1 else meta["arrays"]
    members = {k + ".npy" for k in listed} | {HEADER}
    unlisted = sorted(set(by_name) - members)
    if unlisted:
        raise ModelFileError(f"{where} holds member(s) its header does not list: "
                             f"{', '.join(show_value(u) for u in unlisted[:5])}; refusing to load it")
    missing = sorted(k for k in listed if k + ".npy" not in by_name)
    if missing:
        raise ModelFileError(f"{where}: array '{escape_controls(missing[0])}' is missing (file "
                             "truncated or edited)")
    # every member's .npy header against the manifest and the model's shapes, before any data
    heads = {k: _npy_header(zf, by_name[k + ".npy"], where) for k in listed}
    y_shape = heads["y"][0] if "y" in heads else None
    if y_shape is None or len(y_shape) != 1:
        raise ModelFileError(f"{where}: the response 'y' is missing or not a vector")
    exp = _expected_shapes(meta, int(y_shape[0]), where)
    nopt = exp["theta"][0][0] + exp["beta"][0][0] + 1        # theta, beta and a dispersion/shape
    for k, nd in (("opt_gradient", 1), ("opt_hessian", 2)):
        if v >= 2 and k in listed:
            shp = tuple(heads[k][0])
            if len(shp) != nd or not 0 <= shp[0] <= nopt:
                raise ModelFileError(f"{where}: array {k!r} has an impossible shape {shp}")
            exp[k] = ((shp[0],) * nd, "<f8")
    if set(exp) != set(listed):
        odd = sorted(set(exp) ^ set(listed))
        raise ModelFileError(f"{where}: the arrays do not match the model the header describes "
                             f"({', '.join(escape_controls(o) for o in odd[:5])})")
    total = 0
    for k, (shape_e, dt_e) in exp.items():
        shape, fortran, dtype, off = heads[k]
        if v == 1 and dt_e == "<i8" and dtype.str == "<i4":
            dt_e = "<i4"                   # version 1 kept the platform's integer codes
        if tuple(shape) != shape_e or dtype.str != dt_e:
            raise ModelFileError(f"{where}: array {escape_controls(k)!r} has shape {tuple(shape)} "
                                 f"and dtype {show_value(dtype.str)}; the header implies {shape_e} {dt_e}")
        if v >= 2:
            m_ = meta["arrays"][k]
            if tuple(m_["shape"]) != shape_e or m_["dtype"] != dt_e:
                raise ModelFileError(f"{where}: array {k!r} disagrees with the header's manifest")
        nbytes = int(np.prod(shape_e, dtype=object)) * dtype.itemsize
        if by_name[k + ".npy"].file_size != off + nbytes:
            raise ModelFileError(f"{where}: member {k!r} declares {by_name[k + '.npy'].file_size} "
                                 f"bytes, its array needs {off + nbytes}")
        total += nbytes
    budget = array_budget(size) if max_bytes is None else int(max_bytes)
    if total > budget:
        raise ModelFileError(f"{where} declares {total} bytes of arrays, more than the {budget} "
                             f"allowed for a file of {size} bytes; if you trust the file, pass "
                             f"load(path, max_bytes={total})")
    arrays = {}
    for k in exp:
        shape, fortran, dtype, off = heads[k]
        a = _read_data(zf, by_name[k + ".npy"], shape, fortran, dtype, off, where)
        want = meta["digests"][k] if v == 1 else meta["arrays"][k]["sha256"]
        if v == 1 and a.dtype != np.int64 and a.dtype.kind == "i":
            ok = _digest(a) == want
            a = a.astype(np.int64)
        else:
            ok = _digest(a) == want
        if not ok:
            raise ModelFileError(f"{where}: array '{k}' does not match its checksum (file edited "
                                 "or corrupted); refusing to load it")
        arrays[k] = a
    _check_labels(meta, arrays, where)
    return meta, arrays, v


# --- building the model ----------------------------------------------------------------------

def read_model_file(path, max_bytes: int | None = None) -> tuple[dict, dict, int]:
    """The checked contents of a model file written by `save`: (header with control characters
    escaped, arrays, format version). `pyglmm.load` builds the model from them."""
    path = model_path(path)
    if not path.is_file():
        bare = path.with_name(path.name[:-len(SUFFIX)])
        hint = (f"; {escape_controls(str(bare))} exists, but save() and load() both add '.npz' to "
                f"a name without it: rename the file to {escape_controls(path.name)}"
                if bare != path and bare.is_file() else "")
        raise ModelFileNotFoundError(f"no model file at {escape_controls(str(path))}{hint}")
    meta, arrays, v = _read_file(path, max_bytes)
    if v == 1:
        warnings.warn(f"{escape_controls(str(path))} is a version-1 model file: its arrays are "
                      "checked against their digests but its header is not covered by one; save it "
                      "again to write version 2", UserWarning, stacklevel=3)
    return _escape_all(meta), arrays, v
