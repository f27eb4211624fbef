"""Warnings that point at the user's line, however deep inside pyglmm they are raised."""
from __future__ import annotations

import os
import sys

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def user_stacklevel() -> int:
    """stacklevel for warnings.warn called from the caller's frame: the first frame outside pyglmm."""
    level = 1
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PKG_DIR):
        f = f.f_back
        level += 1
    return level

