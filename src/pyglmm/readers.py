"""Reading delimited text files as R's ``read.csv`` does (what ``pyglmm fit data.csv`` uses).

:func:`read_csv` follows ``read.csv(file)`` with its defaults (``header = TRUE, sep = ",",
quote = "\\"", dec = ".", na.strings = "NA", strip.white = FALSE, check.names = TRUE,
fill = TRUE, blank.lines.skip = TRUE, comment.char = ""``) and ``type.convert``'s typing, checked
against R 4.2 by ``tests/reference/read_csv_rules.R`` (fixture ``read_csv_rules.json``).

Missing values
  * A field is missing when it equals one of ``na_strings`` exactly (default ``"NA"`` only; quoted
    or not; no white space is stripped, so ``" NA"`` is the string ``" NA"``). pandas' long default
    list ("None", "null", "N/A", "nan", "#N/A", ...) is *not* used: a level called "None" stays.
  * An empty or all-white-space field is missing in a logical or numeric column; in a character
    column it stays a string (``""``, ``" "``), as in R. Rows with fewer fields than the header are
    padded with empty fields.

Column types (``type.convert``: logical, else integer, else double, else character)
  * logical: every non-missing field is ``TRUE``, ``FALSE``, ``T`` or ``F`` (``true``/``True`` make
    the column character, as in R); a column with no non-missing field is logical NA.
  * numeric: decimal numbers with optional sign, leading/trailing white space, ``1.``, ``.5``,
    exponents (``1e5``; a bare ``1e`` is 1), hexadecimal (``0x10``), ``NaN``/``Inf``/``-Inf``/
    ``infinity`` in any case (``NaN``/``Inf`` are kept as values; the model frame drops NaN rows like
    NA, as R's ``na.omit`` does). A field beginning with ``NA`` (``NAN``, ``NA ``) is never a number.
    Integers (within R's 32-bit range) become ``int64``, others ``float64`` (``float64`` for an
    integer column with missing values). **Ids such as "007" become the number 7, as in R**: pass
    ``text_columns`` (the CLI's ``--text``), R's ``colClasses = "character"``, to keep them verbatim.
  * character: anything else, kept verbatim (white space included); the model frame makes it a
    factor with sorted levels, as R's model.frame does with a character column.

Names: the header goes through R's ``make.names(unique = TRUE)`` (``my col`` -> ``my.col``, a
repeated ``x`` -> ``x.1``, an empty name -> ``X``, ``1a`` -> ``X1a``, ``if`` -> ``if.``). When the
header has one field fewer than the first data lines, the first column holds row names and is
dropped (duplicates are an error, as in R).

Beyond ``read.csv`` (deliberate differences)
  * a UTF-8 byte-order mark is removed (R keeps it in the first name unless told
    ``fileEncoding = "UTF-8-BOM"``);
  * ``sep=None`` sniffs the separator from the header line: ``,`` if it has one, else ``;``, else
    a tab, else ``,``;
  * with a separator other than ``,`` and ``dec=None``, a column that is not numeric with ``.`` as
    decimal mark is tried with ``,`` (``1,5``), one column at a time; ``dec`` given is strict, as R;
  * a line with more fields than the header is an error (R wraps the extra fields onto a new row);
  * lines of only white space are skipped (R reads them as a row of empty fields);
  * complex numbers (``1i``) stay character (R makes a complex column).

Files that are not text (NUL bytes, gzip/zip/PNG/PDF/Parquet signatures, bytes that do not decode),
endless input (more than ``max_bytes``), a line longer than ``max_line_bytes``, empty or header-only
files, directories and missing files raise :class:`~pyglmm.errors.DataError` with a one-line message
naming the path.
"""
from __future__ import annotations

import codecs
import csv
import io
import os
import re
import stat
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import ArgumentError, DataError

__all__ = ["read_csv", "make_names", "sniff_sep", "MAX_BYTES", "MAX_LINE_BYTES"]

#: largest input read (a safety net against endless devices and pipes)
MAX_BYTES = 4 << 30
#: longest line (between line breaks) accepted; longer means binary or not line-based
MAX_LINE_BYTES = 16 << 20
_CHUNK = 1 << 20

_WS = " \t\n\r\f\v"
_LOGICAL = {"TRUE": True, "T": True, "FALSE": False, "F": False}
_INT_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_SPECIAL_RE = re.compile(r"([+-]?)(nan|inf|infinity)", re.ASCII | re.IGNORECASE)
_INT32_MAX = 2147483647

_SIGNATURES = [
    (b"\x1f\x8b", "gzip-compressed data", "decompress it first"),
    (b"PK\x03\x04", "a zip archive or Excel .xlsx workbook", "export the sheet as CSV"),
    (b"\x89PNG", "a PNG image", None),
    (b"%PDF", "a PDF document", None),
    (b"PAR1", "a Parquet file", "give it a .parquet extension"),
    (b"BZh", "bzip2-compressed data", "decompress it first"),
    (b"\xfd7zXZ\x00", "xz-compressed data", "decompress it first"),
    (b"\xd0\xcf\x11\xe0", "an Excel .xls (OLE) file", "export the sheet as CSV"),
    (b"\xff\xd8\xff", "a JPEG image", None),
]

_R_RESERVED = {"if", "else", "repeat", "while", "function", "for", "next", "break", "TRUE", "FALSE",
               "NULL", "Inf", "NaN", "NA", "NA_integer_", "NA_real_", "NA_character_",
               "NA_complex_", "in"}


def read_csv(path: str | os.PathLike, *, sep: str | None = None, dec: str | None = None,
             na_strings: Sequence[str] = ("NA",), encoding: str = "utf-8",
             text_columns: Iterable[str] = (), max_bytes: int = MAX_BYTES,
             max_line_bytes: int = MAX_LINE_BYTES) -> pd.DataFrame:
    """Read a delimited text file as R's ``read.csv`` would (see the module docstring).

    ``sep``: one character, or None to sniff; ``dec``: ``"."``, ``","`` or None (``"."``, with a
    per-column ``","`` fallback when the separator is not a comma); ``na_strings``: the fields that
    mean missing (R's ``na.strings``; replaces the default ``"NA"``); ``text_columns``: columns kept
    as text (R's ``colClasses = "character"``), by their name after ``make.names``.
    """
    label = os.fspath(path)
    sep = _check_char(sep, "--sep")
    dec = _check_char(dec, "--dec")
    if dec is not None and dec not in ".,":
        raise ArgumentError(f"--dec must be '.' or ',' (got {dec!r})")
    if sep is not None and sep in ('"', "\n", "\r") or (sep is not None and sep == dec):
        raise ArgumentError(f"--sep {sep!r} cannot be used" + (" (it is also the decimal mark)"
                                                               if sep == dec else ""))
    try:
        codec = codecs.lookup(encoding)
    except LookupError:
        raise ArgumentError(f"--encoding: unknown encoding {encoding!r}") from None
    na_set = set(na_strings)
    raw = _read_bytes(label, codec.name, max_bytes, max_line_bytes)
    text = _decode(raw, label, codec.name)
    if sep is None:
        sep = sniff_sep(_first_line(text))
    header, ncol = _first_records(text, label, sep)
    if codec.name == "utf-8":                 # parse the bytes (a str in StringIO costs 4 bytes/char)
        if raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
    else:
        raw = text.encode("utf-8")
    del text
    fields = _tokenize(raw, label, sep, ncol)
    del raw
    header_fields = list(header)
    row_names = None
    if len(header_fields) == ncol - 1:           # R: the first column holds row names
        row_names = fields[0]
        fields = fields[1:]
    elif len(header_fields) < ncol:
        raise DataError(f"cannot read {label}: more columns than column names (the header has "
                        f"{len(header_fields)} fields, the first lines up to {ncol})")
    if len(fields[0]) == 0:
        raise DataError(f"cannot read {label}: it has a header line but no data rows")
    if row_names is not None:
        dup = pd.Index(row_names).duplicated()
        if dup.any():
            raise DataError(f"cannot read {label}: the header has one field fewer than the data, so "
                            f"the first column holds row names (as in R), but row name "
                            f"{row_names[int(np.argmax(dup))]!r} is repeated")
    names = make_names(header_fields)
    text_set = set(text_columns)
    unknown = [c for c in text_set if c not in names]
    if unknown:
        raise ArgumentError(f"--text: column {unknown[0]!r} not found in {label} "
                            f"(columns: {', '.join(names)})")
    auto_dec = dec is None and sep != ","
    dec = dec or "."
    cols = {}
    for name, values in zip(names, fields):
        cols[name] = _convert(values, na_set, dec, auto_dec, as_text=name in text_set)
    return pd.DataFrame(cols)


def _check_char(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": " ", "pipe": "|"}
    value = named.get(value.lower(), value) if len(value) != 1 else value
    if len(value) != 1:
        raise ArgumentError(f"{what} must be a single character (got {value!r})")
    return value


def sniff_sep(header_line: str | Sequence[str]) -> str:
    """The separator of a header line: ``,`` if it has one, else ``;``, else a tab, else ``,``."""
    line = header_line if isinstance(header_line, str) else ",".join(header_line)
    for cand in (",", ";", "\t"):
        if cand in line:
            return cand
    return ","


# --------------------------------------------------------------------------- bytes and text

def _read_bytes(label: str, codec_name: str, max_bytes: int, max_line_bytes: int) -> bytes:
    try:
        st = os.stat(label)
    except FileNotFoundError:
        raise DataError(f"cannot read {label}: no such file") from None
    except OSError as e:
        raise DataError(f"cannot read {label}: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise DataError(f"cannot read {label}: it is a directory, not a file")
    if stat.S_ISREG(st.st_mode) and st.st_size > max_bytes:
        raise DataError(f"cannot read {label}: it has {st.st_size} bytes, more than the limit of "
                        f"{max_bytes}")
    wide = codec_name.startswith(("utf-16", "utf-32"))
    parts: list[bytes] = []
    total = 0
    since_newline = 0
    chunk_size = max(1, min(_CHUNK, max_line_bytes))
    try:
        with open(label, "rb") as fh:
            while True:
                chunk = fh.read(chunk_size)
                if not chunk:
                    break
                if not parts:
                    _check_signature(chunk, label, wide)
                if not wide and b"\x00" in chunk:
                    pos = total + chunk.index(b"\x00")
                    raise DataError(f"cannot read {label}: not a text file (binary data: NUL byte "
                                    f"at offset {pos})")
                total += len(chunk)
                if total > max_bytes:
                    raise DataError(f"cannot read {label}: more than {max_bytes} bytes "
                                    f"(endless input?)")
                last = max(chunk.rfind(b"\n"), chunk.rfind(b"\r"))
                if last < 0:
                    since_newline += len(chunk)
                else:                  # lines inside a chunk are shorter than the chunk (<= limit)
                    first = min(i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0)
                    since_newline += first
                    if since_newline <= max_line_bytes:
                        since_newline = len(chunk) - last - 1
                if since_newline > max_line_bytes:
                    raise DataError(f"cannot read {label}: a line longer than {max_line_bytes} "
                                    f"bytes (not a line-based text file?)")
                parts.append(chunk)
    except PermissionError:
        raise DataError(f"cannot read {label}: permission denied") from None
    except IsADirectoryError:
        raise DataError(f"cannot read {label}: it is a directory, not a file") from None
    except OSError as e:
        raise DataError(f"cannot read {label}: {e.strerror or e}") from None
    return b"".join(parts)


def _check_signature(head: bytes, label: str, wide: bool) -> None:
    if not wide and head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        raise DataError(f"cannot read {label}: it is UTF-16 text (save it as UTF-8, or give "
                        f"--encoding utf-16)")
    for magic, what, hint in _SIGNATURES:
        if head.startswith(magic):
            raise DataError(f"cannot read {label}: not a text file but {what}"
                            + (f" ({hint})" if hint else ""))


def _decode(raw: bytes, label: str, codec_name: str) -> str:
    if codec_name in ("utf-8", "utf-8-sig") and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    try:
        text = raw.decode(codec_name)
    except UnicodeDecodeError as e:
        raise DataError(f"cannot read {label}: not {codec_name} text (byte 0x{raw[e.start]:02x} at "
                        f"offset {e.start}); give --encoding, e.g. --encoding latin-1, or check that "
                        f"it is a text file") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise DataError(f"cannot read {label}: not a text file (binary data: NUL character)")
    return text


# --------------------------------------------------------------------------- records

def _records(text: str, sep: str):
    reader = csv.reader(_lines(text), delimiter=sep, quotechar='"',
                        doublequote=True, strict=False)
    for rec in reader:
        if not rec or (len(rec) == 1 and not rec[0].strip(_WS)):
            continue                          # blank line (pandas and R skip it)
        yield rec


_NEWLINE = re.compile(r"\r\n|\r|\n")


def _lines(text: str):
    """The lines of ``text``, line breaks kept, lazily (no copy of the whole text)."""
    pos, n = 0, len(text)
    while pos < n:
        m = _NEWLINE.search(text, pos)
        end = m.end() if m else n
        yield text[pos:end]
        pos = end


def _first_line(text: str) -> str:
    for line in _lines(text):
        if line.strip(_WS):
            return line
    return ""


def _first_records(text: str, label: str, sep: str) -> tuple[list[str], int]:
    """The header's fields and R's column count: the most fields among the first five lines."""
    first = []
    try:
        for rec in _records(text, sep):
            first.append(rec)
            if len(first) == 5:
                break
    except csv.Error as e:
        raise DataError(f"cannot read {label}: {e}") from None
    if not first:
        raise DataError(f"cannot read {label}: the file is empty (no header line)")
    return first[0], max(len(r) for r in first)


_FIELDS_RE = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_EOF_RE = re.compile(r"EOF inside string starting at row (\d+)")


def _tokenize(raw: bytes, label: str, sep: str, ncol: int) -> list[np.ndarray]:
    """The data records (header dropped) as ``ncol`` object arrays of strings; short rows padded
    with ""."""
    try:
        df = pd.read_csv(io.BytesIO(raw), encoding="utf-8", sep=sep, header=None, names=list(range(ncol)),
                         index_col=False, dtype=object, na_filter=False, keep_default_na=False,
                         quotechar='"', doublequote=True, skip_blank_lines=True, engine="c",
                         skipinitialspace=False, comment=None, escapechar=None)
    except pd.errors.ParserError as e:
        msg = str(e)
        m = _FIELDS_RE.search(msg)
        if m:
            raise DataError(f"cannot read {label}: line {m.group(2)} has {m.group(3)} fields, but the "
                            f"header and first lines have {ncol} (R would wrap the extra fields "
                            f"onto a new row)") from None
        m = _EOF_RE.search(msg)
        if m:
            raise DataError(f"cannot read {label}: a quote opened in record {int(m.group(1)) + 1} is "
                            f"never closed") from None
        raise DataError(f"cannot read {label}: {msg.strip().splitlines()[-1]}") from None
    except (ValueError, MemoryError) as e:
        raise DataError(f"cannot read {label}: {str(e).strip().splitlines()[0]}") from None
    out = []
    for j in range(ncol):
        out.append(df[j].to_numpy(dtype=object)[1:])
    return out


# --------------------------------------------------------------------------- names

def make_names(names: Sequence[str]) -> list[str]:
    """R's ``make.names(names, unique = TRUE)`` (in a UTF-8 locale)."""
    out = []
    for name in names:
        chars = [c if (c.isalnum() or c in "._") else "." for c in name]
        s = "".join(chars)
        if not s or not (s[0].isalpha() or s[0] == ".") or (s[0] == "." and len(s) > 1
                                                              and s[1].isdigit()):
            s = "X" + s
        if s in _R_RESERVED:
            s += "."
        out.append(s)
    return _make_unique(out)


def _make_unique(names: list[str]) -> list[str]:
    """R's ``make.unique(names, sep = ".")``."""
    taken = set(names)
    seen: set[str] = set()
    counts: dict[str, int] = {}
    out = []
    for s in names:
        if s in seen:
            k = counts.get(s, 1)
            while f"{s}.{k}" in taken:
                k += 1
            counts[s] = k + 1
            new = f"{s}.{k}"
            taken.add(new)
            out.append(new)
        else:
            seen.add(s)
            out.append(s)
    return out


# --------------------------------------------------------------------------- types

def _number_re(dec: str) -> re.Pattern:
    d = re.escape(dec)
    return re.compile(rf"([+-]?)(?:([0-9]+)(?:{d}([0-9]*))?|{d}([0-9]+))(?:[eE]([+-]?[0-9]*))?",
                      re.ASCII)


def _hex_re(dec: str) -> re.Pattern:
    d = re.escape(dec)
    return re.compile(rf"([+-]?)0[xX]([0-9a-fA-F]*)(?:{d}([0-9a-fA-F]*))?(?:[pP]([+-]?[0-9]*))?",
                      re.ASCII)


_NUMBER = {d: (_number_re(d), _hex_re(d)) for d in ".,"}


def _parse_number(field: str, dec: str) -> tuple[float, bool] | None:
    """R's ``type.convert`` on one non-blank field: (value, is_integer) or None if not a number."""
    if field.startswith("NA"):
        return None
    s = field.strip(_WS)
    num_re, hex_re = _NUMBER[dec]
    m = num_re.fullmatch(s)
    if m:
        sign, ip, fp, fp_only, ex = m.groups()
        mant = f"{ip or '0'}.{fp or fp_only or ''}"
        if ex and ex not in "+-":
            mant += "e" + ex
        value = float(sign + mant)
        is_int = (fp is None and fp_only is None and ex is None and _INT_RE.fullmatch(s) is not None
                  and abs(value) <= _INT32_MAX)
        return value, is_int
    m = _SPECIAL_RE.fullmatch(s)
    if m:
        word = m.group(2).lower()
        value = float("nan") if word == "nan" else float("inf")
        return (-value if m.group(1) == "-" else value), False
    m = hex_re.fullmatch(s)
    if m:
        sign, ip, fp, ex = m.groups()
        digits = (ip or "") + (fp or "")
        if not digits:
            return None
        value = float(int(digits, 16))
        if ex is not None:                 # R: the binary exponent also shifts the fraction digits
            e = int(ex) if ex not in ("", "+", "-") else 0
            if fp is not None:
                e -= 4 * len(fp)
            try:
                value = value * 2.0 ** e
            except OverflowError:
                value = float("inf")
        return (-value if sign == "-" else value), False
    return None


_SIMPLE = {d: re.compile(rf"[ \t\n\r\f\v]*[+-]?(?:[0-9]+(?:{re.escape(d)}[0-9]*)?|{re.escape(d)}[0-9]+)"
                         rf"(?:[eE][+-]?[0-9]+)?[ \t\n\r\f\v]*", re.ASCII).fullmatch for d in ".,"}
_SIMPLE_INT = re.compile(r"[ \t\n\r\f\v]*[+-]?[0-9]{1,10}[ \t\n\r\f\v]*", re.ASCII).fullmatch


def _convert(values: np.ndarray, na_set: set[str], dec: str, auto_dec: bool, as_text: bool):
    """One column as R's type.convert would type it (values: the fields, an object array)."""
    n = len(values)
    codes, uniq = pd.factorize(values, use_na_sentinel=False)
    # a padded field could come back as NaN from some pandas versions: an empty field
    uniq = np.array([u if type(u) is str else "" for u in uniq], dtype=object)
    u_na = np.array([u in na_set for u in uniq], dtype=bool)
    if as_text:
        return _character(uniq, codes, u_na)
    u_blank = np.array([not u.strip(_WS) for u in uniq], dtype=bool) & ~u_na
    skip = u_na | u_blank
    cand = uniq[~skip]
    missing = skip[codes]
    if len(cand) == 0:                                   # nothing but NA: R's logical NA column
        return pd.array([None] * n, dtype="boolean")
    if all(c in _LOGICAL for c in cand):
        lut = np.array([_LOGICAL.get(u, False) for u in uniq], dtype=bool)
        vals = lut[codes]
        if missing.any():
            return pd.arrays.BooleanArray(vals, missing)
        return vals
    for d in ((dec, ",") if auto_dec and dec != "," else (dec,)):
        parsed = _numeric(uniq, skip, cand, d)
        if parsed is not None:
            lut, is_int = parsed
            vals = lut[codes]
            if is_int and not missing.any():
                return vals.astype(np.int64)
            vals[missing] = np.nan
            return vals
    return _character(uniq, codes, u_na)


def _numeric(uniq: np.ndarray, skip: np.ndarray, cand: np.ndarray, dec: str):
    """Values of the unique fields (NaN where skipped) and whether all are R integers, or None
    if one is not a number. Plain decimals take a fast route; others (hex, Inf, 1e) one by one."""
    lut = np.full(len(uniq), np.nan)
    idx = np.flatnonzero(~skip)
    fast = _arrow_decimals(cand, dec) if len(cand) > 10_000 else None
    if fast is not None:
        ok, values = fast
        lut[idx[ok]] = values
    else:
        ok = np.fromiter(map(bool, map(_SIMPLE[dec], cand)), dtype=bool, count=len(cand))
        easy = cand[ok] if dec == "." else np.array([c.replace(",", ".") for c in cand[ok]],
                                                    dtype=object)
        lut[idx[ok]] = easy.astype(np.float64)      # float() of an R-valid decimal: R's value
    all_int = all(map(_SIMPLE_INT, cand[ok]))
    for i, u in zip(idx[~ok], cand[~ok]):          # hex, Inf, NaN, 1e, ...: one by one
        r = _parse_number(u, dec)
        if r is None:
            return None
        lut[i] = r[0]
        all_int = all_int and r[1]
    return lut, bool(all_int and np.all(np.abs(lut[idx]) <= _INT32_MAX))


def _arrow_decimals(cand: np.ndarray, dec: str):
    """The plain-decimal test and values of many fields at once through pyarrow (RE2 and a
    correctly rounded cast, as Python's float()); None without pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
    except ImportError:
        return None
    arr = pa.array(cand, type=pa.string())
    ok = pc.match_substring_regex(arr, "^" + _SIMPLE[dec].__self__.pattern + "$")
    ok = ok.to_numpy(zero_copy_only=False)
    if not ok.any():
        return ok, np.empty(0)
    good = pc.utf8_trim(arr.filter(pa.array(ok)), characters=_WS)
    if dec != ".":
        good = pc.replace_substring(good, dec, ".")
    return ok, pc.cast(good, pa.float64()).to_numpy(zero_copy_only=False)


def _character(uniq: np.ndarray, codes: np.ndarray, u_na: np.ndarray):
    """The fields as strings, verbatim, NA where they are an NA string."""
    lut = uniq.copy()
    lut[u_na] = np.nan
    return pd.Series(lut[codes]).array       # pandas 3: its str dtype; earlier: object
