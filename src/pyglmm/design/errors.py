"""DataError: the data cannot be turned into model arrays (message names the column/level/term)."""
from __future__ import annotations

from ..errors import DataError

__all__ = ["DataError"]
