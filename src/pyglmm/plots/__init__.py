"""Plots of fitted mixed models (matplotlib, imported only when a plot is drawn).

Every function returns a :class:`matplotlib.figure.Figure` attached to the Agg canvas: nothing
is shown and no display is needed; save with ``fig.savefig("file.png")``.

* :func:`caterpillar` - conditional modes with intervals, unusual groups highlighted
* :func:`qq_ranef` - normal Q-Q plots of the conditional modes
* :func:`residuals` - DHARMa-style simulated quantile residual diagnostics
"""
from ._ranef import caterpillar, qq_ranef
from ._residuals import residuals

__all__ = ["caterpillar", "qq_ranef", "residuals"]
