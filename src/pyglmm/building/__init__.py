"""Bottom-up multilevel model building (Hox 2010), as taught in the GLMM introduction.

:func:`build_bottom_up` runs the six steps — null model, lower-level predictors, higher-level
predictors, random slopes one at a time, all chosen slopes together, cross-level interactions —
fits every model, and returns a :class:`BottomUpReport` (``.steps``, ``.final``, ``.to_text()``,
``.to_html()``).
"""
from __future__ import annotations

from .builder import build_bottom_up
from .report import BottomUpReport, StepRecord

__all__ = ["build_bottom_up", "BottomUpReport", "StepRecord"]
