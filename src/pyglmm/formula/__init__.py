"""lme4 formula parser: tokenizer + recursive-descent parser + R term algebra (no numerics here).

Canonical variable texts are R's deparse of the expression: ``log(x)``, ``I(age^2)``, ``a * b`` spaced,
backquotes kept for non-syntactic names (```my col```), strings in double quotes, so ``C(x, ref='B')``
becomes ``C(x, ref = "B")``.
"""
from __future__ import annotations

from functools import lru_cache

from .bars import _find_bar, expand_bar, split_bars
from .errors import FormulaError
from .nodes import deparse
from .parser import parse_expression, parse_formula_ast
from .spec import FixedSpec, ParsedFormula, RandomTerm, Term
from .terms import encode_terms

__all__ = ["FormulaError", "FixedSpec", "ParsedFormula", "RandomTerm", "Term", "parse_formula",
           "parse_expression", "deparse"]


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4 formula such as ``y ~ x + (1 + x | g)``; raises FormulaError on bad input.
    The result is immutable, so parses are cached by text (refits and loops parse once)."""
    try:
        return _parse_cached(text) if isinstance(text, str) else _parse(text)
    except RecursionError:
        raise FormulaError("formula is too deeply nested", text if isinstance(text, str) else "", 0) from None


@lru_cache(maxsize=512)
def _parse_cached(text: str) -> ParsedFormula:
    return _parse(text)


def _parse(text: str) -> ParsedFormula:
    ast = parse_formula_ast(text)
    response = None
    if ast.lhs is not None:
        bar = _find_bar(ast.lhs)
        if bar is not None:
            raise FormulaError("'|' is not allowed in the response", text, bar.op_pos)
        response = deparse(ast.lhs)
    fixed_node, bars = split_bars(ast.rhs, text)
    fixed = encode_terms(fixed_node, text, [response] if response is not None else [])
    random = tuple(rt for b in bars for rt in expand_bar(b, text))
    return ParsedFormula(response, fixed, random, text)

