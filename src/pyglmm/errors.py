"""pyglmm's error types: one base class, so callers can catch every pyglmm error at once.

Each concrete type also derives from the builtin a user would expect (``ValueError`` for bad
data, formulas and arguments, ``TypeError`` for arguments of the wrong type, ``RuntimeError``
for a fit that cannot proceed), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

__all__ = ["PyglmmError", "DataError", "ArgumentError", "ArgumentTypeError", "FitError",
           "ModelFileError"]


class PyglmmError(Exception):
    """Base class of every error pyglmm raises on purpose."""


class DataError(PyglmmError, ValueError):
    """Problem with the data for a model (missing column, bad response, single-level factor, ...)."""


class ArgumentError(PyglmmError, ValueError):
    """An argument value out of range or not allowed; the message names the argument."""


class ArgumentTypeError(PyglmmError, TypeError):
    """An argument of the wrong type; the message names the argument and the expected type."""


class FitError(PyglmmError, RuntimeError):
    """The fit cannot proceed (PIRLS diverged, a matrix is singular); the message says what to change."""


class ModelFileError(PyglmmError, ValueError):
    """A model file that cannot be read: wrong format, tampered, truncated or too new."""
