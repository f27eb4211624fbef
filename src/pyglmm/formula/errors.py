"""FormulaError: a formula syntax error that points at the offending character."""
from __future__ import annotations

from ..errors import PyglmmError


class FormulaError(PyglmmError, ValueError):
    """Invalid model formula; ``position`` is the 0-based character offset of the problem."""

    def __init__(self, message: str, formula: str, position: int) -> None:
        position = max(0, min(int(position), len(formula)))
        self.message = message
        self.formula = formula
        self.position = position
        # show the formula on one line so the caret lines up
        shown = formula.replace("\n", " ").replace("\t", " ").replace("\r", " ")
        super().__init__(f"{message}\n  {shown}\n  {' ' * position}^")
