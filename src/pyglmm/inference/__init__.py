"""Inference for fitted mixed models: likelihood-ratio tests (lme4's ``anova``), boundary-corrected
tests of variance components, Wald tests of fixed-effect terms (``car::Anova``), exponentiated
coefficients and confidence intervals (lme4's ``confint``)."""
from __future__ import annotations

from .confint import confint, confint_wald, parameter_names, register_method
from .bootstrap import BootResult, boot, confint_boot  # registers method="boot"
from .profile import confint_profile  # registers method="profile"
from .lrt import AnovaTable, BoundaryLRT, NotNestedWarning, anova, lrt_boundary, mixture_pvalue
from .terms import FixedTerm, term_columns
from .wald import WaldTable, exp_fixef, ratio_label, wald_tests

__all__ = ["anova", "lrt_boundary", "mixture_pvalue", "wald_tests", "exp_fixef", "confint",
           "confint_wald", "register_method", "parameter_names", "term_columns", "ratio_label",
           "AnovaTable", "BoundaryLRT", "WaldTable", "FixedTerm", "NotNestedWarning", "boot",
           "BootResult", "confint_boot", "confint_profile"]
