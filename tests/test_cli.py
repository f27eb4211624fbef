"""The command line (`pyglmm fit`, `pyglmm demo`), run in-process through pyglmm.cli.main."""
from __future__ import annotations

import re

import pytest

from pyglmm import cli, datasets

CBPP_FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "cbpp.csv"
    datasets.load_cbpp().to_csv(path, index=False)
    return str(path)


def _check_cbpp_summary(out: str, data_label: str) -> None:
    assert "Laplace" in out and "Approximation)" in out
    assert "Laplace Approximation" in out.replace("\n  ", " ")
    assert " Family: binomial  ( logit )" in out
    assert f"   Data: {data_label}" in out
    assert re.search(r"^ herd\s+\(Intercept\)", out, re.M)
    assert "Number of obs: 56, groups:  herd, 15" in out
    assert re.search(r"^period2\s+-0\.99", out, re.M)
    # the AIC table: AIC 194.1 (lme4: 194.1 as well)
    aic_line = out.splitlines()[out.splitlines().index("     AIC      BIC   logLik deviance df.resid") + 1]
    assert aic_line.split()[0] == "194.1"
    assert aic_line.split()[-1] == "51"


def test_fit_csv_with_factor_option(cbpp_csv, capsys):
    rc = cli.main(["fit", cbpp_csv, CBPP_FORMULA, "--family", "binomial", "--factor", "period"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    _check_cbpp_summary(out, cbpp_csv)


def test_fit_csv_numeric_column_stays_numeric(cbpp_csv, capsys):
    # without --factor, period is read from the CSV as a number (one slope), as R's read.csv does
    rc = cli.main(["fit", cbpp_csv, CBPP_FORMULA, "--family", "binomial"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert re.search(r"^period\s+-0\.\d+", out, re.M)
    assert "period2" not in out


def test_fit_bad_column(cbpp_csv, capsys):
    rc = cli.main(["fit", cbpp_csv, "cbind(incidence, size - incidence) ~ perod + (1 | herd)",
                   "--family", "binomial"])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert err.startswith("pyglmm: error:")
    assert "'perod'" in err and "did you mean 'period'" in err


def test_fit_bad_factor_option(cbpp_csv, capsys):
    rc = cli.main(["fit", cbpp_csv, CBPP_FORMULA, "--family", "binomial", "--factor", "perid"])
    _, err = capsys.readouterr()
    assert rc == 2 and "'perid'" in err


def test_fit_missing_file(tmp_path, capsys):
    rc = cli.main(["fit", str(tmp_path / "nope.csv"), CBPP_FORMULA, "--family", "binomial"])
    _, err = capsys.readouterr()
    assert rc == 2 and "nope.csv" in err


def test_fit_parquet_keeps_factors(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    path = tmp_path / "cbpp.parquet"
    datasets.load_cbpp().to_parquet(path)       # categoricals survive a Parquet round trip
    rc = cli.main(["fit", str(path), CBPP_FORMULA, "--family", "binomial"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    _check_cbpp_summary(out, str(path))


def test_fit_gaussian_uses_lmer(tmp_path, capsys):
    path = tmp_path / "sleep.csv"
    datasets.load_sleepstudy().to_csv(path, index=False)
    rc = cli.main(["fit", str(path), "Reaction ~ Days + (Days | Subject)"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert out.startswith("Linear mixed model fit by REML")
    assert "REML criterion at convergence: 1743.6" in out


def test_demo(capsys):
    rc = cli.main(["demo"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    positions = [out.index(title) for title, _ in cli.DEMO_STEPS]
    assert positions == sorted(positions)
    for _, formula in cli.DEMO_STEPS:
        assert f"Formula: {formula}" in out
    assert out.count("   Data: rehab") == 5
    lrt = re.findall(r"LRT against previous step: Chisq = ([\d.]+), Df = (\d+), p = (\S+)", out)
    assert len(lrt) == 4                     # steps 2-5 are each compared with the step before
    assert [int(df) for _, df, _ in lrt] == [2, 1, 2, 1]
    assert all(float(chisq) > 0 for chisq, _, _ in lrt)
    assert all(0 <= float(p) < 0.05 for _, _, p in lrt)
    assert out.count("(fitted in ") == 5
