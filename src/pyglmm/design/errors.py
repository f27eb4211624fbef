"""DataError: the data cannot be turned into model arrays (message names the column/level/term)."""
from __future__ import annotations


class DataError(ValueError):
    """Problem with the data for a model (missing column, bad response, single-level factor, ...)."""
