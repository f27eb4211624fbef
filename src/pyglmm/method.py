"""The estimation method of a fit, as an object: it refits the model to a new response, gives
its maximum-likelihood counterpart (for likelihood-ratio tests of REML fits), rebuilds the
numerics a profile needs, and says whether the fit has a likelihood.

A fitted model carries its method as ``model.fit_method``; results, inference and model files
ask it instead of switching on the method's name. The methods register here by their ``kind``
(``"glmm"``, ``"lmm"``, ``"pql"``), so that a model file can name its method and get it back.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import ArgumentTypeError, DataError, FitError

__all__ = ["Method", "register", "from_spec", "frame_with_response"]


class Method:
    """Base of the estimation methods (see the module docstring)."""

    kind: str = ""
    has_likelihood: bool = True

    def spec(self) -> dict:
        """The method and its settings as a dict (stored in model files)."""
        raise NotImplementedError

    @classmethod
    def from_spec(cls, spec: dict) -> "Method":
        raise NotImplementedError

    def refit(self, model, newresp=None, *, quiet: bool = True, hessian: bool = True):
        """The same model refitted to ``newresp`` (same rows and design), as lme4's refit()."""
        raise NotImplementedError(f"refit is not available for {model.method} fits")

    def ml_refit(self, model):
        """The maximum-likelihood fit of the same model (itself when it is one)."""
        return model

    def attach_numerics(self, model) -> None:
        """Rebuild the numerics of a fit (``_problem``, ``_rs``, ``_sorted``) from its frame, for
        a model read from a file (which stores the data, not the numerics)."""
        raise FitError(f"this model ({model.method} fit) cannot rebuild its numerics; refit it "
                       "from its data")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec()})"


_KINDS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method known by its ``kind`` to `from_spec`."""
    _KINDS[cls.kind] = cls
    return cls


def from_spec(spec: dict | None) -> Method | None:
    """The method a spec names (None for an empty spec or an unknown kind)."""
    if not spec:
        return None
    cls = _KINDS.get(spec.get("kind"))
    return None if cls is None else cls.from_spec(spec)


def frame_with_response(model, newresp):
    """The model's frame, with ``newresp`` as the response when given (checked: numeric, one
    value per row)."""
    frame = model.frame
    if newresp is None:
        return frame
    try:
        y = np.asarray(newresp, float).reshape(-1)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f"refit(): newresp must be a numeric vector with one value per "
                                f"row, not {type(newresp).__name__}") from None
    if y.shape[0] != frame.y.shape[0]:
        raise DataError(f"newresp has {y.shape[0]} values; the model was fitted to "
                        f"{frame.y.shape[0]} rows")
    return dataclasses.replace(frame, y=y)
