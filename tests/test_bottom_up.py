"""Bottom-up model building (issue #7): pyglmm.build_bottom_up and `pyglmm build`.

The rehab data are simulated (pyglmm/datasets/make_rehab.py) with a random treatment slope across
centres and a cross-level interaction treatment x hours, and no gender slope: the builder must
find the first two and not the third.
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import pyglmm
from pyglmm import cli, datasets
from pyglmm.building import BottomUpReport, StepRecord

ARGS = dict(response="incidents", group="rehab", lower=["treatment", "gender"], higher=["hours"],
            family="poisson")
FINAL = "incidents ~ treatment + gender + hours + treatment:hours + (1 + treatment | rehab)"


@pytest.fixture(scope="module")
def rehab():
    return datasets.load_rehab()


@pytest.fixture(scope="module")
def report(rehab):
    return pyglmm.build_bottom_up(rehab, **ARGS)


def test_runs_six_steps(report):
    assert isinstance(report, BottomUpReport)
    assert [s.number for s in report.steps] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(s, StepRecord) and s.decision for s in report.steps)
    assert report.steps[0].formulas == ["incidents ~ 1 + (1 | rehab)"]
    assert report.steps[1].formulas == ["incidents ~ treatment + gender + (1 | rehab)"]
    assert report.steps[2].formulas == ["incidents ~ treatment + gender + hours + (1 | rehab)"]
    assert report.final.formula == FINAL
    assert report.final_step == 6


def test_step2_assesses_each_lower_predictor(report):
    tab = report.step(2).tables["assessment of each lower-level predictor"]
    assert list(tab.index) == ["treatment", "gender"]
    assert tab.loc["treatment", "coefficient"] == "treatmentnew"
    # Wald z from the summary, and the drop-one LRT
    m2 = report.step(2).model
    assert tab.loc["gender", "z"] == pytest.approx(m2.coef_table().loc["gendermale", "z value"])
    assert (tab["LRT p"] < 1e-10).all() and (tab["LRT Df"] == 1).all()
    assert "step 2 without gender" in report.step(2).models


def test_step3_variance_reduction(report):
    s3 = report.step(3)
    v2, v3 = s3.extra["variance_step2"], s3.extra["variance_step3"]
    assert v3 < v2
    assert report.variance_reduction == pytest.approx((v2 - v3) / v2)
    assert 0.05 < report.variance_reduction < 0.2       # about 10% of the centre variance
    assert s3.tables["assessment of each higher-level predictor"].loc["hours", "LRT p"] < 0.01
    assert "explain 10.0% of the between-group variance" in report.to_text()


def test_step4_picks_treatment_slope_not_gender(report):
    s4 = report.step(4)
    tab = s4.tables["random-slope tests against the step-3 model"]
    assert tab.loc["treatment", "p mixture"] < 1e-6          # simulated sd 0.35: strong evidence
    assert tab.loc["treatment", "p mixture"] < tab.loc["treatment", "p naive"]
    assert tab.loc["gender", "p mixture"] > 0.5              # no gender slope in the simulation
    assert tab.loc["gender", "AIC gain"] < 0                 # and AIC agrees
    assert list(tab.index[tab["chosen"]]) == ["treatment"]
    assert report.chosen_slopes == ["treatment"]
    assert s4.model is None and set(s4.models) == {"step 4 slope treatment", "step 4 slope gender"}
    assert report.step(5).model.formula == "incidents ~ treatment + gender + hours + (1 + treatment | rehab)"


def test_step6_keeps_cross_level_interaction(report):
    tab = report.step(6).tables["cross-level interactions, each against the step-5 model"]
    assert list(tab.index) == ["treatment:hours"]
    assert tab.loc["treatment:hours", "p"] < 0.05
    assert tab.loc["treatment:hours", "Estimate"] < 0        # simulated -0.12
    assert report.chosen_interactions == [("treatment", "hours")]
    assert report.final.fixef["treatmentnew:hours"] == pytest.approx(-0.157, abs=0.01)


def test_text_report(report):
    text = str(report)
    assert text == report.to_text()
    for k in range(1, 7):
        assert f"Step {k}:" in text
    assert text.count("Decision:") == 6
    assert "p mixture" in text and "AIC" in text
    assert f"Final model (step 6): {FINAL}" in text
    assert "Random-intercept variance by step" in text


def test_html_report(report, tmp_path):
    path = tmp_path / "report.html"
    out = report.to_html(path)
    assert path.read_text(encoding="utf-8") == out
    assert out.count("<img") == 2
    assert len(re.findall(r"src='data:image/png;base64,[A-Za-z0-9+/=]{1000,}'", out)) == 2
    assert FINAL in out
    for k in range(1, 7):
        assert f"<h2>Step {k}:" in out


def test_stop_after(rehab):
    rep = pyglmm.build_bottom_up(rehab, **ARGS, stop_after=2)
    assert [s.number for s in rep.steps] == [1, 2]
    assert rep.final.formula == "incidents ~ treatment + gender + (1 | rehab)"
    assert rep.chosen_slopes is None and rep.variance_reduction is None
    assert "Step 3" not in rep.to_text()
    assert rep.to_html().count("<img") == 2


def test_force_overrides(rehab):
    # exclude the data-chosen slope: step 5 is the step-3 model, no interaction candidates
    rep = pyglmm.build_bottom_up(rehab, **ARGS, force={"exclude_slopes": ["treatment"]})
    assert rep.step(4).tables["random-slope tests against the step-3 model"].loc["treatment", "chosen"]
    assert rep.chosen_slopes == [] and rep.chosen_interactions == []
    assert rep.final.formula == "incidents ~ treatment + gender + hours + (1 | rehab)"
    # force a slope the data do not support, and an interaction
    rep = pyglmm.build_bottom_up(rehab, **ARGS, force={"slopes": ["gender"],
                                                       "interactions": [("hours", "gender")]})
    assert rep.chosen_slopes == ["gender"]
    assert rep.chosen_interactions == [("gender", "hours")]
    assert rep.final.formula == "incidents ~ treatment + gender + hours + gender:hours + (1 + gender | rehab)"
    assert "overridden by force" in rep.step(4).decision and "overridden by force" in rep.step(6).decision
    # drop the interaction the data keep
    rep = pyglmm.build_bottom_up(rehab, **ARGS, force={"interactions": []})
    assert rep.step(6).tables["cross-level interactions, each against the step-5 model"].loc[
        "treatment:hours", "p"] < 0.05
    assert rep.final.formula == "incidents ~ treatment + gender + hours + (1 + treatment | rehab)"


def test_aic_criterion_agrees(rehab):
    rep = pyglmm.build_bottom_up(rehab, **ARGS, criterion="aic")
    assert rep.chosen_slopes == ["treatment"]
    assert rep.chosen_interactions == [("treatment", "hours")]


def test_bad_arguments(rehab):
    with pytest.raises(ValueError, match="not found"):
        pyglmm.build_bottom_up(rehab, **{**ARGS, "lower": ["treatment", "age"]})
    with pytest.raises(ValueError, match="criterion"):
        pyglmm.build_bottom_up(rehab, **ARGS, criterion="bic")
    with pytest.raises(ValueError, match="stop_after"):
        pyglmm.build_bottom_up(rehab, **ARGS, stop_after=7)
    with pytest.raises(ValueError, match="unknown key"):
        pyglmm.build_bottom_up(rehab, **ARGS, force={"slope": ["treatment"]})
    with pytest.raises(ValueError, match="lower-level predictor"):
        pyglmm.build_bottom_up(rehab, **ARGS, force={"slopes": ["hours"]})
    with pytest.raises(ValueError, match="interaction"):
        pyglmm.build_bottom_up(rehab, **ARGS, force={"interactions": [("treatment", "gender")]})


def test_gaussian_and_missing_rows():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(30), 10)
    z = rng.normal(size=30)[g]
    x = rng.normal(size=g.size)
    y = 1 + 0.5 * x + 0.8 * z + rng.normal(size=30)[g] + rng.normal(size=g.size)
    d = pd.DataFrame({"y": y, "x": x, "z": z, "g": g})
    d.loc[[0, 5], "x"] = np.nan
    rep = pyglmm.build_bottom_up(d, response="y", group="g", lower="x", higher="z", stop_after=3)
    assert rep.settings["nobs"] == 298
    assert any("2 of 300 rows" in n for n in rep.notes)
    assert not rep.final.REML and rep.variance_reduction > 0.2


def test_cli_build(rehab, tmp_path, capsys):
    csv = tmp_path / "rehab.csv"
    rehab.to_csv(csv, index=False)
    html = tmp_path / "out.html"
    rc = cli.main(["build", str(csv), "--response", "incidents", "--group", "rehab",
                   "--lower", "treatment,gender", "--higher", "hours", "--family", "poisson",
                   "--html", str(html)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Step 6: Cross-level interactions" in out
    assert f"Final model (step 6): {FINAL}" in out      # CSV levels sort "new" first: same model
    assert html.exists() and html.read_text().count("<img") == 2
    rc = cli.main(["build", str(csv), "--response", "incidents", "--group", "rehab",
                   "--lower", "treatment,gender", "--higher", "hours", "--family", "poisson",
                   "--stop-after", "1"])
    out, err = capsys.readouterr()
    assert rc == 0 and "Step 1:" in out and "Step 2:" not in out
    rc = cli.main(["build", str(csv), "--response", "incidents", "--group", "rehab", "--lower", "age"])
    out, err = capsys.readouterr()
    assert rc == 2 and "not found" in err
