"""The optional compiled kernels (Cython, built at install when a C compiler is there).

`kernels()` returns the module of one-term kernels (GLMM PIRLS and Laplace gradient, LMM
deviance and gradient from cross-products), or None: then, or with the
environment variable PYGLMM_PURE_PYTHON=1, every fit runs the numpy code paths, which give
the same estimates (the tests compare the two paths).
"""
from __future__ import annotations

import os

try:
    from . import _onegroup
except ImportError:          # not built (no compiler at install): numpy paths only
    _onegroup = None

AVAILABLE = _onegroup is not None
ENABLED = AVAILABLE and os.environ.get("PYGLMM_PURE_PYTHON", "").strip() in ("", "0")

#: (family, link) -> the kernels' family code
FAMILY_CODES = {("poisson", "log"): 0, ("binomial", "logit"): 1}


def kernels():
    """The compiled one-term kernels when built and enabled, else None."""
    return _onegroup if ENABLED else None


def family_code(family) -> int | None:
    """The kernels' code of a family, or None when they do not cover it."""
    return FAMILY_CODES.get((family.name, family.link.name))
