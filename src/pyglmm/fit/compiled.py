"""The optional compiled kernels (Cython, built at install when a C compiler is there).

`glmm_kernels()` returns the module of GLMM kernels (PIRLS and the Laplace gradient, `_glmm`),
`lmm_kernels()` that of the LMM deviance from cross-products (`_lmm`), `optim_kernels()` the
bounded quasi-Newton driver for small problems (`_optim`), `frame_kernels()` the one-pass
checks and codes of the model frame (`_frame`, used by `design/`), or None: then, or with
the environment variable PYGLMM_PURE_PYTHON=1, every fit runs the numpy code paths, which give
the same estimates (the tests compare the two paths).
"""
from __future__ import annotations

import os

try:
    from . import _frame, _glmm, _lmm, _optim
except ImportError:          # not built (no compiler at install): numpy paths only
    _glmm = _lmm = _optim = _frame = None

AVAILABLE = _glmm is not None and _lmm is not None and _optim is not None and _frame is not None
ENABLED = AVAILABLE and os.environ.get("PYGLMM_PURE_PYTHON", "").strip() in ("", "0")

#: The GLMM kernels loop over rows in scalar code; numpy's vectorised passes win on long data.
#: Measured crossovers (fit times, kernels / numpy), one term: Poisson (1 | g) 8.8 / 11.4 ms at
#: 3,000 rows, 12.7 / 13.2 ms at 5,000, 19.5 / 17.4 ms at 8,000. Several terms (crossed
#: binomial, 20 or 60 levels of the second factor): 31.9 / 45.5 and 48.6 / 50.3 ms at 6,000
#: rows, 82.9 / 92.6 and 102 / 98 ms at 15,000; VerbAgg (7,584 rows, 24 items) 67 / 79 ms.
GLMM_MAX_ROWS = 6000
GLMM_MULTI_MAX_ROWS = 10000


def glmm_rows_ok(n: int, n_terms: int) -> bool:
    """Whether the GLMM kernels are the faster path for n rows and this many terms."""
    return n <= (GLMM_MAX_ROWS if n_terms == 1 else GLMM_MULTI_MAX_ROWS)


#: The one-term LMM kernel against numpy's levels-last vector code, per evaluation with the
#: gradient ((1 + x | g), two fixed effects): 32 / 118 us at 100 levels, 97 / 138 us at 500,
#: 179 / 164 us at 1,000, 933 / 373 us at 5,000 (16 / 7 ms at 100,000).
LMM_MAX_LEVELS = 800

def glmm_kernels():
    """The compiled GLMM kernels when built and enabled, else None."""
    return _glmm if ENABLED else None


def lmm_kernels():
    """The compiled LMM kernel when built and enabled, else None."""
    return _lmm if ENABLED else None


def optim_kernels():
    """The compiled bounded BFGS driver when built and enabled, else None."""
    return _optim if ENABLED else None


def frame_kernels():
    """The compiled model-frame helpers when built and enabled, else None."""
    return _frame if ENABLED else None

