"""CSV reading as R's read.csv (pyglmm.readers.read_csv and the CLI's `fit data.csv`).

The reference cases come from R 4.2.2 (tests/reference/read_csv_rules.R ->
tests/reference/fixtures/read_csv_rules.json); R is not needed to run these tests.
"""
from __future__ import annotations

import gzip
import json
import math
import os
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pyglmm import cli
from pyglmm.errors import ArgumentError, DataError
from pyglmm.readers import make_names, read_csv, sniff_sep

FIXTURE = Path(__file__).parent / "reference" / "fixtures" / "read_csv_rules.json"
R_CASES = json.loads(FIXTURE.read_text())["cases"]


def _write(tmp_path, text: str | bytes, name: str = "data.csv") -> str:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return str(path)


def _r_class(col) -> str:
    dtype = col.dtype
    if dtype == bool or str(dtype) == "boolean":
        return "logical"
    if dtype.kind == "i":
        return "integer"
    if dtype.kind == "f":
        return "numeric"
    return "character"


def _same_value(got, want) -> bool:
    if want is None:
        return pd.isna(got)
    if isinstance(want, str) and want in ("NaN", "Inf", "-Inf") and isinstance(got, float):
        return (math.isnan(got) and want == "NaN") or got == float(want.replace("Inf", "inf"))
    if isinstance(want, bool):
        return not pd.isna(got) and bool(got) is want
    if isinstance(want, (int, float)):
        return not pd.isna(got) and math.isclose(float(got), want, rel_tol=1e-14)
    return isinstance(got, str) and got == want


def _listify(v):
    return v if isinstance(v, list) else [v]


# ----------------------------------------------------------------------------- R agrees

@pytest.mark.parametrize("case", R_CASES, ids=[c["id"] for c in R_CASES])
def test_matches_r_read_csv(case, tmp_path):
    path = _write(tmp_path, case["text"])
    kw = {}
    if case.get("sep"):
        kw["sep"] = case["sep"]
    if case.get("dec"):
        kw["dec"] = case["dec"]
    if case.get("na_strings") is not None:
        kw["na_strings"] = _listify(case["na_strings"])
    if "error" in case:
        with pytest.raises(DataError, match=re.escape(path)):
            read_csv(path, **kw)
        return
    df = read_csv(path, **kw)
    names = _listify(case["names"])
    classes = _listify(case["classes"])
    columns = case["columns"] if isinstance(case["names"], list) else [case["columns"][0]]
    assert list(df.columns) == names
    for name, cls, want in zip(names, classes, columns):
        col = df[name]
        want_cls = cls
        if cls == "integer" and col.isna().any():
            want_cls = "numeric"                     # R's integer NA: float64 here
        assert _r_class(col) == want_cls, (name, col.dtype, cls)
        got = col.tolist()
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert _same_value(g, w), (name, got, want)


def test_na_is_missing_but_nan_is_a_value(tmp_path):
    # the model frame drops NaN like NA (R's na.omit does too), but the reader keeps R's values
    df = read_csv(_write(tmp_path, "n,s\n1,a\nNaN,NA\n,\nInf,nan\n"))
    assert df["n"].tolist()[0] == 1 and math.isnan(df["n"][1]) and df["n"][3] == np.inf
    assert df["s"].tolist()[0] == "a" and pd.isna(df["s"][1])
    assert df["s"].tolist()[2:] == ["", "nan"]


# ----------------------------------------------------------------------------- options and formats

def test_utf8_bom_is_not_part_of_the_first_name(tmp_path):
    df = read_csv(_write(tmp_path, b"\xef\xbb\xbfy,g\n1,a\n2,b\n"))
    assert list(df.columns) == ["y", "g"]
    assert df["y"].tolist() == [1, 2]


def test_semicolon_sniffed_with_decimal_comma(tmp_path):
    df = read_csv(_write(tmp_path, "y;x;g\n1,5;2;a\n2,25;3,5;b\n-0,5;4;c\n"))
    assert list(df.columns) == ["y", "x", "g"]
    assert df["y"].tolist() == [1.5, 2.25, -0.5]
    assert df["x"].tolist() == [2.0, 3.5, 4.0]
    assert df["g"].tolist() == ["a", "b", "c"]


def test_semicolon_with_decimal_point(tmp_path):
    df = read_csv(_write(tmp_path, "y;x\n1.5;2\n2.5;3\n"))
    assert df["y"].tolist() == [1.5, 2.5]


def test_dec_given_is_strict_as_in_r(tmp_path):
    # read.csv(sep = ";", dec = ","): "2.5" is not a number with "," as decimal mark
    df = read_csv(_write(tmp_path, "x;y\n1,5;2.5\n"), sep=";", dec=",")
    assert df["x"].tolist() == [1.5] and df["y"].tolist() == ["2.5"]


def test_tab_separated_sniffed_and_named(tmp_path):
    path = _write(tmp_path, "y\tg h\n1\ta b\n2\tc\n", "data.tsv")
    for df in (read_csv(path), read_csv(path, sep="\t"), read_csv(path, sep="tab")):
        assert list(df.columns) == ["y", "g.h"]
        assert df["g.h"].tolist() == ["a b", "c"]


def test_sniff_sep():
    assert sniff_sep("a,b;c") == "," and sniff_sep("a;b") == ";" and sniff_sep("a\tb") == "\t"
    assert sniff_sep("y") == ","


def test_na_strings_replace_the_default(tmp_path):
    path = _write(tmp_path, "a,b\nNone,1\nNA,None\n.,3\n")
    df = read_csv(path, na_strings=["None", "."])
    assert pd.isna(df["a"][0]) and df["a"][1] == "NA" and pd.isna(df["a"][2])
    assert pd.isna(df["b"][1]) and df["b"].dtype == np.float64


def test_text_columns_keep_ids_verbatim(tmp_path):
    path = _write(tmp_path, "id,y\n007,1\n010,2\nNA,3\n")
    assert read_csv(path)["id"].tolist()[:2] == [7.0, 10.0]          # as R's read.csv
    df = read_csv(path, text_columns=["id"])
    assert df["id"].tolist()[:2] == ["007", "010"] and pd.isna(df["id"][2])
    with pytest.raises(ArgumentError, match="'idd'"):
        read_csv(path, text_columns=["idd"])


def test_logical_columns(tmp_path):
    df = read_csv(_write(tmp_path, "a,b\nT,TRUE\nF,\nT,FALSE\n"))
    assert df["a"].dtype == bool and df["a"].tolist() == [True, False, True]
    assert str(df["b"].dtype) == "boolean" and pd.isna(df["b"][1])


def test_latin1_needs_encoding(tmp_path):
    path = _write(tmp_path, "y,g\n1,caf\xe9\n2,th\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not utf-8 text.*--encoding"):
        read_csv(path)
    assert read_csv(path, encoding="latin-1")["g"].tolist() == ["café", "thé"]


def test_utf16_file(tmp_path):
    path = _write(tmp_path, "y,g\n1,a\n2,b\n".encode("utf-16"))
    with pytest.raises(DataError, match="UTF-16"):
        read_csv(path)
    assert read_csv(path, encoding="utf-16")["g"].tolist() == ["a", "b"]


def test_make_names_as_r():
    # R 4.2: make.names(x, unique = TRUE)
    x = ["in", "for", "NA_real_", "function", "...", "..1", ".", ".a", "._", "a b-c", "ñ", "a$b",
         "1", "_", "x", "x", "X", "", "", "TRUE", "T", "Inf", "inf", "NULL", "a.1", "a", "a", "a.1"]
    assert make_names(x) == [
        "in.", "for.", "NA_real_.", "function.", "...", "..1", ".", ".a", "._", "a.b.c", "ñ", "a.b",
        "X1", "X_", "x", "x.1", "X", "X.1", "X.2", "TRUE.", "T", "Inf.", "inf", "NULL.", "a.1", "a",
        "a.2", "a.1.1"]


# ----------------------------------------------------------------------------- files that are not CSV

def test_empty_file(tmp_path):
    path = _write(tmp_path, "")
    with pytest.raises(DataError, match=rf"{re.escape(path)}: the file is empty"):
        read_csv(path)
    with pytest.raises(DataError, match="empty"):
        read_csv(_write(tmp_path, "\n\n  \n", "blank.csv"))


def test_header_only(tmp_path):
    path = _write(tmp_path, "y,g\n")
    with pytest.raises(DataError, match="header line but no data rows"):
        read_csv(path)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="is a directory"):
        read_csv(tmp_path)
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        read_csv(tmp_path / "nope.csv")


@pytest.mark.parametrize("content, message", [
    (gzip.compress(b"y,g\n1,a\n"), "gzip-compressed"),
    (b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "PNG image"),
    (b"PK\x03\x04" + b"\x14" * 40, "Excel .xlsx"),
    (b"y,g\n1,a\n2,\x00b\n", "NUL byte at offset 10"),
    (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), "not a text file"),
    (b"y,g\n1,\xff\xfe\n", "not utf-8 text"),
], ids=["gzip", "png", "xlsx", "nul", "random", "bad-utf8"])
def test_binary_files(tmp_path, content, message):
    path = _write(tmp_path, content, "data.csv")
    with pytest.raises(DataError, match=message) as e:
        read_csv(path)
    assert path in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_binary_device():
    with pytest.raises(DataError, match="/dev/zero: not a text file"):
        read_csv("/dev/zero")


def test_line_too_long(tmp_path):
    path = _write(tmp_path, b"y,g\n" + b"1" * 5000)
    with pytest.raises(DataError, match="a line longer than 1000 bytes"):
        read_csv(path, max_line_bytes=1000)
    assert read_csv(path, max_line_bytes=10_000)["y"].tolist() == [math.inf]    # 1e4999: Inf in R


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs a FIFO")
def test_endless_text_stream(tmp_path):
    fifo = tmp_path / "endless.csv"
    os.mkfifo(fifo)
    stop = threading.Event()

    def feed():
        try:
            with open(fifo, "wb") as fh:
                fh.write(b"y,g\n")
                while not stop.is_set():
                    fh.write(b"1,a\n" * 4096)
        except (BrokenPipeError, OSError):
            pass

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        with pytest.raises(DataError, match="more than 100000 bytes"):
            read_csv(fifo, max_bytes=100_000)
    finally:
        stop.set()
        t.join(5)


def test_too_many_fields_and_open_quote(tmp_path):
    path = _write(tmp_path, "x,y\n1,2\n3,4\n5,6\n7,8\n9,10\n11,12,13\n")
    with pytest.raises(DataError, match="line 7 has 3 fields"):
        read_csv(path)
    with pytest.raises(DataError, match="never closed"):
        read_csv(_write(tmp_path, 'x,y\n1,"a\n2,b\n', "quote.csv"))


def test_bad_arguments(tmp_path):
    path = _write(tmp_path, "y\n1\n")
    with pytest.raises(ArgumentError, match="--sep"):
        read_csv(path, sep=";;")
    with pytest.raises(ArgumentError, match="--encoding"):
        read_csv(path, encoding="no-such-codec")


# ----------------------------------------------------------------------------- the CLI end to end

def _groups_csv(tmp_path, *, sep=",", dec=".", bom=False, name="groups.csv") -> str:
    rng = np.random.default_rng(1)
    n = 60
    g = np.array(["None", "a", "b"])[np.arange(n) % 3]
    h = np.arange(n) % 6
    y = rng.normal(size=n) + (g == "None") * 2 + h * 0.3
    lines = [sep.join(["y", "g", "h"])]
    for i in range(n):
        lines.append(sep.join([f"{y[i]:.4f}".replace(".", dec), g[i], str(h[i])]))
    text = "\n".join(lines) + "\n"
    return _write(tmp_path, ("\ufeff" if bom else "") + text, name)


def test_cli_level_none_survives(tmp_path, capsys):
    path = _groups_csv(tmp_path)
    rc = cli.main(["fit", path, "y ~ g + (1 | h)"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert re.search(r"^gNone\s+\d", out, re.M)
    assert "Number of obs: 60, groups:  h, 6" in out


def test_cli_na_option_drops_none_rows(tmp_path, capsys):
    path = _groups_csv(tmp_path)
    for opts in (["--na", "NA,None"], ["--na", "NA", "--na", "None"]):
        rc = cli.main(["fit", path, "y ~ g + (1 | h)", *opts])
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert "gNone" not in out
        assert "Number of obs: 40, groups:  h, 4"   # h 0 and 3 only had None in out


def test_cli_semicolon_decimal_comma_and_bom(tmp_path, capsys):
    ref = _groups_csv(tmp_path)
    rc = cli.main(["fit", ref, "y ~ g + (1 | h)"])
    want, _ = capsys.readouterr()
    path = _groups_csv(tmp_path, sep=";", dec=",", bom=True, name="euro.csv")
    for opts in ([], ["--sep", ";", "--dec", ","]):
        rc = cli.main(["fit", path, "y ~ g + (1 | h)", *opts])
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert out.replace(path, ref) == want


def test_cli_logical_and_text_options(tmp_path, capsys):
    rng = np.random.default_rng(2)
    rows = ["y,t,id"] + [f"{rng.normal():.3f},{'T' if i % 2 else 'F'},{i % 5:03d}" for i in range(40)]
    path = _write(tmp_path, "\n".join(rows) + "\n")
    rc = cli.main(["fit", path, "y ~ t + (1 | id)", "--text", "id"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert re.search(r"^tTRUE\s", out, re.M)                   # T/F read as logical, as R
    assert "groups:  id, 5" in out


@pytest.mark.parametrize("make, message", [
    (lambda d: _write(d, ""), "the file is empty"),
    (lambda d: _write(d, "y,g\n"), "no data rows"),
    (lambda d: str(d), "is a directory"),
    (lambda d: str(d / "missing.csv"), "no such file"),
    (lambda d: _write(d, gzip.compress(b"y,g\n1,a\n"), "d.csv.gz"), "gzip"),
    (lambda d: _write(d, b"y,g\n" + b"7" * (17 << 20), "long.csv"), "a line longer than"),
], ids=["empty", "header-only", "directory", "missing", "gzip", "long-line"])
def test_cli_unreadable_files_one_line_error(tmp_path, capsys, make, message):
    path = make(tmp_path)
    rc = cli.main(["fit", path, "y ~ 1 + (1 | g)"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith(f"pyglmm: error: cannot read {path}: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_bad_csv_option(tmp_path, capsys):
    path = _groups_csv(tmp_path)
    rc = cli.main(["fit", path, "y ~ g + (1 | h)", "--sep", "::"])
    _, err = capsys.readouterr()
    assert rc == 2 and err.startswith("pyglmm: error: --sep") and err.count("\n") == 1


def test_many_rows_fast_route_agrees(tmp_path):
    # more than 10 000 distinct fields take the vectorised (pyarrow) route when available
    rng = np.random.default_rng(3)
    x = rng.normal(size=12_000) * 10.0 ** rng.integers(-5, 6, 12_000)
    fields = [repr(float(v)) for v in x]
    fields[:4] = [" 4 ", "0x10", "Inf", "1e"]                  # a few for the one-by-one route
    path = _write(tmp_path, "x;y\n" + "".join(f"{f};{f.replace('.', ',')}\n" for f in fields))
    df = read_csv(path)
    want = [4.0, 16.0, math.inf, 1.0] + [float(f) for f in fields[4:]]
    assert df["x"].tolist() == want and df["y"].tolist() == want
    assert df["x"].dtype == np.float64
