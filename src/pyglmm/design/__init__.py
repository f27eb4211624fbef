"""From a parsed formula and a data table to model arrays: response, fixed X, offsets, weights, random terms."""
from __future__ import annotations

from .data import to_pandas
from .errors import DataError
from .frame import ModelFrame, ReTermDesign, lme4_term_order, model_frame

__all__ = ["DataError", "ModelFrame", "ReTermDesign", "lme4_term_order", "model_frame", "to_pandas"]
