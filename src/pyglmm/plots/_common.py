"""Figure creation without pyplot: no global figure registry, no display or GUI backend needed."""
from __future__ import annotations


def new_figure(width: float, height: float):
    """A matplotlib Figure attached to the Agg canvas (renders and saves without a display).

    The figure is not registered with pyplot, so plotting functions never open windows, never
    leak figures in loops, and work in headless processes (servers, CI, the CLI). In a
    notebook, a returned figure shows as the cell's value; save it with ``fig.savefig(path)``.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - matplotlib is a dependency
        raise ImportError("pyglmm's plots need matplotlib: pip install matplotlib") from e
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    ncols = min(n, max_cols)
    nrows = -(-n // ncols)
    return nrows, ncols
