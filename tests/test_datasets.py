"""Tests for pyglmm.datasets: shapes, dtypes, R factor level orders and the
determinism of the simulated data sets.  No R needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:
    import pyglmm  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pyglmm import datasets  # noqa: E402
from pyglmm.datasets import make_gamma_sim, make_rehab  # noqa: E402

EXPECTED = {
    # name: (shape, {column: dtype kind})
    "cbpp": ((56, 4), {"herd": "category", "incidence": "int64", "size": "int64",
                       "period": "category"}),
    "sleepstudy": ((180, 3), {"Reaction": "float64", "Days": "int64", "Subject": "category"}),
    "grouseticks": ((403, 7), {"INDEX": "category", "TICKS": "int64", "BROOD": "category",
                               "HEIGHT": "int64", "YEAR": "category", "LOCATION": "category",
                               "cHEIGHT": "float64"}),
    "verbagg": ((7584, 9), {"Anger": "int64", "Gender": "category", "item": "category",
                            "resp": "category", "id": "category", "btype": "category",
                            "situ": "category", "mode": "category", "r2": "category"}),
    "epil": ((236, 9), {"y": "int64", "trt": "category", "base": "int64", "age": "int64",
                        "V4": "int64", "subject": "int64", "period": "int64",
                        "lbase": "float64", "lage": "float64"}),
    "pastes": ((60, 4), {"strength": "float64", "batch": "category", "cask": "category",
                         "sample": "category"}),
    "penicillin": ((144, 3), {"diameter": "int64", "plate": "category", "sample": "category"}),
    "dyestuff": ((30, 2), {"Batch": "category", "Yield": "int64"}),
    "rehab": ((1000, 5), {"rehab": "int64", "treatment": "category", "gender": "category",
                          "hours": "float64", "incidents": "int64"}),
    "gamma_sim": ((600, 3), {"g": "category", "x": "float64", "y": "float64"}),
}


def test_list_datasets():
    assert datasets.list_datasets() == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shape_and_dtypes(name):
    df = datasets.load_dataset(name)
    shape, dtypes = EXPECTED[name]
    assert isinstance(df, pd.DataFrame)
    assert df.shape == shape
    assert list(df.columns) == list(dtypes)
    assert {c: str(t) for c, t in df.dtypes.items()} == dtypes
    for col in df.columns:
        if dtypes[col] == "category":
            assert not df[col].isna().any()
    assert df.select_dtypes("number").notna().all().all()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_named_loader_matches_load_dataset(name):
    loader = getattr(datasets, f"load_{name}")
    pd.testing.assert_frame_equal(loader(), datasets.load_dataset(name))
    assert loader.__doc__ and "rows" in loader.__doc__


def test_load_dataset_case_and_unknown():
    assert datasets.load_dataset("VerbAgg").shape == (7584, 9)
    assert datasets.load_dataset("Dyestuff").shape == (30, 2)
    with pytest.raises(KeyError):
        datasets.load_dataset("nope")


def cats(df, col):
    return list(df[col].cat.categories)


def test_level_orders_match_r():
    cbpp = datasets.load_cbpp()
    assert cats(cbpp, "period") == ["1", "2", "3", "4"]
    assert cats(cbpp, "herd") == [str(i) for i in range(1, 16)]
    assert cbpp["incidence"].sum() == 99 and cbpp["size"].sum() == 842

    va = datasets.load_verbagg()
    assert cats(va, "btype") == ["curse", "scold", "shout"]
    assert cats(va, "mode") == ["want", "do"]  # not alphabetical
    assert cats(va, "situ") == ["other", "self"]
    assert cats(va, "Gender") == ["F", "M"]
    assert cats(va, "r2") == ["N", "Y"]
    assert cats(va, "resp") == ["no", "perhaps", "yes"] and va["resp"].cat.ordered
    assert not va["btype"].cat.ordered
    items = cats(va, "item")
    assert len(items) == 24 and items[0] == "S1WantCurse" and items[12] == "S1DoCurse"
    assert items[9] == "S4wantCurse"  # R's level really has a lower-case 'w'
    assert cats(va, "id") == [str(i) for i in range(1, 317)]

    ss = datasets.load_sleepstudy()
    assert cats(ss, "Subject")[:3] == ["308", "309", "310"] and len(cats(ss, "Subject")) == 18
    assert ss["Reaction"].iloc[0] == 249.56

    gt = datasets.load_grouseticks()
    assert cats(gt, "YEAR") == ["95", "96", "97"]
    assert len(cats(gt, "BROOD")) == 118 and len(cats(gt, "LOCATION")) == 63
    assert cats(gt, "LOCATION")[:3] == ["1", "2", "3"]
    assert abs(gt["cHEIGHT"].mean()) < 1e-9

    ep = datasets.load_epil()
    assert cats(ep, "trt") == ["placebo", "progabide"]
    assert ep["subject"].nunique() == 59
    assert np.allclose(ep["lbase"], np.log(ep["base"] / 4) - np.log(ep["base"] / 4).mean())

    pa = datasets.load_pastes()
    assert cats(pa, "batch") == list("ABCDEFGHIJ")
    assert cats(pa, "cask") == ["a", "b", "c"]
    assert len(cats(pa, "sample")) == 30 and cats(pa, "sample")[:2] == ["A:a", "A:b"]

    pe = datasets.load_penicillin()
    assert cats(pe, "plate") == list("abcdefghijklmnopqrstuvwx")
    assert cats(pe, "sample") == list("ABCDEF")

    dy = datasets.load_dyestuff()
    assert cats(dy, "Batch") == list("ABCDEF")
    assert dy["Yield"].mean() == 1527.5


def test_levels_json_files_consistent():
    for name in EXPECTED:
        path = datasets.data_dir() / f"{name}.levels.json"
        levels = json.loads(path.read_text())
        df = datasets.load_dataset(name)
        for col, levs in levels.items():
            if col.startswith("_"):
                continue
            assert cats(df, col) == levs
        assert {c for c in df.columns if str(df[c].dtype) == "category"} == {
            c for c in levels if not c.startswith("_")
        }


def test_rehab_design():
    df = datasets.load_rehab()
    assert len(df) == 1000
    assert df["rehab"].nunique() == 110
    assert sorted(df["rehab"].unique()) == list(range(1, 111))
    sizes = df.groupby("rehab").size()
    assert sizes.min() >= 3 and sizes.max() > 2 * sizes.min()  # unbalanced
    assert (df.groupby("rehab")["hours"].nunique() == 1).all()  # centre constant
    hours = df.groupby("rehab")["hours"].first()
    assert hours.min() >= 2.0 and hours.max() <= 7.0
    assert 3.9 < hours.mean() < 4.5
    assert np.allclose(hours, hours.round(1))
    assert cats(df, "treatment") == ["standard", "new"]
    assert cats(df, "gender") == ["female", "male"]
    assert 0.4 < (df["treatment"] == "new").mean() < 0.6
    assert (df["incidents"] >= 0).all()


def test_rehab_regenerates_identical_bytes(tmp_path):
    shipped = datasets.data_dir() / "rehab.csv"
    out = make_rehab.write(tmp_path)
    assert out.read_bytes() == shipped.read_bytes()
    assert (tmp_path / "rehab.levels.json").read_bytes() == (
        datasets.data_dir() / "rehab.levels.json"
    ).read_bytes()
    # and the in-memory frame equals the loaded one
    gen = make_rehab.generate()
    loaded = datasets.load_rehab()
    pd.testing.assert_frame_equal(gen, loaded)


def test_rehab_other_seed_differs():
    a = make_rehab.to_csv_text(make_rehab.generate(make_rehab.SEED))
    b = make_rehab.to_csv_text(make_rehab.generate(make_rehab.SEED + 1))
    assert a != b


def test_gamma_sim_design_and_determinism(tmp_path):
    df = datasets.load_gamma_sim()
    assert len(df) == 600 and df["g"].nunique() == 40
    assert (df.groupby("g", observed=True).size() == 15).all()
    assert cats(df, "g") == [f"g{j:02d}" for j in range(1, 41)]
    assert (df["y"] > 0).all()
    out = make_gamma_sim.write(tmp_path)
    assert out.read_bytes() == (datasets.data_dir() / "gamma_sim.csv").read_bytes()
    pd.testing.assert_frame_equal(make_gamma_sim.generate(), df)


def test_loaders_return_fresh_copies():
    a = datasets.load_cbpp()
    a.loc[0, "incidence"] = 999
    assert datasets.load_cbpp().loc[0, "incidence"] == 2


FIXTURES = Path(__file__).resolve().parent / "reference" / "fixtures"


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="no reference fixtures")
def test_reference_fixtures_refer_to_shipped_data():
    """Each lme4/glmmTMB fixture was fitted to a shipped data set: its nobs
    and numbers of groups must agree with the data pyglmm loads."""
    # fixtures of other kinds, each with its own test: DHARMa statistics, read.csv's typing,
    # the glmmTMB fit to the simulated saturated-cloglog data (tests/test_stable_loglik.py)
    other = {"dharma_rehab", "read_csv_rules", "cloglog_saturated"}
    files = sorted(f for f in FIXTURES.glob("*.json") if f.stem not in other)
    assert files
    for f in files:
        fx = json.loads(f.read_text())
        assert fx["id"] == f.stem
        assert "error" not in fx, (fx["id"], fx.get("error"))
        df = datasets.load_dataset(fx["dataset"])
        assert fx["nobs"] == len(df), fx["id"]
        for grp, n in fx["ngroups"].items():
            if grp in df.columns:
                assert n == df[grp].nunique(), (fx["id"], grp)
        assert set(fx["fixef"]) == set(fx["se"]) == set(fx["vcov"]["names"])
