"""pyglmm: generalized linear mixed models in lme4 formula syntax, fitted as lme4 fits them.

>>> import pyglmm
>>> rehab = pyglmm.datasets.load_rehab()
>>> m = pyglmm.glmer("incidents ~ treatment + gender + hours + (1 | rehab)", rehab, family="poisson")
>>> print(m.summary())
"""
from . import datasets
from .errors import ArgumentError, ArgumentTypeError, FitError, PyglmmError
from .design import DataError
from .families import make_family
from .formula import FormulaError, parse_formula
from .inference import anova, confint, exp_fixef, lrt_boundary, wald_tests
from .io import ModelFileError
from .loading import load
from .models import glmer, lmer
from .building import build_bottom_up  # noqa: F401  (bottom-up model building, Hox 2010)
from .pql import glmmPQL
from .results.model import ConvergenceWarning, MixedModel

from .version import __version__

__all__ = ["glmer", "lmer", "glmmPQL", "datasets", "make_family", "parse_formula", "MixedModel",
           "FormulaError", "DataError", "ConvergenceWarning", "__version__",
           "load", "ModelFileError", "PyglmmError", "ArgumentError", "ArgumentTypeError", "FitError", "build_bottom_up", "anova", "lrt_boundary", "wald_tests", "exp_fixef", "confint"]
