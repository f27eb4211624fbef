"""Profile-likelihood intervals against lme4's confint(profile(m)) (tests/reference/make_profile_fixtures.R)."""
import json
from pathlib import Path

import numpy as np
import pytest

import pyglmm

FIX = Path(__file__).parent / "reference" / "fixtures"


def _ref(name):
    d = json.loads((FIX / f"profile_{name}.json").read_text())
    return {r: (lo, hi) for r, lo, hi in zip(d["rows"], d["lower"], d["upper"])}


def test_cbpp_profile_intervals_match_lme4():
    ref = _ref("cbpp")
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     pyglmm.datasets.load_cbpp(), family="binomial")
    ci = m.confint(method="profile")
    assert list(ci.index) == list(ref)
    for r, (lo, hi) in ref.items():
        # lme4 interpolates a spline through profile points; pyglmm root-finds: ~1e-4 agreement
        assert ci.loc[r].iloc[0] == pytest.approx(lo, abs=2e-4), r
        assert ci.loc[r].iloc[1] == pytest.approx(hi, abs=2e-4), r


def test_rehab_profile_hours_and_sd():
    ref = _ref("rehab")
    m = pyglmm.glmer("incidents ~ treatment + gender + hours + (1 | rehab)", pyglmm.datasets.load_rehab(),
                     family="poisson")
    ci = m.confint(parm=[".sig01", "hours"], method="profile")
    for r in (".sig01", "hours"):
        np.testing.assert_allclose(ci.loc[r].values, ref[r], atol=5e-4)


def test_lmm_ml_profile_fixed_effects_and_refusals():
    ref = _ref("sleep_ml")
    ss = pyglmm.datasets.load_sleepstudy()
    m = pyglmm.lmer("Reaction ~ Days + (Days | Subject)", ss, REML=False)
    ci = m.confint(parm="beta_", method="profile")
    for r, v in ref.items():
        np.testing.assert_allclose(ci.loc[r].values, v, rtol=1e-5)
    with pytest.raises(NotImplementedError, match="REML=False"):
        pyglmm.lmer("Reaction ~ Days + (Days | Subject)", ss).confint(method="profile")


def test_lmm_ml_profile_of_sd_and_sigma():
    ref = _ref("dyestuff_ml")
    m = pyglmm.lmer("Yield ~ 1 + (1 | Batch)", pyglmm.datasets.load_dyestuff(), REML=False)
    ci = m.confint(method="profile")
    assert list(ci.index) == list(ref)
    for r, v in ref.items():
        np.testing.assert_allclose(ci.loc[r].values, v, rtol=3e-4)


def test_vector_term_sds_and_correlation_profile():
    """sd/cor parametrisation for a correlated (Days | Subject) term, ML LMM, against lme4."""
    ref = _ref("sleep_ml_theta")
    m = pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy(), REML=False)
    ci = m.confint(parm="theta_", method="profile")
    for r, v in ref.items():
        np.testing.assert_allclose(ci.loc[r].values, v, rtol=2e-4, atol=2e-4)
