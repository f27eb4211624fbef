"""BLAS thread control for fits.

numpy and scipy each load their own OpenBLAS, each with a pool of spinning threads. On the small
dense blocks of a mixed-model fit (Schur complements of a few hundred columns, called thousands
of times) the two pools contend for the cores and a call runs 4-15 times slower than on one
thread (measured: a 100 x 100 Cholesky solve 0.28 ms alone, 4.3 ms inside a fit). Fits therefore
run their BLAS single-threaded unless the dense block is large enough for threads to pay.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

# dense Schur complements at least this wide keep the default BLAS threads
THREADED_MIN_DIM = 1500
# below this width and row count every dense product is too small for OpenBLAS to start its
# threads (m n k under its 65,536 threshold, or close): the fit runs without the thread limit,
# whose setting and restoring costs ~20 us, a tenth of a small fit
UNTHREADED_MAX_DIM = 32
UNTHREADED_MAX_ROWS = 10_000

_controller = None


def _get_controller():
    """A cached threadpoolctl controller (inspecting the loaded libraries costs ~1 ms)."""
    global _controller
    if _controller is None:
        import scipy.linalg  # noqa: F401  (load scipy's BLAS before the libraries are listed)
        from threadpoolctl import ThreadpoolController
        _controller = ThreadpoolController()
    return _controller


@contextlib.contextmanager
def fit_blas_threads(dense_dim: int, n_rows: int | None = None) -> Iterator[None]:
    """Run the enclosed fit with one BLAS thread when its dense block is below THREADED_MIN_DIM
    (and the fit is not so small that BLAS runs on one thread anyway)."""
    small = n_rows is not None and n_rows <= UNTHREADED_MAX_ROWS and dense_dim < UNTHREADED_MAX_DIM
    if dense_dim >= THREADED_MIN_DIM or small:
        yield
        return
    with _get_controller().limit(limits=1, user_api="blas"):
        yield


def dense_dim(frame) -> int:
    """Width of the dense Schur block of a model frame: all random effects but the first term's, plus X."""
    qs = [len(t.levels) * t.X.shape[1] for t in frame.reterms]
    return (sum(qs) - max(qs) if qs else 0) + frame.X.shape[1]


def with_fit_blas_threads(func):
    """Decorate ``func(frame, ...)`` to run under `fit_blas_threads` sized from its frame."""
    import functools

    @functools.wraps(func)
    def wrapper(frame, *args, **kwargs):
        with fit_blas_threads(dense_dim(frame), frame.y.shape[0]):
            return func(frame, *args, **kwargs)
    return wrapper
