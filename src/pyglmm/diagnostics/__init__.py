"""Model diagnostics: DHARMa-style simulated quantile residuals and tests, the Pearson
overdispersion check, latent-scale ICCs, median odds / rate ratios and a tidy table of the
conditional modes with intervals.

>>> from pyglmm import diagnostics
>>> r = diagnostics.quantile_residuals(m, nsim=250, seed=1)
>>> r.dispersion, r.zero_inflation, r.uniformity
>>> diagnostics.icc(m), diagnostics.median_ratio(m), diagnostics.overdispersion(m)
"""
from .overdispersion import OverdispersionResult, overdispersion
from .quantile import QuantileResiduals, SimulationTest, quantile_residuals, simulation_p_value
from .ranef import ranef_table
from .variance import ICCResult, icc, median_ratio

__all__ = ["quantile_residuals", "QuantileResiduals", "SimulationTest", "simulation_p_value",
           "overdispersion", "OverdispersionResult", "icc", "ICCResult", "median_ratio",
           "ranef_table"]
