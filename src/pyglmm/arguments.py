"""Checks of the public functions' arguments: each names the argument and the function.

ArgumentTypeError (a TypeError) for a value of the wrong type, ArgumentError (a ValueError) for a
value out of range: a truthy string such as REML="FALSE" must not quietly fit a different model.
"""
from __future__ import annotations

import numpy as np

from .errors import ArgumentError, ArgumentTypeError
from .formula import ParsedFormula, not_a_formula


def _type_name(value) -> str:
    return type(value).__name__


def arg_formula(formula, fn: str) -> None:
    """A formula is a string (or an already parsed formula)."""
    if not isinstance(formula, (str, ParsedFormula)):
        raise ArgumentTypeError(f"{fn}(): {not_a_formula(formula)}")


def arg_bool(name: str, value, fn: str, allow_none: bool = False) -> bool | None:
    """True/False (Python or numpy); None too when ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    what = "True, False or None" if allow_none else "True or False"
    raise ArgumentTypeError(f"{fn}(): {name} must be {what}, not {_type_name(value)} {value!r}")


def arg_int(name: str, value, fn: str, *, lo: int | None = None, hi: int | None = None,
            what: str = "") -> int:
    """A whole number (Python or numpy integer, not a bool or float) within [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"{fn}(): {name} must be an integer{what}, not "
                                f"{_type_name(value)} {value!r}")
    v = int(value)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise ArgumentError(f"{fn}(): {name} must be an integer {rng}{what}; got {v}")
    return v


def arg_level(name: str, value, fn: str) -> float:
    """A confidence level strictly between 0 and 1."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ArgumentTypeError(f"{fn}(): {name} must be a number between 0 and 1 (e.g. 0.95), "
                                f"not {_type_name(value)} {value!r}")
    if not 0 < float(value) < 1:
        raise ArgumentError(f"{fn}(): {name} must be between 0 and 1 (e.g. 0.95); got {value!r}")
    return float(value)


def arg_seed(name: str, value, fn: str) -> None:
    """A seed: None, a non-negative integer or a numpy Generator."""
    if value is None or isinstance(value, (np.random.Generator, np.random.SeedSequence)):
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"{fn}(): {name} must be None, an integer or a "
                                f"numpy.random.Generator, not {_type_name(value)} {value!r}")
    if value < 0:
        raise ArgumentError(f"{fn}(): {name} must be a non-negative integer; got {value!r}")


def arg_choice(name: str, value, choices: tuple[str, ...], fn: str, allow_none: bool = False,
               case: bool = True) -> str | None:
    """One of a few strings (the message lists them and the closest one)."""
    if value is None and allow_none:
        return None
    shown = ", ".join(repr(c) for c in choices) + (" or None" if allow_none else "")
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{fn}(): {name} must be one of {shown}, not "
                                f"{_type_name(value)} {value!r}")
    key = value if case else value.lower()
    if key not in (choices if case else tuple(c.lower() for c in choices)):
        raise ArgumentError(f"{fn}(): {name} must be one of {shown}; got {value!r}"
                            + _did_you_mean(value, choices))
    return value


def _did_you_mean(value: str, choices) -> str:
    import difflib
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def arg_vector(name: str, value, fn: str) -> None:
    """weights / offset: None, a column name, or one value per row (1-D)."""
    if value is None or isinstance(value, str):
        return
    if isinstance(value, (dict, set, frozenset, bytes)) or callable(value):
        raise ArgumentTypeError(f"{fn}(): {name} must be a column name or a 1-D array with one "
                                f"value per row, not {_type_name(value)}")
    shape = getattr(value, "shape", None)
    ndim = len(shape) if isinstance(shape, tuple) else (np.ndim(value) if isinstance(
        value, (list, tuple, int, float, np.number)) else 1)
    if ndim != 1:
        raise ArgumentError(f"{fn}(): {name} must be a column name or a 1-D array with one value "
                            f"per row; got a {ndim}-dimensional value"
                            + (f" of shape {tuple(shape)}" if shape is not None else ""))


CONTROL_OPTIONS = {"maxiter": "maximum optimizer iterations per stage (a positive integer)"}


def arg_control(control, fn: str) -> dict:
    """control: None or a dict of known options with valid values."""
    if control is None:
        return {}
    if not isinstance(control, dict):
        raise ArgumentTypeError(f"{fn}(): control must be a dict such as {{'maxiter': 5000}}, "
                                f"not {_type_name(control)}")
    known = ", ".join(f"'{k}' ({v})" for k, v in CONTROL_OPTIONS.items())
    for key in control:
        if key not in CONTROL_OPTIONS:
            raise ArgumentError(f"{fn}(): unknown control option {key!r}"
                                + _did_you_mean(str(key), CONTROL_OPTIONS) + f"; known: {known}")
    out = dict(control)
    if "maxiter" in out:
        out["maxiter"] = arg_int("control['maxiter']", out["maxiter"], fn, lo=1)
    return out


def arg_start(start, fn: str, keys: tuple[str, ...] = ("theta", "beta")) -> dict:
    """start: None, a dict with 'theta' and/or 'beta' (lme4's 'fixef' is accepted for 'beta'),
    or a numeric vector (theta, as lme4). Lengths are checked once the model is built."""
    if start is None:
        return {}
    if isinstance(start, dict):
        out = {}
        for key, val in start.items():
            k = "beta" if key == "fixef" and "beta" in keys else key
            if k not in keys:
                raise ArgumentError(f"{fn}(): unknown start component {key!r}"
                                    + _did_you_mean(str(key), keys)
                                    + "; known: " + ", ".join(repr(k) for k in keys))
            out[k] = _start_vector(f"start[{key!r}]", val, fn)
        return out
    if isinstance(start, (str, bytes)) or not (isinstance(start, (list, tuple, np.ndarray) + pd_series_types())):
        raise ArgumentTypeError(f"{fn}(): start must be a dict such as {{'theta': [...], "
                                f"'beta': [...]}} or a vector of theta values, not {_type_name(start)}")
    return {"theta": _start_vector("start", start, fn)}


def pd_series_types() -> tuple:
    import pandas as pd
    return (pd.Series,)


def _start_vector(name: str, val, fn: str) -> np.ndarray:
    try:
        a = np.asarray(val, dtype=float)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"{fn}(): {name} must be a vector of numbers, not "
                                f"{_type_name(val)}") from None
    if a.ndim > 1:
        raise ArgumentError(f"{fn}(): {name} must be a 1-D vector; got shape {a.shape}")
    a = a.reshape(-1)
    if not np.isfinite(a).all():
        bad = int(np.flatnonzero(~np.isfinite(a))[0])
        raise ArgumentError(f"{fn}(): {name} must be finite; element {bad} is {a[bad]}")
    return a


