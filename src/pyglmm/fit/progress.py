"""Progress for long fits: a one-line status on stderr once a fit has run a few seconds."""
from __future__ import annotations

import sys
import time


class Progress:
    """Reports the optimisation stage, evaluations and deviance; silent for short fits.

    ``enabled=None`` shows progress only when stderr is a terminal (never in logs or tests).
    """

    def __init__(self, enabled: bool | None = None, delay: float = 3.0, every: float = 1.0,
                 stream=None):
        self.stream = stream or sys.stderr
        if enabled is None:
            enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = enabled
        self.delay, self.every = delay, every
        self.t0 = time.perf_counter()
        self.last = -1.0
        self.shown = False

    def update(self, stage: str, n: int, value: float) -> None:
        if not self.enabled:
            return
        now = time.perf_counter() - self.t0
        if now < self.delay or now - self.last < self.every:
            return
        self.last = now
        end = "\r" if getattr(self.stream, "isatty", lambda: False)() else "\n"
        self.stream.write(f"pyglmm: {stage}, {n} deviance evaluations, deviance {value:.6f}"
                          f" ({now:.0f} s){end}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.enabled and self.shown:
            now = time.perf_counter() - self.t0
            self.stream.write(f"pyglmm: done in {now:.1f} s" + " " * 40 + "\n")
            self.stream.flush()
