"""simulate() and refit(): moments of simulated responses, and refits recover the model."""
import numpy as np

import pyglmm


def test_lmm_simulation_moments():
    m = pyglmm.lmer("Reaction ~ Days + (Days | Subject)", pyglmm.datasets.load_sleepstudy())
    Y = m.simulate(4000, seed=42)
    fr = m.frame
    mean = fr.X @ m.fixef.values
    S = m.covariances[0]
    z = fr.reterms[0].X
    var = np.einsum("ij,jk,ik->i", z, S, z) + m.sigma ** 2
    np.testing.assert_allclose(Y.mean(axis=1), mean, atol=4 * np.sqrt(var.max() / 4000))
    np.testing.assert_allclose(Y.var(axis=1), var, rtol=0.1)


def test_conditional_simulation_uses_modes():
    m = pyglmm.glmer("incidents ~ treatment + gender + hours + (1 | rehab)",
                     pyglmm.datasets.load_rehab(), family="poisson")
    Y = m.simulate(3000, seed=1, re_form=None)
    np.testing.assert_allclose(Y.mean(axis=1), m.fitted, rtol=0.12, atol=0.15)


def test_refit_recovers_parameters_on_simulated_binomial():
    m = pyglmm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)",
                     pyglmm.datasets.load_cbpp(), family="binomial")
    again = m.refit(m.frame.y)
    np.testing.assert_allclose(again.fixef.values, m.fixef.values, rtol=1e-6)
    Y = m.simulate(40, seed=3)
    est = np.array([m.refit(Y[:, i]).fixef.values for i in range(40)])
    se = m.se.values
    # the average over 40 refits is within ~3 standard errors / sqrt(40) of the truth
    assert np.all(np.abs(est.mean(axis=0) - m.fixef.values) < 3.5 * se / np.sqrt(40) + 0.05)
