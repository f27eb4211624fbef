"""The last line of defence of the public API: no internal exception type reaches the user.

Public functions and methods are wrapped so that pyglmm's own errors pass through unchanged and
anything else that escapes the numerics (LinAlgError, an overflow, numpy's broadcast errors, a
RecursionError of a deeply nested formula) becomes a pyglmm error that names the model formula
and says what to change, with the original exception chained. MemoryError, KeyboardInterrupt,
warnings raised as errors, NotImplementedError and ImportError pass through.
"""
from __future__ import annotations

import functools
import inspect
import linecache
import os

import numpy as np

from .errors import ArgumentTypeError, DataError, FitError, PyglmmError
from .formula.errors import FormulaError

__all__ = ["public_entry", "public_method"]

_PASS_THROUGH = (MemoryError, Warning, NotImplementedError, ImportError)
_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _raised_by_pyglmm(exc: BaseException) -> bool:
    """True when ``exc`` comes from a ``raise`` statement in pyglmm's own code (its message was
    written for the user), not from numpy, pandas, scipy or an operator inside pyglmm."""
    tb = exc.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    path = tb.tb_frame.f_code.co_filename
    if not os.path.abspath(path).startswith(_PKG_DIR):
        return False
    return linecache.getline(path, tb.tb_lineno).strip().startswith("raise")


def _convert(exc: Exception, formula: str, where: str) -> PyglmmError:
    """A pyglmm error for an exception that escaped the numerics, saying what to change."""
    f = f"{formula!r}" if formula else "the model"
    if isinstance(exc, RecursionError):
        return FormulaError(f"{where} {f}: the formula is nested too deeply to evaluate; remove "
                            "redundant parentheses or nested function calls", formula or "", 0)
    if isinstance(exc, np.linalg.LinAlgError):
        return FitError(
            f"{where} {f} failed: a matrix that must be positive definite is not ({exc}). Usually "
            "the fixed effects are collinear or on extreme scales, or the random effects are too "
            "many for the data: check for constant, duplicated or perfectly correlated columns, "
            "rescale variables with very large or tiny values, or simplify the random-effects terms")
    if isinstance(exc, (OverflowError, ZeroDivisionError, FloatingPointError)):
        return FitError(
            f"{where} {f} failed: numerical {type(exc).__name__} ({exc}); rescale variables with "
            "very large or tiny values (e.g. scale(x)) or simplify the model")
    if _raised_by_pyglmm(exc) and isinstance(exc, (ValueError, TypeError)):
        cls = ArgumentTypeError if isinstance(exc, TypeError) else DataError
        return cls(str(exc))
    return FitError(
        f"{where} {f} failed with an internal {type(exc).__name__}: {exc}. This is an input "
        "pyglmm does not check yet (or a bug): check the data for empty, constant, all-missing or "
        "extreme columns and the arguments' types; please report it with the data's shape")


def public_entry(fn, where: str = "fitting"):
    """Wrap a public entry point: pyglmm errors (and MemoryError, KeyboardInterrupt, warnings
    raised as errors) pass through, anything else becomes a pyglmm error naming the model
    formula, with the original chained."""
    @functools.wraps(fn)
    def entry(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PyglmmError:
            raise
        except _PASS_THROUGH:
            raise
        except Exception as exc:
            if args and isinstance(getattr(args[0], "formula", None), str):
                formula = args[0].formula           # a method of a fitted model
            else:
                formula = kwargs.get("formula", args[0] if args else "")
                formula = formula if isinstance(formula, str) else getattr(formula, "text", "")
            raise _convert(exc, formula, where) from exc
    entry.__wrapped_entry__ = True
    return entry




def public_method(check=None, name: str | None = None):
    """Decorate a MixedModel method: its arguments checked by ``check(self, arguments)`` (the
    bound arguments with defaults applied), then run under :func:`public_entry`."""
    def deco(fn):
        sig = inspect.signature(fn)
        label = name or fn.__name__
        inner = public_entry(fn, f"{label}() of")

        @functools.wraps(fn)
        def method(self, *args, **kwargs):
            if check is not None:
                try:
                    bound = sig.bind(self, *args, **kwargs)
                except TypeError as exc:
                    raise ArgumentTypeError(f"{label}(): {exc}") from None
                bound.apply_defaults()
                check(self, bound.arguments)
            return inner(self, *args, **kwargs)
        method.__wrapped_entry__ = True
        return method
    return deco
